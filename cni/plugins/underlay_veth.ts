/**
 * galaxy-underlay-veth (galaxy-behaviour.md §3.4): a routed veth per address, `v-h<cid9>-u<i>` (node) ↔
 * `CNI_IFNAME`, then `eth1`, ... (pod). The pod keeps its real prefix and gateway; the host end answers its
 * ARP by proxy ARP, and the node reaches it through `<ip>/32 dev v-h… scope link src <master's address>`. The
 * master device is `device` for VLAN 0, else the pre-made VLAN device with that ID on the device's parent; it
 * gets arp_ignore 0 and proxy_arp 1, so it answers ARP for the pod on the underlay, and announces the address
 * by gratuitous ARP. Only the first address gets a default route.
 *
 * Configuration: galaxy-k8s-vlan's keys, of which `device` (or `devices`), `gratuitous_arp_request`, `mtu`,
 * `ipam` and `dns` matter.
 *
 * Decisions beyond Galaxy: DEL releases delegated IPAM (Galaxy leaked it) and removes only this attachment's
 * interfaces (their host routes go with them), also when the netns or interface is gone; a failed ADD removes
 * what it made; a VLAN device is looked up on the device's parent when a device is configured (Galaxy took
 * any parent); the veth MTU is `mtu` or the master's, not a fixed 1500.
 * @module
 */
import { type Link, linkSet, listLinks, runBatch } from "../../netops/ip.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import { appendResult, CniError, ErrorCode, type Result } from "../version.ts";
import { failOnProblems } from "./kit/check.ts";
import { kernelError } from "./kit/errors.ts";
import { forwardToIpam, gcThroughIpam, statusThenIpam } from "./kit/ipam.ts";
import { refuseTakenNames } from "./kit/pod_interface.ts";
import { allocateThenAdd } from "./kit/rollback.ts";
import { parseVlanConf, resolveUplink, type VlanNetConf, vlanParentOf } from "./kit/underlay_conf.ts";
import { checkAttachment, deleteAttachment } from "./kit/underlay_del_check.ts";
import { findVlanMaster, firstNodeIpv4 } from "./kit/underlay_node.ts";
import { addressPlans, podRoutePlan, proxyArpSysctls } from "./kit/underlay_plan.ts";
import {
  announce,
  type Announcement,
  claimPodInterfaceNames,
  connectVeth,
  setNodeSysctls,
} from "./kit/underlay_pod.ts";

const NAME = "galaxy-underlay-veth";

/** The master device of each address: the uplink for VLAN 0, else its pre-made VLAN device. */
async function masters(conf: VlanNetConf, vlans: readonly number[]): Promise<Link[]> {
  const configured = !!conf.device || !!conf.devices?.length;
  const uplink = configured || vlans.includes(0) ? await resolveUplink(conf, { plugin: NAME }) : undefined;
  if (vlans.every((v) => v === 0)) return vlans.map(() => uplink!);
  let links: Link[];
  try {
    links = await listLinks(null);
  } catch (err) {
    throw kernelError(err, `${NAME}: list node links`);
  }
  return vlans.map((vlanId) => {
    if (vlanId === 0) return uplink!;
    try {
      return findVlanMaster(links, { vlanId, parent: uplink ? vlanParentOf(uplink) : undefined });
    } catch (err) {
      throw new CniError(ErrorCode.PluginFailure, `${NAME}: ${(err as Error).message}`);
    }
  });
}

/**
 * ADD: addresses, the masters readied for proxy ARP, then a routed veth per address; all undone on failure.
 */
