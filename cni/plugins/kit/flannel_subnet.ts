/**
 * flanneld's `subnet.env`, read strictly, for galaxy-flannel.
 * @module
 */
import { type Cidr, cidrContains, formatCidr, networkOf, parseCidr } from "../../../netops/ip_address.ts";
import { CniError, ErrorCode } from "../../version.ts";

/** Where flanneld writes the node's lease, unless `subnetFile` says otherwise. */
export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";

/** What flanneld's `subnet.env` says. */
export interface SubnetEnv {
  /** `FLANNEL_NETWORK`: the cluster's IPv4 network(s), empty when IPv6-only. */
  networks: string[];
  /** `FLANNEL_SUBNET` as a network address (`10.1.2.0/24`); absent when IPv6-only. */
  subnet?: string;
  /** `FLANNEL_IPV6_NETWORK`: the cluster's IPv6 network(s), empty when IPv4-only. */
  ipv6Networks: string[];
  /** `FLANNEL_IPV6_SUBNET` as a network address; absent when IPv4-only. */
  ipv6Subnet?: string;
  /** `FLANNEL_MTU`. */
  mtu: number;
  /** `FLANNEL_IPMASQ`: true when flanneld masquerades itself. */
  ipMasq: boolean;
}

/** A JSON object as read from a configuration or a file. */
export type Json = Record<string, unknown>;

/** True for a JSON object (not an array, not null). */
export function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A code-7 error (invalid network configuration). */
export function invalid(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

// ---------------------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------------------
// subnet.env
const SUBNET_KEYS = [
  "FLANNEL_NETWORK",
  "FLANNEL_SUBNET",
  "FLANNEL_IPV6_NETWORK",
  "FLANNEL_IPV6_SUBNET",
  "FLANNEL_MTU",
  "FLANNEL_IPMASQ",
] as const;

function parseNetworks(key: string, value: string, family: 4 | 6, fail: (m: string) => CniError): Cidr[] {
  const found: Cidr[] = [];
  for (const part of value.split(",").map((p) => p.trim())) {
    const c = parseCidr(part);
    if (!c || c.family !== family) throw fail(`${key}: ${JSON.stringify(part)} is not an IPv${family} CIDR`);
    const net = networkOf(c);
    if (!found.some((f) => f.addr === net.addr && f.prefix === net.prefix)) found.push(net);
  }
  return found;
}

function parseSubnet(key: string, value: string, family: 4 | 6, fail: (m: string) => CniError): Cidr {
  const c = parseCidr(value);
  if (!c || c.family !== family) throw fail(`${key}: ${JSON.stringify(value)} is not an IPv${family} CIDR`);
  return networkOf(c);
}

/**
 * Parses the text of flanneld's `subnet.env` strictly: `KEY=VALUE` lines (blank lines and `#` comments
 * allowed, unknown keys ignored), each known key at most once, `FLANNEL_MTU` and `FLANNEL_IPMASQ` required, and
 * at least one complete address pair (`FLANNEL_NETWORK` + `FLANNEL_SUBNET`, or the IPv6 pair) with the subnet
 * inside the network. Throws a {@linkcode CniError} (code 7) naming `file` and the key.
 */
export function parseSubnetEnv(text: string, file: string): SubnetEnv {
  const fail = (msg: string) => invalid(`subnet file ${file}: ${msg}`);
  const values = new Map<string, string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw fail(`line ${i + 1}: expected KEY=VALUE, got ${JSON.stringify(line)}`);
    const key = line.slice(0, eq).trim();
    if (!(SUBNET_KEYS as readonly string[]).includes(key)) continue;
    if (values.has(key)) throw fail(`${key} is set more than once`);
    const value = line.slice(eq + 1).trim();
    if (value === "") throw fail(`${key} is empty`);
    values.set(key, value);
  }
  const get = (key: typeof SUBNET_KEYS[number]) => values.get(key);
  const env: SubnetEnv = { networks: [], ipv6Networks: [], mtu: 0, ipMasq: false };
  for (
    const [family, netKey, subKey] of [[4, "FLANNEL_NETWORK", "FLANNEL_SUBNET"], [
      6,
      "FLANNEL_IPV6_NETWORK",
      "FLANNEL_IPV6_SUBNET",
    ]] as const
  ) {
    const net = get(netKey);
    const sub = get(subKey);
    if (net === undefined && sub === undefined) continue;
    if (net === undefined) throw fail(`${subKey} is set but ${netKey} is missing`);
    if (sub === undefined) throw fail(`${netKey} is set but ${subKey} is missing`);
    const networks = parseNetworks(netKey, net, family, fail);
    const subnet = parseSubnet(subKey, sub, family, fail);
    if (!networks.some((n) => cidrContains(n, subnet))) {
      throw fail(`${subKey} ${sub} is not inside ${netKey} ${net}`);
    }
    if (family === 4) {
      env.networks = networks.map(formatCidr);
      env.subnet = formatCidr(subnet);
    } else {
      env.ipv6Networks = networks.map(formatCidr);
      env.ipv6Subnet = formatCidr(subnet);
    }
  }
  if (!env.subnet && !env.ipv6Subnet) {
    throw fail(
      "FLANNEL_NETWORK and FLANNEL_SUBNET (or FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET) are missing",
    );
  }
  const mtu = get("FLANNEL_MTU");
  if (mtu === undefined) throw fail("FLANNEL_MTU is missing");
  if (!/^\d+$/.test(mtu) || Number(mtu) < 68 || Number(mtu) > 65535) {
    throw fail(`FLANNEL_MTU: ${JSON.stringify(mtu)} is not a number from 68 to 65535`);
  }
  env.mtu = Number(mtu);
  const masq = get("FLANNEL_IPMASQ");
  if (masq === undefined) throw fail("FLANNEL_IPMASQ is missing");
  if (masq !== "true" && masq !== "false") {
    throw fail(`FLANNEL_IPMASQ: ${JSON.stringify(masq)} is neither true nor false`);
  }
  env.ipMasq = masq === "true";
  return env;
}

/** Reads and parses `subnet.env`; an unreadable file is a {@linkcode CniError} with code 5. */
export async function readSubnetEnv(file: string): Promise<SubnetEnv> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new CniError(
      ErrorCode.IoFailure,
      `cannot read subnet file ${file} (is flanneld running?): ${(e as Error).message}`,
    );
  }
  return parseSubnetEnv(text, file);
}
