/**
 * galaxy-k8s-vlan (galaxy-behaviour.md §3.3): pods on the node's underlay, untagged or in VLANs, in one of
 * four modes (`switch`):
 * - `bridge` (default): a veth `v-h<cid9>-l<i>` per address, a port of the default bridge (VLAN 0; it takes
 *   over the uplink's addresses and routes) or of the bridge `<bridge_name_prefix><id>` of a VLAN device
 *   `<vlan_name_prefix><id>` on the uplink's parent (existing ones are reused);
 * - `pure`: the same without the default bridge: a VLAN 0 veth is routed (proxy ARP, host /32 route);
 * - `macvlan` / `ipvlan` (`ipvlan_mode` l2, l3, l3s): one slave of the uplink or VLAN device, first
 *   address only.
 *
 * Several addresses give several interfaces (`CNI_IFNAME`, then `eth1`, ...); with exactly two the first's
 * default route becomes the three private ranges. Pod interfaces get MAC-from-IP and rp_filter 0, and each
 * address is announced by gratuitous ARP.
 *
 * Decisions beyond Galaxy:
 * - All CNI versions in and out (Galaxy took 0.1.0/0.2.0 only).
 * - The node-wide setup (default bridge, VLAN devices, bridges, node sysctls) runs under an flock on
 *   `<lockDir>/galaxy-k8s-vlan.lock`, so concurrent first ADDs move the uplink's addresses once. When a step
 *   of it fails, everything it did is undone before the lock is released: routes and addresses back on the
 *   uplink, the uplink released from the bridge (Galaxy forgot), created bridges and VLAN devices deleted.
 *   Node objects that were set up successfully stay (shared by every pod, never cleaned up, as in Galaxy).
 * - The uplink's routes of every table (not just main) move with its addresses, link-scope routes first.
 * - A failed ADD removes this attachment's interfaces and releases delegated IPAM.
 * - Each address is announced with its own IP (Galaxy announced the first everywhere).
 * - DEL removes only this attachment's interfaces (Galaxy deleted every veth in the pod): CNI_IFNAME, and
 *   `eth<k>` only when prevResult or the MAC derived from this attachment's address proves it ours.
 * - Pod veths take `mtu` (or the uplink's MTU), not a fixed 1500; a found VLAN device is set up.
 * - Only one default route is installed and reported with three or more addresses (Galaxy reported all and
 *   lost the others on EEXIST).
 * @module
 */
import { getLink, type Link } from "../../netops/ip.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import { appendResult, CniError, ErrorCode, type Result } from "../version.ts";
import { failOnProblems } from "./kit/check.ts";
import { kernelError, logLine } from "./kit/errors.ts";
import { withFileLock } from "./kit/file_lock.ts";
import { forwardToIpam, gcThroughIpam, statusThenIpam } from "./kit/ipam.ts";
import { refuseTakenNames } from "./kit/pod_interface.ts";
import { allocateThenAdd, type Undo, withRollback } from "./kit/rollback.ts";
import { parseVlanConf, resolveUplink, type VlanNetConf, vlanParentOf } from "./kit/underlay_conf.ts";
import { checkAttachment, deleteAttachment } from "./kit/underlay_del_check.ts";
import {
  defaultBridgeRollbackOps,
  ensureVlanBridge,
  isNoop,
  runRollback,
  setupDefaultBridge,
  vlanRollbackOps,
} from "./kit/underlay_node.ts";
import { type AddressPlan, addressPlans, podRoutePlan, proxyArpSysctls } from "./kit/underlay_plan.ts";
import {
  announce,
  type Announcement,
  attachSlave,
  claimPodInterfaceNames,
  connectVeth,
  setNodeSysctls,
  type SlaveKind,
} from "./kit/underlay_pod.ts";

const NAME = "galaxy-k8s-vlan";

/** The name of the node-wide lock file inside `lockDir`. */
export const LOCK_FILE_NAME = "galaxy-k8s-vlan.lock";

function isSlaveMode(mode: VlanNetConf["mode"]): mode is SlaveKind {
  return mode === "macvlan" || mode === "ipvlan";
}

function nodeSysctls(conf: VlanNetConf, uplink: string): Record<string, string> {
  if (conf.mode === "ipvlan" && conf.ipvlanMode !== "l2") {
    return { "/proc/sys/net/ipv4/ip_nonlocal_bind": "1" };
  }
  if (conf.mode !== "pure") return {};
  return {
    "/proc/sys/net/ipv4/conf/all/arp_ignore": "0",
    ...proxyArpSysctls(uplink),
    "/proc/sys/net/ipv4/ip_nonlocal_bind": "1",
  };
}

