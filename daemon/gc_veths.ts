/**
 * Which host veths the GC's veth loop may remove: galaxy's `v-h<cid9>…` (galaxy-veth, k8s-vlan `-l<i>`,
 * underlay-veth `-u<i>`) whose container is dead, and tke-route-eni's `eni<hash>` that no live pod of the node
 * owns. A link has no age, so a veth must have looked dead for a whole grace period before it is returned.
 * @module
 */
import { eniVethName } from "../cni/plugins/kit/names.ts";
import type { Link } from "../netops/ip.ts";
import { factsFromState, type Liveness } from "./liveness.ts";
import type { StoredNetwork } from "./state.ts";

/** A veth the GC may remove. */
export interface DeadVeth {
  /** The link name. */
  name: string;
  /** The container it belongs to (full ID when a state file names it), or the link name for `eni*`. */
  id: string;
  /** The container ID prefix of a `v-h` veth. */
  prefix?: string;
  /** Why it is dead. */
  reason: string;
}

/** What one pass knows. */
export interface VethPassInput {
  /** This pass's liveness. */
  live: Liveness;
  /** Every state file's networks, by container ID. */
  states: Map<string, StoredNetwork[] | undefined>;
  /** Every state file's modification time (ms). */
  times: Map<string, number>;
  /** When each veth was first seen dead; updated in place across passes. */
  deadSince: Map<string, number>;
  /** Now (ms). */
  now: number;
  /** `--gc-grace-period`. */
  graceMs: number;
}

/** The container ID prefix of a galaxy host veth `v-h<cid9>` or `v-h<cid9>-<suffix>`. */
export function vethContainerPrefix(name: string): string | undefined {
  if (!name.startsWith("v-h")) return undefined;
  const parts = name.slice(3).split("-");
  return parts.length <= 2 && parts[0] !== "" ? parts[0] : undefined;
}

/** The veths among `links` that have looked dead for at least the grace period. */
export async function deadVeths(links: Link[], input: VethPassInput): Promise<DeadVeth[]> {
  const { live, states, times, deadSince, now, graceMs } = input;
  const young = (ms: number) => now - ms < graceMs;
  const eniAlive = await liveEniNames(live, states);
  const dead: DeadVeth[] = [];
  const seen = new Set<string>();
  for (const link of links) {
    if (link.kind !== "veth") continue;
    let verdict: DeadVeth & { dead: boolean } | undefined;
    const prefix = vethContainerPrefix(link.name);
    if (prefix) {
      const owners = [...states.keys()].filter((id) => id.startsWith(prefix));
      // A container being set up rewrites its state file at every step.
      if (owners.some((id) => young(times.get(id) ?? 0))) continue;
      const facts = owners.length === 1 ? factsFromState(prefix, states.get(owners[0])) : { id: prefix };
      const v = await live.judge(facts);
      verdict = { name: link.name, id: owners.length === 1 ? owners[0] : prefix, prefix, ...v };
    } else if (/^eni[0-9a-f]{11}$/.test(link.name) && eniAlive) {
      const alive = eniAlive.has(link.name);
      verdict = {
        name: link.name,
        id: link.name,
        dead: !alive,
        reason: "no live pod of this node has this veth",
      };
    }
    if (!verdict) continue;
    seen.add(link.name);
    if (!verdict.dead) {
      deadSince.delete(link.name);
      continue;
    }
    const since = deadSince.get(link.name) ?? now;
    deadSince.set(link.name, since);
    if (young(since)) continue;
    const { dead: _, ...veth } = verdict;
    dead.push(veth);
  }
  for (const name of deadSince.keys()) if (!seen.has(name)) deadSince.delete(name);
  return dead;
}

/**
 * The `eni<hash>` names of pods that may still live: every sandbox the runtime lists, else every pod of the
 * node, and every pod with a state file; `undefined` when neither source can say.
 */
async function liveEniNames(
  live: Liveness,
  states: Map<string, StoredNetwork[] | undefined>,
): Promise<Set<string> | undefined> {
  const pods: { namespace: string; name: string }[] = [];
  if (live.source === "runtime") {
    for (const s of live.sandboxes) pods.push({ namespace: s.metadata.namespace, name: s.metadata.name });
  } else if (live.source === "apiserver") {
    for (const key of live.pods!.keys()) {
      const [namespace, name] = key.split("/");
      pods.push({ namespace, name });
    }
  } else {
    return undefined;
  }
  for (const [id, networks] of states) {
    const pod = factsFromState(id, networks).pod;
    if (pod) pods.push(pod);
  }
  const names = new Set<string>();
  for (const p of pods) {
    try {
      names.add(await eniVethName(p.namespace, p.name));
    } catch {
      // a name that makes no valid interface name cannot own a veth
    }
  }
  return names;
}
