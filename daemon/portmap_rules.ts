/**
 * Port mapping, the pure part: Galaxy's `Port` records, where they come from (the pod spec, the
 * `tkestack.io/portmapping` annotation, the CNI `portMappings` capability — merged into one set), the
 * `KUBE-HP-<hash>` chain names, and the nat-table batch that maps them. No I/O here, so the restore text is
 * tested byte for byte.
 * @module
 */
import { CniError, ErrorCode } from "../cni/spec.ts";
import { isIP } from "../netops/ip_address.ts";
import { chainHash16, RestoreBatch, type SavedTable } from "../netops/iptables.ts";

/** The annotation whose presence turns on random host ports, and which receives the ports chosen. */
export const PORTMAPPING_ANNOTATION = "tkestack.io/portmapping";
/** The chain every host-port jump lives in (Galaxy's and the kubelet's name). */
export const HOSTPORTS_CHAIN = "KUBE-HOSTPORTS";
/** kube-proxy's chain that marks a packet for masquerading. */
export const MARK_MASQ_CHAIN = "KUBE-MARK-MASQ";
/** Our nat POSTROUTING chain that masquerades marked packets (hairpin, localhost). */
export const HOSTPORT_MASQ_CHAIN = "GALAXY-HOSTPORT-MASQ";
/** The prefix of per-port chains. */
export const HOSTPORT_CHAIN_PREFIX = "KUBE-HP-";
/** The comment on the PREROUTING/OUTPUT jumps (Galaxy's and the kubelet's). */
export const PORTALS_COMMENT = "kube hostport portals";
const MASQ_COMMENT = "galaxy hostport masquerade";

/** One mapped port: Galaxy's JSON, as in the annotation and the port files. */
export interface Port {
  /** The host port (0 before a random port is chosen). */
  hostPort: number;
  /** The pod's port. */
  containerPort: number;
  /** `TCP` or `UDP` (upper-case, as the pod spec writes it). */
  protocol: string;
  /** The host address the port is bound to; absent means every address. */
  hostIP?: string;
  /** The pod's name (without namespace). */
  podName: string;
  /** The pod's IPv4 address. */
  podIP: string;
}

/**
 * The per-port chain: `KUBE-HP-` + the first 16 characters of base32(SHA-256(hostPort, protocol,
 * containerPort, podName)), Galaxy's formula. A `hostIP`, when set, is hashed too (Galaxy leaves it out, so two
 * pods of one name in two namespaces mapping one port on two addresses would share a chain).
 */
export function hostportChainName(
  port: Pick<Port, "hostPort" | "protocol" | "containerPort" | "podName" | "hostIP">,
): string {
  const input = `${port.hostPort}${port.protocol}${port.containerPort}${port.podName}${port.hostIP ?? ""}`;
  return HOSTPORT_CHAIN_PREFIX + chainHash16(input);
}

/** A port entry before the pod's name and address are known. */
export interface PortRequest {
  /** The host port; 0 asks for a random one. */
  hostPort: number;
  /** The pod's port. */
  containerPort: number;
  /** `TCP` or `UDP`. */
  protocol: string;
  /** A host address, or absent. */
  hostIP?: string;
}

function badPort(message: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `port mapping: ${message}`);
}

function portNumber(value: unknown, what: string, allowZero: boolean): number {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > 65535) {
    throw badPort(`${what} ${JSON.stringify(value)} is not a port number`);
  }
  return n;
}

/** Checks and normalises one entry: protocol upper-case (default TCP), `0.0.0.0`/empty hostIP dropped. */
export function normalizePort(raw: Record<string, unknown>, where: string): PortRequest {
  const protocol = String(raw.protocol ?? "TCP").toUpperCase() || "TCP";
  if (protocol !== "TCP" && protocol !== "UDP") {
    throw badPort(
      `${where}: protocol ${JSON.stringify(raw.protocol)} is not supported for host ports (TCP, UDP)`,
    );
  }
  const port: PortRequest = {
    hostPort: portNumber(raw.hostPort ?? 0, `${where}: hostPort`, true),
    containerPort: portNumber(raw.containerPort, `${where}: containerPort`, false),
    protocol,
  };
  const hostIP = raw.hostIP === undefined || raw.hostIP === null ? "" : String(raw.hostIP);
  if (hostIP !== "" && hostIP !== "0.0.0.0") {
    if (isIP(hostIP) !== 4) {
      throw badPort(`${where}: hostIP ${JSON.stringify(hostIP)} is not an IPv4 address`);
    }
    port.hostIP = hostIP;
  }
  return port;
}

