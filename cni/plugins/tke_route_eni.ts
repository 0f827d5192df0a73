/**
 * tke-route-eni (galaxy-behaviour.md §3.6): a veth `eni<11 hex of sha1(namespace.pod)>` (node) ↔ `CNI_IFNAME`
 * (pod); the pod gets its address as /32, the gateway 169.254.1.1 (link route, default route with the pod's
 * address as source, permanent neighbour to the host end's MAC); the node gets a host route `<ip>/32 dev
 * eni…` and two policy rules: `to <ip> lookup main priority 512` and, unless `routeTable` is 0,
 * `from <ip> lookup <routeTable> priority 1536`, which sends the pod's traffic out through the ENI's table.
 *
 * Decisions beyond Galaxy:
 * - A failed ADD removes the veth, route and rules it made and releases delegated IPAM.
 * - A re-ADD after a crash takes over the leftovers: rules with the same selectors and priority are replaced,
 *   the host route is replaced, a stale pod-side temporary veth is deleted.
 * - A host veth of the same name whose peer is in another live namespace is deleted, as Galaxy did: the name
 *   comes from the pod's namespace and name, and Kubernetes runs at most one pod of a name, so that peer is
 *   an older sandbox of this pod that is dead or being torn down; refusing would block the new sandbox until
 *   then, forever if the old namespace leaked. To keep the old sandbox's later DEL from hurting the new one,
 *   DEL deletes the host veth only when its MAC is the one in its own `prevResult`, and leaves the rules of
 *   an address that is still routed through a live link.
 * - DEL finds the address in `prevResult`, else in `ipinfos`, else on the pod interface before deleting it
 *   (IPAM cannot say without a new ADD, which would be wrong); without one it removes the interface only and
 *   says so on stderr. Delegated IPAM is released (Galaxy never did).
 * @module
 */
import { getLink, validateIfName } from "../../netops/ip.ts";
import { cniArg } from "../request.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import { appendResult, CniError, ErrorCode, type Result } from "../version.ts";
import { optionalDns, optionalInteger, optionalString } from "./kit/conf.ts";
import { kernelError, logLine } from "./kit/errors.ts";
import { attachGatewayVeth, checkGatewayVeth } from "./kit/gateway_veth.ts";
import { deleteHostRules, hostRouteFor, replaceHostRules, type RuleKey } from "./kit/host_rules.ts";
import { gcThroughIpam, parseIpInfos, statusThenIpam } from "./kit/ipam.ts";
import { eniVethName, tempPeerName } from "./kit/names.ts";
import { deletePodInterface, prepareVethNames, removeHostLink } from "./kit/pod_interface.ts";
import { interfaceIndex, ipv4Of } from "./kit/results.ts";
import { allocateThenAdd, cleanUpThenRelease } from "./kit/rollback.ts";

/** tke-route-eni's own configuration keys. */
export interface TkeRouteEniConf {
  /** The node's ENI interface, which must exist (default `eth1`). */
  eni: string;
  /** The table of the from-pod rule (default 1); 0 disables that rule. */
  routeTable: number;
}

const NAME = "tke-route-eni";
/** Priority of `to <ip> lookup main`. */
const TO_POD_PRIORITY = 512;
/** Priority of `from <ip> lookup <routeTable>`. */
const FROM_POD_PRIORITY = 1536;

function isIfName(name: string): boolean {
  try {
    validateIfName(name);
    return true;
  } catch {
    return false;
  }
}

function parseConf(req: PluginRequest): TkeRouteEniConf & { dns?: Result["dns"] } {
  const plugin = NAME;
  return {
    eni: optionalString(req.config, "eni", {
      plugin,
      check: isIfName,
      expected: "an interface name of 1–15 characters",
    }) ?? "eth1",
    routeTable: optionalInteger(req.config, "routeTable", { plugin, min: 0, max: 0xffffffff }) ?? 1,
    dns: optionalDns(req.config, { plugin }),
  };
}

/** The host veth name from K8S_POD_NAMESPACE and K8S_POD_NAME, or `undefined` when either is missing. */
async function hostName(req: PluginRequest): Promise<string | undefined> {
  const namespace = cniArg(req.args, "K8S_POD_NAMESPACE");
  const pod = cniArg(req.args, "K8S_POD_NAME");
  return namespace && pod ? await eniVethName(namespace, pod) : undefined;
}

async function requireHostName(req: PluginRequest): Promise<string> {
  const name = await hostName(req);
  if (!name) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `${NAME}: CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME (the host veth is named after them)`,
    );
  }
  return name;
}

async function requireEni(eni: string): Promise<void> {
  let link;
  try {
    link = await getLink(null, eni);
  } catch (err) {
    throw kernelError(err, `${NAME}: look up eni ${eni}`);
  }
  if (!link) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${NAME}: config "eni": interface "${eni}" does not exist in the node's network namespace ` +
        `(set "eni" to the node's ENI interface; the default is eth1)`,
    );
  }
}

