/**
 * What galaxy-k8s-vlan and galaxy-underlay-veth share beyond link.ts (galaxy-behaviour.md §3.0, §3.3, §3.4):
 * their configuration (underlay-veth reads k8s-vlan's), the pod interface names (`CNI_IFNAME`, then
 * `eth<k>`), the routes of each pod interface (the two-address rewrite), `configSboxDevice` (MAC from IP,
 * rp_filter 0), `VethConnectsHostWithContainer` (a veth to a bridge, or a routed veth with proxy ARP),
 * macvlan/ipvlan slaves, gratuitous ARP, and the DEL and CHECK of an attachment made of several interfaces.
 * The node-wide half (default bridge, VLAN devices and bridges) lives in underlay_node.ts and is re-exported
 * here. Every kernel change goes through netops.
 * @module
 */
import { isIPv4 } from "../../netops/ip_address.ts";
import { sendGratuitousArp } from "../../netops/arping.ts";
import {
  getLink,
  type IpOp,
  type IpvlanMode,
  type Link,
  linkAddIpvlan,
  linkAddMacvlan,
  linkDel,
  linkSet,
  listLinks,
  runBatch,
  validateIfName,
} from "../../netops/ip.ts";
import { NetnsNotFoundError } from "../../netops/netns.ts";
import { setHostSysctls } from "../../netops/sysctl.ts";
import { type IpInfo, isIpv4Cidr, parseIpInfos } from "../ipam.ts";
import type { PluginRequest } from "../skel.ts";
import { CniError, type Dns, ErrorCode, type Result, type ResultRoute } from "../version.ts";
import {
  addHostRoute,
  cid9,
  cleanUpThenRelease,
  configurePodInterface,
  createVethPair,
  hasIpInfos,
  hostVethName,
  interfaceIndex,
  interfaceMac,
  ipv4Of,
  kernelError,
  logLine,
  macFromIp,
  type PodRoute,
  prepareVethNames,
  removeHostLink,
  tempPeerName,
  type Undo,
  verifyAttachment,
} from "./link.ts";

export * from "./underlay_node.ts";

// ---------------------------------------------------------------------------------------------- config

/** How galaxy-k8s-vlan connects pods (`switch`). */
export type SwitchMode = "bridge" | "pure" | "macvlan" | "ipvlan";

/** galaxy-k8s-vlan's configuration (galaxy-underlay-veth reads the same keys and uses a few). */
export interface VlanNetConf {
  /** `device`: the uplink, e.g. `eth1` or an existing VLAN device `eth1.12`. */
  device?: string;
  /** `devices`: candidates when `device` is empty; the first that exists is used. */
  devices?: string[];
  /** `switch`: `bridge` (also `""`, the default), `pure`, `macvlan`, `ipvlan`. */
  mode: SwitchMode;
  /** `ipvlan_mode`: `l2`, `l3` (default) or `l3s`. */
  ipvlanMode: IpvlanMode;
  /** `disable_default_bridge`; absent means "disabled unless an address is on VLAN 0". */
  disableDefaultBridge?: boolean;
  /** `default_bridge_name` (default `docker`): the VLAN 0 bridge in bridge mode. */
  defaultBridgeName: string;
  /** `bridge_name_prefix` (default `docker`): the bridge of VLAN n is `<prefix><n>`. */
  bridgeNamePrefix: string;
  /** `vlan_name_prefix` (default `vlan`): a created VLAN device is `<prefix><n>`. */
  vlanNamePrefix: string;
  /** `gratuitous_arp_request`: announce with ARP requests (`arping -U`) instead of replies (`-A`). */
  gratuitousArpRequest: boolean;
  /** `mtu`: of the pod interfaces; the uplink's (or master's) when absent or 0. */
  mtu?: number;
  /** `lockDir` (ours): where the node-wide lock file lives (default {@linkcode DEFAULT_LOCK_DIR}). */
  lockDir: string;
  /** `dns`, copied into the result. */
  dns?: Dns;
}

/** Where the node-wide lock file lives unless `lockDir` says otherwise. */
export const DEFAULT_LOCK_DIR = "/var/run/galaxy";

const MODES: readonly string[] = ["bridge", "pure", "macvlan", "ipvlan"];
const IPVLAN_MODES: readonly string[] = ["l2", "l3", "l3s"];