/** What a pod spec says about ports, as far as port mapping reads it. */
export interface PodPorts {
  /** Name, namespace and annotations. */
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  /** The regular containers' ports. */
  spec?: { hostNetwork?: boolean; containers?: { name?: string; ports?: object[] }[] };
}

/** True when the pod has the random-port annotation (any value, even empty). */
export function wantsRandomPorts(pod: PodPorts): boolean {
  return Object.hasOwn(pod.metadata?.annotations ?? {}, PORTMAPPING_ANNOTATION);
}

/**
 * The ports of a pod spec to map: every port with `hostPort > 0`, and with the annotation also every port
 * without one (a random port). Init containers are not read (their ports are never served), as in Galaxy.
 */
export function specPorts(pod: PodPorts): PortRequest[] {
  if (pod.spec?.hostNetwork) return [];
  const random = wantsRandomPorts(pod);
  const out: PortRequest[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const [i, raw] of (c.ports ?? []).entries()) {
      const port = normalizePort(raw as Record<string, unknown>, `container ${c.name ?? "?"} port ${i}`);
      if (port.hostPort > 0 || random) out.push(port);
    }
  }
  return out;
}

/** The CNI `portMappings` capability (`runtimeConfig.portMappings`), entries with a host port only. */
export function runtimePorts(runtimeConfig: Record<string, unknown> | undefined): PortRequest[] {
  const list = runtimeConfig?.portMappings;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw badPort("runtimeConfig.portMappings is not a list");
  return list.map((raw, i) =>
    normalizePort(raw as Record<string, unknown>, `runtimeConfig.portMappings[${i}]`)
  )
    .filter((p) => p.hostPort > 0);
}

function bindingKey(p: PortRequest): string {
  return p.hostPort > 0
    ? `${p.hostIP ?? "*"}|${p.hostPort}|${p.protocol}`
    : `random|${p.containerPort}|${p.protocol}`;
}

/**
 * One set from several sources (spec, runtimeConfig): an entry that appears twice is kept once; the same host
 * binding (address, port, protocol) to two different pod ports is refused.
 */
export function mergePorts(...sources: PortRequest[][]): PortRequest[] {
  const byKey = new Map<string, PortRequest>();
  for (const p of sources.flat()) {
    const key = bindingKey(p);
    const seen = byKey.get(key);
    if (!seen) byKey.set(key, p);
    else if (seen.containerPort !== p.containerPort) {
      throw badPort(
        `hostPort ${p.hostPort}/${p.protocol} is mapped twice (to ${seen.containerPort} and ${p.containerPort})`,
      );
    }
  }
  return [...byKey.values()];
}

/** Ports from an annotation or a port file: a JSON array of {@linkcode Port}; throws on anything else. */
export function parsePortList(text: string, where: string): Port[] {
  const parsed = JSON.parse(text);
  if (!Array.isArray(parsed)) throw new Error(`${where} is not a JSON array`);
  return parsed.map((raw, i) => {
    const p = normalizePort(raw as Record<string, unknown>, `${where}[${i}]`);
    const podName = String((raw as Record<string, unknown>).podName ?? "");
    const podIP = String((raw as Record<string, unknown>).podIP ?? "");
    const port: Port = {
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      protocol: p.protocol,
      podName,
      podIP,
    };
    if (p.hostIP) port.hostIP = p.hostIP;
    return port;
  });
}

/** Options of the rule builders. */
export interface RuleOptions {
  /** The masquerade mark as `0x4000/0x4000` (from `--masquerade-bit`). */
  mark: string;
}

/** `1 << bit` as `0xN/0xN`, kube-proxy's `--iptables-masquerade-bit` format. */
export function masqueradeMark(bit: number): string {
  const hex = `0x${(2 ** bit).toString(16)}`;
  return `${hex}/${hex}`;
}

function comment(p: Port): string[] {
  return ["-m", "comment", "--comment", `${p.podName} hostport ${p.hostPort}`];
}

function proto(p: Port): string[] {
  const lower = p.protocol.toLowerCase();
  return ["-p", lower, "-m", lower];
}

/** The jump in KUBE-HOSTPORTS for one port (`-d hostIP` when bound to one address). */
export function jumpRule(p: Port): string[] {
  const dst = p.hostIP ? ["-d", `${p.hostIP}/32`] : [];
  return [...comment(p), ...proto(p), ...dst, "--dport", String(p.hostPort), "-j", hostportChainName(p)];
}

/**
 * The rules of one port's chain: hairpin (from the pod itself) and localhost sources get the masquerade mark,
 * then DNAT to podIP:containerPort.
 */
