/**
 * The underlay pod side: the node's sysctls and gratuitous ARP, refusing taken names, and the three ways an
 * underlay address reaches the pod (a veth, a macvlan/ipvlan slave, a moved device).
 * @module
 */
import { sendGratuitousArp } from "../../../netops/arping.ts";
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
} from "../../../netops/ip.ts";
import { setHostSysctls } from "../../../netops/sysctl.ts";
import type { PluginRequest } from "../../skel.ts";
import { CniError, ErrorCode } from "../../version.ts";
import { kernelError, logLine } from "./errors.ts";
import { addHostRoute } from "./host_rules.ts";
import { cid9, hostVethName, macFromIp, tempPeerName } from "./names.ts";
import {
  configurePodInterface,
  createVethPair,
  type PodRoute,
  prepareVethNames,
  refuseTakenNames,
  removeHostLink,
} from "./pod_interface.ts";
import type { Undo } from "./rollback.ts";
import { MAX_ADDRESSES, podInterfaceNames, rpFilterOff } from "./underlay_plan.ts";

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

/** The slave kinds an underlay attachment can have in the pod. */
export const SLAVE_KINDS = ["macvlan", "ipvlan"];

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

/**
 * The pod interface names for `count` addresses (`CNI_IFNAME`, then `eth1`, ...): at most
 * {@linkcode MAX_ADDRESSES} (else code 7), and refused when one beyond `CNI_IFNAME` is taken in the pod.
 */
export async function claimPodInterfaceNames(
  req: Pick<PluginRequest, "netns" | "ifname">,
  count: number,
  options: { plugin: string },
): Promise<string[]> {
  if (count > MAX_ADDRESSES) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${options.plugin}: ${count} addresses; at most ${MAX_ADDRESSES} fit the interface names`,
    );
  }
  const names = podInterfaceNames(req.ifname, count);
  await refuseTakenNames(req, names.slice(1), options);
  return names;
}