function ifNameProblem(value: string, what: string, suffixLength = 0): string | undefined {
  try {
    validateIfName(value + "0".repeat(suffixLength));
    return undefined;
  } catch (err) {
    return suffixLength
      ? `${what}: "${value}" leaves no room for a VLAN ID within 15 characters, or has a forbidden character`
      : `${what}: ${(err as Error).message}`;
  }
}

/**
 * Reads and checks the configuration by hand (no zod on a plugin's start-up path). Every problem is collected
 * and reported at once as a CniError with code 7 that names the keys.
 */
export function parseVlanConf(config: Record<string, unknown>, options: { plugin: string }): VlanNetConf {
  const problems: string[] = [];
  const str = (key: string): string | undefined => {
    const v = config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") {
      problems.push(`${key}: expected a string`);
      return undefined;
    }
    return v;
  };
  const bool = (key: string): boolean | undefined => {
    const v = config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") {
      problems.push(`${key}: expected true or false`);
      return undefined;
    }
    return v;
  };
  const conf: VlanNetConf = {
    mode: "bridge",
    ipvlanMode: "l3",
    defaultBridgeName: "docker",
    bridgeNamePrefix: "docker",
    vlanNamePrefix: "vlan",
    gratuitousArpRequest: bool("gratuitous_arp_request") ?? false,
    lockDir: DEFAULT_LOCK_DIR,
  };
  const device = str("device");
  if (device) {
    const p = ifNameProblem(device, "device");
    if (p) problems.push(p);
    else conf.device = device;
  }
  const devices = config.devices;
  if (devices !== undefined && devices !== null) {
    if (!Array.isArray(devices) || devices.some((d) => typeof d !== "string")) {
      problems.push("devices: expected a list of interface names");
    } else {
      const bad = devices.map((d, i) => d === "" ? undefined : ifNameProblem(d, `devices[${i}]`)).filter(
        Boolean,
      );
      problems.push(...bad as string[]);
      if (!bad.length) conf.devices = devices.filter((d) => d !== "");
    }
  }
  const mode = str("switch");
  if (mode) {
    if (MODES.includes(mode)) conf.mode = mode as SwitchMode;
    else problems.push(`switch: "${mode}" is not one of ${MODES.map((m) => `"${m}"`).join(", ")} (or "")`);
  }
  const ipvlanMode = str("ipvlan_mode");
  if (ipvlanMode) {
    if (IPVLAN_MODES.includes(ipvlanMode.toLowerCase())) {
      conf.ipvlanMode = ipvlanMode.toLowerCase() as IpvlanMode;
    } else problems.push(`ipvlan_mode: "${ipvlanMode}" is not one of "l2", "l3", "l3s"`);
  }
  const disable = bool("disable_default_bridge");
  if (disable !== undefined) conf.disableDefaultBridge = disable;
  const names: [string, "defaultBridgeName" | "bridgeNamePrefix" | "vlanNamePrefix", number][] = [
    ["default_bridge_name", "defaultBridgeName", 0],
    ["bridge_name_prefix", "bridgeNamePrefix", 4],
    ["vlan_name_prefix", "vlanNamePrefix", 4],
  ];
  for (const [key, field, room] of names) {
    const v = str(key);
    if (!v) continue;
    const p = ifNameProblem(v, key, room);
    if (p) problems.push(p);
    else conf[field] = v;
  }
  const mtu = config.mtu;
  if (mtu !== undefined && mtu !== null && mtu !== 0) {
    if (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
      problems.push("mtu: must be 0 or an integer from 68 to 65535");
    } else {
      conf.mtu = mtu;
    }
  }
  const lockDir = str("lockDir");
  if (lockDir) {
    if (!lockDir.startsWith("/") || lockDir.includes("\0")) {
      problems.push("lockDir: must be an absolute path");
    } else conf.lockDir = lockDir.replace(/\/+$/, "") || "/";
  }
  if (config.dns !== undefined) conf.dns = config.dns as Dns; // skel checked that it is an object
  if (problems.length) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${options.plugin}: invalid config: ${problems.join("; ")}`,
    );
  }
  return conf;
}

/**
 * The uplink: `device`, or the first of `devices` that exists in this (the node's) namespace. Neither
 * configured, or none there, is a CniError with code 7 naming the key.
 */
export async function resolveUplink(
  conf: Pick<VlanNetConf, "device" | "devices">,
  options: { plugin: string },
): Promise<Link> {
  const { plugin } = options;
  try {
    if (conf.device) {
      const link = await getLink(null, conf.device);
      if (link) return link;
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${plugin}: config "device": interface "${conf.device}" does not exist in the node's network ` +
          "namespace",
      );
    }
    if (conf.devices?.length) {
      const links = await listLinks(null);
      for (const name of conf.devices) {
        const link = links.find((l) => l.name === name);
        if (link) return link;
      }
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${plugin}: config "devices": none of ${
          conf.devices.join(", ")
        } exists in the node's network namespace`,
      );
    }
  } catch (err) {
    throw kernelError(err, `${plugin}: uplink`);
  }
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `${plugin}: a device is needed: set "device" or "devices" in the config`,
  );
}

