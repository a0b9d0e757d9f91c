// The CLI framework: commands declared as data (name, arguments, options, run),
// parsed by commander, with generated help and usage errors as one line.
//
// A command file says what it takes and does; this file decides how options are
// spelled, validated and listed. Errors are thrown, never turned into exit codes
// here: main.ts's reportError is the single place that decides those (a
// UserError with exit 2 is a usage error).

import { Command as Commander, CommanderError, Option } from "commander";
import { UserError, type Io } from "./util.js";

// ---------------------------------------------------------------------------
// Options

type OptionKind = "flag" | "string" | "list" | "number";

/** One option: its flags as commander spells them ("-o, --output <FILE>") and what it yields. */
export interface OptionDef<T> {
  readonly flags: string;
  readonly description: string;
  readonly kind: OptionKind;
  /** Turns the text given into the value (throwing a usage error); strings and lists are kept as given. */
  readonly parse?: (raw: string) => unknown;
  /** Checked after parsing: a missing required option is a usage error. */
  readonly isRequired: boolean;
  /** The same option with another description (a command's own wording). */
  describe(description: string): OptionDef<T>;
  /** The same option, required: a usage error names it when it is missing. */
  required(): OptionDef<Exclude<T, undefined>>;
  /** Phantom: the type of the parsed value. */
  readonly _value?: T;
}

function def<T>(
  flags: string,
  description: string,
  kind: OptionKind,
  parse?: (raw: string) => unknown,
  isRequired = false,
): OptionDef<T> {
  return {
    flags,
    description,
    kind,
    ...(parse ? { parse } : {}),
    isRequired,
    describe: (d) => def<T>(flags, d, kind, parse, isRequired),
    required: () => def<Exclude<T, undefined>>(flags, description, kind, parse, true),
  };
}

/** The long flag of an option, as written in messages: "--output". */
export function longFlag(flags: string): string {
  return /--[\w-]+/.exec(flags)?.[0] ?? flags;
}

/** How an option is shown in help and messages: "-o, --output FILE". */
export function optionTerm(flags: string): string {
  return flags.replace(/[<>[\]]/g, "");
}

/** An option as the synopsis shows it: its short form if it has one ("-o FILE"), else "--signing-key KEY". */
export function synopsisTerm(flags: string): string {
  return optionTerm(flags.replace(/^(-\w), --[\w-]+/, "$1"));
}

/** A switch: true when given. `--no-X` is true when given too (commander's negation is hidden). */
export function flag(flags: string, description: string): OptionDef<boolean> {
  return def(flags, description, "flag");
}

/** An option with a value; given twice, the last wins. */
export function string(flags: string, description: string): OptionDef<string | undefined> {
  return def(flags, description, "string");
}

/** A repeatable option: every value, in order ([] when not given). */
export function list(flags: string, description: string): OptionDef<string[]> {
  return def(flags, description, "list");
}

export interface NumberRules {
  /** Whole numbers only (default true). */
  integer?: boolean;
  min?: number;
  max?: number;
}

/** The check behind number(): a usage error naming the option unless `raw` is a number within the rules. */
export function parseNumber(raw: string, option: string, rules: NumberRules = {}): number {
  const integer = rules.integer ?? true;
  const ok = (integer ? /^\d+$/ : /^\d+(\.\d+)?$/).test(raw.trim());
  const n = Number(raw);
  const kind = integer ? "a whole number" : "a number";
  const range =
    rules.min !== undefined && rules.max !== undefined
      ? ` from ${rules.min} to ${rules.max}`
      : rules.min !== undefined
        ? ` of at least ${rules.min}`
        : rules.max !== undefined
          ? ` of at most ${rules.max}`
          : "";
  if (
    !ok ||
    !Number.isSafeInteger(Math.trunc(n)) ||
    (rules.min !== undefined && n < rules.min) ||
    (rules.max !== undefined && n > rules.max)
  )
    throw new UserError(`${option} must be ${kind}${range}, got ${JSON.stringify(raw)}`, 2);
  return n;
}

/** A number, checked as it is parsed: anything else is a usage error (exit 2) naming the option. */
export function number(flags: string, description: string, rules: NumberRules = {}): OptionDef<number | undefined> {
  return def(flags, description, "number", (raw) => parseNumber(raw, longFlag(flags), rules));
}

/** One of a fixed set of words. */
export function choice<const C extends string>(
  flags: string,
  description: string,
  choices: readonly C[],
): OptionDef<C | undefined> {
  return def(flags, description, "string", (raw) => {
    if (!(choices as readonly string[]).includes(raw))
      throw new UserError(
        `${longFlag(flags)} must be ${choices.slice(0, -1).join(", ")} or ${choices.at(-1)}, got ${JSON.stringify(raw)}`,
        2,
      );
    return raw;
  });
}

