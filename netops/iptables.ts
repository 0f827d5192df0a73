/**
 * iptables as transactions: a table read with `iptables-save -t <table>` is parsed into chains and rules
 * ({@linkcode parseIptablesSave}, pure); changes are collected in a {@linkcode RestoreBatch} and applied as one
 * `iptables-restore --noflush --wait` run, so each table commits atomically (no loop of `iptables -A`/`-C`
 * processes, no half-applied state when a line fails).
 *
 * The backend (legacy x_tables or nf_tables) is detected once, the way kube-proxy's iptables-wrapper does it,
 * so our rules land where kube-proxy and the kubelet look ({@linkcode detectIptablesBackend}). The xtables
 * lock is honoured through `--wait` (legacy takes `/run/xtables.lock`, or `$XTABLES_LOCKFILE`). IPv4 now;
 * every type carries the family so ip6tables is an addition, not a change.
 * @module
 */
import { createHash } from "node:crypto";
import { runCommands } from "./netns.ts";

/** An address family: 4 (iptables) or 6 (ip6tables). */
export type IpFamily = 4 | 6;

/** The kernel side of iptables: the legacy x_tables or nf_tables (iptables-nft). */
export type IptablesBackend = "legacy" | "nft";

/** The `--iptables-backend` choice: a backend, or `auto` to detect it. */
export type IptablesBackendChoice = IptablesBackend | "auto";

/** An iptables table. */
export type IptablesTable = "filter" | "nat" | "mangle" | "raw" | "security";

/** How long `--wait` waits for the xtables lock, in seconds. */
export const XTABLES_WAIT_SECONDS = 10;

/** An iptables command failed; the message names the command and, for a restore, the failing line. */
export class IptablesError extends Error {
  /** The command's exit code. */
  readonly exitCode: number;
  /** The command's stderr, trimmed. */
  readonly stderr: string;

  constructor(message: string, exitCode: number, stderr: string) {
    super(message);
    this.name = "IptablesError";
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** A bad argument to a batch (nothing was sent to the kernel). */
export class IptablesArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IptablesArgumentError";
  }
}

/** One rule as `iptables-save` prints it. */
export interface SavedRule {
  /** The rule's arguments after `-A <chain>`, unquoted (`["-p","tcp","-m","tcp","--dport","80","-j","X"]`). */
  args: string[];
  /** The same arguments as the save output wrote them (quotes kept): the form `-D` accepts back. */
  text: string;
}

/** One chain of a saved table. */
export interface SavedChain {
  /** The chain name. */
  name: string;
  /** The policy of a built-in chain (`ACCEPT`, `DROP`), `-` for a user chain. */
  policy: string;
  /** The rules in order. */
  rules: SavedRule[];
}

/** A table as `iptables-save` printed it. */
export interface SavedTable {
  /** The table name. */
  table: IptablesTable;
  /** Chains in the order printed (built-in chains first, as iptables-save does). */
  chains: Map<string, SavedChain>;
}

/**
 * Splits a rule text into arguments the way iptables-restore does: whitespace separates, double quotes
 * group, and a backslash inside quotes escapes the next character.
 */
export function splitRuleText(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let has = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === "\\" && i + 1 < text.length) {
        cur += text[++i];
      } else if (c === '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c === '"') {
      quoted = true;
      has = true;
    } else if (c === " " || c === "\t") {
      if (has) out.push(cur);
      cur = "";
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/** Parses `iptables-save` output (one or more tables) into tables of chains and rules. */
export function parseIptablesSave(text: string): SavedTable[] {
  const tables: SavedTable[] = [];
  let current: SavedTable | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      current = { table: line.slice(1) as IptablesTable, chains: new Map() };
      tables.push(current);
    } else if (line === "COMMIT") {
      current = undefined;
    } else if (current && line.startsWith(":")) {
      const [name, policy = "-"] = line.slice(1).split(" ");
      current.chains.set(name, { name, policy, rules: [] });
    } else if (current && line.startsWith("-A ")) {
      const rest = line.slice(3);
      const space = rest.indexOf(" ");
      const chainName = space < 0 ? rest : rest.slice(0, space);
      const ruleText = space < 0 ? "" : rest.slice(space + 1);
      let chain = current.chains.get(chainName);
      if (!chain) {
        chain = { name: chainName, policy: "-", rules: [] };
        current.chains.set(chainName, chain);
      }
      chain.rules.push({ args: splitRuleText(ruleText), text: ruleText });
    }
  }
  return tables;
}

const CHAIN_NAME = /^[A-Za-z0-9_.\-]{1,28}$/;

