import { describe, expect, it } from "vitest";
import { newIndexRecord, type IndexRecord } from "@kiln/apk";
import { duplicateProviders, formatDuplicateProvider, newestBuilds, supersedeRecords } from "./index-policy.js";

function rec(name: string, version: string, more: Partial<IndexRecord> = {}): IndexRecord {
  return { ...newIndexRecord(), name, version, arch: "x86_64", ...more };
}
const ids = (rs: IndexRecord[]) => rs.map((r) => `${r.name}-${r.version}`);

describe("supersedeRecords", () => {
  it("a build replaces the other versions of its packages and its origin's packages it no longer produces", () => {
    const existing = [
      rec("zlib", "1.2.13-r0", { origin: "zlib" }),
      rec("zlib-dev", "1.2.13-r0", { origin: "zlib" }),
      rec("zlib-static", "1.2.13-r0", { origin: "zlib" }),
      rec("jq", "1.6-r0", { origin: "jq" }),
    ];
    const incoming = [rec("zlib", "1.2.13-r1", { origin: "zlib" }), rec("zlib-dev", "1.2.13-r1", { origin: "zlib" })];
    const r = supersedeRecords(existing, incoming);
    expect(ids(r.records)).toEqual(["jq-1.6-r0", "zlib-1.2.13-r1", "zlib-dev-1.2.13-r1"]);
    expect(ids(r.superseded)).toEqual(["zlib-1.2.13-r0", "zlib-dev-1.2.13-r0", "zlib-static-1.2.13-r0"]);
  });

  it("the same build merged again replaces its own records and supersedes nothing", () => {
    const a = [rec("jq", "1.7-r0", { origin: "jq", checksum: "Q1a" })];
    const r = supersedeRecords(a, [rec("jq", "1.7-r0", { origin: "jq", checksum: "Q1b" })]);
    expect(r.records.map((x) => x.checksum)).toEqual(["Q1b"]);
    expect(r.superseded).toEqual([]);
  });

  it("a package of another origin under a built name is replaced too (one build per name)", () => {
    const r = supersedeRecords(
      [rec("busybox-links", "1.0-r0", { origin: "busybox-links" })],
      [rec("busybox-links", "1.1-r0", { origin: "busybox" })],
    );
    expect(ids(r.records)).toEqual(["busybox-links-1.1-r0"]);
  });
});

describe("newestBuilds", () => {
  it("keeps of each origin the packages of its newest version (an index written before the policy)", () => {
    const r = newestBuilds([
      rec("zlib", "1.2.13-r0", { origin: "zlib" }),
      rec("zlib-dev", "1.2.13-r0", { origin: "zlib" }),
      rec("zlib", "1.2.13-r1", { origin: "zlib" }),
      rec("zlib-dev", "1.2.13-r1", { origin: "zlib" }),
      rec("gcc", "12.2.0-r0", { origin: "gcc" }),
      rec("gcc", "12.10.0-r0", { origin: "gcc" }),
      rec("jq", "1.6-r0", { origin: "jq" }),
    ]);
    expect(ids(r.records)).toEqual(["gcc-12.10.0-r0", "jq-1.6-r0", "zlib-1.2.13-r1", "zlib-dev-1.2.13-r1"]);
    expect(ids(r.superseded)).toEqual(["zlib-1.2.13-r0", "zlib-dev-1.2.13-r0", "gcc-12.2.0-r0"]);
  });
});

describe("duplicateProviders", () => {
  it("names the so:/cmd: names two packages provide and both packages", () => {
    const d = duplicateProviders([
      rec("zlib", "1.2.13-r1", { provides: ["so:libz.so.1=1"] }),
      rec("zlib-bootstrap", "1.2.13-r0", { provides: ["so:libz.so.1=1"] }),
      rec("busybox", "1.36-r0", { provides: ["cmd:busybox=1.36-r0", "busybox-links=1.36-r0"] }),
      rec("busybox-links", "1.0-r0"),
      rec("perl", "5.40-r0", { provides: ["cmd:perl=5.40-r0", "pc:perl=5.40"] }),
      rec("perl-doc", "5.40-r0", { provides: ["pc:perl=5.40"] }),
    ]);
    expect(d).toEqual([{ name: "so:libz.so.1", packages: ["zlib-1.2.13-r1", "zlib-bootstrap-1.2.13-r0"] }]);
    expect(formatDuplicateProvider(d[0]!)).toMatch(
      /^so:libz\.so\.1 is provided by zlib-1\.2\.13-r1 and zlib-bootstrap-1\.2\.13-r0/,
    );
  });

  it("is quiet when every provider has a provider_priority, and not when only one has", () => {
    const a = rec("busybox", "1.36-r0", { provides: ["cmd:sh=1.36-r0"], providerPriority: 10 });
    const b = rec("bash", "5.2-r0", { provides: ["cmd:sh=5.2-r0"], providerPriority: 100 });
    expect(duplicateProviders([a, b])).toEqual([]);
    expect(duplicateProviders([a, { ...b, providerPriority: undefined }]).map((x) => x.packages)).toEqual([
      ["bash-5.2-r0", "busybox-1.36-r0"],
    ]);
  });

  it("two versions of one package are not two providers", () => {
    expect(
      duplicateProviders([
        rec("jq", "1.6-r0", { provides: ["cmd:jq"] }),
        rec("jq", "1.7-r0", { provides: ["cmd:jq"] }),
      ]),
    ).toEqual([]);
  });
});