export function chainRules(p: Port): string[][] {
  return [
    [...comment(p), "-s", `${p.podIP}/32`, "-j", MARK_MASQ_CHAIN],
    [...comment(p), "-s", "127.0.0.0/8", "-j", MARK_MASQ_CHAIN],
    [...comment(p), ...proto(p), "-j", "DNAT", "--to-destination", `${p.podIP}:${p.containerPort}`],
  ];
}

function hasRule(table: SavedTable, chain: string, pred: (args: string[]) => boolean): boolean {
  return table.chains.get(chain)?.rules.some((r) => pred(r.args)) ?? false;
}

function jumpsTo(target: string): (args: string[]) => boolean {
  return (args) => {
    const j = args.indexOf("-j");
    return j >= 0 && args[j + 1] === target;
  };
}

/**
 * Adds the base rules that are missing from `nat` (as last read): the `KUBE-HOSTPORTS` chain, the
 * `addrtype LOCAL` jumps to it appended to PREROUTING and OUTPUT (after ipvs kube-proxy's rules, as Galaxy
 * does), `KUBE-MARK-MASQ` only when kube-proxy has not made it (it is never flushed or rewritten), and our
 * POSTROUTING masquerade of marked packets. The FORWARD policy is never touched.
 */
export function ensureBaseRules(batch: RestoreBatch, nat: SavedTable, options: RuleOptions): RestoreBatch {
  if (!nat.chains.has(HOSTPORTS_CHAIN)) batch.declareChain("nat", HOSTPORTS_CHAIN);
  const portals = ["-m", "comment", "--comment", PORTALS_COMMENT, "-m", "addrtype", "--dst-type", "LOCAL"];
  for (const chain of ["PREROUTING", "OUTPUT"]) {
    if (!hasRule(nat, chain, jumpsTo(HOSTPORTS_CHAIN))) {
      batch.append("nat", chain, [...portals, "-j", HOSTPORTS_CHAIN]);
    }
  }
  const markMasq = nat.chains.get(MARK_MASQ_CHAIN);
  if (!markMasq || markMasq.rules.length === 0) {
    batch.declareChain("nat", MARK_MASQ_CHAIN).append("nat", MARK_MASQ_CHAIN, [
      "-j",
      "MARK",
      "--or-mark",
      options.mark.split("/")[0],
    ]);
  }
  const masq = nat.chains.get(HOSTPORT_MASQ_CHAIN);
  if (!masq || masq.rules.length !== 3 || !masq.rules[0].args.includes(options.mark)) {
    batch.declareChain("nat", HOSTPORT_MASQ_CHAIN)
      .append("nat", HOSTPORT_MASQ_CHAIN, ["-m", "mark", "!", "--mark", options.mark, "-j", "RETURN"])
      .append("nat", HOSTPORT_MASQ_CHAIN, ["-j", "MARK", "--xor-mark", options.mark.split("/")[0]])
      .append("nat", HOSTPORT_MASQ_CHAIN, ["-j", "MASQUERADE"]);
  }
  if (!hasRule(nat, "POSTROUTING", jumpsTo(HOSTPORT_MASQ_CHAIN))) {
    batch.append("nat", "POSTROUTING", [
      "-m",
      "comment",
      "--comment",
      MASQ_COMMENT,
      "-j",
      HOSTPORT_MASQ_CHAIN,
    ]);
  }
  return batch;
}

/**
 * The whole mapping in one batch: KUBE-HOSTPORTS rebuilt from `active` (so no jump is ever there twice and
 * none outlives its pod), each active port's chain rewritten, and the chains in `remove` deleted unless an
 * active port still uses the name.
 */
export function mappingBatch(batch: RestoreBatch, active: Port[], remove: Iterable<string>): RestoreBatch {
  batch.declareChain("nat", HOSTPORTS_CHAIN);
  const live = new Set<string>();
  for (const p of active) {
    const chain = hostportChainName(p);
    if (live.has(chain)) continue;
    live.add(chain);
    batch.declareChain("nat", chain);
    for (const rule of chainRules(p)) batch.append("nat", chain, rule);
    batch.append("nat", HOSTPORTS_CHAIN, jumpRule(p));
  }
  for (const chain of remove) if (!live.has(chain)) batch.deleteChain("nat", chain);
  return batch;
}

/** The `KUBE-HP-*` chains present in a saved nat table (ours and any left by the Go Galaxy or the kubelet). */
export function hostportChains(nat: SavedTable): string[] {
  return [...nat.chains.keys()].filter((c) => c.startsWith(HOSTPORT_CHAIN_PREFIX));
}
