import { describe, expect, it } from "vitest";
import { describeError, exitCodeFor, isKilnError, KilnError } from "./errors.js";

class SampleError extends KilnError {
  readonly code = "SAMPLE";
}

describe("the exit-code contract", () => {
  it("maps input and environment errors to 1 and usage errors to 2", () => {
    expect(exitCodeFor(new SampleError("bad field"))).toBe(1);
    expect(exitCodeFor(new SampleError("no network", { kind: "environment" }))).toBe(1);
    expect(exitCodeFor(new SampleError("unknown option", { kind: "usage" }))).toBe(2);
  });
  it("maps system errors to 1 and everything else to 70", () => {
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open 'x'"), {
      code: "ENOENT",
      syscall: "open",
      errno: -2,
    });
    expect(exitCodeFor(enoent)).toBe(1);
    expect(exitCodeFor(new TypeError("x is not a function"))).toBe(70);
    expect(exitCodeFor(new RangeError("Maximum call stack size exceeded"))).toBe(70);
    expect(exitCodeFor(Object.assign(new Error("bad arg"), { code: "ERR_INVALID_ARG_TYPE" }))).toBe(70);
    expect(exitCodeFor("a string")).toBe(70);
  });
  it("keeps the subclass name, code, cause and explanation", () => {
    const cause = new Error("inner");
    const e = new SampleError("outer", { cause, explanation: ["a", "b"] });
    expect(e.name).toBe("SampleError");
    expect(isKilnError(e, "SAMPLE")).toBe(true);
    expect(isKilnError(e, "OTHER")).toBe(false);
    expect(e.cause).toBe(cause);
    expect(e.explanation).toEqual(["a", "b"]);
    expect(describeError(e)).toBe("outer");
    expect(describeError(Object.assign(new Error("open failed"), { code: "EACCES" }))).toBe("open failed (EACCES)");
  });
});