/** The device VLAN devices hang off: the uplink itself, or its parent when the uplink is a VLAN device. */
export function vlanParentOf(uplink: Link): string {
  return uplink.kind === "vlan" && uplink.parent ? uplink.parent : uplink.name;
}

// ---------------------------------------------------------------------------------------------- addresses

/** One address of an attachment: CIDR (host bits kept), gateway and VLAN. */
export interface AddressPlan {
  /** Address with prefix length. */
  address: string;
  /** Gateway, when known. */
  gateway?: string;
  /** VLAN ID; 0 is untagged. */
  vlan: number;
}

/** The addresses of an allocation (ipam.ts) with their VLANs, IPv4 only, in order. */
export function addressPlans(result: Result, vlans: readonly number[]): AddressPlan[] {
  return (result.ips ?? []).flatMap((ip, i) => {
    if (!isIpv4Cidr(ip.address)) return [];
    const plan: AddressPlan = { address: ip.address, vlan: vlans[i] ?? 0 };
    if (ip.gateway) plan.gateway = ip.gateway;
    return [plan];
  });
}

/** The most addresses one attachment may have: the host veth `v-h<cid9>-l<i>` must fit 15 characters. */
export const MAX_ADDRESSES = 10;

/**
 * The pod interface of each address: `ifname` for the first, then `eth1`, `eth2`, ... skipping `ifname`
 * (Galaxy's naming).
 */
export function podInterfaceNames(ifname: string, count: number): string[] {
  const names = count > 0 ? [ifname] : [];
  for (let k = 1; names.length < count; k++) {
    if (`eth${k}` !== ifname) names.push(`eth${k}`);
  }
  return names;
}

/** The three private ranges that replace the first interface's default route when a pod has two addresses. */
export const PRIVATE_RANGES: readonly string[] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

const DEFAULT_DST = "0.0.0.0/0";

function isDefault(dst: string): boolean {
  return dst === DEFAULT_DST || dst === "default";
}

function viaRoute(dst: string, gw: string | undefined): PodRoute {
  return gw ? { dst, gw } : { dst };
}

/** Options for {@linkcode podRoutePlan}. */
export interface RoutePlanOptions {
  /**
   * `k8s-vlan`: each address gets a default route via its gateway; with exactly two addresses the first's
   * default becomes the three private ranges. `underlay`: only the first address gets a default route.
   */
  policy: "k8s-vlan" | "underlay";
  /** The delegated IPAM's routes: they all go to the first interface (gateway defaulting to its own). */
  ipamRoutes?: readonly ResultRoute[];
}

/**
 * The routes of each pod interface (galaxy-behaviour.md §3.3 step 4, §3.4 step 3). A default route is kept
 * only on the first interface that has one: a second would collide in the pod's main table, where Galaxy
 * silently lost it while still reporting it.
 */
export function podRoutePlan(addresses: readonly AddressPlan[], options: RoutePlanOptions): PodRoute[][] {
  const plan = addresses.map((a, i): PodRoute[] => {
    if (options.ipamRoutes) {
      if (i > 0) return [];
      return options.ipamRoutes
        .filter((r) => isDefault(r.dst) || isIpv4Cidr(r.dst))
        .map((r) => viaRoute(isDefault(r.dst) ? DEFAULT_DST : r.dst, r.gw ?? a.gateway));
    }
    if (options.policy === "underlay" && i > 0) return [];
    return [viaRoute(DEFAULT_DST, a.gateway)];
  });
  if (options.policy === "k8s-vlan" && !options.ipamRoutes && addresses.length === 2) {
    const first = plan[0];
    const at = first.findIndex((r) => isDefault(r.dst));
    if (at >= 0) first.splice(at, 1);
    first.push(...PRIVATE_RANGES.map((dst) => viaRoute(dst, addresses[0].gateway)));
  }
  let seenDefault = false;
  return plan.map((routes) => {
    const kept = routes.filter((r) => !isDefault(r.dst) || !seenDefault);
    if (kept.some((r) => isDefault(r.dst))) seenDefault = true;
    return kept;
  });
}

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

