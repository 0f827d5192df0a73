/**
 * What Galaxy's built-in plugins share (galaxy-behaviour.md §3.0): interface names, MAC-from-IP, the veth
 * pair between the node and a pod, configuring the pod end, the host /32 route, policy rules, removing only
 * one attachment's interface, the rollback of a failed ADD, merging with `prevResult`, the CHECK of an
 * attachment against `prevResult`, and forwarding STATUS/GC to IPAM. galaxy-veth and tke-route-eni use it
 * today; galaxy-k8s-vlan, galaxy-underlay-veth and galaxy-k8s-sriov are meant to.
 *
 * Every kernel change goes through netops: one `ip -batch` per namespace per step. `null` as a namespace is
 * the plugin's own (the node's); pod namespaces are paths (`CNI_NETNS`).
 * @module
 */
import { isIPv4 } from "../../netops/ip_address.ts";
import {
  addrAdd,
  getLink,
  IpArgumentError,
  IpBatchError,
  type IpOp,
  type Link,
  linkAddVeth,
  linkDel,
  linkSet,
  listAddrs,
  listLinks,
  listNeighbours,
  listRoutes,
  listRules,
  neighReplace,
  routeAdd,
  routeReplace,
  type Rule,
  ruleAdd,
  ruleDel,
  type RuleSpec,
  runBatch,
  type Scope,
  validateIfName,
} from "../../netops/ip.ts";
import { NetnsNotFoundError } from "../../netops/netns.ts";
import { setSysctls } from "../../netops/sysctl.ts";
import { getVersionInfo } from "../invoke.ts";
import { delegateIpam, parseIpInfos, release } from "../ipam.ts";
import type { PluginRequest } from "../skel.ts";
import { asCniError, CniError, ErrorCode, type Result, type ResultInterface } from "../version.ts";

/** The pod's gateway: a link-local address nobody owns, answered by a permanent neighbour entry. */
export const POD_GATEWAY = "169.254.1.1";

/** The routes a result lists for a pod behind {@linkcode POD_GATEWAY}: its /32, then the default via it. */
export function gatewayRoutes(): { dst: string; gw?: string }[] {
  return [{ dst: `${POD_GATEWAY}/32` }, { dst: "0.0.0.0/0", gw: POD_GATEWAY }];
}

// ---------------------------------------------------------------------------------------------- names

/** The first 9 characters of a container ID, or the whole ID when it is shorter (Galaxy panicked there). */
export function cid9(containerId: string): string {
  return containerId.slice(0, 9);
}

/** Options for the veth names. */
export interface NameOptions {
  /** `""` for galaxy-veth, `-l<i>` for k8s-vlan, `-u<i>` for underlay-veth. */
  suffix?: string;
}

/** The host end of a pod's veth, `v-h<cid9><suffix>`; throws `IfNameError` when over 15 characters. */
export function hostVethName(containerId: string, options: NameOptions = {}): string {
  return validateIfName(`v-h${cid9(containerId)}${options.suffix ?? ""}`);
}

/** The temporary name of the pod end until it is renamed, `v-s<cid9><suffix>`; validated like the host end. */
export function tempPeerName(containerId: string, options: NameOptions = {}): string {
  return validateIfName(`v-s${cid9(containerId)}${options.suffix ?? ""}`);
}

/** tke-route-eni's host veth: `eni` + the first 11 hex digits of SHA-1(`<namespace>.<pod>`). */
export async function eniVethName(namespace: string, podName: string): Promise<string> {
  // Web Crypto rather than node:crypto, whose Node compatibility layer costs ~15 ms per plugin start.
  const bytes = new Uint8Array(
    await crypto.subtle.digest("SHA-1", new TextEncoder().encode(`${namespace}.${podName}`)),
  );
  const digest = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return validateIfName(`eni${digest.slice(0, 11)}`);
}

/** The MAC Galaxy derives from an IPv4 address: `02:42:a:b:c:d`, each octet as two hex digits. */
export function macFromIp(ip: string): string {
  if (!isIPv4(ip)) throw new IpArgumentError(`MAC from IP needs an IPv4 address, got ${JSON.stringify(ip)}`);
  return ["02", "42", ...ip.split(".").map((o) => Number(o).toString(16).padStart(2, "0"))].join(":");
}

