/**
 * What the operator tools read of network policy: the policies that select a pod (`galaxy plan`, with the
 * compiler's own selection) and which `GLX-` chains and sets on the node are owned (`galaxy audit`). The
 * audit's `--fix` removes the rest only through the policy applier: a full sync that replaces all `GLX-`
 * state at once with the desired one (what live policies use is rewritten in the same atomic restore, never
 * removed), or, with no engine running, the same removal `--network-policy=false` does at start.
 * @module
 */
import { listIpsets } from "../../netops/ipset.ts";
import type { Iptables } from "../../netops/iptables.ts";
import type { PolicyInventory } from "../audit.ts";
import type { PodLike } from "../networks.ts";
import type { PolicySelector } from "../plan.ts";
import { removePolicyState } from "./apply.ts";
import { policiesSelecting } from "./compile.ts";
import type { PolicyEngine } from "./engine.ts";
import { podFromObject } from "./model.ts";
import { PREFIX } from "./names.ts";

/** The policies of `engine`'s model that select a pod, per direction. */
export function engineSelector(engine: PolicyEngine): PolicySelector {
  return {
    policiesSelecting(obj: PodLike) {
      const pod = podFromObject(obj);
      return Promise.resolve(
        pod ? policiesSelecting(engine.model.policies, pod) : { ingress: [], egress: [] },
      );
    },
  };
}

async function presentSets(netns: string | null): Promise<{ name: string; type: string }[]> {
  return (await listIpsets(netns)).filter((h) => h.name.startsWith(PREFIX));
}

/** `GLX-` state as `engine` owns it: what its last sync applied. */
export function engineInventory(engine: PolicyEngine, iptables: Iptables): PolicyInventory {
  return {
    async expectedObjects() {
      // A sync in progress may be between creating and destroying a set: look when the engine is still.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([engine.idle(), new Promise((r) => timer = setTimeout(r, 2000))]);
      clearTimeout(timer);
      const owned = engine.owned();
      if (!owned) return undefined;
      const why =
        `not in the state the policy engine last applied (${engine.model.policies.length} policies, ` +
        `${owned.chains.size} chains, ${owned.sets.size} sets)`;
      return { ...owned, why };
    },
    presentSets: () => presentSets(iptables.netns),
    async removeOrphans() {
      await engine.syncNow();
      return "full policy sync: all GLX- state replaced by the engine's (one atomic iptables-restore)";
    },
  };
}

/** `GLX-` state with no engine to own it (`--network-policy` off, or no apiserver): all of it is an orphan. */
export function unownedInventory(iptables: Iptables, why: string): PolicyInventory {
  return {
    expectedObjects: () => Promise.resolve({ chains: new Set(), sets: new Set(), why }),
    // A node that never ran policy may have no ipset command at all (exit 127): it has no sets either.
    presentSets: () =>
      presentSets(iptables.netns).catch((e) => {
        if (/failed \(127\)/.test((e as Error).message)) return [];
        throw e;
      }),
    async removeOrphans() {
      const stats = await removePolicyState(iptables);
      return `policy applier with an empty state: ${stats.chainsDeleted} GLX- chains deleted, ` +
        `${stats.setsDestroyed} sets destroyed`;
    },
  };
}