/** True when IPv4 `ip` lies in the subnet of `cidr` (an address with prefix length, host bits allowed). */
export function inSubnet(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split("/");
  if (!isIPv4(ip) || !isIPv4(net)) return false;
  const bits = Number(len);
  if (bits === 0) return true;
  const mask = bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
  return ((ipv4ToInt(ip) & mask) >>> 0) === ((ipv4ToInt(net) & mask) >>> 0);
}

// ---------------------------------------------------------------------------------------------- sysctls, ARP

/**
 * rp_filter 0 on a pod interface and on `all` (configSboxDevice), as /proc/sys paths (dots in names are
 * safe).
 */
export function rpFilterOff(ifname: string): Record<string, string> {
  return {
    [`/proc/sys/net/ipv4/conf/${ifname}/rp_filter`]: "0",
    "/proc/sys/net/ipv4/conf/all/rp_filter": "0",
  };
}

/** The node sysctls that make a device answer ARP for pods routed behind it: arp_ignore 0, proxy_arp 1. */
export function proxyArpSysctls(dev: string): Record<string, string> {
  return {
    [`/proc/sys/net/ipv4/conf/${dev}/arp_ignore`]: "0",
    [`/proc/sys/net/ipv4/conf/${dev}/proxy_arp`]: "1",
  };
}

/** Writes sysctls of the node (this process's namespace), mapping failures to a CniError naming `context`. */
export async function setNodeSysctls(
  values: Record<string, string>,
  options: { context: string },
): Promise<void> {
  try {
    await setHostSysctls(values);
  } catch (err) {
    throw kernelError(err, options.context);
  }
}

/** One gratuitous ARP: announce `ip` on `dev`, in the node (`netns` null/absent) or inside a pod. */
export interface Announcement {
  /** The device to send on. */
  dev: string;
  /** The address announced (its own, for each address: Galaxy announced the first one everywhere). */
  ip: string;
  /** The pod namespace path; the node when absent. */
  netns?: string | null;
}

/**
 * Starts every announcement without waiting for arping's second between its two packets (the first leaves at
 * once; the pod's start does not wait for the second), and never fails: Galaxy ignores arping errors too.
 */
export async function announce(
  list: readonly Announcement[],
  options: { useRequest?: boolean } = {},
): Promise<void> {
  await Promise.all(
    list.map((a) =>
      sendGratuitousArp(a.dev, a.ip, { netns: a.netns, useRequest: options.useRequest, detach: true })
    ),
  );
}

// ---------------------------------------------------------------------------------------------- pod side

/** The pod end of an attachment as configSboxDevice sets it up. */
export interface SboxDevice {
  /** Its name in the pod now (a temporary name). */
  current: string;
  /** The final name. */
  ifname: string;
  /** The address (CIDR, original prefix kept). */
  address: string;
  /** Its routes. */
  routes: PodRoute[];
  /** Set the MAC from the address (not for ipvlan, whose MAC is the parent's). */
  macFromAddress: boolean;
}

/**
 * Galaxy's configSboxDevice for a link already inside the pod: rename, MAC from the IP, up, address, routes,
 * then rp_filter 0 on the interface and on `all`. Returns the interface as read back.
 */
export function configSboxDevice(netns: string, device: SboxDevice): Promise<Link> {
  const ip = device.address.split("/")[0];
  return configurePodInterface(netns, {
    current: device.current,
    ifname: device.ifname,
    mac: device.macFromAddress ? macFromIp(ip) : undefined,
    addresses: [device.address],
    routes: device.routes,
    sysctls: rpFilterOff(device.ifname),
  });
}

/**
 * Refuses an ADD whose pod interface names are taken before anything is touched (CNI: ADD of an existing
 * interface fails); a missing netns is code 3.
 */
export async function refuseTakenNames(
  req: Pick<PluginRequest, "netns">,
  names: readonly string[],
  options: { plugin: string },
): Promise<void> {
  if (names.length === 0) return;
  let links: Link[];
  try {
    links = await listLinks(req.netns);
  } catch (err) {
    throw kernelError(err, `${options.plugin}: netns ${req.netns}`);
  }
  const taken = names.filter((n) => links.some((l) => l.name === n));
  if (taken.length) {
    throw new CniError(
      ErrorCode.PluginFailure,
      `${options.plugin}: interface ${taken.join(", ")} already exists in ${req.netns}`,
    );
  }
}