function chainName(name: string): string {
  if (typeof name !== "string" || !CHAIN_NAME.test(name)) {
    throw new IptablesArgumentError(
      `chain name ${JSON.stringify(name)} is not 1-28 letters, digits, '-', '_' or '.'`,
    );
  }
  return name;
}

/**
 * Renders one argument for a restore line: quoted when it holds whitespace. Quotes, backslashes, line breaks
 * and NUL are refused, not escaped: older iptables-restore versions do not unescape them (Galaxy's "comment with
 * double quotes" bug), and none of our arguments needs them.
 */
export function quoteRuleArg(arg: string): string {
  if (typeof arg !== "string" || arg === "") throw new IptablesArgumentError("empty rule argument");
  if (/["\\\n\r\0]/.test(arg)) {
    throw new IptablesArgumentError(
      `rule argument ${JSON.stringify(arg)} contains a quote, '\\' or a line break`,
    );
  }
  return /[\s]/.test(arg) ? `"${arg}"` : arg;
}

/** A rule change in a batch. */
export interface RuleChange {
  /** `-A` appends, `-I` inserts at the top, `-D` deletes the first identical rule. */
  op: "-A" | "-I" | "-D";
  /** The chain. */
  chain: string;
  /** The rule's arguments (unquoted), or a saved rule's `text` as one raw string for `-D`. */
  rule: string[] | { text: string };
}

interface TablePart {
  declared: string[];
  rules: RuleChange[];
  deleted: string[];
}

/**
 * The changes of one transaction, per table. Declared chains are created when missing and **flushed** when
 * present (`:NAME - [0:0]`); deleted chains are declared too (so they exist and are empty) and then removed with
 * `-X`, which makes deleting a missing chain harmless. Rendered as chain lines, then rule lines in order, then
 * `-X` lines, then COMMIT, per table.
 */
export class RestoreBatch {
  readonly #tables = new Map<IptablesTable, TablePart>();

  #part(table: IptablesTable): TablePart {
    let part = this.#tables.get(table);
    if (!part) {
      part = { declared: [], rules: [], deleted: [] };
      this.#tables.set(table, part);
    }
    return part;
  }

  /** Creates `chain` in `table`, or flushes it when it exists. */
  declareChain(table: IptablesTable, chain: string): this {
    const part = this.#part(table);
    if (!part.declared.includes(chainName(chain))) part.declared.push(chain);
    return this;
  }

  /** Appends a rule. */
  append(table: IptablesTable, chain: string, args: string[]): this {
    return this.#rule(table, { op: "-A", chain, rule: args });
  }

  /** Inserts a rule at the top of the chain. */
  insert(table: IptablesTable, chain: string, args: string[]): this {
    return this.#rule(table, { op: "-I", chain, rule: args });
  }

  /**
   * Deletes a rule. Pass a {@linkcode SavedRule} (its text is what iptables-save printed, so it matches
   * exactly) or arguments. A rule that is not there fails the whole table, so delete what a save showed.
   */
  delete(table: IptablesTable, chain: string, rule: string[] | SavedRule): this {
    return this.#rule(table, { op: "-D", chain, rule: Array.isArray(rule) ? rule : { text: rule.text } });
  }

  /** Flushes and deletes `chain` (a missing chain is fine; one still referenced fails the table). */
  deleteChain(table: IptablesTable, chain: string): this {
    this.declareChain(table, chain);
    const part = this.#part(table);
    if (!part.deleted.includes(chain)) part.deleted.push(chain);
    return this;
  }

  #rule(table: IptablesTable, change: RuleChange): this {
    chainName(change.chain);
    if (Array.isArray(change.rule)) change.rule.forEach(quoteRuleArg);
    else if (/[\n\r\0]/.test(change.rule.text)) {
      throw new IptablesArgumentError("rule text contains a line break");
    }
    this.#part(table).rules.push(change);
    return this;
  }

  /** True when the batch changes nothing. */
  isEmpty(): boolean {
    return this.#tables.size === 0;
  }

  /** The tables this batch changes. */
  tables(): IptablesTable[] {
    return [...this.#tables.keys()];
  }

  /** The `iptables-restore` input (pure; one `*table` … `COMMIT` block per table). */
  text(): string {
    const lines: string[] = [];
    for (const [table, part] of this.#tables) {
      lines.push(`*${table}`);
      for (const chain of part.declared) lines.push(`:${chain} - [0:0]`);
      for (const r of part.rules) {
        const rule = Array.isArray(r.rule) ? r.rule.map(quoteRuleArg).join(" ") : r.rule.text;
        lines.push(rule === "" ? `${r.op} ${r.chain}` : `${r.op} ${r.chain} ${rule}`);
      }
      for (const chain of part.deleted) lines.push(`-X ${chain}`);
      lines.push("COMMIT");
    }
    return lines.length === 0 ? "" : lines.join("\n") + "\n";
  }
}

