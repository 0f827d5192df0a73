/**
 * Named network namespaces (`ip netns add|del|list`, kept in /var/run/netns), for `galaxy demo`, which builds a
 * throwaway node and pods of its own. The daemon and the plugins only ever enter namespaces the runtime made.
 * @module
 */
import { runCommands } from "./netns.ts";

/** Where iproute2 keeps named namespaces. */
export const NAMED_NETNS_DIR = "/var/run/netns";

/** A failed `ip netns` command. */
export class NamedNetnsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NamedNetnsError";
  }
}

async function ipNetns(args: string[]): Promise<string> {
  const [r] = await runCommands(null, [{ argv: ["ip", ...args] }]);
  if (r.code !== 0) throw new NamedNetnsError(`ip ${args.join(" ")}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** Creates the namespace `name` and returns its path. */
export async function addNamedNetns(name: string): Promise<string> {
  await ipNetns(["netns", "add", name]);
  return `${NAMED_NETNS_DIR}/${name}`;
}

/** Deletes the namespace `name`; one that is already gone is fine. */
export async function deleteNamedNetns(name: string): Promise<void> {
  try {
    await ipNetns(["netns", "del", name]);
  } catch (err) {
    if (!(await listNamedNetns()).includes(name)) return;
    throw err;
  }
}

/** The names of every named namespace. */
export async function listNamedNetns(): Promise<string[]> {
  const text = (await ipNetns(["-j", "netns", "list"])).trim();
  return text ? (JSON.parse(text) as { name: string }[]).map((n) => n.name) : [];
}
