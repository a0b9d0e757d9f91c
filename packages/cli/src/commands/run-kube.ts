// `kiln debug --kubernetes`: the kubectl debug command (or the
// ephemeralContainers patch) that starts a toolbox image beside a pod's
// container, sharing its process namespace. Nothing is sent to a cluster.

import { UserError } from "../util.js";

/** A DNS-1123 subdomain (pod names) or label (container and namespace names). */
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** An image reference: registry/path:tag@digest characters, no spaces or shell syntax. */
const IMAGE_REF = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/;

export interface KubernetesDebug {
  pod: string;
  target?: string | undefined;
  image?: string | undefined;
  namespace?: string | undefined;
  patch?: boolean;
  cmd: string[];
}

function check(value: string | undefined, re: RegExp, what: string, max: number, expected: string): string {
  if (value === undefined) throw new UserError(`--kubernetes needs ${what}`);
  if (value.length > max || !re.test(value))
    throw new UserError(`${what} ${JSON.stringify(value)}: expected ${expected}`);
  return value;
}

/** Quote WORD for a POSIX shell when it needs it. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The kubectl debug command line, or (patch) the JSON of the ephemeralContainers patch. */
export function kubernetesDebug(o: KubernetesDebug): string {
  const pod = check(o.pod, SUBDOMAIN, "--kubernetes POD", 253, "a pod name (lower-case DNS subdomain)");
  const target = check(o.target, LABEL, "--target CONTAINER", 63, "a container name (lower-case DNS label)");
  const image = check(o.image, IMAGE_REF, "--image REF", 512, "an image reference such as registry/busybox:latest");
  const ns =
    o.namespace === undefined
      ? undefined
      : check(o.namespace, LABEL, "--namespace NS", 63, "a namespace name (lower-case DNS label)");
  const cmd = o.cmd.length ? o.cmd : ["sh"];
  if (o.patch) {
    const patch = {
      spec: {
        ephemeralContainers: [
          {
            name: `debugger-${target}`.slice(0, 63),
            image,
            command: cmd,
            stdin: true,
            tty: true,
            targetContainerName: target,
            securityContext: { capabilities: { add: ["SYS_PTRACE"] } },
          },
        ],
      },
    };
    return JSON.stringify(patch, null, 2);
  }
  return [
    "kubectl",
    "debug",
    "-it",
    pod,
    ...(ns ? ["--namespace", ns] : []),
    "--image",
    image,
    "--target",
    target,
    "--profile=general",
    "--",
    ...cmd.map(shellQuote),
  ].join(" ");
}
