/**
 * galaxy-veth (galaxy-behaviour.md §3.2): a veth pair `v-h<cid9>` (node) ↔ `CNI_IFNAME` (pod). The pod gets its
 * address as /32 and reaches everything through the gateway 169.254.1.1: a link-scope route to it, a default
 * route via it, and a permanent neighbour entry that maps it to the host end's MAC. The node reaches the pod
 * through a host route `<ip>/32 dev v-h<cid9> scope link [src routeSrc]`.
 *
 * Addresses come from `ipinfos` in CNI_ARGS when present (Galaxy ignored them here), else from the delegated
 * `ipam`. Unlike Galaxy: a failed ADD removes what it made and releases IPAM; DEL releases IPAM even when the
 * interface or the namespace is gone; the result has each route once; the neighbour uses the host end as
 * read back after creation; a pod that already has a default route makes ADD fail instead of silently
 * keeping the other route.
 * @module
 */
import { isIPv4 } from "../../netops/ip_address.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import { appendResult, CniError, ErrorCode, type Result } from "../version.ts";
import { verifyAttachment } from "./kit/check.ts";
import { optionalDns, optionalInteger, optionalString } from "./kit/conf.ts";
import { kernelError, logLine } from "./kit/errors.ts";
import { addHostRoute } from "./kit/host_rules.ts";
import { allocate, forwardToIpam, releaseDelegated } from "./kit/ipam.ts";
import { hostVethName, tempPeerName } from "./kit/names.ts";
import {
  configurePodInterface,
  createVethPair,
  deletePodInterface,
  gatewayRoutes,
  POD_GATEWAY,
  prepareVethNames,
  removeHostLink,
} from "./kit/pod_interface.ts";
import { firstIpv4, interfaceIndex, interfaceMac, ipv4Of } from "./kit/results.ts";
import { cleanUpThenRelease, withRollback } from "./kit/rollback.ts";

/** galaxy-veth's own configuration keys (the standard ones, `ipam` and `dns`, are read as usual). */
export interface VethConf {
  /** MTU of both veth ends; 0 or absent = the kernel default. */
  mtu?: number;
  /** Preferred source of the host route to the pod (a node address); dropped when the kernel refuses it. */
  routeSrc?: string;
}

const NAME = "galaxy-veth";

function parseConf(req: PluginRequest): VethConf & { dns?: Result["dns"] } {
  const plugin = NAME;
  return {
    mtu: optionalInteger(req.config, "mtu", { plugin, min: 68, max: 65535, alsoAllowed: [0] }),
    routeSrc: optionalString(req.config, "routeSrc", { plugin, check: isIPv4, expected: "an IPv4 address" }),
    dns: optionalDns(req.config, { plugin }),
  };
}

function names(req: PluginRequest): { host: string; peer: string } {
  try {
    return { host: hostVethName(req.containerId), peer: tempPeerName(req.containerId) };
  } catch (err) {
    throw kernelError(err, NAME);
  }
}

/** ADD: allocate, build the pair and both sides, and return the result (chained onto `prevResult`). */
export async function add(req: PluginRequest): Promise<Result> {
  const conf = parseConf(req);
  const { host, peer } = names(req);
  const netns = req.netns;
  await prepareVethNames({
    netns,
    ifname: req.ifname,
    hostName: host,
    peerName: peer,
    foreignPeer: "refuse",
    plugin: NAME,
  });
  const alloc = await allocate(req);
  return await withRollback(NAME, async (undo) => {
    if (alloc.delegated) undo.push("release IPAM", () => releaseDelegated(req));
    const v4 = firstIpv4(alloc.result);
    if (!v4) throw new CniError(ErrorCode.PluginFailure, `${NAME}: no IPv4 address to configure`);
    const mtu = conf.mtu ? conf.mtu : undefined;
    const hostLink = await createVethPair(host, peer, { netns, mtu, txqueuelen: 0 });
    undo.push(`delete ${host}`, () => removeHostLink(host));
    const podLink = await configurePodInterface(netns, {
      current: peer,
      ifname: req.ifname,
      addresses: [`${v4.ip}/32`],
      routes: [{ dst: `${POD_GATEWAY}/32`, scope: "link" }, { dst: "default", gw: POD_GATEWAY }],
      neighbours: [{ ip: POD_GATEWAY, lladdr: hostLink.address! }],
    });
    await addHostRoute(v4.ip, host, { src: conf.routeSrc, plugin: NAME });
    const ours: Result = {
      cniVersion: "1.1.0",
      interfaces: [
        { name: host, mac: hostLink.address },
        { name: req.ifname, mac: podLink.address, sandbox: netns },
      ],
      ips: [{ address: `${v4.ip}/32`, gateway: POD_GATEWAY, interface: 1 }],
      routes: gatewayRoutes(),
    };
    if (conf.dns) ours.dns = conf.dns;
    return appendResult(req.prevResult, ours);
  });
}

/**
 * DEL: the pod interface (only this attachment's), the host end if it is still there and ours (the MAC in
 * `prevResult`, when there is one), then IPAM, which is released whatever happened before.
 */
export async function del(req: PluginRequest): Promise<void> {
  await cleanUpThenRelease(req, async () => {
    const { host } = names(req);
    const pod = await deletePodInterface(req.netns, req.ifname, { kind: "veth" });
    if (pod.outcome === "foreign") logLine(NAME, `${req.ifname} in ${req.netns} is not a veth; left alone`);
    const mac = interfaceMac(req.prevResult, host);
    if ((await removeHostLink(host, { mac })) === "kept") {
      logLine(
        NAME,
        `host veth ${host} has another MAC than this attachment's; it belongs to another one, kept`,
      );
    }
  }, { plugin: NAME });
}

/** CHECK: the pod interface, its /32, the gateway routes and neighbour, the host veth and the host route. */
export async function check(req: PluginRequest): Promise<void> {
  parseConf(req);
  const prev = req.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, `${NAME}: CHECK needs prevResult`);
  const { host } = names(req);
  const hostIndex = interfaceIndex(prev, host);
  const hostMac = hostIndex >= 0 ? prev.interfaces?.[hostIndex].mac : undefined;
  const ip = ipv4Of(prev, { ifname: req.ifname, netns: req.netns });
  const problems = await verifyAttachment({
    netns: req.netns,
    ifname: req.ifname,
    prevResult: prev,
    podRoutes: gatewayRoutes(),
    podNeighbours: [{ ip: POD_GATEWAY, lladdr: hostMac }],
    hostLinks: [{ name: host, mac: hostMac }],
    hostRoutes: ip ? [{ ip, dev: host }] : [],
  });
  if (hostIndex < 0) problems.push(`prevResult has no host interface ${host}`);
  if (!ip) problems.push(`prevResult has no IPv4 address for ${req.ifname}`);
  if (problems.length) {
    throw new CniError(ErrorCode.PluginFailure, `${NAME}: CHECK failed: ${problems.join("; ")}`);
  }
  await forwardToIpam("CHECK", req, { plugin: NAME });
}

/** STATUS: ready whenever its IPAM is. */
export async function status(req: PluginRequest): Promise<void> {
  await forwardToIpam("STATUS", req, { plugin: NAME });
}

/** GC: galaxy-veth keeps no state of its own; IPAM's reservations are its business. */
export async function gc(req: PluginRequest): Promise<void> {
  await forwardToIpam("GC", req, { plugin: NAME });
}

/** The galaxy-veth plugin. */
export const plugin: Plugin = { name: NAME, add, del, check, status, gc };

/** Runs galaxy-veth as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
