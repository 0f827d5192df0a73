/**
 * ipset through batches: one `ipset restore` per change, inside a namespace or in this process's own. A set
 * whose members change as a whole is filled under a temporary name and swapped in, so a set that iptables
 * uses is never seen half-filled; single members are added and deleted with `-exist`.
 * @module
 */
import { runCommands } from "./netns.ts";

/** A failed ipset command, with its stderr. */
export class IpsetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IpsetError";
  }
}

/** A set to write in full. */
export interface IpsetContent {
  /** Its name (at most 31 characters). */
  name: string;
  /** `hash:ip`, `hash:net`, `hash:ip,port`, ... */
  type: string;
  /** Members as `ipset add` takes them. */
  entries: Iterable<string>;
  /** How many members there are (sizes hashsize and maxelem). */
  size: number;
}

/** A set as `ipset list -t` shows it. */
export interface IpsetHeader {
  /** Its name. */
  name: string;
  /** Its type. */
  type: string;
}

/** The longest name the kernel takes. */
export const IPSET_MAXNAMELEN = 31;

function createOptions(type: string, size: number): string {
  const maxelem = Math.max(65536, 2 ** Math.ceil(Math.log2(size * 2 || 1)));
  let hashsize = 1024;
  while (hashsize * 4 < size && hashsize < 1 << 20) hashsize *= 2;
  return `${type} family inet hashsize ${hashsize} maxelem ${maxelem}`;
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9_.:-]+$/.test(name) || name.length > IPSET_MAXNAMELEN) {
    throw new IpsetError(`invalid ipset name ${JSON.stringify(name)}`);
  }
}

/**
 * The restore lines that make each set hold exactly `entries`: a set in `existing` is filled under
 * `tmpName(i)` and swapped in (then the temporary one destroyed); a new one is created and filled.
 */
export function replaceSetsBatch(
  sets: IpsetContent[],
  existing: ReadonlySet<string>,
  tmpName: (i: number) => string,
): string[] {
  const lines: string[] = [];
  sets.forEach((set, i) => {
    checkName(set.name);
    const opts = createOptions(set.type, set.size);
    if (!existing.has(set.name)) {
      lines.push(`create ${set.name} ${opts}`);
      for (const e of set.entries) lines.push(`add ${set.name} ${e}`);
      return;
    }
    const tmp = tmpName(i);
    checkName(tmp);
    lines.push(`create ${tmp} ${opts}`);
    for (const e of set.entries) lines.push(`add ${tmp} ${e}`);
    lines.push(`swap ${tmp} ${set.name}`, `destroy ${tmp}`);
  });
  return lines;
}

/** Restore lines adding and deleting single members (idempotent, `-exist`). */
export function memberChangesBatch(changes: { set: string; add: string[]; del: string[] }[]): string[] {
  const lines: string[] = [];
  for (const c of changes) {
    checkName(c.set);
    for (const e of c.del) lines.push(`del ${c.set} ${e} -exist`);
    for (const e of c.add) lines.push(`add ${c.set} ${e} -exist`);
  }
  return lines;
}

/** Restore lines destroying sets (flushed first, as destroy needs no references and is then quick). */
export function destroySetsBatch(names: Iterable<string>): string[] {
  const lines: string[] = [];
  for (const n of names) {
    checkName(n);
    lines.push(`flush ${n}`, `destroy ${n}`);
  }
  return lines;
}

/** Runs one `ipset restore` with `lines` in the namespace (`null`: this process's own). */
export async function ipsetRestore(netns: string | null, lines: string[]): Promise<void> {
  if (!lines.length) return;
  const [r] = await runCommands(netns, [{ argv: ["ipset", "restore"], stdin: lines.join("\n") + "\n" }]);
  if (r.code !== 0) throw new IpsetError(`ipset restore failed (${r.code}): ${r.stderr.trim()}`);
}

/** Every set with its type (`ipset list -t`). */
export async function listIpsets(netns: string | null): Promise<IpsetHeader[]> {
  const [r] = await runCommands(netns, [{ argv: ["ipset", "list", "-t"] }]);
  if (r.code !== 0) throw new IpsetError(`ipset list failed (${r.code}): ${r.stderr.trim()}`);
  return parseIpsetHeaders(r.stdout);
}

/** Parses `ipset list -t` output. */
export function parseIpsetHeaders(text: string): IpsetHeader[] {
  const out: IpsetHeader[] = [];
  let name: string | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("Name: ")) name = line.slice(6).trim();
    else if (line.startsWith("Type: ") && name !== undefined) {
      out.push({ name, type: line.slice(6).trim() });
      name = undefined;
    }
  }
  return out;
}

/** The members of one set (`ipset list <name>`), without options such as `nomatch`. */
export async function listIpsetMembers(netns: string | null, name: string): Promise<string[]> {
  checkName(name);
  const [r] = await runCommands(netns, [{ argv: ["ipset", "list", name] }]);
  if (r.code !== 0) throw new IpsetError(`ipset list ${name} failed (${r.code}): ${r.stderr.trim()}`);
  const at = r.stdout.indexOf("Members:\n");
  if (at < 0) return [];
  return r.stdout.slice(at + 9).split("\n").map((l) => l.trim().split(" ")[0]).filter(Boolean);
}
