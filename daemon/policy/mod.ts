/**
 * Network policy (`--network-policy`): the engine, its applier and the watches, and the clean-up that runs
 * when the flag is off.
 * @module
 */
import type { Iptables } from "../../netops/iptables.ts";
import { type ApplyStats, PolicyApplier } from "./apply.ts";

export { PolicyApplier } from "./apply.ts";
export { PolicyEngine } from "./engine.ts";

/**
 * Removes every `GLX-` chain, jump and set from the namespace `iptables` works in (the Go engine's or ours):
 * what `--network-policy=false` does at start.
 */
export function removePolicyState(iptables: Iptables): Promise<ApplyStats> {
  return new PolicyApplier(iptables).apply({
    chains: new Map(),
    specs: new Map(),
    members: new Map(),
    warnings: [],
  });
}