/** Options of an {@linkcode Iptables} runner. */
export interface IptablesOptions {
  /** 4 (default) or 6. */
  family?: IpFamily;
  /** The backend, or `auto` (default) to detect it. */
  backend?: IptablesBackendChoice;
  /** Run inside this network namespace (a path); `null` or absent: where this process is. */
  netns?: string | null;
  /** Extra environment for every command (e.g. `XTABLES_LOCKFILE`). */
  env?: Record<string, string>;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function commandExists(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

function baseName(family: IpFamily): string {
  return family === 6 ? "ip6tables" : "iptables";
}

/** The program names for a backend: `iptables-nft-save` where installed, else the plain `iptables-save`. */
export function iptablesCommands(
  family: IpFamily,
  backend: IptablesBackend,
  exists: (name: string) => boolean = commandExists,
): { save: string; restore: string; iptables: string } {
  const base = baseName(family);
  const pick = (suffix: string) =>
    exists(`${base}-${backend}${suffix}`) ? `${base}-${backend}${suffix}` : `${base}${suffix}`;
  return { save: pick("-save"), restore: pick("-restore"), iptables: pick("") };
}

async function run(
  netns: string | null,
  argv: string[],
  env: Record<string, string> | undefined,
  stdin?: string,
): Promise<Run> {
  const [r] = await runCommands(netns, [{ argv, stdin, env, timeoutSeconds: XTABLES_WAIT_SECONDS + 20 }]);
  return r;
}

function countRules(saveOutput: string): number {
  return saveOutput.split("\n").filter((l) => l.startsWith("-")).length;
}

/** What the backend detection saw, for the start-up log line. */
export interface BackendDetection {
  /** The backend picked. */
  backend: IptablesBackend;
  /** Why, in a few words. */
  reason: string;
}

/**
 * Picks the backend the way kube-proxy's iptables-wrapper does: the kubelet's hint chains
 * (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY`) in the mangle table of nft, then of legacy; else whichever
 * backend holds more rules; a tie (an empty node) goes to nft, the default of current distributions. Where only
 * a plain `iptables` is installed, its `--version` (`(nf_tables)` or `(legacy)`) decides.
 */
export async function detectIptablesBackend(
  options: Pick<IptablesOptions, "family" | "netns" | "env"> = {},
): Promise<BackendDetection> {
  const family = options.family ?? 4;
  const netns = options.netns ?? null;
  const base = baseName(family);
  const hasLegacy = commandExists(`${base}-legacy-save`);
  const hasNft = commandExists(`${base}-nft-save`);
  if (!hasLegacy || !hasNft) {
    const v = await run(netns, [base, "--version"], options.env);
    if (v.code !== 0) {
      throw new IptablesError(`${base} --version failed: ${v.stderr.trim()}`, v.code, v.stderr);
    }
    const backend: IptablesBackend = v.stdout.includes("nf_tables") ? "nft" : "legacy";
    return { backend, reason: `only one backend installed (${v.stdout.trim()})` };
  }
  const hint = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) /m;
  const nftMangle = await run(netns, [`${base}-nft-save`, "-t", "mangle"], options.env);
  if (nftMangle.code === 0 && hint.test(nftMangle.stdout)) {
    return { backend: "nft", reason: "kubelet hint in nft" };
  }
  const legacyMangle = await run(netns, [`${base}-legacy-save`, "-t", "mangle"], options.env);
  if (legacyMangle.code === 0 && hint.test(legacyMangle.stdout)) {
    return { backend: "legacy", reason: "kubelet hint in legacy" };
  }
  const nftAll = await run(netns, [`${base}-nft-save`], options.env);
  const legacyAll = await run(netns, [`${base}-legacy-save`], options.env);
  const nftRules = nftAll.code === 0 ? countRules(nftAll.stdout) : 0;
  const legacyRules = legacyAll.code === 0 ? countRules(legacyAll.stdout) : 0;
  if (legacyRules > nftRules) {
    return { backend: "legacy", reason: `${legacyRules} legacy rules, ${nftRules} nft` };
  }
  return { backend: "nft", reason: `${nftRules} nft rules, ${legacyRules} legacy` };
}

const TRANSIENT = /Resource temporarily unavailable|holding the xtables lock|Device or resource busy/;
const RESTORE_ATTEMPTS = 3;

/** Finds the line a failed restore names (`line N failed`) in the text sent. */
function failedLine(stderr: string, text: string): string | undefined {
  const m = /line:? (\d+)/.exec(stderr);
  if (!m) return undefined;
  return text.split("\n")[Number(m[1]) - 1];
}

/** An iptables (or ip6tables) of one backend in one namespace: reads with save, writes with restore. */
export class Iptables {
  /** The address family. */
  readonly family: IpFamily;
  /** The backend in use. */
  readonly backend: IptablesBackend;
  /** The namespace commands run in (`null`: this process's). */
  readonly netns: string | null;
  /** Why this backend: `given`, or `detected: <what detection saw>` (for the start-up log). */
  readonly reason: string;
  readonly #env: Record<string, string> | undefined;
  readonly #commands: { save: string; restore: string; iptables: string };

