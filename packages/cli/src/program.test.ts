// The CLI option layer: shared options parse the same everywhere, bad input is
// a usage error (exit 2) as one line naming what was wrong, and help is
// generated for every command.

import { describe, expect, it } from "vitest";
import { exitCodeFor } from "@kiln/core";
import { COMMANDS, main } from "./main.js";
import { opt } from "./options.js";
import {
  choice,
  defineCommand,
  defineGroup,
  flag,
  list,
  longFlag,
  number,
  parseNumber,
  runProgram,
  string,
  type Entry,
  type KilnCommand,
} from "./program.js";
import { UserError, type Io } from "./util.js";

function capture(): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), env: {} };
}

/** A command that records what it was given. */
function probe() {
  const seen: { values?: Record<string, unknown>; args?: string[] } = {};
  const cmd = defineCommand({
    name: "probe",
    summary: "record the options",
    args: ["[FILE...]"],
    options: {
      json: opt.json,
      cacheDir: opt.cacheDir,
      signingKey: opt.signingKey,
      keysDir: opt.keysDir,
      output: opt.output,
      jobs: opt.jobs,
      allowUntrusted: opt.allowUntrusted,
      timeout: opt.timeout,
      format: choice("--format <F>", "output format", ["dot", "json"] as const),
      noTest: flag("--no-test", "skip the tests"),
      name: string("--name <N>", "a name"),
      tag: list("-t, --tag <T>", "a tag"),
    },
    async run(values, args) {
      seen.values = values;
      seen.args = args;
      return 7;
    },
  });
  return { cmd, seen };
}

/** runProgram's outcome: its status, or the error it threw with the exit code reportError would give. */
async function outcome(entries: Entry[], argv: string[], io = capture()) {
  try {
    return { status: await runProgram(entries, argv, io), io };
  } catch (e) {
    return { status: exitCodeFor(e), error: e as Error, io };
  }
}

describe("shared options", () => {
  it("parse to typed values under the command's keys; arguments keep their order", async () => {
    const { cmd, seen } = probe();
    const r = await outcome(
      [cmd],
      [
        "probe",
        "a",
        "--json",
        "--cache-dir",
        "/c",
        "--keys-dir",
        "k1",
        "b",
        "--keys-dir=k2",
        "-o",
        "out",
        "--jobs",
        "3",
        "--timeout",
        "1.5",
        "--format",
        "json",
        "--signing-key",
        "key.rsa",
        "--allow-untrusted",
        "--no-test",
        "-t",
        "x",
        "--tag",
        "y",
        "--",
        "--not-an-option",
      ],
    );
    expect(r.status).toBe(7);
    expect(seen.args).toEqual(["a", "b", "--not-an-option"]);
    expect(seen.values).toEqual({
      json: true,
      cacheDir: "/c",
      signingKey: "key.rsa",
      keysDir: ["k1", "k2"],
      output: "out",
      jobs: 3,
      allowUntrusted: true,
      timeout: 1.5,
      format: "json",
      noTest: true,
      name: undefined,
      tag: ["x", "y"],
    });
  });

  it("have defaults when absent: flags false, lists empty, values undefined", async () => {
    const { cmd, seen } = probe();
    expect((await outcome([cmd], ["probe"])).status).toBe(7);
    expect(seen.values).toEqual({
      json: false,
      cacheDir: undefined,
      signingKey: undefined,
      keysDir: [],
      output: undefined,
      jobs: undefined,
      allowUntrusted: false,
      timeout: undefined,
      format: undefined,
      noTest: false,
      name: undefined,
      tag: [],
    });
  });

  it("a value given twice: the last wins", async () => {
    const { cmd, seen } = probe();
    await outcome([cmd], ["probe", "--cache-dir", "a", "--cache-dir", "b"]);
    expect(seen.values?.cacheDir).toBe("b");
  });

  it("are spelled and typed the same in every command that takes them", () => {
    // Per long flag: whether it takes a value or is a number must agree (repeating
    // may differ: --arch is one architecture for a recipe, several for an image or a repository); the
    // options of options.ts also keep their metavariable (--from OUT and --from TARGET may differ).
    const shared = new Map(Object.values(opt).map((o) => [longFlag(o.flags), o.flags]));
    const seen = new Map<string, string>();
    const walk = (e: Entry): KilnCommand[] => (e.kind === "group" ? e.commands : [e]);
    let checked = 0;
    for (const cmd of COMMANDS.flatMap(walk))
      for (const o of Object.values(cmd.spec.options)) {
        const long = longFlag(o.flags);
        const shape = `${o.kind === "list" ? "string" : o.kind} ${/[<[]/.test(o.flags)}`;
        const before = seen.get(long);
        if (before !== undefined) expect(shape, `${cmd.name} ${long}`).toBe(before);
        else seen.set(long, shape);
        if (shared.has(long)) expect(o.flags, `${cmd.name} ${long}`).toBe(shared.get(long));
        checked++;
      }
    expect(checked).toBeGreaterThan(50);
  });
});