/** One veth of an attachment (VethConnectsHostWithContainer). */
export interface VethAttachment {
  /** The plugin name, for messages. */
  plugin: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** The pod namespace. */
  netns: string;
  /** The pod interface name. */
  ifname: string;
  /** The veth name suffix: `-l<i>` (k8s-vlan) or `-u<i>` (underlay-veth). */
  suffix: string;
  /** The address (CIDR). */
  address: string;
  /** The pod routes through this interface. */
  routes: PodRoute[];
  /** MTU of both ends. */
  mtu?: number;
  /** Enslave the host end to this bridge; without one the host end gets proxy ARP and a /32 route. */
  bridge?: string;
  /** Preferred source of the host route (a node address); dropped when the kernel refuses it. */
  routeSrc?: string;
}

/** What {@linkcode connectVeth} made. */
export interface VethConnection {
  /** The host end. */
  host: Link;
  /** The pod end. */
  pod: Link;
}

/**
 * Galaxy's VethConnectsHostWithContainer: a veth `v-h<cid9><suffix>` ↔ pod interface, the host end enslaved
 * to `bridge` or, without one, given proxy_arp and the host route `<ip>/32 dev <host> scope link [src]`; the
 * pod end configured by {@linkcode configSboxDevice}. The host end (and with it the pair) is registered in
 * `undo`, so a later failure of the ADD removes it.
 */
export async function connectVeth(attachment: VethAttachment, undo: Undo): Promise<VethConnection> {
  const { plugin, containerId, netns, ifname, suffix } = attachment;
  let hostName: string;
  let peerName: string;
  try {
    hostName = hostVethName(containerId, { suffix });
    peerName = tempPeerName(containerId, { suffix });
  } catch (err) {
    throw kernelError(err, `${plugin}: veth names for ${ifname}`);
  }
  await prepareVethNames({ netns, ifname, hostName, peerName, foreignPeer: "refuse", plugin });
  const host = await createVethPair(hostName, peerName, { netns, mtu: attachment.mtu, txqueuelen: 0 });
  undo.push(`delete ${hostName}`, () => removeHostLink(hostName));
  if (attachment.bridge) {
    try {
      await runBatch(null, [linkSet(hostName, { master: attachment.bridge })]);
    } catch (err) {
      throw kernelError(err, `${plugin}: enslave ${hostName} to ${attachment.bridge}`);
    }
  } else {
    await setNodeSysctls({ [`/proc/sys/net/ipv4/conf/${hostName}/proxy_arp`]: "1" }, {
      context: `${plugin}: proxy_arp on ${hostName}`,
    });
  }
  const pod = await configSboxDevice(netns, {
    current: peerName,
    ifname,
    address: attachment.address,
    routes: attachment.routes,
    macFromAddress: true,
  });
  if (!attachment.bridge) {
    await addHostRoute(attachment.address.split("/")[0], hostName, { src: attachment.routeSrc, plugin });
  }
  return { host, pod };
}

/** macvlan or ipvlan. */
export type SlaveKind = "macvlan" | "ipvlan";

/** The temporary name of a macvlan (`mv-<cid9>`) or ipvlan (`iv-<cid9>`; Galaxy used `mv-` for both). */
export function slaveTempName(containerId: string, options: { kind: SlaveKind }): string {
  return validateIfName(`${options.kind === "ipvlan" ? "iv" : "mv"}-${cid9(containerId)}`);
}

/** Options for {@linkcode slaveOps}. */
export interface SlaveOptions {
  /** macvlan (mode bridge) or ipvlan. */
  kind: SlaveKind;
  /** The parent device (uplink or VLAN device). */
  parent: string;
  /** The pod namespace path the slave moves into. */
  netns: string;
  /** MTU. */
  mtu?: number;
  /** ipvlan mode (l3 by default). */
  ipvlanMode?: IpvlanMode;
}

/**
 * The node batch that makes a slave and moves it into the pod: `link add ... type macvlan|ipvlan`, `link set
 * netns`.
 */
export function slaveOps(name: string, options: SlaveOptions): IpOp[] {
  const add = options.kind === "ipvlan"
    ? linkAddIpvlan(name, options.parent, { mode: options.ipvlanMode ?? "l3", mtu: options.mtu })
    : linkAddMacvlan(name, options.parent, { mode: "bridge", mtu: options.mtu });
  return [add, linkSet(name, { netns: options.netns })];
}

