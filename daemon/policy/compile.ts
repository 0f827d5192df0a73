/**
 * The policy compiler: a pure function from (policies, pods, namespaces, node) to the ipsets and filter
 * chains that enforce them on this node. No I/O; the applier turns the result into kernel batches.
 *
 * Layout of the rules (filter table):
 * - `FORWARD -j GLX-EGRESS`, then `FORWARD -j GLX-INGRESS` (the applier places them first). Neither chain
 *   ACCEPTs anything: allowed traffic RETURNs and goes on through FORWARD, denied traffic is DROPped. So
 *   pod-to-pod traffic on one node is checked against the source's egress AND the destination's ingress
 *   (Galaxy's ACCEPT in GLX-EGRESS skipped the destination's ingress, its [BUG] 2).
 * - INPUT and OUTPUT are not hooked: traffic between a pod and its own node (kubelet probes) is always
 *   allowed, as Kubernetes requires (Galaxy dropped probes, its [BUG] 3).
 * - Both chains start with `RELATED,ESTABLISHED -j RETURN`: replies of allowed connections pass, and a policy
 *   update never cuts a connection that is already open.
 * - One chain per list of policies that select local pods in a direction (`GLX-POD-I-H` / `GLX-POD-E-H`, H
 *   the hash of the list), jumped to by each such pod's address (not from itself: a pod always reaches
 *   itself); it calls the chain of each of those policies (`GLX-PLCY-I-H` / `GLX-PLCY-E-H`, H Galaxy's
 *   hash of the policy). A policy chain RETURNs on an allowed packet and otherwise sets {@linkcode DENY_MARK};
 *   the pod chain RETURNs when the mark is clear after a policy (policies are OR'ed) and DROPs at its end.
 * - Peers live in ipsets: pods (hash:ip, one set per selector peer), CIDRs minus exceptions (hash:net,
 *   computed exactly, one per rule), and named ports resolved per pod (hash:ip,port of `podIP,proto:port`,
 *   matched with `dst,dst`). Sets are named by their content's definition, so a peer that many policies
 *   share (`namespaceSelector: {}`, the same label) is one set, filled and updated once.
 * @module
 */
import { blocksToCidrs, isIpv6Cidr } from "./cidr.ts";
import { type Pod, type Policy, type PolicyModel, type PolicyPort, type PolicyRule } from "./model.ts";
import {
  contentSet,
  DENY_MARK,
  EGRESS_CHAIN,
  glxHash,
  hash16,
  INGRESS_CHAIN,
  podChain,
  policyChain,
} from "./names.ts";
import { matches, selectorKey } from "./selector.ts";
import { fillSets, type PodScope, type SetMembers, type SetSpec } from "./sets.ts";

export { fillSets, namespaceLabels, podEntries } from "./sets.ts";
export type { PeerSelector, PodScope, SetMembers, SetSpec, SetType } from "./sets.ts";

/** The rules of a node: chains by name (rule arguments after `-A <chain>`), and the sets they use. */
export interface CompiledRules {
  /** Every chain of the engine with its rules, in order; empty when nothing on this node is isolated. */
  chains: Map<string, string[]>;
  /** The sets the chains reference. */
  specs: Map<string, SetSpec>;
  /** Problems that were skipped over (an IPv6 ipBlock, an invalid CIDR). */
  warnings: string[];
}

/** A full compile: rules plus the members of every set. */
export interface Compiled extends CompiledRules {
  /** Members by set name. */
  members: SetMembers;
}

const ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN";
const CLEAR_MARK = `-j MARK --set-xmark 0x0/${DENY_MARK}`;
const SET_MARK = `-j MARK --set-xmark ${DENY_MARK}/${DENY_MARK}`;
const IF_ALLOWED = `-m mark --mark 0x0/${DENY_MARK} -j RETURN`;
/** xt_multiport takes at most 15 ports, a range counting as two. */
const MULTIPORT_SLOTS = 15;

