import { describe, expect, it } from "vitest";
import {
  checkPayloadNames,
  jobIdFor,
  jobPayloadSchema,
  parseMessage,
  parseRedisUrl,
  returnSchema,
  attemptResultSchema,
} from "./messages.js";

const payload = {
  v: 1,
  recipe: "zlib",
  arch: "x86_64",
  fullVersion: "1.3-r0",
  epoch: 0,
  own: "a".repeat(64),
  keyName: "kiln.rsa.pub",
  sourceDateEpoch: 1700000000,
  runTests: true,
};

describe("parseRedisUrl", () => {
  it("reads host, port, database, credentials and TLS", () => {
    expect(parseRedisUrl("redis://127.0.0.1:6380")).toMatchObject({ host: "127.0.0.1", port: 6380, db: 0, tls: false });
    expect(parseRedisUrl("rediss://u:p%40ss@cache.example:7000/3")).toMatchObject({
      host: "cache.example",
      port: 7000,
      db: 3,
      tls: true,
      username: "u",
      password: "p@ss",
    });
    expect(parseRedisUrl("redis://[::1]").host).toBe("::1");
    expect(parseRedisUrl("redis://h").port).toBe(6379);
  });

  it("never shows the password in its display form", () => {
    expect(parseRedisUrl("redis://u:secret@h:1/2").display).toBe("redis://u@h:1/2");
  });

  it.each([
    ["http://h:1", /unsupported scheme "http:"/],
    ["redis://", /no host/],
    ["redis://h:1/x", /database must be a number/],
    ["redis://h:1/?a=b", /no query/],
    ["not a url", /is not a URL/],
  ])("refuses %s with what was expected", (url, re) => {
    expect(() => parseRedisUrl(url)).toThrow(re);
    expect(() => parseRedisUrl(url)).toThrow(/expected redis:\/\//);
  });
});

describe("job payloads (untrusted)", () => {
  it("accepts a well-formed payload", () => {
    expect(parseMessage(jobPayloadSchema, payload, "job 1")).toEqual(payload);
  });

  it.each([
    [{ ...payload, extra: 1 }, /Unrecognized key/],
    [{ ...payload, own: "../x" }, /own/],
    [{ ...payload, keyName: "../../etc/shadow.pub" }, /keyName/],
    [{ ...payload, epoch: -1 }, /epoch/],
    [{ ...payload, v: 2 }, /v:/],
  ])("refuses a malformed payload, naming the field", (p, re) => {
    expect(() => parseMessage(jobPayloadSchema, p, "job 1")).toThrow(re);
  });

  it("refuses names that are not apk names (they become object keys and file names)", () => {
    expect(() => checkPayloadNames({ ...payload, recipe: "../etc" }, "job 1")).toThrow(/recipe/);
    expect(() => checkPayloadNames({ ...payload, arch: "x86_64/../../" }, "job 1")).toThrow(/arch/);
    expect(() => checkPayloadNames({ ...payload, fullVersion: "1.0 r0" }, "job 1")).toThrow(/fullVersion/);
    expect(() => checkPayloadNames(payload, "job 1")).not.toThrow();
  });

  it("refuses oversized or non-JSON results", () => {
    expect(() => parseMessage(attemptResultSchema, "{", "r.json")).toThrow(/r.json: not JSON/);
    expect(() => parseMessage(attemptResultSchema, "x".repeat(2 * 1024 * 1024), "r.json")).toThrow(/larger than/);
    expect(() => parseMessage(returnSchema, { attempt: "../../x", worker: "w" }, "ret")).toThrow(/attempt/);
  });
});

describe("jobIdFor", () => {
  it("is the same for the same build and differs when the environment does", () => {
    const a = jobIdFor(payload, ["busybox-1@Q1x"]);
    expect(jobIdFor(payload, ["busybox-1@Q1x"])).toBe(a);
    expect(jobIdFor(payload, ["busybox-2@Q1y"])).not.toBe(a);
    expect(jobIdFor({ ...payload, fullVersion: "1.3-r1" }, ["busybox-1@Q1x"])).not.toBe(a);
    expect(a).toMatch(/^x86_64\.zlib-1\.3-r0\.[0-9a-f]{16}$/);
    expect(a).not.toContain(":");
  });
});
