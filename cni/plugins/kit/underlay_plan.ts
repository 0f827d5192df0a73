/**
 * Underlay planning, pure: which address goes on which pod interface (`CNI_IFNAME`, then `eth1`, ...), the pod's
 * routes, and the sysctls of the node side.
 * @module
 */
import { isIPv4Cidr } from "../../../netops/ip_address.ts";
import type { Result, ResultRoute } from "../../version.ts";
import type { PodRoute } from "./pod_interface.ts";

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
    if (!isIPv4Cidr(ip.address)) return [];
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
        .filter((r) => isDefault(r.dst) || isIPv4Cidr(r.dst))
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
