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
import { appendResult, type Result } from "../version.ts";
import { optionalDns, optionalInteger, optionalString } from "./kit/conf.ts";
import { kernelError, logLine } from "./kit/errors.ts";
import { attachGatewayVeth, checkGatewayVeth } from "./kit/gateway_veth.ts";
import { gcThroughIpam, statusThenIpam } from "./kit/ipam.ts";
import { hostVethName, tempPeerName } from "./kit/names.ts";
import { deletePodInterface, prepareVethNames, removeHostLink } from "./kit/pod_interface.ts";
import { interfaceMac } from "./kit/results.ts";
import { allocateThenAdd, cleanUpThenRelease } from "./kit/rollback.ts";

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
  return await allocateThenAdd(req, NAME, async (alloc, undo) => {
    const { result: ours } = await attachGatewayVeth(req, undo, {
      plugin: NAME,
      host,
      peer,
      addresses: alloc.result,
      mtu: conf.mtu ? conf.mtu : undefined,
      txqueuelen: 0,
      routeSrc: conf.routeSrc,
    });
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
  await checkGatewayVeth(req, { plugin: NAME, host: names(req).host });
}

/** STATUS: ready whenever its IPAM is. */
export async function status(req: PluginRequest): Promise<void> {
  await statusThenIpam(req, NAME);
}

/** GC: galaxy-veth keeps no state of its own; IPAM's reservations are its business. */
export async function gc(req: PluginRequest): Promise<void> {
  await gcThroughIpam(req, NAME);
}

/** The galaxy-veth plugin. */
export const plugin: Plugin = { name: NAME, add, del, check, status, gc };

/** Runs galaxy-veth as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