async function requireBridge(name: string): Promise<void> {
  let link: Link | undefined;
  try {
    link = await getLink(null, name);
  } catch (err) {
    throw kernelError(err, `${NAME}: default bridge ${name}`);
  }
  if (link?.kind !== "bridge") {
    throw new CniError(
      ErrorCode.PluginFailure,
      `${NAME}: disable_default_bridge is set, so the default bridge ${name} must exist, but ` +
        (link ? `it is a ${link.kind ?? "plain device"}` : "it does not"),
    );
  }
}

/**
 * The node-wide part of an ADD (run under the node lock, inside its own rollback): node sysctls, the default
 * bridge, VLAN devices and bridges. Returns, per address, where it attaches: a bridge (bridge and pure
 * modes; none for a routed pure VLAN 0 veth) or the slave's parent (macvlan and ipvlan).
 */
async function prepareNode(
  conf: VlanNetConf,
  uplink: Link,
  addresses: readonly AddressPlan[],
  undo: Undo,
): Promise<(string | undefined)[]> {
  const sysctls = nodeSysctls(conf, uplink.name);
  if (Object.keys(sysctls).length) await setNodeSysctls(sysctls, { context: `${NAME}: node sysctls` });
  const disableDefault = conf.disableDefaultBridge ?? !addresses.some((a) => a.vlan === 0);
  if (conf.mode === "bridge" && !disableDefault) {
    const plan = await setupDefaultBridge(uplink.name, { bridge: conf.defaultBridgeName, plugin: NAME });
    if (!isNoop(plan)) {
      undo.push(
        `give ${plan.uplink} its addresses and routes back from ${plan.bridge}`,
        () =>
          runRollback(defaultBridgeRollbackOps(plan), {
            plugin: NAME,
            what: `default bridge ${plan.bridge}`,
          }),
      );
    }
  }
  const slave = isSlaveMode(conf.mode);
  const points: (string | undefined)[] = [];
  for (const a of addresses) {
    if (a.vlan === 0) {
      if (slave) points.push(uplink.name);
      else if (conf.mode === "pure") points.push(undefined);
      else {
        if (disableDefault) await requireBridge(conf.defaultBridgeName);
        points.push(conf.defaultBridgeName);
      }
      continue;
    }
    const plan = await ensureVlanBridge({
      vlanId: a.vlan,
      parent: vlanParentOf(uplink),
      vlanPrefix: conf.vlanNamePrefix,
      bridgePrefix: slave ? undefined : conf.bridgeNamePrefix,
      plugin: NAME,
    });
    undo.push(
      `undo VLAN ${a.vlan}`,
      () => runRollback(vlanRollbackOps(plan), { plugin: NAME, what: `VLAN ${a.vlan}` }),
    );
    if (conf.mode === "pure" && plan.bridge) {
      await setNodeSysctls({ [`/proc/sys/net/ipv4/conf/${plan.bridge}/proxy_arp`]: "1" }, {
        context: `${NAME}: proxy_arp on ${plan.bridge}`,
      });
    }
    points.push(slave ? plan.device : plan.bridge);
  }
  return points;
}

