import { describe, expect, it } from "vitest";
import { assertPathComponent, isInside, joinUnder, UnsafePathError } from "./paths.js";

describe("joining untrusted names", () => {
  it("accepts plain segments", () => {
    expect(joinUnder("/cache", "x86_64", { value: "zlib-1.3-r0.apk", what: "file" })).toBe(
      "/cache/x86_64/zlib-1.3-r0.apk",
    );
    expect(assertPathComponent("a..b", "name")).toBe("a..b");
  });
  it.each(["", ".", "..", "../x", "x/../../y", "a/b", "a\\b", "a\u0000b", "a\nb", "x".repeat(256)])(
    "refuses %j",
    (v) => {
      expect(() => joinUnder("/cache", v)).toThrow(UnsafePathError);
    },
  );
  it("knows what is inside", () => {
    expect(isInside("/a/b", "/a/b")).toBe(true);
    expect(isInside("/a/b", "/a/b/c")).toBe(true);
    expect(isInside("/a/b", "/a/bc")).toBe(false);
    expect(isInside("/a/b", "/a/b/../c")).toBe(false);
    expect(isInside("/a/b", "/a/b/..x")).toBe(true);
  });
});