/** A macvlan/ipvlan attachment. */
export interface SlaveAttachment extends SlaveOptions {
  /** The plugin name, for messages. */
  plugin: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** The pod interface name. */
  ifname: string;
  /** The address (CIDR). */
  address: string;
  /** Pod routes. */
  routes: PodRoute[];
}

const SLAVE_KINDS = ["macvlan", "ipvlan"];

/**
 * Makes a macvlan (mode bridge) or ipvlan slave of `parent` named `mv-<cid9>`/`iv-<cid9>`, moves it into the
 * pod and configures it there (MAC from IP for macvlan). Leftovers of a crashed ADD under the temporary name
 * are removed first; an existing `ifname` in the pod is refused. The slave is registered in `undo`.
 */
export async function attachSlave(attachment: SlaveAttachment, undo: Undo): Promise<Link> {
  const { plugin, netns, ifname, kind } = attachment;
  let tmp: string;
  try {
    tmp = slaveTempName(attachment.containerId, { kind });
  } catch (err) {
    throw kernelError(err, `${plugin}: ${kind} name`);
  }
  const podLinks = await listLinks(netns).catch((err) => {
    throw kernelError(err, `${plugin}: netns ${netns}`);
  });
  if (podLinks.some((l) => l.name === ifname)) {
    throw new CniError(ErrorCode.PluginFailure, `${plugin}: interface ${ifname} already exists in ${netns}`);
  }
  try {
    if (podLinks.some((l) => l.name === tmp)) {
      logLine(plugin, `deleting ${tmp} in ${netns}, left by an interrupted ADD`);
      await runBatch(netns, [linkDel(tmp)]);
    }
    const leftover = await getLink(null, tmp);
    if (leftover && !SLAVE_KINDS.includes(leftover.kind ?? "")) {
      throw new CniError(
        ErrorCode.PluginFailure,
        `${plugin}: node interface ${tmp} exists and is a ${
          leftover.kind ?? "plain device"
        }; not touching it`,
      );
    }
    if (leftover) {
      logLine(plugin, `deleting node interface ${tmp}, left by an interrupted ADD`);
      await runBatch(null, [linkDel(tmp)]);
    }
  } catch (err) {
    throw kernelError(err, `${plugin}: clearing leftovers of ${tmp}`);
  }
  const ops = slaveOps(tmp, attachment);
  undo.push(`delete ${kind} ${tmp}`, async () => {
    await removeHostLink(tmp);
    const left = (await listLinks(netns)).filter((l) =>
      (l.name === tmp || l.name === ifname) && SLAVE_KINDS.includes(l.kind ?? "")
    );
    await runBatch(netns, left.map((l) => linkDel(l.name)));
  });
  try {
    await runBatch(null, ops);
  } catch (err) {
    throw kernelError(err, `${plugin}: create ${kind} ${tmp} on ${attachment.parent}`);
  }
  return await configSboxDevice(netns, {
    current: tmp,
    ifname,
    address: attachment.address,
    routes: attachment.routes,
    macFromAddress: kind === "macvlan",
  });
}

// ---------------------------------------------------------------------------------------------- DEL, CHECK

/** One interface DEL may remove, with what proves it is this attachment's. */
export interface ExpectedInterface {
  /** Its name in the pod. */
  name: string;
  /** The MAC prevResult gave it. */
  mac?: string;
  /** Its address (bare); MAC-from-IP of it proves ownership. */
  ip?: string;
}

/**
 * The pod interfaces DEL removes: the first expected one (CNI_IFNAME, this attachment's by definition) when
 * it is of one of `kinds`; each further one only when it is of one of `kinds` and carries the MAC prevResult
 * gave it or the MAC derived from this attachment's address for it. Another network's `eth1` is left alone.
 */
export function ownedPodInterfaces(
  links: readonly Link[],
  options: { expected: readonly ExpectedInterface[]; kinds: readonly string[] },
): string[] {
  return options.expected.flatMap((want, i) => {
    const link = links.find((l) => l.name === want.name);
    if (!link || !options.kinds.includes(link.kind ?? "")) return [];
    if (i === 0) return [link.name];
    const mac = want.mac ?? (want.ip && isIPv4(want.ip) ? macFromIp(want.ip) : undefined);
    return mac && link.address?.toLowerCase() === mac.toLowerCase() ? [link.name] : [];
  });
}

