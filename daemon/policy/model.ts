/**
 * The plain model the policy compiler works on: NetworkPolicies, pods and namespaces reduced to what
 * enforcement needs, converted from the Kubernetes objects defensively (a malformed object becomes an error
 * string or is skipped, never an exception in an event handler).
 * @module
 */

/** A label selector (`matchLabels` AND `matchExpressions`); `{}` matches everything. */
export interface LabelSelector {
  /** Labels that must be present with these values. */
  matchLabels?: Record<string, string>;
  /** Set-based requirements. */
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** One `ports` entry of a rule. */
export interface PolicyPort {
  /** TCP (default), UDP or SCTP. */
  protocol: "TCP" | "UDP" | "SCTP";
  /** A number, a container port name, or absent (every port of the protocol). */
  port?: number | string;
  /** The end of a numeric range `port`..`endPort`. */
  endPort?: number;
}

/** One `from` / `to` entry. Selectors absent mean "not given"; `ipBlock` stands alone. */
export interface PolicyPeer {
  /** Pods in the policy's namespace (or in the namespaces of `namespaceSelector`). */
  podSelector?: LabelSelector;
  /** Namespaces whose pods are peers. */
  namespaceSelector?: LabelSelector;
  /** A CIDR minus exceptions. */
  ipBlock?: { cidr: string; except: string[] };
}

/** One ingress or egress rule: any of `peers` AND any of `ports`; an empty list means "all". */
export interface PolicyRule {
  /** `from` (ingress) or `to` (egress). */
  peers: PolicyPeer[];
  /** Allowed ports. */
  ports: PolicyPort[];
}

/** A NetworkPolicy in the shape the compiler needs, with policyTypes already defaulted. */
export interface Policy {
  /** The policy's namespace. */
  namespace: string;
  /** The policy's name. */
  name: string;
  /** Which pods of the namespace it selects. */
  podSelector: LabelSelector;
  /** It isolates its targets for ingress. */
  ingress: boolean;
  /** It isolates its targets for egress. */
  egress: boolean;
  /** Ingress rules (ignored unless `ingress`). */
  ingressRules: PolicyRule[];
  /** Egress rules (ignored unless `egress`). */
  egressRules: PolicyRule[];
}

/** A named container port of a pod. */
export interface NamedPort {
  /** The name. */
  name: string;
  /** TCP, UDP or SCTP. */
  protocol: string;
  /** The container port number. */
  port: number;
}

/** A pod reduced to what policy needs. */
export interface Pod {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
  /** Labels. */
  labels: Record<string, string>;
  /** The pod's IPv4 address, when it has one that policy can act on. */
  ip?: string;
  /** The node it runs on. */
  nodeName: string;
  /** Named container ports. */
  ports: NamedPort[];
}

/** The whole input of a compile. */
export interface PolicyModel {
  /** Every policy, all namespaces. */
  policies: Policy[];
  /** Every known pod by `namespace/name`. */
  pods: Map<string, Pod>;
  /** Namespace labels by namespace name. */
  namespaces: Map<string, Record<string, string>>;
  /** This node's name: its pods are the ones rules are written for. */
  node: string;
}

/** `namespace/name` of an object. */
export function keyOf(o: { namespace: string; name: string }): string {
  return `${o.namespace}/${o.name}`;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObj(v)) return out;
  for (const [k, val] of Object.entries(v)) if (typeof val === "string") out[k] = val;
  return out;
}

function selector(v: unknown, where: string): LabelSelector {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new Error(`${where} is not a label selector`);
  const out: LabelSelector = {};
  if (v.matchLabels !== undefined && v.matchLabels !== null) out.matchLabels = stringMap(v.matchLabels);
  if (Array.isArray(v.matchExpressions)) {
    out.matchExpressions = v.matchExpressions.map((e, i) => {
      if (!isObj(e) || typeof e.key !== "string" || typeof e.operator !== "string") {
        throw new Error(`${where}.matchExpressions[${i}] needs key and operator`);
      }
      if (!["In", "NotIn", "Exists", "DoesNotExist"].includes(e.operator)) {
        throw new Error(`${where}.matchExpressions[${i}]: unknown operator ${e.operator}`);
      }
      const values = Array.isArray(e.values) ? e.values.filter((x) => typeof x === "string") : [];
      return { key: e.key, operator: e.operator, values };
    });
  }
  return out;
}

function protocol(v: unknown, where: string): PolicyPort["protocol"] {
  if (v === undefined || v === null || v === "") return "TCP";
  if (v === "TCP" || v === "UDP" || v === "SCTP") return v;
  throw new Error(`${where}: unknown protocol ${String(v)}`);
}

