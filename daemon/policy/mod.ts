/**
 * Network policy (`--network-policy`): the engine, its applier and the watches, and the clean-up that runs
 * when the flag is off.
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { Iptables } from "../../netops/iptables.ts";
import type { ClientNode } from "../k8s.ts";
import type { PodSource } from "../handler.ts";
import { podFromObject } from "./model.ts";
import { PolicyApplier } from "./apply.ts";
import { type EngineLog, PolicyEngine } from "./engine.ts";
import { PolicyWatches } from "./watch.ts";
import { engineInventory, engineSelector } from "./inspect.ts";
import type { PolicyInventory } from "../audit.ts";
import type { PolicySelector } from "../plan.ts";

export { type ApplyStats, PolicyApplier, removePolicyState, type Touched } from "./apply.ts";
export type { Compiled, CompiledRules, SetSpec } from "./compile.ts";
export type { Pod, Policy, PolicyModel } from "./model.ts";
export { PolicyWatches } from "./watch.ts";
export { engineInventory, engineSelector, unownedInventory } from "./inspect.ts";
export { type EngineLog, type PolicyCounters, PolicyEngine } from "./engine.ts";

/** How often the whole kernel state is re-read and replaced (Galaxy: every 3 minutes). */
export const RESYNC_INTERVAL_MS = 3 * 60_000;

/** A running network policy enforcement. */
export interface NetworkPolicyHandle {
  /** The engine (its counters feed `/metrics`). */
  engine: PolicyEngine;
  /** `pods` as the CNI handler should use it: see {@linkcode enforcingPodSource}. */
  podSource(pods: PodSource): PodSource;
  /** The policies selecting a pod, for `galaxy plan`. */
  selector: PolicySelector;
  /** The `GLX-` objects the engine owns, for `galaxy audit`. */
  inventory: PolicyInventory;
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
    podSource: (pods) => enforcingPodSource(pods, engine, options.log),
    selector: engineSelector(engine),
    inventory: engineInventory(engine, iptables),
    async close() {
      clearInterval(timer);
      await watches.close();
      await engine.close();
    },
  };
}

/** The first IPv4 address of the default network in a network-status annotation value. */
function defaultIpv4(status: string): string | undefined {
  try {
    const entries = JSON.parse(status) as { ips?: unknown; default?: unknown }[];
    const first = entries.find((e) => e?.default === true) ?? entries[0];
    const ips = Array.isArray(first?.ips) ? first.ips : [];
    return ips.find((ip): ip is string => typeof ip === "string" && /^\d+\.\d+\.\d+\.\d+$/.test(ip));
  } catch {
    return undefined;
  }
}

/**
 * `pods` for the CNI handler, telling `engine` a new pod's address at the end of its ADD (when the
 * network-status annotation is written) and waiting, bounded, until the pod's rules are in the kernel: the
 * runtime gets the pod's network only once its policy applies, instead of when the kubelet's status update
 * reaches the watch. Policy trouble never fails the ADD.
 */
export function enforcingPodSource(pods: PodSource, engine: PolicyEngine, log: EngineLog): PodSource {
  const seen = new Map<string, unknown>();
  return {
    async getPod(namespace, name, options) {
      const pod = await pods.getPod(namespace, name, options);
      if (seen.size >= 1000) seen.clear(); // lookups of requests that never reached the annotation
      seen.set(`${namespace}/${name}`, pod);
      return pod;
    },
    async setNetworkStatus(namespace, name, value) {
      const key = `${namespace}/${name}`;
      const obj = seen.get(key);
      seen.delete(key);
      try {
        const ip = defaultIpv4(value);
        const pod = engine.model.pods.get(key) ?? podFromObject(obj);
        if (ip && pod) await engine.podAddressFromCni(pod, ip);
      } catch (e) {
        log.warn(`network policy: pod ${key}: ${(e as Error).message}`);
      }
      await pods.setNetworkStatus(namespace, name, value);
    },
    notReadyReason: () => pods.notReadyReason(),
  };
}