export async function add(req: PluginRequest): Promise<Result> {
  const conf = parseVlanConf(req.config, { plugin: NAME });
  await refuseTakenNames(req, [req.ifname], { plugin: NAME });
  return await allocateThenAdd(req, NAME, async (alloc, undo) => {
    const addresses = addressPlans(alloc.result, alloc.vlans);
    if (addresses.length === 0) {
      throw new CniError(ErrorCode.PluginFailure, `${NAME}: no IPv4 address to configure`);
    }
    const names = await claimPodInterfaceNames(req, addresses.length, { plugin: NAME });
    const master = await masters(conf, addresses.map((a) => a.vlan));
    const unique = [...new Map(master.map((m) => [m.name, m])).values()];
    const vlanDevices = unique.filter((m) => m.kind === "vlan" && !m.up);
    try {
      await runBatch(null, vlanDevices.map((m) => linkSet(m.name, { up: true })));
    } catch (err) {
      throw kernelError(err, `${NAME}: set VLAN devices up`);
    }
    await setNodeSysctls({
      "/proc/sys/net/ipv4/conf/all/arp_ignore": "0",
      "/proc/sys/net/ipv4/ip_nonlocal_bind": "1",
      ...Object.assign({}, ...unique.map((m) => proxyArpSysctls(m.name))),
    }, { context: `${NAME}: node sysctls` });
    const sources = new Map<string, string | undefined>();
    for (const m of unique) {
      sources.set(
        m.name,
        await firstNodeIpv4(m.name).catch((err) => {
          throw kernelError(err, `${NAME}: addresses of ${m.name}`);
        }),
      );
    }
    const routes = podRoutePlan(addresses, {
      policy: "underlay",
      ipamRoutes: alloc.delegated ? alloc.result.routes ?? [] : undefined,
    });
    const ours: Result = { cniVersion: "1.1.0", interfaces: [], ips: [] };
    const announcements: Announcement[] = [];
    for (const [i, a] of addresses.entries()) {
      const { host, pod } = await connectVeth({
        plugin: NAME,
        containerId: req.containerId,
        netns: req.netns,
        ifname: names[i],
        suffix: `-u${i}`,
        address: a.address,
        routes: routes[i],
        mtu: conf.mtu ?? master[i].mtu,
        routeSrc: sources.get(master[i].name),
      }, undo);
      ours.interfaces!.push({ name: host.name, mac: host.address }, {
        name: pod.name,
        mac: pod.address,
        sandbox: req.netns,
      });
      const entry = { address: a.address, interface: ours.interfaces!.length - 1 };
      ours.ips!.push(a.gateway ? { ...entry, gateway: a.gateway } : entry);
      announcements.push({ dev: master[i].name, ip: a.address.split("/")[0] });
    }
    ours.routes = routes.flat().map((r) => r.gw ? { dst: r.dst, gw: r.gw } : { dst: r.dst });
    if (conf.dns) ours.dns = conf.dns;
    await announce(announcements, { useRequest: conf.gratuitousArpRequest });
    return appendResult(req.prevResult, ours);
  });
}

/**
 * DEL: only this attachment's pod interfaces (the host veths and their /32 routes go with them), host veths
 * left behind, then delegated IPAM, released whatever happened before (Galaxy never released it).
 */
export async function del(req: PluginRequest): Promise<void> {
  await deleteAttachment(req, { plugin: NAME, kinds: ["veth"], vethSuffix: "-u" });
}

/** CHECK: each pod interface, its addresses and routes, its host veth and host route, against prevResult. */
export async function check(req: PluginRequest): Promise<void> {
  parseVlanConf(req.config, { plugin: NAME });
  if (!req.prevResult) throw new CniError(ErrorCode.InvalidNetworkConfig, `${NAME}: CHECK needs prevResult`);
  const problems = await checkAttachment(req, { policy: "underlay", vethSuffix: "-u", hostSide: "route" });
  failOnProblems(NAME, problems);
  await forwardToIpam("CHECK", req, { plugin: NAME });
}

/** STATUS: not available (50) while a configured device is missing; otherwise whatever IPAM says. */
export async function status(req: PluginRequest): Promise<void> {
  const conf = parseVlanConf(req.config, { plugin: NAME });
  const configured = conf.device || conf.devices?.length;
  await statusThenIpam(req, NAME, configured ? () => resolveUplink(conf, { plugin: NAME }) : undefined);
}

/** GC: no state of its own beyond what DEL removes; forwarded to IPAM. */
export async function gc(req: PluginRequest): Promise<void> {
  await gcThroughIpam(req, NAME);
}

/** The galaxy-underlay-veth plugin. */
export const plugin: Plugin = { name: NAME, add, del, check, status, gc };

/** Runs galaxy-underlay-veth as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
