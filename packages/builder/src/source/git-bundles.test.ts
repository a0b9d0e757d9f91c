import { describe, expect, it } from "vitest";
import { resolveSubmoduleUrl } from "../steps/git-seed.js";
import { normalizeRepository } from "./git-bundles.js";

describe("normalizeRepository", () => {
  it("drops a trailing slash and one .git, lowers scheme and host, keeps the path's case", () => {
    expect(normalizeRepository(" https://Example.ORG/Team/Proj.git/ ")).toBe("https://example.org/Team/Proj");
    expect(normalizeRepository("https://example.org/Team/Proj")).toBe("https://example.org/Team/Proj");
    expect(normalizeRepository("HTTPS://example.org/a.git.git")).toBe("https://example.org/a.git");
    expect(normalizeRepository("git://127.0.0.1:9418/proj.git")).toBe("git://127.0.0.1:9418/proj");
  });
});

describe("resolveSubmoduleUrl", () => {
  it("resolves ./ and ../ against the parent's URL as git does; absolute URLs are kept", () => {
    expect(resolveSubmoduleUrl("git://h/group/proj.git", "../sub.git", "w")).toBe("git://h/group/sub.git");
    expect(resolveSubmoduleUrl("https://h/group/proj/", "../../other/sub", "w")).toBe("https://h/other/sub");
    expect(resolveSubmoduleUrl("https://h/proj", "./sub", "w")).toBe("https://h/proj/sub");
    expect(resolveSubmoduleUrl("https://h/proj", "https://x/y.git", "w")).toBe("https://x/y.git");
  });

  it("refuses a relative URL that climbs above the host", () => {
    expect(() => resolveSubmoduleUrl("https://h/proj", "../../x", "w")).toThrow(/climbs above https:\/\/h\/proj/);
  });
});