/** A value converted by `parse` (which throws a usage error for bad text), e.g. a size. */
export function parsed<T>(flags: string, description: string, parse: (raw: string) => T): OptionDef<T | undefined> {
  return def(flags, description, "string", parse);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type OptionTable = Record<string, OptionDef<any>>;

/** The parsed values of a table of options, by the table's keys. */
export type Values<O extends OptionTable> = { [K in keyof O]: O[K] extends OptionDef<infer T> ? T : never };

// ---------------------------------------------------------------------------
// Commands

export interface CommandSpec<O extends OptionTable> {
  /** As typed: "keygen", or "image build" for a subcommand. */
  name: string;
  /** One line, shown in the list of commands. */
  summary: string;
  /** Positional arguments: "PATH", "FILE..." (one or more), "[FILE...]" (any number), "[X]" (optional). */
  args?: string[];
  /** The synopsis, when the generated one ("kiln NAME REQUIRED-OPTIONS ARGS [options]") says too little. */
  usage?: string;
  /** What the command does, shown in its help between the usage line and the options. */
  details?: string;
  options: O;
  run(values: Values<O>, args: string[], io: Io): Promise<number>;
}

export interface KilnCommand {
  kind: "command";
  name: string;
  summary: string;
  /** The synopsis shown in help and usage errors. */
  usage: string;
  spec: CommandSpec<OptionTable>;
}

export interface KilnGroup {
  kind: "group";
  name: string;
  summary: string;
  details?: string;
  usage: string;
  commands: KilnCommand[];
}

/** What the root lists: commands and groups of commands. */
export type Entry = KilnCommand | KilnGroup;

export function defineCommand<O extends OptionTable>(spec: CommandSpec<O>): KilnCommand {
  const required = Object.values(spec.options)
    .filter((o) => o.isRequired)
    .map((o) => synopsisTerm(o.flags));
  const usage =
    spec.usage ?? ["kiln", spec.name, ...required, ...(spec.args ?? []), "[options]"].filter(Boolean).join(" ");
  return { kind: "command", name: spec.name, summary: spec.summary, usage, spec: spec as CommandSpec<OptionTable> };
}

export function defineGroup(name: string, summary: string, commands: KilnCommand[], details?: string): KilnGroup {
  return {
    kind: "group",
    name,
    summary,
    ...(details ? { details } : {}),
    usage: `kiln ${name} COMMAND [options]   (kiln ${name} COMMAND --help for details)`,
    commands,
  };
}

/** A usage error (exit 2) of a command: one line, pointing at its help. */
export function usageError(command: string, problem: string): UserError {
  return new UserError(`kiln ${command}: ${problem} (see kiln ${command} --help)`, 2);
}

// ---------------------------------------------------------------------------
// Help

const HELP_TERM = "-h, --help";

function table(rows: Array<[string, string]>): string[] {
  const w = Math.max(0, ...rows.map(([t]) => t.length));
  return rows.map(([t, d]) => `  ${t.padEnd(w)}  ${d.split("\n").join(`\n  ${"".padEnd(w)}  `)}`.trimEnd());
}

/** The help of a command: summary, usage, details, then every option. */
export function commandHelp(cmd: KilnCommand): string {
  const rows: Array<[string, string]> = Object.values(cmd.spec.options).map((o) => [
    optionTerm(o.flags) + (o.kind === "list" ? "..." : ""),
    o.description + (o.kind === "list" ? " (repeatable)" : ""),
  ]);
  rows.push([HELP_TERM, "show this help"]);
  return [
    `kiln ${cmd.name} — ${cmd.summary}`,
    "",
    `usage: ${cmd.usage}`,
    ...(cmd.spec.details ? ["", cmd.spec.details.trim()] : []),
    "",
    "options:",
    ...table(rows),
  ].join("\n");
}

/** The help of the root or a group: its commands, one line each. */
export function listHelp(title: string, usage: string, entries: Entry[], details?: string): string {
  const prefix = (e: Entry) => e.name.split(" ").at(-1)!;
  return [
    title,
    "",
    `usage: ${usage}`,
    ...(details ? ["", details.trim()] : []),
    "",
    "commands:",
    ...table(entries.map((e) => [prefix(e), e.summary])),
  ].join("\n");
}

export const ROOT_TITLE = "kiln — build, sign, index and verify APK packages for a minimal glibc distribution";
export const ROOT_USAGE = "kiln COMMAND [OPTIONS]   (kiln COMMAND --help for details)";

// ---------------------------------------------------------------------------
// Parsing

interface RunState {
  status: number;
  /** The command whose parse failed, as typed ("image build"), for the message. */
  failed: string;
}

function configure(c: Commander, path: string, io: Io, state: RunState, help: () => string): Commander {
  return (
    c
      .exitOverride()
      // Help goes to stdout, also when commander shows it for a missing subcommand;
      // errors are not printed here but thrown to main.ts's reportError.
      .configureOutput({
        writeOut: (s) => io.out(s.replace(/\n$/, "")),
        writeErr: (s) => io.out(s.replace(/\n$/, "")),
        outputError: () => {
          state.failed = path;
        },
      })
      .configureHelp({ formatHelp: () => help() + "\n" })
      .helpOption(HELP_TERM, "show this help")
      .allowExcessArguments(false)
      .showSuggestionAfterError(true)
  );
}

/** commander's spelling of a positional argument: PATH → <PATH>, [X...] stays. */
function argumentSyntax(a: string): string {
  return a.startsWith("[") ? a : `<${a}>`;
}

function commanderFor(cmd: KilnCommand, io: Io, state: RunState): Commander {
  const c = configure(new Commander(cmd.name.split(" ").at(-1)), cmd.name, io, state, () => commandHelp(cmd));
  c.description(cmd.summary);
  for (const a of cmd.spec.args ?? []) c.argument(argumentSyntax(a));
  const keys: Array<[string, Option, OptionDef<unknown>]> = [];
  for (const [key, o] of Object.entries(cmd.spec.options)) {
    const opt = new Option(o.flags, o.description);
    if (o.kind === "list") opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    else if (o.parse) opt.argParser(o.parse);
    c.addOption(opt);
    keys.push([key, opt, o]);
  }
  c.action(async (...a: unknown[]) => {
    const self = a.at(-1) as Commander;
    const raw = self.opts();
    const values: Record<string, unknown> = {};
    for (const [key, opt, o] of keys) {
      const v = raw[opt.attributeName()];
      if (o.kind === "flag") values[key] = opt.negate ? v === false : v === true;
      else if (o.kind === "list") values[key] = (v as string[] | undefined) ?? [];
      else values[key] = v;
      if (o.isRequired && (values[key] === undefined || (o.kind === "list" && !(v as string[] | undefined)?.length)))
        throw usageError(cmd.name, `${synopsisTerm(o.flags)} is required`);
    }
    state.status = await cmd.spec.run(values as Values<OptionTable>, self.args, io);
  });
  return c;
}

function commanderForGroup(g: KilnGroup, io: Io, state: RunState): Commander {
  const c = configure(new Commander(g.name), g.name, io, state, () =>
    listHelp(`kiln ${g.name} — ${g.summary}`, g.usage, g.commands, g.details),
  );
  c.description(g.summary);
  for (const sub of g.commands) c.addCommand(commanderFor(sub, io, state));
  return c;
}

/** The commander program for these entries. */
function program(entries: Entry[], io: Io, state: RunState): Commander {
  const root = configure(new Commander("kiln"), "", io, state, () => listHelp(ROOT_TITLE, ROOT_USAGE, entries));
  for (const e of entries) {
    if (e.kind === "group") root.addCommand(commanderForGroup(e, io, state));
    else root.addCommand(commanderFor(e, io, state));
  }
  return root;
}

/**
 * Parse `argv` and run the command it names. Returns the command's status, 0
 * after help was asked for, 2 after help was shown for a missing command;
 * throws a usage error (UserError, exit 2) for what commander refuses, and
 * whatever the command throws.
 */
export async function runProgram(entries: Entry[], argv: string[], io: Io): Promise<number> {
  const state: RunState = { status: 0, failed: "" };
  // commander's `help NAME` shows the root help for a NAME it does not know; say so instead.
  if (argv[0] === "help" && argv[1] !== undefined && !entries.some((e) => e.name === argv[1]))
    throw new UserError(`kiln: unknown command '${argv[1]}' (see kiln --help)`, 2);
  try {
    await program(entries, io, state).parseAsync(argv, { from: "user" });
    return state.status;
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    if (e.code === "commander.helpDisplayed") return 0;
    // `kiln help` (exit code 0), or no command given (help shown as an error).
    if (e.code === "commander.help") return e.exitCode === 0 ? 0 : 2;
    const who = state.failed ? `kiln ${state.failed}` : "kiln";
    const problem = e.message
      .replace(/^error: /, "")
      .replace(/\s*\n\s*/g, " ")
      .replace(/<([^<>]+)>/g, "$1");
    throw new UserError(`${who}: ${problem} (see ${who} --help)`, 2);
  }
}
