// Architectures: the one table of the names kiln meets for a CPU
// architecture. apk's (x86_64, aarch64, armv7, …) is the canonical one; OCI
// image platforms (GOARCH plus a variant), Debian's dpkg names and Node's
// process.arch are mapped to and from it here and nowhere else.

export interface OciPlatformArch {
  /** GOARCH: amd64, arm64, arm, 386, ppc64le, s390x, riscv64. */
  architecture: string;
  /** e.g. "v8" for arm64, "v7" for arm. */
  variant?: string;
}

export interface ArchInfo {
  /** apk's name, the canonical one. */
  apk: string;
  oci: OciPlatformArch;
  /** dpkg's name, where Debian has a matching port. */
  debian?: string;
  /** Node's process.arch on such a host. */
  node?: string;
  /** Other names accepted on input (configs, --arch): the OCI ones. */
  aliases: string[];
}

// Alpine's armhf is ARMv6 hard-float, which Debian has no port for (its
// armhf is ARMv7, Alpine's armv7). Node reports "arm" for both; it is taken
// as armv7.
export const ARCHES: readonly ArchInfo[] = [
  { apk: "x86_64", oci: { architecture: "amd64" }, debian: "amd64", node: "x64", aliases: ["amd64"] },
  { apk: "aarch64", oci: { architecture: "arm64", variant: "v8" }, debian: "arm64", node: "arm64", aliases: ["arm64"] },
  { apk: "armv7", oci: { architecture: "arm", variant: "v7" }, debian: "armhf", node: "arm", aliases: ["arm/v7"] },
  { apk: "armhf", oci: { architecture: "arm", variant: "v6" }, aliases: ["arm/v6"] },
  { apk: "ppc64le", oci: { architecture: "ppc64le" }, debian: "ppc64el", node: "ppc64", aliases: [] },
  { apk: "s390x", oci: { architecture: "s390x" }, debian: "s390x", node: "s390x", aliases: [] },
  { apk: "riscv64", oci: { architecture: "riscv64" }, debian: "riscv64", node: "riscv64", aliases: [] },
  { apk: "x86", oci: { architecture: "386" }, debian: "i386", node: "ia32", aliases: ["386"] },
];

const BY_APK = new Map(ARCHES.map((a) => [a.apk, a]));

/** A lookup table with no prototype: `table["constructor"]` is undefined, not Object. */
function table<T>(entries: Iterable<readonly [string, T]>): Record<string, T> {
  return Object.assign(Object.create(null) as Record<string, T>, Object.fromEntries(entries));
}

/** Every accepted name (apk names and their OCI aliases) → apk arch. */
export const ARCH_ALIASES: Record<string, string> = table(
  ARCHES.flatMap((a) => [a.apk, ...a.aliases].map((n) => [n, a.apk] as const)),
);

/** apk arch → OCI platform architecture and variant. */
export const OCI_PLATFORM: Record<string, OciPlatformArch> = table(ARCHES.map((a) => [a.apk, { ...a.oci }] as const));

/** The entry for an apk arch, or undefined when kiln does not know it. */
export function archInfo(apkArch: string): ArchInfo | undefined {
  return BY_APK.get(apkArch);
}

/** The apk arch for an apk name or an alias (amd64, arm/v7, …); undefined if unknown. */
export function normalizeArch(name: string): string | undefined {
  return Object.hasOwn(ARCH_ALIASES, name) ? ARCH_ALIASES[name] : undefined;
}

/** The OCI platform of an apk arch (a copy), or undefined if unknown. */
export function ociPlatformOf(apkArch: string): OciPlatformArch | undefined {
  const a = BY_APK.get(apkArch);
  return a ? { ...a.oci } : undefined;
}

/** The apk arch of an OCI platform; a missing variant matches any (arm64 = arm64/v8; arm = arm/v7 before arm/v6). */
export function apkArchOfOci(architecture: string, variant?: string): string | undefined {
  return ARCHES.find((a) => a.oci.architecture === architecture && (variant === undefined || a.oci.variant === variant))
    ?.apk;
}

/** apko's Architecture.String(): the OCI architecture, with the variant for 32-bit arm ("arm/v7"). */
export function apkoArchName(apkArch: string): string | undefined {
  const a = BY_APK.get(apkArch);
  if (!a) return undefined;
  return a.oci.architecture === "arm" && a.oci.variant ? `arm/${a.oci.variant}` : a.oci.architecture;
}

/** dpkg's name for an apk arch, if Debian has a matching port. */
export function debianArchOf(apkArch: string): string | undefined {
  return BY_APK.get(apkArch)?.debian;
}

/** The apk arch of a dpkg architecture name. */
export function apkArchOfDebian(debian: string): string | undefined {
  return ARCHES.find((a) => a.debian === debian)?.apk;
}

/** The apk arch of a Node process.arch; undefined if kiln does not know it. */
export function apkArchOfNode(nodeArch: string): string | undefined {
  return ARCHES.find((a) => a.node === nodeArch)?.apk;
}

/** This host's apk arch (process.arch itself when kiln has no name for it). */
export function hostApkArch(): string {
  return apkArchOfNode(process.arch) ?? process.arch;
}

/** This host's OCI (GOARCH) architecture (process.arch itself when unknown, e.g. loong64). */
export function hostOciArch(): string {
  const apk = apkArchOfNode(process.arch);
  return apk ? BY_APK.get(apk)!.oci.architecture : process.arch;
}
