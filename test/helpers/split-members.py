#!/usr/bin/env python3
# Independent check of an .apk / APKINDEX.tar.gz: split the gzip members with
# Python's zlib (not kiln's reader) and print, as JSON, each member's size and
# the hashes apk uses: C: (Q1 + base64 SHA-1 of the control member) and the
# hex SHA-256 of each member (datahash is that of the data member).
import base64, hashlib, json, sys, zlib

data = open(sys.argv[1], "rb").read()
members, pos = [], 0
while pos < len(data):
    d = zlib.decompressobj(16 + 15)
    d.decompress(data[pos:])
    used = len(data) - pos - len(d.unused_data)
    raw = data[pos:pos + used]
    members.append({
        "offset": pos,
        "size": used,
        "sha1_q1": "Q1" + base64.b64encode(hashlib.sha1(raw).digest()).decode(),
        "sha256": hashlib.sha256(raw).hexdigest(),
    })
    pos += used
print(json.dumps({"file_size": len(data), "members": members}))
