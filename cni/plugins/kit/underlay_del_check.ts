/**
 * DEL and CHECK of an underlay attachment: which pod interfaces are this attachment's, removing them and their
 * host ends, and comparing them with the kernel.
 * @module
 */
import { getLink, type Link, linkDel, listLinks, runBatch } from "../../../netops/ip.ts";
import { ipv4InSubnet, isIPv4, isIPv4Cidr } from "../../../netops/ip_address.ts";
import { NetnsNotFoundError } from "../../../netops/netns.ts";
import type { PluginRequest } from "../../skel.ts";
import { verifyAttachment } from "./check.ts";
import { kernelError, logLine } from "./errors.ts";
import { hasIpInfos, type IpInfo, parseIpInfos } from "./ipam.ts";
import { hostVethName, macFromIp } from "./names.ts";
import type { PodRoute } from "./pod_interface.ts";
import { interfaceIndex, interfaceMac, ipv4Of } from "./results.ts";
import { cleanUpThenRelease } from "./rollback.ts";
import {
  type AddressPlan,
  MAX_ADDRESSES,
  podInterfaceNames,
  podRoutePlan,
  type RoutePlanOptions,
} from "./underlay_plan.ts";
import { SLAVE_KINDS, type SlaveKind, slaveTempName } from "./underlay_pod.ts";

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
  const ipamRoutes = (req.prevResult?.routes ?? []).filter((r) => r.gw && first && ipv4InSubnet(r.gw, first));
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
    const entry = (prev.ips ?? []).find((ip) => ip.interface === index && isIPv4Cidr(ip.address));
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