function ports(v: unknown, where: string): PolicyPort[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${where} is not a list`);
  return v.map((p, i) => {
    const at = `${where}[${i}]`;
    if (!isObj(p)) throw new Error(`${at} is not an object`);
    const out: PolicyPort = { protocol: protocol(p.protocol, at) };
    if (typeof p.port === "number") {
      if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
        throw new Error(`${at}.port out of range`);
      }
      out.port = p.port;
    } else if (typeof p.port === "string" && p.port !== "") {
      // The client may hand an IntOrString as a numeric string.
      out.port = /^\d+$/.test(p.port) ? Number(p.port) : p.port;
    }
    if (p.endPort !== undefined && p.endPort !== null) {
      if (typeof out.port !== "number") throw new Error(`${at}.endPort needs a numeric port`);
      const end = Number(p.endPort);
      if (!Number.isInteger(end) || end < out.port || end > 65535) {
        throw new Error(`${at}.endPort is invalid`);
      }
      out.endPort = end;
    }
    return out;
  });
}

function peers(v: unknown, where: string): PolicyPeer[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${where} is not a list`);
  return v.map((p, i) => {
    const at = `${where}[${i}]`;
    if (!isObj(p)) throw new Error(`${at} is not an object`);
    const out: PolicyPeer = {};
    if (isObj(p.ipBlock)) {
      if (typeof p.ipBlock.cidr !== "string") throw new Error(`${at}.ipBlock.cidr is missing`);
      const except = Array.isArray(p.ipBlock.except)
        ? p.ipBlock.except.filter((x): x is string => typeof x === "string")
        : [];
      out.ipBlock = { cidr: p.ipBlock.cidr, except };
      return out;
    }
    if (p.podSelector !== undefined && p.podSelector !== null) {
      out.podSelector = selector(p.podSelector, `${at}.podSelector`);
    }
    if (p.namespaceSelector !== undefined && p.namespaceSelector !== null) {
      out.namespaceSelector = selector(p.namespaceSelector, `${at}.namespaceSelector`);
    }
    if (!out.podSelector && !out.namespaceSelector) throw new Error(`${at} names no peer`);
    return out;
  });
}

function rules(v: unknown, peerKey: "from" | "to", where: string): PolicyRule[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${where} is not a list`);
  return v.map((r, i) => {
    const at = `${where}[${i}]`;
    if (!isObj(r)) throw new Error(`${at} is not an object`);
    // @kubernetes/client-node deserialises `from` as `_from`.
    const list = peerKey === "from" ? (r._from ?? r.from) : r.to;
    return { peers: peers(list, `${at}.${peerKey}`), ports: ports(r.ports, `${at}.ports`) };
  });
}

/**
 * A NetworkPolicy object (as the client delivers it or as JSON) in the compiler's shape, with policyTypes
 * defaulted as the API says: Ingress always, Egress when `spec.egress` is present. Throws on a malformed one.
 */
export function policyFromObject(obj: unknown): Policy {
  if (!isObj(obj) || !isObj(obj.metadata)) throw new Error("not a NetworkPolicy");
  const { namespace, name } = obj.metadata;
  if (typeof namespace !== "string" || typeof name !== "string") throw new Error("policy without a name");
  const where = `networkpolicy ${namespace}/${name}`;
  const spec = isObj(obj.spec) ? obj.spec : {};
  const types = Array.isArray(spec.policyTypes) ? spec.policyTypes : undefined;
  const ingress = types ? types.includes("Ingress") : true;
  const egress = types ? types.includes("Egress") : spec.egress !== undefined && spec.egress !== null;
  return {
    namespace,
    name,
    podSelector: selector(spec.podSelector, `${where}: spec.podSelector`),
    ingress,
    egress,
    ingressRules: ingress ? rules(spec.ingress, "from", `${where}: spec.ingress`) : [],
    egressRules: egress ? rules(spec.egress, "to", `${where}: spec.egress`) : [],
  };
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * A Pod object in the compiler's shape. Pods that policy cannot act on get no `ip`: hostNetwork pods (they
 * use the node's address), finished pods (their address may already be someone else's), pods without an
 * IPv4 address yet.
 */
export function podFromObject(obj: unknown): Pod | undefined {
  if (!isObj(obj) || !isObj(obj.metadata)) return undefined;
  const { namespace, name } = obj.metadata;
  if (typeof namespace !== "string" || typeof name !== "string") return undefined;
  const spec = isObj(obj.spec) ? obj.spec : {};
  const status = isObj(obj.status) ? obj.status : {};
  const pod: Pod = {
    namespace,
    name,
    labels: stringMap(obj.metadata.labels),
    nodeName: typeof spec.nodeName === "string" ? spec.nodeName : "",
    ports: [],
  };
  const finished = status.phase === "Succeeded" || status.phase === "Failed";
  if (spec.hostNetwork !== true && !finished) {
    const candidates = [
      ...(Array.isArray(status.podIPs) ? status.podIPs.map((p) => (isObj(p) ? p.ip : undefined)) : []),
      status.podIP,
    ];
    pod.ip = candidates.find((ip): ip is string => typeof ip === "string" && IPV4.test(ip));
  }
  const containers = Array.isArray(spec.containers) ? spec.containers : [];
  for (const c of containers) {
    if (!isObj(c) || !Array.isArray(c.ports)) continue;
    for (const p of c.ports) {
      if (!isObj(p) || typeof p.name !== "string" || typeof p.containerPort !== "number") continue;
      pod.ports.push({
        name: p.name,
        protocol: typeof p.protocol === "string" ? p.protocol : "TCP",
        port: p.containerPort,
      });
    }
  }
  return pod;
}

/** A Namespace object's name and labels (with the automatic `kubernetes.io/metadata.name`). */
export function namespaceFromObject(
  obj: unknown,
): { name: string; labels: Record<string, string> } | undefined {
  if (!isObj(obj) || !isObj(obj.metadata) || typeof obj.metadata.name !== "string") return undefined;
  const name = obj.metadata.name;
  return { name, labels: { "kubernetes.io/metadata.name": name, ...stringMap(obj.metadata.labels) } };
}