// ---------------------------------------------------------------------------------------------- errors

/**
 * Turns an error from netops (or anything) into a CniError whose message starts with `context`: a vanished
 * namespace is code 3, a refused argument (an over-long name) code 7, anything else code 100.
 */
export function kernelError(err: unknown, context: string): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof NetnsNotFoundError) {
    return new CniError(ErrorCode.UnknownContainer, `${context}: ${err.message}`);
  }
  if (err instanceof IpArgumentError) {
    return new CniError(ErrorCode.InvalidNetworkConfig, `${context}: ${err.message}`);
  }
  return new CniError(
    ErrorCode.PluginFailure,
    `${context}: ${err instanceof Error ? err.message : String(err)}`,
  );
}

/** Writes one log line to stderr (stdout is the CNI channel). */
export function logLine(plugin: string, message: string): void {
  console.error(`${plugin}: ${message}`);
}

// ---------------------------------------------------------------------------------------------- rollback

/** Cleanup steps recorded while an ADD goes along. */
export interface Undo {
  /** Records a step; steps run in reverse order when the ADD fails. */
  push(what: string, step: () => Promise<unknown>): void;
}

/**
 * Runs an ADD and, when it throws, runs the recorded undo steps in reverse (each one even if another failed;
 * failures are logged to stderr), then rethrows the original error.
 */