/** ADD: addresses, the node-wide part under the lock, then this pod's interfaces; all undone on failure. */
export async function add(req: PluginRequest): Promise<Result> {
  const conf = parseVlanConf(req.config, { plugin: NAME });
  const uplink = await resolveUplink(conf, { plugin: NAME });
  await refuseTakenNames(req, [req.ifname], { plugin: NAME });
  return await allocateThenAdd(req, NAME, async (alloc, undo) => {
    let addresses = addressPlans(alloc.result, alloc.vlans);
    if (addresses.length === 0) {
      throw new CniError(ErrorCode.PluginFailure, `${NAME}: no IPv4 address to configure`);
    }
    const slave = isSlaveMode(conf.mode) ? conf.mode : undefined;
    if (slave && addresses.length > 1) {
      logLine(
        NAME,
        `${slave} mode uses the first address only; ignoring ${addresses.slice(1).map((a) => a.address)}`,
      );
      addresses = addresses.slice(0, 1);
    }
    const names = await claimPodInterfaceNames(req, addresses.length, { plugin: NAME });
    const routes = podRoutePlan(addresses, {
      policy: "k8s-vlan",
      ipamRoutes: alloc.delegated ? alloc.result.routes ?? [] : undefined,
    });
    const points = await withNodeLockFor(
      conf,
      () => withRollback(NAME, (nodeUndo) => prepareNode(conf, uplink, addresses, nodeUndo)),
    );
    const mtu = conf.mtu ?? uplink.mtu;
    const ours: Result = { cniVersion: "1.1.0", interfaces: [], ips: [] };
    const announcements: Announcement[] = [];
    for (const [i, a] of addresses.entries()) {
      const ip = a.address.split("/")[0];
      if (slave) {
        const pod = await attachSlave({
          plugin: NAME,
          containerId: req.containerId,
          netns: req.netns,
          ifname: names[i],
          kind: slave,
          parent: points[i]!,
          mtu,
          ipvlanMode: conf.ipvlanMode,
          address: a.address,
          routes: routes[i],
        }, undo);
        ours.interfaces!.push({ name: pod.name, mac: pod.address, sandbox: req.netns });
        const fromNode = slave === "ipvlan" && conf.ipvlanMode !== "l2";
        announcements.push(fromNode ? { dev: points[i]!, ip } : { dev: names[i], ip, netns: req.netns });
      } else {
        const { host, pod } = await connectVeth({
          plugin: NAME,
          containerId: req.containerId,
          netns: req.netns,
          ifname: names[i],
          suffix: `-l${i}`,
          address: a.address,
          routes: routes[i],
          mtu,
          bridge: points[i],
        }, undo);
        ours.interfaces!.push({ name: host.name, mac: host.address }, {
          name: pod.name,
          mac: pod.address,
          sandbox: req.netns,
        });
        announcements.push({ dev: names[i], ip, netns: req.netns });
        if (conf.mode === "pure") announcements.push({ dev: uplink.name, ip });
      }
      const entry = { address: a.address, interface: ours.interfaces!.length - 1 };
      ours.ips!.push(a.gateway ? { ...entry, gateway: a.gateway } : entry);
    }
    ours.routes = routes.flat().map((r) => r.gw ? { dst: r.dst, gw: r.gw } : { dst: r.dst });
    if (conf.dns) ours.dns = conf.dns;
    await announce(announcements, { useRequest: conf.gratuitousArpRequest });
    return appendResult(req.prevResult, ours);
  });
}

function withNodeLockFor<T>(conf: VlanNetConf, fn: () => Promise<T>): Promise<T> {
  return withFileLock(`${conf.lockDir}/${LOCK_FILE_NAME}`, fn);
}

function kindsOf(mode: VlanNetConf["mode"] | undefined): string[] {
  if (mode === undefined) return ["veth", "macvlan", "ipvlan"];
  return isSlaveMode(mode) ? [mode] : ["veth"];
}

/**
 * DEL: only this attachment's pod interfaces (their host veths go with them), leftovers on the node, then
 * delegated IPAM, released whatever happened before. A missing netns or interface and a second DEL succeed.
 */
export async function del(req: PluginRequest): Promise<void> {
  let mode: VlanNetConf["mode"] | undefined;
  try {
    mode = parseVlanConf(req.config, { plugin: NAME }).mode;
  } catch (err) {
    logLine(
      NAME,
      `DEL with an invalid config (${(err as Error).message}); removing what any mode would have made`,
    );
  }
  await deleteAttachment(req, {
    plugin: NAME,
    kinds: kindsOf(mode),
    vethSuffix: mode && isSlaveMode(mode) ? undefined : "-l",
    slave: mode && isSlaveMode(mode) ? mode : undefined,
  });
}

/**
 * CHECK: every pod interface of the attachment, its addresses and routes, and its host veth, against
 * prevResult.
 */
export async function check(req: PluginRequest): Promise<void> {
  const conf = parseVlanConf(req.config, { plugin: NAME });
  if (!req.prevResult) throw new CniError(ErrorCode.InvalidNetworkConfig, `${NAME}: CHECK needs prevResult`);
  const problems = await checkAttachment(
    req,
    isSlaveMode(conf.mode)
      ? { policy: "k8s-vlan" }
      : { policy: "k8s-vlan", vethSuffix: "-l", hostSide: conf.mode === "bridge" ? "bridge" : "either" },
  );
  failOnProblems(NAME, problems);
  await forwardToIpam("CHECK", req, { plugin: NAME });
}

/** STATUS: not available (50) while the uplink is missing; otherwise whatever IPAM says. */
export async function status(req: PluginRequest): Promise<void> {
  const conf = parseVlanConf(req.config, { plugin: NAME });
  await statusThenIpam(req, NAME, () => resolveUplink(conf, { plugin: NAME }));
}

/** GC: node objects are shared and kept; IPAM's reservations are its business. */
export async function gc(req: PluginRequest): Promise<void> {
  await gcThroughIpam(req, NAME);
}

/** The galaxy-k8s-vlan plugin. */
export const plugin: Plugin = { name: NAME, add, del, check, status, gc };

/** Runs galaxy-k8s-vlan as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