/**
 * The interfaces of this attachment as far as DEL can know them: from prevResult (our names in it, with MAC
 * and address), else from `ipinfos` (one per address), else CNI_IFNAME alone.
 */
export function expectedInterfaces(req: PluginRequest): ExpectedInterface[] {
  const names = podInterfaceNames(req.ifname, MAX_ADDRESSES);
  const prev = req.prevResult;
  const fromPrev: ExpectedInterface[] = [];
  for (const name of names) {
    const index = interfaceIndex(prev, name, { sandbox: req.netns || undefined });
    if (index < 0) break;
    const entry: ExpectedInterface = { name };
    const mac = prev?.interfaces?.[index].mac;
    if (mac) entry.mac = mac;
    const ip = ipv4Of(prev, { ifname: name, netns: req.netns || undefined });
    if (ip) entry.ip = ip;
    fromPrev.push(entry);
  }
  if (fromPrev.length) return fromPrev;
  let infos: IpInfo[] | undefined;
  try {
    infos = parseIpInfos(req);
  } catch {
    // a DEL must work even with broken CNI_ARGS: only CNI_IFNAME is known then
  }
  if (infos?.length) {
    return podInterfaceNames(req.ifname, Math.min(infos.length, MAX_ADDRESSES)).map((name, i) => ({
      name,
      ip: infos[i].ip.split("/")[0],
    }));
  }
  return [{ name: req.ifname }];
}

/** Options for {@linkcode deleteAttachment}. */
export interface AttachmentDeletion {
  /** The plugin name, for messages. */
  plugin: string;
  /** The link kinds this attachment's pod interfaces have. */
  kinds: readonly string[];
  /** The host veth suffix stem (`-l`, `-u`); absent when there are no host veths. */
  vethSuffix?: string;
  /** The temporary node-side slave kind (macvlan/ipvlan), whose leftovers DEL removes. */
  slave?: SlaveKind;
}

async function deleteHostVeths(
  req: PluginRequest,
  count: number,
  options: AttachmentDeletion,
): Promise<void> {
  if (options.vethSuffix === undefined) return;
  for (let i = 0; i < count; i++) {
    const name = hostVethName(req.containerId, { suffix: `${options.vethSuffix}${i}` });
    const link = await getLink(null, name);
    if (!link) continue;
    const index = interfaceIndex(req.prevResult, name);
    const mac = index >= 0 ? req.prevResult?.interfaces?.[index].mac : undefined;
    // unproven by MAC, only a veth whose peer is here too (a crashed ADD's) is ours; a live peer may be
    // another container's that shares the first 9 ID characters
    const ours = mac
      ? link.address?.toLowerCase() === mac.toLowerCase()
      : link.kind === "veth" && link.linkNetnsId === undefined;
    if (ours) await runBatch(null, [linkDel(name)]);
    else logLine(options.plugin, `host interface ${name} is not proven to be this attachment's; kept`);
  }
}

/**
 * DEL of an attachment made of several interfaces: only this attachment's pod interfaces
 * ({@linkcode ownedPodInterfaces}; a missing namespace or interface is fine), host veths that are left and
 * provably ours, leftovers of a temporary slave, then delegated IPAM, released whatever happened before.
 */
export async function deleteAttachment(req: PluginRequest, options: AttachmentDeletion): Promise<void> {
  const { plugin } = options;
  await cleanUpThenRelease(req, async () => {
    const expected = expectedInterfaces(req);
    if (req.netns) {
      try {
        const links = await listLinks(req.netns);
        const ours = ownedPodInterfaces(links, { expected, kinds: options.kinds });
        await runBatch(req.netns, ours.map(linkDel));
        const kept = expected.filter((e) => links.some((l) => l.name === e.name) && !ours.includes(e.name));
        if (kept.length) {
          logLine(
            plugin,
            `${kept.map((e) => e.name).join(", ")} in ${req.netns} not proven to be ours; kept`,
          );
        }
      } catch (err) {
        if (!(err instanceof NetnsNotFoundError)) throw err;
      }
    }
    await deleteHostVeths(req, expected.length, options);
    if (options.slave) {
      const tmp = slaveTempName(req.containerId, { kind: options.slave });
      const left = await getLink(null, tmp);
      if (left && SLAVE_KINDS.includes(left.kind ?? "")) await runBatch(null, [linkDel(tmp)]);
    }
  }, { plugin: `${plugin}: DEL` });
}