function byKey<T extends { namespace: string; name: string }>(a: T, b: T): number {
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function portMatches(
  ports: PolicyPort[],
): { numeric: string[]; named: { protocol: string; name: string }[] } {
  const numeric: string[] = [];
  const named: { protocol: string; name: string }[] = [];
  for (const protocol of ["TCP", "UDP", "SCTP"] as const) {
    const mine = ports.filter((p) => p.protocol === protocol);
    if (!mine.length) continue;
    const proto = protocol.toLowerCase();
    for (const p of mine) if (typeof p.port === "string") named.push({ protocol, name: p.port });
    const nums = mine.filter((p) => typeof p.port !== "string");
    if (!nums.length) continue;
    if (nums.some((p) => p.port === undefined)) {
      numeric.push(`-p ${proto}`);
      continue;
    }
    let chunk: string[] = [];
    let slots = 0;
    const flush = () => {
      if (chunk.length) numeric.push(`-p ${proto} -m multiport --dports ${chunk.join(",")}`);
      chunk = [];
      slots = 0;
    };
    for (const p of nums) {
      const range = p.endPort !== undefined && p.endPort !== p.port;
      const need = range ? 2 : 1;
      if (slots + need > MULTIPORT_SLOTS) flush();
      chunk.push(range ? `${p.port}:${p.endPort}` : String(p.port));
      slots += need;
    }
    flush();
  }
  return { numeric, named };
}

/** A canonical text of a pod scope (same text: same members, so the set is shared). */
function scopeKey(scope: PodScope): string {
  const peers = scope.peers.map((p) =>
    `${p.namespaceSelector ? `*${selectorKey(p.namespaceSelector)}` : scope.namespace}|${
      selectorKey(p.podSelector)
    }`
  ).sort();
  return JSON.stringify([scope.localOnly, peers]);
}

function podSet(scope: PodScope, specs: Map<string, SetSpec>): string {
  const name = contentSet("pods", scopeKey(scope));
  if (!specs.has(name)) specs.set(name, { name, type: "hash:ip", kind: "pods", scope });
  return name;
}

function portSet(
  scope: PodScope,
  names: { protocol: string; name: string }[],
  specs: Map<string, SetSpec>,
): string {
  const sorted = [...names].sort((a, b) => `${a.protocol}/${a.name}` < `${b.protocol}/${b.name}` ? -1 : 1);
  const name = contentSet("ports", JSON.stringify([scopeKey(scope), sorted]));
  if (!specs.has(name)) specs.set(name, { name, type: "hash:ip,port", kind: "ports", scope, names: sorted });
  return name;
}

/** A policy's chain for one direction: its rules, the sets they use, what was skipped. */
interface PolicyOutput {
  lines: string[];
  specs: Map<string, SetSpec>;
  warnings: string[];
}

/**
 * Compiled policy chains by policy object: an update replaces the object, so an unchanged policy is not
 * compiled again for every pod event of this node.
 */
const policyCache = new WeakMap<Policy, { I?: PolicyOutput; E?: PolicyOutput }>();

function compilePolicyCached(policy: Policy, dir: "I" | "E"): PolicyOutput {
  let entry = policyCache.get(policy);
  if (!entry) policyCache.set(policy, entry = {});
  let out = entry[dir];
  if (!out) {
    const specs = new Map<string, SetSpec>();
    const warnings: string[] = [];
    out = entry[dir] = { lines: compilePolicy(policy, dir, specs, warnings), specs, warnings };
  }
  return out;
}

function compilePolicy(
  policy: Policy,
  dir: "I" | "E",
  specs: Map<string, SetSpec>,
  warnings: string[],
): string[] {
  const rules: PolicyRule[] = dir === "I" ? policy.ingressRules : policy.egressRules;
  const side = dir === "I" ? "src" : "dst";
  const lines: string[] = [];
  for (const rule of rules) {
    const selectorPeers = rule.peers.filter((p) => !p.ipBlock);
    const blocks = rule.peers.flatMap((p) => (p.ipBlock ? [p.ipBlock] : []));
    const peerMatches: string[] = [];
    if (rule.peers.length === 0) peerMatches.push("");
    // One set per selector peer, named by what it selects: the same peer in many policies is one set.
    for (const peer of selectorPeers) {
      const scope = { namespace: policy.namespace, peers: [peer], localOnly: false };
      peerMatches.push(`-m set --match-set ${podSet(scope, specs)} ${side}`);
    }
    if (blocks.length) {
      const v4 = blocks.filter((b) => {
        if (!isIpv6Cidr(b.cidr)) return true;
        warnings.push(
          `${policy.namespace}/${policy.name}: IPv6 ipBlock ${b.cidr} is not enforced (IPv4 only)`,
        );
        return false;
      });
      const { cidrs, invalid } = blocksToCidrs(
        v4.map((b) => ({ ...b, except: b.except.filter((e) => !isIpv6Cidr(e)) })),
      );
      for (const bad of invalid) {
        warnings.push(`${policy.namespace}/${policy.name}: invalid CIDR ${bad} skipped`);
      }
      if (cidrs.length) {
        const name = contentSet("nets", cidrs.join(","));
        if (!specs.has(name)) specs.set(name, { name, type: "hash:net", kind: "cidrs", cidrs });
        peerMatches.push(`-m set --match-set ${name} ${side}`);
      }
    }
    const { numeric, named } = rule.ports.length ? portMatches(rule.ports) : { numeric: [""], named: [] };
    for (const peer of peerMatches) {
      for (const port of numeric) {
        lines.push(`${[peer, port].filter(Boolean).join(" ")} -j RETURN`.trimStart());
      }
    }
    if (!named.length) continue;
    if (dir === "I") {
      // The name resolves on each target pod (this node's), so the set holds `targetIP,proto:port`.
      const scope = {
        namespace: policy.namespace,
        peers: [{ podSelector: policy.podSelector }],
        localOnly: true,
      };
      const match = `-m set --match-set ${portSet(scope, named, specs)} dst,dst`;
      for (const peer of peerMatches) lines.push(`${[peer, match].filter(Boolean).join(" ")} -j RETURN`);
    } else {
      // The name resolves on each destination pod: the peers' pods, any pod when `to` is empty. An ipBlock
      // destination has no container ports, so a named port never matches one.
      const scopes = rule.peers.length === 0
        ? [{ namespace: policy.namespace, peers: [{ namespaceSelector: {} }], localOnly: false }]
        : selectorPeers.map((peer) => ({ namespace: policy.namespace, peers: [peer], localOnly: false }));
      for (const scope of scopes) {
        lines.push(`-m set --match-set ${portSet(scope, named, specs)} dst,dst -j RETURN`);
      }
    }
  }
  lines.push(SET_MARK);
  return lines;
}

/**
 * True when `policy` selects `pod` as a target: the pod is in the policy's namespace and its labels satisfy
 * the policy's `podSelector`. The compiler's own test, also what `galaxy plan` shows.
 */
export function selectsPod(
  policy: Policy,
  pod: { namespace: string; labels: Record<string, string> },
): boolean {
  return policy.namespace === pod.namespace && matches(policy.podSelector, pod.labels);
}

/** `namespace/name` of the policies that select `pod`, by the direction they isolate it in, sorted. */
export function policiesSelecting(
  policies: Iterable<Policy>,
  pod: { namespace: string; labels: Record<string, string> },
): { ingress: string[]; egress: string[] } {
  const ingress = new Set<string>();
  const egress = new Set<string>();
  for (const policy of policies) {
    if (!selectsPod(policy, pod)) continue;
    const key = `${policy.namespace}/${policy.name}`;
    if (policy.ingress) ingress.add(key);
    if (policy.egress) egress.add(key);
  }
  const sorted = (s: Set<string>) => [...s].sort();
  return { ingress: sorted(ingress), egress: sorted(egress) };
}

/** What one namespace contributes: its policy and pod chains, the sets they use, its top-chain jumps. */
interface NamespaceRules {
  chains: Map<string, string[]>;
  specs: Map<string, SetSpec>;
  warnings: string[];
  jumps: { I: [string, string][]; E: [string, string][] };
}

/**
 * Per-namespace results of earlier compiles, reused while the namespace's policies and pods of this node are
 * the same objects: a pod event of this node recompiles its own namespace only.
 */
export class RulesCache {
  readonly #entries = new Map<string, { policies: Policy[]; pods: Pod[]; out: NamespaceRules }>();

  /** The cached result for these inputs, or `undefined`. */
  get(namespace: string, policies: Policy[], pods: Pod[]): NamespaceRules | undefined {
    const e = this.#entries.get(namespace);
    if (!e || !sameItems(e.policies, policies) || !sameItems(e.pods, pods)) return undefined;
    return e.out;
  }

  /** Stores a result. */
  set(namespace: string, policies: Policy[], pods: Pod[], out: NamespaceRules): void {
    this.#entries.set(namespace, { policies, pods, out });
  }

  /** Drops namespaces that have neither policies nor pods of this node any more. */
  prune(keep: Set<string>): void {
    for (const ns of this.#entries.keys()) if (!keep.has(ns)) this.#entries.delete(ns);
  }
}

function sameItems<T>(a: T[], b: T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function compileNamespace(policies: Policy[], local: Pod[]): NamespaceRules {
  const out: NamespaceRules = { chains: new Map(), specs: new Map(), warnings: [], jumps: { I: [], E: [] } };
  const podPolicies = new Map<Pod, { I: string[]; E: string[] }>();
  const seen = new Set<string>();
  for (const policy of policies) {
    const hash = glxHash(policy.name, policy.namespace);
    if (seen.has(hash)) continue; // the same policy twice in the input
    seen.add(hash);
    const targets = local.filter((p) => selectsPod(policy, p));
    if (!targets.length) continue;
    for (const dir of ["I", "E"] as const) {
      if (dir === "I" ? !policy.ingress : !policy.egress) continue;
      const chain = policyChain(hash, dir);
      const compiled = compilePolicyCached(policy, dir);
      out.chains.set(chain, compiled.lines);
      for (const [name, spec] of compiled.specs) if (!out.specs.has(name)) out.specs.set(name, spec);
      out.warnings.push(...compiled.warnings);
      for (const pod of targets) {
        let entry = podPolicies.get(pod);
        if (!entry) podPolicies.set(pod, entry = { I: [], E: [] });
        entry[dir].push(chain);
      }
    }
  }
  for (const pod of local) {
    const policies = podPolicies.get(pod);
    if (!policies) continue;
    for (const dir of ["I", "E"] as const) {
      if (!policies[dir].length) continue;
      // Pods selected by the same policies share one chain, named by that list: a pod event then changes
      // one jump line, and the ruleset stays small.
      const chain = podChain(hash16(`${dir}:${policies[dir].join(",")}`), dir);
      if (!out.chains.has(chain)) {
        const rules = [CLEAR_MARK];
        for (const p of policies[dir]) rules.push(`-j ${p}`, IF_ALLOWED, CLEAR_MARK);
        rules.pop();
        rules.push("-j DROP");
        out.chains.set(chain, rules);
      }
      // A pod cannot block access to itself (a hairpin through a Service comes back through FORWARD).
      const [self, other] = dir === "I" ? ["-d", "-s"] : ["-s", "-d"];
      const jump =
        `${self} ${pod.ip}/32 ! ${other} ${pod.ip}/32 -m comment --comment ${pod.namespace}/${pod.name} -j ${chain}`;
      out.jumps[dir].push([pod.ip!, jump]);
    }
  }
  return out;
}

/**
 * The chains and the set specs of this node: only policies that select a pod of this node matter here, for
 * the directions they isolate. With a {@linkcode RulesCache}, namespaces whose inputs did not change are
 * taken from it.
 */
export function compileRules(model: PolicyModel, cache?: RulesCache): CompiledRules {
  const local = new Map<string, Pod[]>();
  for (const pod of model.pods.values()) {
    if (pod.nodeName !== model.node || !pod.ip) continue;
    const list = local.get(pod.namespace);
    if (list) list.push(pod);
    else local.set(pod.namespace, [pod]);
  }
  const byNamespace = new Map<string, Policy[]>();
  for (const policy of model.policies) {
    if (!local.has(policy.namespace)) continue;
    const list = byNamespace.get(policy.namespace);
    if (list) list.push(policy);
    else byNamespace.set(policy.namespace, [policy]);
  }
  const chains = new Map<string, string[]>();
  const specs = new Map<string, SetSpec>();
  const warnings: string[] = [];
  const top = { I: [ESTABLISHED], E: [ESTABLISHED] };
  const usedIps = { I: new Set<string>(), E: new Set<string>() };
  const namespaces = [...byNamespace.keys()].sort();
  for (const ns of namespaces) {
    const policies = byNamespace.get(ns)!.sort(byKey);
    const pods = local.get(ns)!.sort(byKey);
    let out = cache?.get(ns, policies, pods);
    if (!out) {
      out = compileNamespace(policies, pods);
      cache?.set(ns, policies, pods, out);
    }
    for (const [name, rules] of out.chains) chains.set(name, rules);
    for (const [name, spec] of out.specs) if (!specs.has(name)) specs.set(name, spec);
    warnings.push(...out.warnings);
    for (const dir of ["I", "E"] as const) {
      for (const [ip, jump] of out.jumps[dir]) {
        if (usedIps[dir].has(ip)) continue; // two pods claiming one address: the first keeps it
        usedIps[dir].add(ip);
        top[dir].push(jump);
      }
    }
  }
  cache?.prune(new Set(namespaces));
  if (!chains.size) return { chains, specs, warnings };
  chains.set(INGRESS_CHAIN, top.I);
  chains.set(EGRESS_CHAIN, top.E);
  return { chains, specs, warnings };
}

/** The full compile: rules and the members of every set they use. */
export function compile(model: PolicyModel, cache?: RulesCache): Compiled {
  const rules = compileRules(model, cache);
  return { ...rules, members: fillSets(model, rules.specs.values()) };
}
