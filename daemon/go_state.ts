/**
 * Reading a state file written by the Go Galaxy, so that a node switched in place can DEL the pods the Go daemon
 * added from their state file alone. Its format (galaxy-behaviour.md §2.7) is the one this daemon writes too: a
 * JSON array of `{"NetworkType","Args","Conf","IfName"}`, where `NetworkType` holds the network's name, `Args`
 * is a Go `map[string]string` (`null` when empty), and `Conf` is the network's configuration exactly as the
 * plugin got it: no `cniVersion` and, for a galaxy.json network without one, no `name`. This daemon adds
 * `CapabilityArgs` and `Result`, which Go files lack.
 * @module
 */
import type { StoredNetwork } from "./state.ts";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses a state file of either daemon into {@linkcode StoredNetwork}s: `Args: null` becomes `{}`, a missing
 * `IfName` `""` (DEL then uses the runtime's), and an entry that DEL could not run (no network name, no
 * configuration with a `type` or `plugins`) throws an Error that names the file and the entry.
 */
export function parseStateFile(text: string, path: string): StoredNetwork[] {
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed)) throw new Error(`state file ${path} is not a JSON array`);
  return parsed.map((entry: unknown, i: number): StoredNetwork => {
    const what = `state file ${path}: entry ${i}`;
    if (!isObject(entry)) throw new Error(`${what} is not an object`);
    const { NetworkType, Args, Conf, IfName } = entry;
    if (typeof NetworkType !== "string" || NetworkType === "") throw new Error(`${what}: no NetworkType`);
    if (!isObject(Conf) || typeof Conf.type !== "string" && !Array.isArray(Conf.plugins)) {
      throw new Error(`${what} (network "${NetworkType}"): Conf has neither a type nor plugins`);
    }
    if (IfName !== undefined && typeof IfName !== "string") {
      throw new Error(`${what} (network "${NetworkType}"): IfName is not a string`);
    }
    if (Args !== undefined && Args !== null && !isObject(Args)) {
      throw new Error(`${what} (network "${NetworkType}"): Args is not an object`);
    }
    const args: Record<string, string> = {};
    for (const [k, v] of Object.entries(Args ?? {})) args[k] = typeof v === "string" ? v : JSON.stringify(v);
    // Older Go Galaxy versions saved no IfName ("fix missing ifName"): DEL then uses the runtime's CNI_IFNAME.
    return { ...entry, NetworkType, Args: args, Conf, IfName: IfName ?? "" } as StoredNetwork;
  });
}

/**
 * True when `stored` was written by the Go daemon: it has none of the keys this daemon writes (`CapabilityArgs`
 * and `Runtime`, set before the first plugin runs, and `Result`). The Go Galaxy kept no results and had no
 * CHECK, so there is nothing to check such a network against.
 */
export function writtenByGoGalaxy(stored: StoredNetwork): boolean {
  return !["CapabilityArgs", "Result", "Runtime"].some((key) => Object.hasOwn(stored, key));
}