describe("usage errors (exit 2, one line)", () => {
  const cases: Array<[string[], RegExp]> = [
    [["probe", "--jobs", "many"], /^--jobs must be a whole number of at least 1, got "many"$/],
    [["probe", "--jobs", "0"], /^--jobs must be a whole number of at least 1, got "0"$/],
    [["probe", "--jobs", "1.5"], /^--jobs must be a whole number/],
    [["probe", "--jobs", "-3"], /--jobs/],
    [["probe", "--timeout", "0.5"], /^--timeout must be a number of at least 1, got "0.5"$/],
    [["probe", "--format", "svg"], /^--format must be dot or json, got "svg"$/],
    [["probe", "--bogus"], /^kiln probe: unknown option '--bogus' \(see kiln probe --help\)$/],
    [["probe", "--jsn"], /^kiln probe: unknown option '--jsn' \(Did you mean --json\?\) \(see kiln probe --help\)$/],
    [["probe", "--cache-dir"], /^kiln probe: option '--cache-dir DIR' argument missing/],
    [["help", "frobnicate"], /^kiln: unknown command 'frobnicate' \(see kiln --help\)$/],
    [["frobnicate"], /^kiln: unknown command 'frobnicate' \(see kiln --help\)$/],
  ];
  for (const [argv, msg] of cases)
    it(argv.join(" "), async () => {
      const { cmd } = probe();
      const r = await outcome([cmd], argv);
      expect(r.status).toBe(2);
      expect(r.error).toBeInstanceOf(UserError);
      expect(r.error!.message).toMatch(msg);
      expect(r.error!.message.split("\n")).toHaveLength(1);
    });

  it("missing and extra arguments, missing required options", async () => {
    const cmd = defineCommand({
      name: "two",
      summary: "takes two",
      args: ["A", "B"],
      options: { key: opt.signingKey.required(), dirs: opt.keysDir.required() },
      run: async () => 0,
    });
    expect(cmd.usage).toBe("kiln two --signing-key KEY --keys-dir DIR A B [options]");
    const cases: Array<[string[], RegExp]> = [
      [["two", "a"], /^kiln two: missing required argument 'B'/],
      [["two", "a", "b", "c", "--signing-key", "k", "--keys-dir", "d"], /^kiln two: too many arguments/],
      [["two", "a", "b", "--keys-dir", "d"], /^kiln two: --signing-key KEY is required \(see kiln two --help\)$/],
      [["two", "a", "b", "--signing-key", "k"], /^kiln two: --keys-dir DIR is required/],
    ];
    for (const [argv, msg] of cases) {
      const r = await outcome([cmd], argv);
      expect(r.status, argv.join(" ")).toBe(2);
      expect(r.error!.message).toMatch(msg);
    }
    expect((await outcome([cmd], ["two", "a", "b", "--signing-key", "k", "--keys-dir", "d"])).status).toBe(0);
  });

  it("an unknown subcommand of a group", async () => {
    const { cmd } = probe();
    const g = defineGroup("grp", "a group", [{ ...cmd, name: "grp probe" }]);
    const r = await outcome([g], ["grp", "nope"]);
    expect(r.status).toBe(2);
    expect(r.error!.message).toMatch(/^kiln grp: unknown command 'nope' \(see kiln grp --help\)$/);
  });

  it("parseNumber names the option and the rule", () => {
    expect(parseNumber("12", "--n")).toBe(12);
    expect(parseNumber("2.5", "--n", { integer: false })).toBe(2.5);
    expect(() => parseNumber("", "--n")).toThrow(/^--n must be a whole number, got ""$/);
    expect(() => parseNumber("5", "--n", { min: 1, max: 4 })).toThrow(/^--n must be a whole number from 1 to 4/);
    expect(() => parseNumber("1e3", "--n")).toThrow(/--n/);
    expect(exitCodeFor(catching(() => parseNumber("x", "--n")))).toBe(2);
  });
});