  private constructor(
    family: IpFamily,
    backend: IptablesBackend,
    netns: string | null,
    reason: string,
    env?: Record<string, string>,
  ) {
    this.reason = reason;
    this.family = family;
    this.backend = backend;
    this.netns = netns;
    this.#env = env;
    this.#commands = iptablesCommands(family, backend);
  }

  /** A runner with the backend given or detected (`auto`); see {@linkcode detectIptablesBackend}. */
  static async open(options: IptablesOptions = {}): Promise<Iptables> {
    const family = options.family ?? 4;
    const choice = options.backend ?? "auto";
    const detected = choice === "auto" ? await detectIptablesBackend(options) : undefined;
    const backend = detected?.backend ?? choice as IptablesBackend;
    const base = baseName(family);
    if (choice !== "auto" && !commandExists(`${base}-${backend}-restore`)) {
      // Only the plain binaries: they must be of the backend asked for, or the rules land where nobody looks.
      const v = await run(options.netns ?? null, [base, "--version"], options.env);
      const actual = v.stdout.includes("nf_tables") ? "nft" : "legacy";
      if (v.code !== 0 || actual !== backend) {
        throw new IptablesError(
          `iptables backend ${backend} asked for, but ${base}-${backend}-restore is not installed and ${base} is ` +
            `${v.stdout.trim() || v.stderr.trim()}`,
          v.code,
          v.stderr,
        );
      }
    }
    const reason = detected ? `detected: ${detected.reason}` : "given";
    return new Iptables(family, backend, options.netns ?? null, reason, options.env);
  }

  /** The programs this runner calls. */
  get commands(): { save: string; restore: string; iptables: string } {
    return { ...this.#commands };
  }

  /** Reads one table. A table the kernel has not created yet reads as empty built-in chains. */
  async save(table: IptablesTable): Promise<SavedTable> {
    const r = await run(this.netns, [this.#commands.save, "-t", table], this.#env);
    if (r.code !== 0) {
      throw new IptablesError(
        `${this.#commands.save} -t ${table} failed: ${r.stderr.trim()}`,
        r.code,
        r.stderr,
      );
    }
    return parseIptablesSave(r.stdout).find((t) => t.table === table) ?? { table, chains: new Map() };
  }

  /**
   * Applies a batch with one `iptables-restore --noflush --wait` run; each table commits atomically. An empty
   * batch runs nothing. Throws an {@linkcode IptablesError} naming the failing line.
   */
  async restore(batch: RestoreBatch): Promise<void> {
    if (batch.isEmpty()) return;
    const text = batch.text();
    const argv = [this.#commands.restore, "--noflush", "--wait", String(XTABLES_WAIT_SECONDS)];
    let r = await run(this.netns, argv, this.#env, text);
    // A lock held past --wait, or nf_tables' busy generation: the kernel state is unchanged, so try again.
    for (let attempt = 1; r.code !== 0 && TRANSIENT.test(r.stderr) && attempt < RESTORE_ATTEMPTS; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      r = await run(this.netns, argv, this.#env, text);
    }
    if (r.code !== 0) {
      const line = failedLine(r.stderr, text);
      const where = line === undefined ? "" : ` (near ${JSON.stringify(line)})`;
      throw new IptablesError(
        `${this.#commands.restore} failed${where}: ${r.stderr.trim() || `exit ${r.code}`}`,
        r.code,
        r.stderr,
      );
    }
  }
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/**
 * The first 16 characters of the standard base32 (RFC 4648, unpadded) of SHA-256 over `text`: the suffix that
 * kubelet's hostport chains and Galaxy's `KUBE-HP-` and `GLX-` names are made of.
 */
export function chainHash16(text: string): string {
  const digest = createHash("sha256").update(text).digest();
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of digest) {
    value = ((value << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length === 16) break;
  }
  return out;
}
