/**
 * Network policy (`--network-policy`): the engine, its applier and the watches, and the clean-up that runs
 * when the flag is off.
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { Iptables } from "../../netops/iptables.ts";
import type { ClientNode } from "../k8s.ts";
import { type ApplyStats, PolicyApplier } from "./apply.ts";
import { type EngineLog, PolicyEngine } from "./engine.ts";
import { PolicyWatches } from "./watch.ts";

export { type ApplyStats, PolicyApplier, type Touched } from "./apply.ts";
export type { Compiled, CompiledRules, SetSpec } from "./compile.ts";
export type { Pod, Policy, PolicyModel } from "./model.ts";
export { PolicyWatches } from "./watch.ts";
export { type EngineLog, type PolicyCounters, PolicyEngine } from "./engine.ts";

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

/** How often the whole kernel state is re-read and replaced (Galaxy: every 3 minutes). */
export const RESYNC_INTERVAL_MS = 3 * 60_000;

/** A running network policy enforcement. */
export interface NetworkPolicyHandle {
  /** The engine (its counters feed `/metrics`). */
  engine: PolicyEngine;
  /** Stops watching and syncing; the rules stay in force for the next start to take over. */
  close(): Promise<void>;
}

/**
 * Starts enforcement for `node` with `iptables` (detected when not given), starts the watches, and resyncs fully every
 * {@linkcode RESYNC_INTERVAL_MS}. Nothing is written before the watches have listed.
 */
export async function startNetworkPolicy(
  k8s: ClientNode,
  kc: KubeConfig,
  options: { node: string; log: EngineLog; iptables?: Iptables; netns?: string | null },
): Promise<NetworkPolicyHandle> {
  const iptables = options.iptables ?? await Iptables.open({ netns: options.netns ?? null });
  const engine = new PolicyEngine(options.node, new PolicyApplier(iptables), options.log);
  const watches = new PolicyWatches(k8s, kc, engine, options.log);
  watches.start();
  const timer = setInterval(() => engine.resync(), RESYNC_INTERVAL_MS);
  return {
    engine,
    async close() {
      clearInterval(timer);
      await watches.close();
      await engine.close();
    },
  };
}
