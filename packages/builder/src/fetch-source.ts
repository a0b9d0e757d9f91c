// Source fetching for the `fetch` pipeline and for bootstrap recipes that
// import Debian binary packages: mirror substitution resolved from apt's
// configuration (never a host name written in the repository), HTTP(S) and FTP
// downloads with retries into a content-addressed cache, mandatory checksum
// pinning, and archive extraction that never writes outside its destination.
//
// One module per concern under ./source/; this file is their public face.
//   errors.ts      SourceError and its codes
//   apt.ts         apt's sources (one-line and deb822) and the mirrors they name
//   mirrors.ts     ${{mirror.NAME}} / mirror:// substitution, file: mirror roots
//   cache.ts       the content-addressed cache
//   download.ts    fetchSource: cache, attempts, hashing, the http(s) GET policy
//   ftp.ts         RETR over FTP (passive, data only from the control peer)
//   decompress.ts  gzip (zlib) and host xz/bzip2/zstd/lzma, format detection
//   tar-read.ts    the tar reader
//   extract.ts     safe extraction

export * from "./source/errors.js";
export * from "./source/apt.js";
export * from "./source/mirrors.js";
export * from "./source/download.js";
export { addSource, listSources, verifySources, sourceCache, MAX_SEED_BYTES } from "./source/cache.js";
export type { AddedSource, CachedSource, SourceCheck, SourceCache } from "./source/cache.js";
export * from "./source/decompress.js";
export * from "./source/tar-read.js";
export * from "./source/extract.js";