function ruleKeys(ip: string, routeTable: number): RuleKey[] {
  const keys: RuleKey[] = [{ to: `${ip}/32`, priority: TO_POD_PRIORITY, table: "main" }];
  if (routeTable > 0) keys.push({ from: `${ip}/32`, priority: FROM_POD_PRIORITY, table: routeTable });
  return keys;
}

/** ADD: the veth, both sides, the host route and the rules; everything is undone when a step fails. */
export async function add(req: PluginRequest): Promise<Result> {
  const conf = parseConf(req);
  const host = await requireHostName(req);
  const netns = req.netns;
  await requireEni(conf.eni);
  let peer: string;
  try {
    peer = tempPeerName(req.containerId);
  } catch (err) {
    throw kernelError(err, NAME);
  }
  await prepareVethNames({
    netns,
    ifname: req.ifname,
    hostName: host,
    peerName: peer,
    foreignPeer: "delete",
    plugin: NAME,
  });
  return await allocateThenAdd(req, NAME, async (alloc, undo) => {
    const { ip, result: ours } = await attachGatewayVeth(req, undo, {
      plugin: NAME,
      host,
      peer,
      addresses: alloc.result,
      defaultSrc: true,
    });
    const keys = ruleKeys(ip, conf.routeTable);
    undo.push("delete policy rules", () => deleteHostRules(keys));
    await replaceHostRules(keys.map((k) => ({ ...k, table: k.table! })));
    if (conf.dns) ours.dns = conf.dns;
    return appendResult(req.prevResult, ours);
  });
}

/** The address DEL works on: prevResult, then ipinfos; `undefined` when neither has one. */
function knownIp(req: PluginRequest): string | undefined {
  const fromPrev = ipv4Of(req.prevResult, { ifname: req.ifname });
  if (fromPrev) return fromPrev;
  try {
    return parseIpInfos(req)?.[0]?.ip.split("/")[0];
  } catch {
    return undefined;
  }
}

/**
 * DEL: the pod interface (its host end dies with it), the host veth when `prevResult` proves it is ours, the
 * rules of the address unless a live link still routes it, then IPAM, released whatever happened before.
 */
export async function del(req: PluginRequest): Promise<void> {
  await cleanUpThenRelease(req, async () => {
    let ip = knownIp(req);
    const pod = await deletePodInterface(req.netns, req.ifname, { kind: "veth", collectIpv4: !ip });
    if (pod.outcome === "foreign") logLine(NAME, `${req.ifname} in ${req.netns} is not a veth; left alone`);
    ip ??= pod.ipv4[0]?.split("/")[0];
    const host = await hostName(req);
    if (host) {
      const index = interfaceIndex(req.prevResult, host);
      const mac = index >= 0 ? req.prevResult?.interfaces?.[index].mac : undefined;
      if ((await removeHostLink(host, { mac, requireMac: true })) === "kept") {
        logLine(NAME, `host veth ${host} is not proven to be this attachment's (no or another MAC); kept`);
      }
    }
    if (!ip) {
      logLine(
        NAME,
        `DEL of ${req.containerId}/${req.ifname}: the address is unknown (no prevResult, no ipinfos, no interface); ` +
          `removed the interface only, its host route and rules (priority ${TO_POD_PRIORITY}/${FROM_POD_PRIORITY}) stay`,
      );
    } else {
      const route = await hostRouteFor(ip).catch((err) => {
        throw kernelError(err, `${NAME}: host route of ${ip}`);
      });
      if (route) {
        logLine(
          NAME,
          `${ip} is still routed through ${route.dev ?? "another route"}; its route and rules are kept`,
        );
      } else {
        await deleteHostRules([
          { to: `${ip}/32`, priority: TO_POD_PRIORITY },
          { from: `${ip}/32`, priority: FROM_POD_PRIORITY },
        ]);
      }
    }
  }, { plugin: NAME });
}

/** CHECK: the pod interface, address, gateway routes and neighbour, host veth, host route and rules. */
export async function check(req: PluginRequest): Promise<void> {
  const conf = parseConf(req);
  const host = await requireHostName(req);
  await checkGatewayVeth(req, { plugin: NAME, host, hostRules: (ip) => ruleKeys(ip, conf.routeTable) });
}

/** STATUS: not available (50) while the ENI interface is missing; otherwise whatever IPAM says. */
export async function status(req: PluginRequest): Promise<void> {
  const conf = parseConf(req);
  await statusThenIpam(req, NAME, () => requireEni(conf.eni));
}

/** GC: no state of its own beyond what DEL removes; forwarded to IPAM. */
export async function gc(req: PluginRequest): Promise<void> {
  await gcThroughIpam(req, NAME);
}

/** The tke-route-eni plugin. */
export const plugin: Plugin = { name: NAME, add, del, check, status, gc };

/** Runs tke-route-eni as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
