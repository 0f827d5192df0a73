/**
 * A pod behind the 169.254.1.1 gateway on a veth (galaxy-veth and tke-route-eni): the pair, the pod end with
 * its address as /32, a link route to the gateway and the default route via it, a permanent neighbour that
 * maps the gateway to the host end's MAC, and the host `/32` route back; and the CHECK of all of that.
 * @module
 */
import type { PluginRequest } from "../../skel.ts";
import { CniError, ErrorCode, type Result } from "../../version.ts";
import { failOnProblems, verifyAttachment } from "./check.ts";
import { addHostRoute, type RuleKey } from "./host_rules.ts";
import { forwardToIpam } from "./ipam.ts";
import {
  configurePodInterface,
  createVethPair,
  gatewayRoutes,
  POD_GATEWAY,
  removeHostLink,
} from "./pod_interface.ts";
import { firstIpv4, interfaceIndex, ipv4Of } from "./results.ts";
import type { Undo } from "./rollback.ts";

/** What {@linkcode attachGatewayVeth} builds. */
export interface GatewayVeth {
  /** The plugin name, for messages. */
  plugin: string;
  /** The host end's name. */
  host: string;
  /** The temporary name of the pod end (renamed to `CNI_IFNAME` in the pod). */
  peer: string;
  /** The addresses allocated for the pod: its first IPv4 address is the pod's. */
  addresses: Result;
  /** MTU of both ends; the kernel's default when absent. */
  mtu?: number;
  /** The host end's txqueuelen; the kernel's default when absent. */
  txqueuelen?: number;
  /** Whether the pod's default route names the pod's address as its source. */
  defaultSrc?: boolean;
  /** The preferred source of the host route (a node address). */
  routeSrc?: string;
}

/**
 * Builds the attachment (undo steps recorded in `undo`) and returns the pod's address and this plugin's own
 * result: the host end, the pod interface, the /32 with the gateway, and the gateway routes.
 */
export async function attachGatewayVeth(
  req: PluginRequest,
  undo: Undo,
  veth: GatewayVeth,
): Promise<{ ip: string; result: Result }> {
  const { host, peer } = veth;
  const ip = firstIpv4(veth.addresses)?.ip;
  if (!ip) throw new CniError(ErrorCode.PluginFailure, `${veth.plugin}: no IPv4 address to configure`);
  const hostLink = await createVethPair(host, peer, {
    netns: req.netns,
    mtu: veth.mtu,
    txqueuelen: veth.txqueuelen,
  });
  undo.push(`delete ${host}`, () => removeHostLink(host));
  const podLink = await configurePodInterface(req.netns, {
    current: peer,
    ifname: req.ifname,
    addresses: [`${ip}/32`],
    routes: [
      { dst: `${POD_GATEWAY}/32`, scope: "link" },
      veth.defaultSrc ? { dst: "default", gw: POD_GATEWAY, src: ip } : { dst: "default", gw: POD_GATEWAY },
    ],
    neighbours: [{ ip: POD_GATEWAY, lladdr: hostLink.address! }],
  });
  await addHostRoute(
    ip,
    host,
    veth.routeSrc ? { src: veth.routeSrc, plugin: veth.plugin } : { plugin: veth.plugin },
  );
  const result: Result = {
    cniVersion: "1.1.0",
    interfaces: [
      { name: host, mac: hostLink.address },
      { name: req.ifname, mac: podLink.address, sandbox: req.netns },
    ],
    ips: [{ address: `${ip}/32`, gateway: POD_GATEWAY, interface: 1 }],
    routes: gatewayRoutes(),
  };
  return { ip, result };
}

/**
 * CHECK of such an attachment against `prevResult`: the pod interface, its /32, the gateway routes and
 * neighbour, the host veth (its MAC), the host route and, when given, the rules of the address; then IPAM.
 */
export async function checkGatewayVeth(
  req: PluginRequest,
  options: { plugin: string; host: string; hostRules?: (ip: string) => RuleKey[] },
): Promise<void> {
  const { plugin, host } = options;
  const prev = req.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, `${plugin}: CHECK needs prevResult`);
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
    ...(options.hostRules ? { hostRules: ip ? options.hostRules(ip) : [] } : {}),
  });
  if (hostIndex < 0) problems.push(`prevResult has no host interface ${host}`);
  if (!ip) problems.push(`prevResult has no IPv4 address for ${req.ifname}`);
  failOnProblems(plugin, problems);
  await forwardToIpam("CHECK", req, { plugin });
}
