/**
 * The ipsets of the policy engine: what each holds (a {@linkcode SetSpec}, so a pod event can update it
 * without a full compile), the entries one pod contributes, and filling sets from the whole model.
 * @module
 */
import type { LabelSelector, Pod, PolicyModel } from "./model.ts";
import { matches, selectorKey } from "./selector.ts";

/** An ipset type the engine uses. */
export type SetType = "hash:ip" | "hash:net" | "hash:ip,port";

/** A selector pair of a peer: pods by label in the policy's namespace, or in the namespaces selected. */
export interface PeerSelector {
  /** Absent: every pod (of the selected namespaces). */
  podSelector?: LabelSelector;
  /** Absent: only the policy's own namespace. */
  namespaceSelector?: LabelSelector;
}

/** Which pods a pod-dependent set holds. */
export interface PodScope {
  /** The policy's namespace (for peers without a namespace selector). */
  namespace: string;
  /** A pod is in scope when any of these selects it. */
  peers: PeerSelector[];
  /** Only this node's pods (the targets of an ingress rule with named ports). */
  localOnly: boolean;
}

/** What an ipset holds, so pod events can update it without a full compile. */
export type SetSpec =
  | { name: string; type: "hash:net"; kind: "cidrs"; cidrs: string[] }
  | { name: string; type: "hash:ip"; kind: "pods"; scope: PodScope }
  | {
    name: string;
    type: "hash:ip,port";
    kind: "ports";
    scope: PodScope;
    names: { protocol: string; name: string }[];
  };

/** Set members with how many pods contributed each (a pod IP can be held by two pods for a moment). */
export type SetMembers = Map<string, Map<string, number>>;

/** The labels of a namespace; one not (yet) seen still has its automatic name label. */
export function namespaceLabels(model: PolicyModel, namespace: string): Record<string, string> {
  return model.namespaces.get(namespace) ?? { "kubernetes.io/metadata.name": namespace };
}

function peerSelects(
  peer: PeerSelector,
  policyNamespace: string,
  pod: Pod,
  nsLabels: Record<string, string>,
): boolean {
  if (!peer.namespaceSelector) {
    return pod.namespace === policyNamespace && (!peer.podSelector || matches(peer.podSelector, pod.labels));
  }
  return matches(peer.namespaceSelector, nsLabels) &&
    (!peer.podSelector || matches(peer.podSelector, pod.labels));
}

function inScope(scope: PodScope, pod: Pod, model: PolicyModel): boolean {
  if (!pod.ip) return false;
  if (scope.localOnly && pod.nodeName !== model.node) return false;
  const nsLabels = namespaceLabels(model, pod.namespace);
  return scope.peers.some((p) => peerSelects(p, scope.namespace, pod, nsLabels));
}

/** The entries one pod contributes to a set (none when it is out of scope). */
export function podEntries(spec: SetSpec, pod: Pod | undefined, model: PolicyModel): string[] {
  if (!pod || spec.kind === "cidrs" || !inScope(spec.scope, pod, model)) return [];
  if (spec.kind === "pods") return [pod.ip!];
  const out = new Set<string>();
  for (const want of spec.names) {
    for (const p of pod.ports) {
      if (p.name === want.name && p.protocol === want.protocol) {
        out.add(`${pod.ip},${want.protocol.toLowerCase()}:${p.port}`);
      }
    }
  }
  return [...out];
}

/** Fills the given set specs from the model (pods indexed by namespace; peer lookups memoised). */
export function fillSets(model: PolicyModel, specs: Iterable<SetSpec>): SetMembers {
  const byNamespace = new Map<string, Pod[]>();
  for (const pod of model.pods.values()) {
    if (!pod.ip) continue;
    const list = byNamespace.get(pod.namespace);
    if (list) list.push(pod);
    else byNamespace.set(pod.namespace, [pod]);
  }
  const memo = new Map<string, Pod[]>();
  const selectPods = (peer: PeerSelector, namespace: string): Pod[] => {
    const key = peer.namespaceSelector
      ? `*\u0000${selectorKey(peer.namespaceSelector)}\u0000${selectorKey(peer.podSelector)}`
      : `${namespace}\u0000-\u0000${selectorKey(peer.podSelector)}`;
    let pods = memo.get(key);
    if (pods) return pods;
    const namespaces = peer.namespaceSelector
      ? [...byNamespace.keys()].filter((ns) => matches(peer.namespaceSelector!, namespaceLabels(model, ns)))
      : [namespace];
    pods = namespaces.flatMap((ns) => byNamespace.get(ns) ?? []).filter((p) =>
      !peer.podSelector || matches(peer.podSelector, p.labels)
    );
    memo.set(key, pods);
    return pods;
  };
  const members: SetMembers = new Map();
  for (const spec of specs) {
    const entries = new Map<string, number>();
    members.set(spec.name, entries);
    if (spec.kind === "cidrs") {
      for (const c of spec.cidrs) entries.set(c, 1);
      continue;
    }
    const pods = new Set<Pod>();
    for (const peer of spec.scope.peers) {
      for (const pod of selectPods(peer, spec.scope.namespace)) {
        if (!spec.scope.localOnly || pod.nodeName === model.node) pods.add(pod);
      }
    }
    for (const pod of pods) {
      const list = spec.kind === "pods" ? [pod.ip!] : podEntries(spec, pod, model);
      for (const e of list) entries.set(e, (entries.get(e) ?? 0) + 1);
    }
  }
  return members;
}
