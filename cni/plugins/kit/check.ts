/**
 * CHECK: an attachment's interfaces, addresses, routes, neighbours, host links, host routes and rules compared
 * with the kernel, every difference reported.
 * @module
 */
import { getLink, listAddrs, listNeighbours, listRoutes } from "../../../netops/ip.ts";
import { CniError, ErrorCode, type Result } from "../../version.ts";
import { kernelError } from "./errors.ts";
import { findHostRules, type RuleKey, tableName } from "./host_rules.ts";
import { interfaceIndex } from "./results.ts";

/** What {@linkcode verifyAttachment} compares with the kernel, beyond `prevResult`'s own interface. */
export interface AttachmentChecks {
  /** The pod namespace. */
  netns: string;
  /** CNI_IFNAME. */
  ifname: string;
  /** The ADD's result (1.1.0 shape). */
  prevResult: Result;
  /**
   * The routes this plugin put in the pod (another plugin's routes in a chained `prevResult` are not its
   * business): each must be in `prevResult` and in the pod's main table through `ifname`.
   */
  podRoutes?: { dst: string; gw?: string }[];
  /** Permanent neighbours expected on `ifname`. */
  podNeighbours?: { ip: string; lladdr?: string }[];
  /** Links expected in this (the node's) namespace, with their MAC when known. */
  hostLinks?: { name: string; mac?: string }[];
  /** Host routes `<ip>/32 dev <dev>` expected in the main table. */
  hostRoutes?: { ip: string; dev: string }[];
  /** Host policy rules expected. */
  hostRules?: RuleKey[];
}

function sameDst(kernel: string, wanted: string): boolean {
  const norm = (d: string) => d === "default" ? "0.0.0.0/0" : d.includes("/") ? d : `${d}/32`;
  return norm(kernel) === norm(wanted);
}

function describeRule(k: RuleKey): string {
  return [
    k.from ? `from ${k.from}` : "",
    k.to ? `to ${k.to}` : "",
    k.table !== undefined ? `lookup ${tableName(k.table)}` : "",
    `priority ${k.priority}`,
  ].filter(Boolean).join(" ");
}

/**
 * Compares an attachment with the kernel and returns what is missing or different, one phrase each (empty
 * when all is well): the pod interface from `prevResult` (MAC, up), its addresses from `prevResult`, and the
 * routes, neighbours and host objects of `checks`. A vanished pod namespace throws a CniError with code 3.
 */
export async function verifyAttachment(checks: AttachmentChecks): Promise<string[]> {
  const { netns, ifname, prevResult } = checks;
  const problems: string[] = [];
  const index = interfaceIndex(prevResult, ifname, { sandbox: netns });
  try {
    const link = await getLink(netns, ifname);
    if (index < 0) problems.push(`prevResult has no interface ${ifname} in sandbox ${netns}`);
    if (!link) {
      problems.push(`interface ${ifname} is missing in ${netns}`);
    } else {
      const wantMac = index >= 0 ? prevResult.interfaces?.[index].mac : undefined;
      if (wantMac && link.address?.toLowerCase() !== wantMac.toLowerCase()) {
        problems.push(`interface ${ifname} has MAC ${link.address}, prevResult says ${wantMac}`);
      }
      if (!link.up) problems.push(`interface ${ifname} is down`);
      const addrs = (await listAddrs(netns, { dev: ifname })).map((a) => a.cidr);
      for (const ip of prevResult.ips ?? []) {
        if (ip.interface === index && !addrs.includes(ip.address)) {
          problems.push(`address ${ip.address} is missing on ${ifname}`);
        }
      }
      const neighbours = await listNeighbours(netns, { dev: ifname });
      for (const want of checks.podNeighbours ?? []) {
        const n = neighbours.find((x) => x.ip === want.ip);
        if (!n || !n.state.includes("PERMANENT")) {
          problems.push(`permanent neighbour ${want.ip} is missing on ${ifname}`);
        } else if (want.lladdr && n.lladdr?.toLowerCase() !== want.lladdr.toLowerCase()) {
          problems.push(`neighbour ${want.ip} on ${ifname} is ${n.lladdr}, expected ${want.lladdr}`);
        }
      }
    }
    const routes = await listRoutes(netns);
    for (const want of checks.podRoutes ?? []) {
      const name = `route ${want.dst}${want.gw ? ` via ${want.gw}` : ""}`;
      if (!(prevResult.routes ?? []).some((r) => sameDst(r.dst, want.dst) && r.gw === want.gw)) {
        problems.push(`prevResult lacks ${name}`);
      }
      const ok = routes.some((r) =>
        sameDst(r.dst, want.dst) && r.gateway === want.gw && (!link || r.dev === ifname)
      );
      if (!ok) problems.push(`${name} is missing in ${netns}`);
    }
  } catch (err) {
    throw kernelError(err, `check ${ifname} in ${netns}`);
  }
  try {
    for (const want of checks.hostLinks ?? []) {
      const link = await getLink(null, want.name);
      if (!link) problems.push(`host interface ${want.name} is missing`);
      else if (want.mac && link.address?.toLowerCase() !== want.mac.toLowerCase()) {
        problems.push(`host interface ${want.name} has MAC ${link.address}, prevResult says ${want.mac}`);
      }
    }
    if (checks.hostRoutes?.length) {
      const hostRoutes = await listRoutes(null);
      for (const want of checks.hostRoutes) {
        if (!hostRoutes.some((r) => sameDst(r.dst, want.ip) && r.dev === want.dev)) {
          problems.push(`host route ${want.ip}/32 dev ${want.dev} is missing`);
        }
      }
    }
    if (checks.hostRules?.length) {
      const found = await findHostRules(checks.hostRules);
      checks.hostRules.forEach((key, i) => {
        if (found[i].length === 0) problems.push(`host rule "${describeRule(key)}" is missing`);
      });
    }
  } catch (err) {
    throw kernelError(err, "check host side");
  }
  return problems;
}

/** CHECK's verdict: nothing when there are no problems, else one code-100 error of `plugin` listing them all. */
export function failOnProblems(plugin: string, problems: readonly string[]): void {
  if (problems.length) {
    throw new CniError(ErrorCode.PluginFailure, `${plugin}: CHECK failed: ${problems.join("; ")}`);
  }
}
