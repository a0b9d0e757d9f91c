import { afterEach, describe, expect, it, vi } from "vitest";
import {
  apkArchOfDebian,
  apkArchOfNode,
  apkArchOfOci,
  apkoArchName,
  ARCH_ALIASES,
  archInfo,
  debianArchOf,
  hostApkArch,
  hostOciArch,
  normalizeArch,
  OCI_PLATFORM,
  ociPlatformOf,
} from "./arch.js";

describe("the architecture table", () => {
  it("accepts the apk names and the OCI aliases, in the order error messages list them", () => {
    expect(Object.keys(ARCH_ALIASES)).toEqual([
      "386",
      "x86_64",
      "amd64",
      "aarch64",
      "arm64",
      "armv7",
      "arm/v7",
      "armhf",
      "arm/v6",
      "ppc64le",
      "s390x",
      "riscv64",
      "x86",
    ]);
    expect(normalizeArch("amd64")).toBe("x86_64");
    expect(normalizeArch("arm/v6")).toBe("armhf");
    expect(normalizeArch("386")).toBe("x86");
    expect(normalizeArch("i386")).toBeUndefined();
    expect(normalizeArch("toString")).toBeUndefined();
  });

  it("has no prototype, so a direct lookup of constructor, toString or __proto__ finds nothing", () => {
    for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      expect(ARCH_ALIASES[name], name).toBeUndefined();
      expect(OCI_PLATFORM[name], name).toBeUndefined();
    }
  });
  it("maps apk ↔ OCI platform", () => {
    expect(OCI_PLATFORM).toEqual({
      x86_64: { architecture: "amd64" },
      aarch64: { architecture: "arm64", variant: "v8" },
      armv7: { architecture: "arm", variant: "v7" },
      armhf: { architecture: "arm", variant: "v6" },
      ppc64le: { architecture: "ppc64le" },
      s390x: { architecture: "s390x" },
      riscv64: { architecture: "riscv64" },
      x86: { architecture: "386" },
    });
    expect(ociPlatformOf("aarch64")).toEqual({ architecture: "arm64", variant: "v8" });
    expect(ociPlatformOf("mips")).toBeUndefined();
    expect(apkArchOfOci("arm64")).toBe("aarch64");
    expect(apkArchOfOci("arm", "v6")).toBe("armhf");
    expect(apkArchOfOci("arm")).toBe("armv7");
    expect(apkArchOfOci("arm", "v5")).toBeUndefined();
    expect(apkoArchName("armv7")).toBe("arm/v7");
    expect(apkoArchName("aarch64")).toBe("arm64");
    expect(apkoArchName("x86")).toBe("386");
  });
  it("maps apk ↔ Debian and Node names", () => {
    expect(debianArchOf("x86_64")).toBe("amd64");
    expect(debianArchOf("ppc64le")).toBe("ppc64el");
    expect(debianArchOf("armv7")).toBe("armhf");
    expect(debianArchOf("armhf")).toBeUndefined();
    expect(apkArchOfDebian("i386")).toBe("x86");
    expect(apkArchOfDebian("arm64")).toBe("aarch64");
    expect(apkArchOfNode("x64")).toBe("x86_64");
    expect(apkArchOfNode("ia32")).toBe("x86");
    expect(apkArchOfNode("loong64")).toBeUndefined();
    expect(archInfo("s390x")?.node).toBe("s390x");
  });
});

describe("the host's architecture", () => {
  afterEach(() => vi.unstubAllGlobals());
  const withArch = (arch: string) => vi.stubGlobal("process", { ...process, arch });
  it.each([
    ["x64", "x86_64", "amd64"],
    ["arm64", "aarch64", "arm64"],
    ["arm", "armv7", "arm"],
    ["ia32", "x86", "386"],
    ["ppc64", "ppc64le", "ppc64le"],
    ["riscv64", "riscv64", "riscv64"],
    ["loong64", "loong64", "loong64"],
  ])("process.arch %s is apk %s, OCI %s", (node, apk, oci) => {
    withArch(node);
    expect(hostApkArch()).toBe(apk);
    expect(hostOciArch()).toBe(oci);
  });
});