export async function withRollback<T>(plugin: string, fn: (undo: Undo) => Promise<T>): Promise<T> {
  const steps: { what: string; step: () => Promise<unknown> }[] = [];
  try {
    return await fn({ push: (what, step) => void steps.push({ what, step }) });
  } catch (err) {
    for (const { what, step } of steps.reverse()) {
      try {
        await step();
      } catch (undoErr) {
        logLine(plugin, `rollback: ${what} failed: ${(undoErr as Error).message}`);
      }
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------- IPAM

/** True when the request carries `ipinfos`, so no IPAM plugin was (or will be) involved; lenient for DEL. */
export function hasIpInfos(req: PluginRequest): boolean {
  try {
    return parseIpInfos(req) !== undefined;
  } catch {
    return false;
  }
}

/** Releases delegated IPAM unless the addresses came from `ipinfos` (nothing was reserved then). */
export async function releaseDelegated(req: PluginRequest): Promise<void> {
  if (!hasIpInfos(req)) await release(req);
}

/**
 * The shape of every DEL: run `cleanup`, then release delegated IPAM whatever happened before (an address must
 * never leak), and throw the first failure as a CNI error of `plugin`.
 */
export async function cleanUpThenRelease(
  req: PluginRequest,
  cleanup: () => Promise<void>,
  options: { plugin: string },
): Promise<void> {
  let failure: unknown;
  try {
    await cleanup();
  } catch (err) {
    failure = err;
  }
  try {
    await releaseDelegated(req);
  } catch (err) {
    failure ??= err;
  }
  if (failure !== undefined) throw kernelError(failure, options.plugin);
}

/**
 * Forwards CHECK, STATUS or GC to the configuration's IPAM plugin (not when `ipinfos` replaced it). STATUS
 * and GC only go to an IPAM that lists 1.1.0 in its VERSION answer: older ones (Debian's host-local) do not
 * know the verbs, so there is nothing to forward and that is logged.
 */
export async function forwardToIpam(
  verb: "CHECK" | "STATUS" | "GC",
  req: PluginRequest,
  options: { plugin?: string } = {},
): Promise<void> {
  const plugin = options.plugin ?? req.config.type;
  const ipam = req.config.ipam as { type?: unknown } | undefined;
  const type = typeof ipam?.type === "string" && ipam.type ? ipam.type : undefined;
  if (!type || hasIpInfos(req)) return;
  const label = `ipam ${type}: ${verb}`;
  if (verb !== "CHECK") {
    let versions: readonly string[];
    try {
      versions = (await getVersionInfo(type, { path: req.path })).supportedVersions;
    } catch (err) {
      const e = asCniError(err);
      throw new CniError(e.code, `${label}: ${e.message}`, e.details);
    }
    if (!versions.includes("1.1.0")) {
      logLine(plugin, `ipam ${type} does not support CNI 1.1.0, so ${verb} is not forwarded to it`);
      return;
    }
  }
  await delegateIpam(verb, req, label);
}

/** The first IPv4 address of a result: the bare address and its CIDR as given. */
export function firstIpv4(result: Result): { ip: string; cidr: string } | undefined {
  for (const entry of result.ips ?? []) {
    const ip = entry.address.split("/")[0];
    if (isIPv4(ip)) return { ip, cidr: entry.address };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------- results

/** The index of interface `name` in a result, optionally only one in `sandbox`; -1 when absent. */
export function interfaceIndex(
  result: Result | undefined,
  name: string,
  options: { sandbox?: string } = {},
): number {
  return (result?.interfaces ?? []).findIndex((i: ResultInterface) =>
    i.name === name && (options.sandbox === undefined || i.sandbox === options.sandbox)
  );
}

/** The MAC `result` reports for interface `name`, if any. */
export function interfaceMac(result: Result | undefined, name: string): string | undefined {
  const index = interfaceIndex(result, name);
  return index >= 0 ? result?.interfaces?.[index].mac : undefined;
}

/**
 * The first IPv4 address (bare) that `result` gives to interface `ifname`: the one in sandbox `netns` when it
 * is given (CHECK), else the first interface of that name (DEL, whose CNI_NETNS may be empty).
 */
export function ipv4Of(
  result: Result | undefined,
  attachment: { ifname: string; netns?: string },
): string | undefined {
  const index = interfaceIndex(result, attachment.ifname, { sandbox: attachment.netns || undefined });
  if (index < 0) return undefined;
  for (const entry of result?.ips ?? []) {
    const ip = entry.address.split("/")[0];
    if (entry.interface === index && isIPv4(ip)) return ip;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------- links

/** Options for {@linkcode createVethPair}. */
export interface VethPairOptions {
  /** The pod namespace (a path): the peer is created directly inside it. */
  netns: string;
  /** MTU of both ends; the kernel default when absent. */
  mtu?: number;
  /** Transmit queue length of both ends (Galaxy sets 0). */
  txqueuelen?: number;
}

/**
 * Creates a veth pair whose host end `hostName` stays in this namespace (set up) and whose peer `peerName`
 * is created directly inside the pod namespace, in one batch. Returns the host end as read back afterwards,
 * so its MAC is the one the pod will see. Leaves nothing behind when it fails.
 */
export async function createVethPair(
  hostName: string,
  peerName: string,
  options: VethPairOptions,
): Promise<Link> {
  const { netns, mtu, txqueuelen } = options;
  try {
    await runBatch(null, [
      linkAddVeth(hostName, peerName, { peerNetns: netns, mtu, txqueuelen }),
      linkSet(hostName, { up: true }),
    ]);
    const host = await getLink(null, hostName);
    if (!host) throw new Error(`${hostName} vanished right after it was created`);
    return host;
  } catch (err) {
    // when the `link add` line itself failed, a link of that name may be someone else's: leave it
    const addFailed = err instanceof IpBatchError && err.failures[0]?.line === 1;
    if (!addFailed) await runBatch(null, [linkDel(hostName)]).catch(() => {});
    throw kernelError(err, `create veth ${hostName} ↔ ${peerName} in ${netns}`);
  }
}

/** A route on the pod interface. */
export interface PodRoute {
  /** Destination CIDR or `default`. */
  dst: string;
  /** Next hop. */
  gw?: string;
  /** Scope (`link` for the gateway's own /32). */
  scope?: Scope;
  /** Preferred source address. */
  src?: string;
}

/** What {@linkcode configurePodInterface} sets on the pod's interface. */
export interface PodInterfaceSpec {
  /** The name the link has in the pod now (a temporary name); the final `ifname` when absent. */
  current?: string;
  /** The CNI_IFNAME. */
  ifname: string;
  /** A MAC to set before the link goes up (k8s-vlan uses MAC-from-IP); kept as it is when absent. */
  mac?: string;
  /** Addresses with prefix lengths. */
  addresses: string[];
  /** Routes through the interface, in order (a gateway's link route before routes via it). */
  routes?: PodRoute[];
  /** Permanent neighbour entries on the interface (the gateway → the host end's MAC). */
  neighbours?: { ip: string; lladdr: string }[];
  /** Sysctls written inside the pod after the rename (keys as netops/sysctl.ts takes them). */
  sysctls?: Record<string, string>;
}

/**
 * Configures the pod end inside `netns` in one batch: rename (and MAC), up, addresses, routes, permanent
 * neighbours; then the sysctls. Returns the interface as read back (with its MAC). Route conflicts are errors.
 */
export async function configurePodInterface(netns: string, spec: PodInterfaceSpec): Promise<Link> {
  const { ifname } = spec;
  const ops: IpOp[] = [];
  const current = spec.current ?? ifname;
  if (current !== ifname || spec.mac) {
    ops.push(linkSet(current, { name: current === ifname ? undefined : ifname, address: spec.mac }));
  }
  ops.push(linkSet(ifname, { up: true }));
  for (const address of spec.addresses) ops.push(addrAdd(address, ifname));
  for (const r of spec.routes ?? []) ops.push(routeAdd({ ...r, dev: ifname }));
  for (const n of spec.neighbours ?? []) ops.push(neighReplace({ ...n, dev: ifname, nud: "permanent" }));
  try {
    await runBatch(netns, ops);
    if (spec.sysctls && Object.keys(spec.sysctls).length) await setSysctls(netns, spec.sysctls);
    const link = await getLink(netns, ifname);
    if (!link) throw new Error(`${ifname} vanished right after it was configured`);
    return link;
  } catch (err) {
    throw kernelError(err, `configure ${ifname} in ${netns}`);
  }
}

/**
 * Adds (replaces) the host route `<ip>/32 dev <dev> scope link [src <src>]`. When the kernel refuses `src`
 * (not a local address, old kernels) it retries without it, as Galaxy does. Returns whether `src` was kept.
 */
export async function addHostRoute(
  ip: string,
  dev: string,
  options: { src?: string; plugin?: string } = {},
): Promise<boolean> {
  const route = { dst: `${ip}/32`, dev, scope: "link" as const };
  if (options.src) {
    try {
      await runBatch(null, [routeReplace({ ...route, src: options.src })]);
      return true;
    } catch (err) {
      if (!(err instanceof IpBatchError)) throw kernelError(err, `host route ${ip}/32 dev ${dev}`);
      logLine(
        options.plugin ?? "galaxy",
        `host route ${ip}/32 dev ${dev} src ${options.src} refused (${err.message}); retrying without src`,
      );
    }
  }
  try {
    await runBatch(null, [routeReplace(route)]);
  } catch (err) {
    throw kernelError(err, `host route ${ip}/32 dev ${dev}`);
  }
  return false;
}

/** The main-table route of this namespace for `<ip>/32`, if any. */
export async function hostRouteFor(ip: string): Promise<{ dev?: string; prefsrc?: string } | undefined> {
  return (await listRoutes(null)).find((r) => r.dst === ip || r.dst === `${ip}/32`);
}

/** What {@linkcode prepareVethNames} does with a host end of the same name whose peer is in another namespace. */
export type ForeignPeerPolicy = "refuse" | "delete";

/** Names and policy for {@linkcode prepareVethNames}. */
export interface VethNames {
  /** The pod namespace. */
  netns: string;
  /** CNI_IFNAME. */
  ifname: string;
  /** The host end's name. */
  hostName: string;
  /** The temporary pod-end name. */
  peerName: string;
  /** See {@linkcode ForeignPeerPolicy}. */
  foreignPeer: ForeignPeerPolicy;
  /** The plugin name, for messages. */
  plugin: string;
}

/**
 * Clears the way for a new veth pair and refuses what must not be touched:
 * - `ifname` already in the pod → error (CNI: ADD of an existing interface fails);
 * - the temporary peer name in the pod → a crashed ADD of this attachment: deleted (its host end goes with it);
 * - a host link `hostName` that is not a veth → error (not ours);
 * - a host veth whose peer is in this namespace too → a crashed create-then-move: deleted;
 * - a host veth whose peer is in another namespace → a live sandbox: refused or deleted, by `foreignPeer`.
 */
export async function prepareVethNames(names: VethNames): Promise<void> {
  const { netns, ifname, hostName, peerName, plugin } = names;
  const podLinks = await listLinks(netns).catch((err) => {
    throw kernelError(err, `${plugin}: netns ${netns}`);
  });
  if (podLinks.some((l) => l.name === ifname)) {
    throw new CniError(ErrorCode.PluginFailure, `${plugin}: interface ${ifname} already exists in ${netns}`);
  }
  try {
    if (podLinks.some((l) => l.name === peerName && l.kind === "veth")) {
      logLine(plugin, `deleting ${peerName} in ${netns}, left by an interrupted ADD`);
      await runBatch(netns, [linkDel(peerName)]);
    }
    const host = await getLink(null, hostName);
    if (!host) return;
    if (host.kind !== "veth") {
      throw new CniError(
        ErrorCode.PluginFailure,
        `${plugin}: host interface ${hostName} exists and is a ${
          host.kind ?? "plain device"
        }, not a veth; not touching it`,
      );
    }
    if (host.linkNetnsId !== undefined && names.foreignPeer === "refuse") {
      throw new CniError(
        ErrorCode.PluginFailure,
        `${plugin}: host veth ${hostName} already exists and its peer is in another live network namespace ` +
          `(another container with the same first 9 ID characters?); DEL that attachment first`,
      );
    }
    logLine(
      plugin,
      host.linkNetnsId === undefined
        ? `deleting leftover host veth ${hostName} (its peer is in this namespace)`
        : `deleting host veth ${hostName} whose peer is in another network namespace (an older sandbox)`,
    );
    await runBatch(null, [linkDel(hostName)]);
  } catch (err) {
    throw kernelError(err, `${plugin}: clearing leftovers of ${hostName}`);
  }
}

/** How {@linkcode deletePodInterface} went. */
export interface PodDeletion {
  /** `deleted`; `absent` (no such interface); `no-netns` (empty or vanished path); `foreign` (not of `kind`, kept). */
  outcome: "deleted" | "absent" | "no-netns" | "foreign";
  /** The interface's IPv4 addresses (CIDR) just before deletion, when `collectIpv4` was asked for. */
  ipv4: string[];
}

/**
 * Deletes only this attachment's interface `ifname` in the pod namespace; a missing namespace or interface
 * is success. With `kind`, an interface of another kind is left alone (not ours).
 */
export async function deletePodInterface(
  netns: string,
  ifname: string,
  options: { kind?: string; collectIpv4?: boolean } = {},
): Promise<PodDeletion> {
  if (!netns) return { outcome: "no-netns", ipv4: [] };
  try {
    const link = await getLink(netns, ifname);
    if (!link) return { outcome: "absent", ipv4: [] };
    if (options.kind !== undefined && link.kind !== options.kind) return { outcome: "foreign", ipv4: [] };
    const ipv4 = options.collectIpv4
      ? (await listAddrs(netns, { dev: ifname, family: 4 })).map((a) => a.cidr)
      : [];
    await runBatch(netns, [linkDel(ifname)]);
    return { outcome: "deleted", ipv4 };
  } catch (err) {
    if (err instanceof NetnsNotFoundError) return { outcome: "no-netns", ipv4: [] };
    throw kernelError(err, `delete ${ifname} in ${netns}`);
  }
}

/**
 * Deletes host link `name` if it is there. With `mac`, only a link with that MAC is ours and deleted; with
 * `requireMac`, a link is deleted only when `mac` is known and matches. Returns what happened.
 */
export async function removeHostLink(
  name: string,
  options: { mac?: string; requireMac?: boolean } = {},
): Promise<"deleted" | "absent" | "kept"> {
  try {
    const link = await getLink(null, name);
    if (!link) return "absent";
    const mac = options.mac?.toLowerCase();
    if (
      (mac === undefined && options.requireMac) || (mac !== undefined && link.address?.toLowerCase() !== mac)
    ) {
      return "kept";
    }
    await runBatch(null, [linkDel(name)]);
    return "deleted";
  } catch (err) {
    throw kernelError(err, `delete host link ${name}`);
  }
}

// ---------------------------------------------------------------------------------------------- rules

/** Selects policy rules: same selectors and priority; any table unless `table` is given. */
export interface RuleKey {
  /** Source selector (an address or CIDR; a bare address means /32). */
  from?: string;
  /** Destination selector. */
  to?: string;
  /** Priority. */
  priority: number;
  /** Table (number or name); any when absent. */
  table?: number | string;
}

const TABLE_NAMES: Record<string, string> = { "253": "default", "254": "main", "255": "local" };

function tableName(t: number | string): string {
  return TABLE_NAMES[String(t)] ?? String(t);
}

function asCidr(sel: string | undefined): string | undefined {
  return sel === undefined || sel.includes("/") ? sel : `${sel}/32`;
}

function ruleMatches(rule: Rule, key: RuleKey): boolean {
  return rule.priority === key.priority && rule.from === asCidr(key.from) && rule.to === asCidr(key.to) &&
    (key.table === undefined || rule.table === tableName(key.table)) && !rule.iif && !rule.oif;
}

/** The host rules matching each key (one listing). */
export async function findHostRules(keys: RuleKey[]): Promise<Rule[][]> {
  const rules = await listRules(null);
  return keys.map((key) => rules.filter((r) => ruleMatches(r, key)));
}

function delOp(rule: Rule): IpOp {
  const t = /^\d+$/.test(rule.table) ? Number(rule.table) : rule.table;
  return ruleDel({ from: rule.from, to: rule.to, priority: rule.priority, table: t });
}

/**
 * Installs `rules` in this namespace idempotently, as Galaxy's delete-then-add: rules with the same
 * selectors and priority (any table, e.g. a crashed ADD's) are removed in the same batch first.
 */
export async function replaceHostRules(rules: RuleSpec[]): Promise<void> {
  try {
    const found = await findHostRules(rules.map((r) => ({ from: r.from, to: r.to, priority: r.priority })));
    await runBatch(null, [...found.flat().map(delOp), ...rules.map(ruleAdd)]);
  } catch (err) {
    throw kernelError(err, "policy rules");
  }
}

/** Deletes every host rule matching one of `keys` (one listing, one batch); returns how many. */
export async function deleteHostRules(keys: RuleKey[]): Promise<number> {
  try {
    const found = (await findHostRules(keys)).flat();
    await runBatch(null, found.map(delOp));
    return found.length;
  } catch (err) {
    throw kernelError(err, "delete policy rules");
  }
}

// ---------------------------------------------------------------------------------------------- CHECK

/** What {@linkcode verifyAttachment} compares with the kernel, beyond `prevResult`'s own interface. */
export interface AttachmentChecks {
  /** The pod namespace. */
  netns: string;
  /** CNI_IFNAME. */
  ifname: string;
  /** The ADD's result (1.1.0 shape). */
  prevResult: Result;
  /**
   * The routes this plugin put in the pod (another plugin's routes in a chained `prevResult` are not its
   * business): each must be in `prevResult` and in the pod's main table through `ifname`.
   */
  podRoutes?: { dst: string; gw?: string }[];
  /** Permanent neighbours expected on `ifname`. */
  podNeighbours?: { ip: string; lladdr?: string }[];
  /** Links expected in this (the node's) namespace, with their MAC when known. */
  hostLinks?: { name: string; mac?: string }[];
  /** Host routes `<ip>/32 dev <dev>` expected in the main table. */
  hostRoutes?: { ip: string; dev: string }[];
  /** Host policy rules expected. */
  hostRules?: RuleKey[];
}

function sameDst(kernel: string, wanted: string): boolean {
  const norm = (d: string) => d === "default" ? "0.0.0.0/0" : d.includes("/") ? d : `${d}/32`;
  return norm(kernel) === norm(wanted);
}

function describeRule(k: RuleKey): string {
  return [
    k.from ? `from ${k.from}` : "",
    k.to ? `to ${k.to}` : "",
    k.table !== undefined ? `lookup ${tableName(k.table)}` : "",
    `priority ${k.priority}`,
  ].filter(Boolean).join(" ");
}

/**
 * Compares an attachment with the kernel and returns what is missing or different, one phrase each (empty
 * when all is well): the pod interface from `prevResult` (MAC, up), its addresses from `prevResult`, and the
 * routes, neighbours and host objects of `checks`. A vanished pod namespace throws a CniError with code 3.
 */
export async function verifyAttachment(checks: AttachmentChecks): Promise<string[]> {
  const { netns, ifname, prevResult } = checks;
  const problems: string[] = [];
  const index = interfaceIndex(prevResult, ifname, { sandbox: netns });
  try {
    const link = await getLink(netns, ifname);
    if (index < 0) problems.push(`prevResult has no interface ${ifname} in sandbox ${netns}`);
    if (!link) {
      problems.push(`interface ${ifname} is missing in ${netns}`);
    } else {
      const wantMac = index >= 0 ? prevResult.interfaces?.[index].mac : undefined;
      if (wantMac && link.address?.toLowerCase() !== wantMac.toLowerCase()) {
        problems.push(`interface ${ifname} has MAC ${link.address}, prevResult says ${wantMac}`);
      }
      if (!link.up) problems.push(`interface ${ifname} is down`);
      const addrs = (await listAddrs(netns, { dev: ifname })).map((a) => a.cidr);
      for (const ip of prevResult.ips ?? []) {
        if (ip.interface === index && !addrs.includes(ip.address)) {
          problems.push(`address ${ip.address} is missing on ${ifname}`);
        }
      }
      const neighbours = await listNeighbours(netns, { dev: ifname });
      for (const want of checks.podNeighbours ?? []) {
        const n = neighbours.find((x) => x.ip === want.ip);
        if (!n || !n.state.includes("PERMANENT")) {
          problems.push(`permanent neighbour ${want.ip} is missing on ${ifname}`);
        } else if (want.lladdr && n.lladdr?.toLowerCase() !== want.lladdr.toLowerCase()) {
          problems.push(`neighbour ${want.ip} on ${ifname} is ${n.lladdr}, expected ${want.lladdr}`);
        }
      }
    }
    const routes = await listRoutes(netns);
    for (const want of checks.podRoutes ?? []) {
      const name = `route ${want.dst}${want.gw ? ` via ${want.gw}` : ""}`;
      if (!(prevResult.routes ?? []).some((r) => sameDst(r.dst, want.dst) && r.gw === want.gw)) {
        problems.push(`prevResult lacks ${name}`);
      }
      const ok = routes.some((r) =>
        sameDst(r.dst, want.dst) && r.gateway === want.gw && (!link || r.dev === ifname)
      );
      if (!ok) problems.push(`${name} is missing in ${netns}`);
    }
  } catch (err) {
    throw kernelError(err, `check ${ifname} in ${netns}`);
  }
  try {
    for (const want of checks.hostLinks ?? []) {
      const link = await getLink(null, want.name);
      if (!link) problems.push(`host interface ${want.name} is missing`);
      else if (want.mac && link.address?.toLowerCase() !== want.mac.toLowerCase()) {
        problems.push(`host interface ${want.name} has MAC ${link.address}, prevResult says ${want.mac}`);
      }
    }
    if (checks.hostRoutes?.length) {
      const hostRoutes = await listRoutes(null);
      for (const want of checks.hostRoutes) {
        if (!hostRoutes.some((r) => sameDst(r.dst, want.ip) && r.dev === want.dev)) {
          problems.push(`host route ${want.ip}/32 dev ${want.dev} is missing`);
        }
      }
    }
    if (checks.hostRules?.length) {
      const found = await findHostRules(checks.hostRules);
      checks.hostRules.forEach((key, i) => {
        if (found[i].length === 0) problems.push(`host rule "${describeRule(key)}" is missing`);
      });
    }
  } catch (err) {
    throw kernelError(err, "check host side");
  }
  return problems;
}
