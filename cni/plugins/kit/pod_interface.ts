/**
 * The pod's interface: the veth pair between the node and a pod, clearing the way for its names, configuring
 * the pod end (addresses, routes, the 169.254.1.1 gateway), and removing only one attachment's interface.
 * Every kernel change goes through netops: one `ip -batch` per namespace per step; `null` as a namespace is
 * the plugin's own (the node's), pod namespaces are paths (`CNI_NETNS`).
 * @module
 */
import {
  addrAdd,
  getLink,
  IpBatchError,
  type IpOp,
  type Link,
  linkAddVeth,
  linkDel,
  linkSet,
  listAddrs,
  listLinks,
  neighReplace,
  routeAdd,
  runBatch,
  runBatchThenLink,
  type Scope,
} from "../../../netops/ip.ts";
import { NetnsNotFoundError } from "../../../netops/netns.ts";
import { setSysctls } from "../../../netops/sysctl.ts";
import type { PluginRequest } from "../../skel.ts";
import { CniError, ErrorCode } from "../../version.ts";
import { kernelError, logLine } from "./errors.ts";

/** The pod's gateway: a link-local address nobody owns, answered by a permanent neighbour entry. */
export const POD_GATEWAY = "169.254.1.1";

/** The routes a result lists for a pod behind {@linkcode POD_GATEWAY}: its /32, then the default via it. */
export function gatewayRoutes(): { dst: string; gw?: string }[] {
  return [{ dst: `${POD_GATEWAY}/32` }, { dst: "0.0.0.0/0", gw: POD_GATEWAY }];
}

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
    const host = await runBatchThenLink(null, [
      linkAddVeth(hostName, peerName, { peerNetns: netns, mtu, txqueuelen }),
      linkSet(hostName, { up: true }),
    ], hostName);
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
    let link: Link | undefined;
    if (spec.sysctls && Object.keys(spec.sysctls).length) {
      await runBatch(netns, ops);
      await setSysctls(netns, spec.sysctls);
      link = await getLink(netns, ifname);
    } else {
      link = await runBatchThenLink(netns, ops, ifname); // one `ip` for the changes and the read-back
    }
    if (!link) throw new Error(`${ifname} vanished right after it was configured`);
    return link;
  } catch (err) {
    throw kernelError(err, `configure ${ifname} in ${netns}`);
  }
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