/** Options for {@linkcode checkAttachment}. */
export interface AttachmentCheck {
  /** How ADD planned the pod routes (see {@linkcode podRoutePlan}). */
  policy: RoutePlanOptions["policy"];
  /** The host veth suffix stem (`-l`, `-u`); absent for macvlan/ipvlan. */
  vethSuffix?: string;
  /**
   * What the host veths are: bridge ports (bridge mode), routed with a host `<ip>/32` route (underlay-veth),
   * or either, told apart by whether the veth has a master (pure mode: VLAN 0 is routed, other VLANs
   * bridged).
   */
  hostSide?: "bridge" | "route" | "either";
}

/** The routes ADD put on each of `addresses`' interfaces, rebuilt from prevResult for CHECK. */
function plannedRoutes(
  req: PluginRequest,
  addresses: AddressPlan[],
  policy: AttachmentCheck["policy"],
): PodRoute[][] {
  const ipamType = (req.config.ipam as { type?: unknown } | undefined)?.type;
  const delegated = typeof ipamType === "string" && ipamType !== "" && !hasIpInfos(req);
  if (!delegated) return podRoutePlan(addresses, { policy });
  // delegated IPAM: its routes all went to the first interface, with its gateway filled in
  const first = addresses[0]?.address;
  const ipamRoutes = (req.prevResult?.routes ?? []).filter((r) => r.gw && first && inSubnet(r.gw, first));
  return podRoutePlan(addresses, { policy, ipamRoutes });
}

/**
 * CHECK of an attachment against prevResult: each pod interface of ours listed there (CNI_IFNAME, then
 * `eth<k>`) must exist with its MAC, be up and carry its addresses, and have the routes ADD planned for it
 * (which prevResult must list too); its host veth must exist with its MAC and be a bridge port or have the
 * host route `<ip>/32` through it (`hostSide`). Returns what is wrong, one phrase each.
 */
export async function checkAttachment(req: PluginRequest, options: AttachmentCheck): Promise<string[]> {
  const prev = req.prevResult!;
  const ours: { name: string; ip?: string; plan: AddressPlan }[] = [];
  for (const name of podInterfaceNames(req.ifname, MAX_ADDRESSES)) {
    const index = interfaceIndex(prev, name, { sandbox: req.netns });
    if (index < 0) break;
    const entry = (prev.ips ?? []).find((ip) => ip.interface === index && isIpv4Cidr(ip.address));
    const plan: AddressPlan = { address: entry?.address ?? "", vlan: 0 };
    if (entry?.gateway) plan.gateway = entry.gateway;
    ours.push({ name, ip: entry?.address.split("/")[0], plan });
  }
  if (ours.length === 0) return [`prevResult has no interface ${req.ifname} in sandbox ${req.netns}`];
  const problems: string[] = [];
  const routes = plannedRoutes(req, ours.map((o) => o.plan), options.policy);
  const hostLinks = options.vethSuffix === undefined ? [] : await listLinks(null).catch((err) => {
    throw kernelError(err, "check host side");
  });
  for (const [i, iface] of ours.entries()) {
    if (!iface.ip) problems.push(`prevResult has no IPv4 address for ${iface.name}`);
    const checks: Parameters<typeof verifyAttachment>[0] = {
      netns: req.netns,
      ifname: iface.name,
      prevResult: prev,
      podRoutes: iface.ip ? routes[i] : [],
    };
    if (options.vethSuffix !== undefined) {
      const host = hostVethName(req.containerId, { suffix: `${options.vethSuffix}${i}` });
      const hostIndex = interfaceIndex(prev, host);
      if (hostIndex < 0) problems.push(`prevResult has no host interface ${host}`);
      checks.hostLinks = [{ name: host, mac: interfaceMac(prev, host) }];
      const link = hostLinks.find((l) => l.name === host);
      const side = options.hostSide ?? "either";
      if (side === "bridge" || (side === "either" && link?.master)) {
        const master = link?.master ? hostLinks.find((l) => l.name === link.master) : undefined;
        if (link && master?.kind !== "bridge") problems.push(`host veth ${host} is not a bridge port`);
      } else if (iface.ip) {
        checks.hostRoutes = [{ ip: iface.ip, dev: host }];
      }
    }
    problems.push(...await verifyAttachment(checks));
  }
  return problems;
}