function catching(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("did not throw");
}

describe("errors from a command's run", () => {
  it("propagate unchanged, for main.ts's reportError to map", async () => {
    const boom = defineCommand({
      name: "boom",
      summary: "fails",
      options: { n: number("--n <N>", "n") },
      async run(v) {
        throw v.n ? new UserError("bad input") : new TypeError("a bug");
      },
    });
    const a = await outcome([boom], ["boom", "--n", "1"]);
    expect(a.status).toBe(1);
    expect(a.error!.message).toBe("bad input");
    const b = await outcome([boom], ["boom"]);
    expect(b.status).toBe(70);
  });
});

describe("generated help", () => {
  it("lists every option of a command, with -h, --help, on stdout, exit 0", async () => {
    const { cmd, seen } = probe();
    for (const argv of [
      ["probe", "--help"],
      ["probe", "-h"],
      ["help", "probe"],
    ]) {
      const r = await outcome([cmd], argv);
      expect(r.status, argv.join(" ")).toBe(0);
      const text = r.io.stdout.join("\n");
      expect(text).toMatch(/^kiln probe — record the options\n\nusage: kiln probe \[FILE\.\.\.\] \[options\]\n/);
      for (const term of [
        "--json",
        "--cache-dir DIR",
        "--keys-dir DIR...",
        "-o, --output FILE",
        "--jobs N",
        "--no-test",
        "-t, --tag T...",
        "-h, --help",
      ])
        expect(text).toContain(`  ${term}  `);
      expect(text).toContain("(repeatable)");
    }
    expect(seen.values).toBeUndefined();
  });

  it("kiln --help lists every command; kiln alone shows it and exits 2", async () => {
    for (const [argv, status] of [
      [["--help"], 0],
      [["help"], 0],
      [[], 2],
    ] as const) {
      const io = capture();
      expect(await main([...argv], io)).toBe(status);
      const text = io.stdout.join("\n");
      expect(text).toContain("usage: kiln COMMAND");
      for (const c of COMMANDS) expect(text).toMatch(new RegExp(`\\n  ${c.name} +${escape(c.summary)}`));
    }
  });

  it("every command and subcommand has help naming its usage and every option", async () => {
    let checked = 0;
    for (const c of COMMANDS) {
      const subs: Entry[] = c.kind === "group" ? [c, ...c.commands] : [c];
      for (const s of subs) {
        const io = capture();
        expect(await main([...s.name.split(" "), "--help"], io), s.name).toBe(0);
        const text = io.stdout.join("\n");
        expect(text).toContain(`kiln ${s.name} — ${s.summary}`);
        if (s.kind === "command") {
          expect(text).toContain(`usage: kiln ${s.name}`);
          for (const o of Object.values(s.spec.options)) expect(text, s.name).toContain(o.flags.replace(/[<>]/g, ""));
        } else for (const sub of s.commands) expect(text).toContain(`  ${sub.name.split(" ").at(-1)}`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(COMMANDS.length);
  });

  it("a group alone shows its commands and exits 2", async () => {
    const io = capture();
    expect(await main(["image"], io)).toBe(2);
    expect(io.stdout.join("\n")).toMatch(/\n {2}build +build an OCI image/);
    expect(io.stderr).toEqual([]);
  });
});

describe("main", () => {
  it("reports usage errors as one line on stderr, exit 2", async () => {
    for (const argv of [["verify", "--bogus"], ["frobnicate"], ["keygen", "k", "--bits", "lots"], ["image", "nope"]]) {
      const io = capture();
      expect(await main(argv, io), argv.join(" ")).toBe(2);
      expect(io.stderr, argv.join(" ")).toHaveLength(1);
      expect(io.stderr[0]).toMatch(/^kiln/);
    }
    const io = capture();
    await main(["keygen", "k", "--bits", "lots"], io);
    expect(io.stderr[0]).toBe('kiln keygen: --bits must be a whole number, got "lots"');
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
