/**
 * The one home of address parsing: syntax checks with `node:net`'s meaning (without loading `node:net`: plugins
 * start once per pod, and Deno's Node compatibility layer costs ~15 ms to initialise), IPv4 CIDRs and subnet
 * membership, and just enough CIDR arithmetic (IPv4 and IPv6) to normalise and compare subnets. Import-free.
 * @module
 */

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** True for a dotted-quad IPv4 address (no leading zeros, as `net.isIPv4`). */
export function isIPv4(text: string): boolean {
  return V4.test(text);
}

/** True for an IPv6 address in any of its textual forms, including an embedded IPv4 tail and a zone. */
export function isIPv6(text: string): boolean {
  let s = text;
  const zone = s.indexOf("%");
  if (zone >= 0) {
    if (zone === s.length - 1) return false;
    s = s.slice(0, zone);
  }
  let groups = 8;
  const lastColon = s.lastIndexOf(":");
  if (lastColon >= 0 && s.slice(lastColon + 1).includes(".")) {
    if (!isIPv4(s.slice(lastColon + 1))) return false;
    s = s.slice(0, lastColon + 1) + "0";
    groups = 7;
  }
  const halves = s.split("::");
  if (halves.length > 2) return false;
  const parts = halves.map((h) => (h === "" ? [] : h.split(":")));
  if (parts.some((p) => p.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g)))) return false;
  const count = parts.reduce((n, p) => n + p.length, 0);
  return halves.length === 2 ? count < groups : count === groups;
}

/** 4, 6 or 0 (not an address), as `net.isIP`. */
export function isIP(text: string): 0 | 4 | 6 {
  return isIPv4(text) ? 4 : isIPv6(text) ? 6 : 0;
}

/** True for an IPv4 address with a prefix length (`198.18.0.3/24`; host bits allowed). */
export function isIPv4Cidr(text: string): boolean {
  const slash = text.indexOf("/");
  return slash > 0 && isIPv4(text.slice(0, slash)) && /^(3[0-2]|[12]?\d)$/.test(text.slice(slash + 1));
}

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

/** True when IPv4 `ip` lies in the subnet of `cidr` (an address with prefix length, host bits allowed). */
export function ipv4InSubnet(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split("/");
  if (!isIPv4(ip) || !isIPv4(net)) return false;
  const bits = Number(len);
  if (bits === 0) return true;
  const mask = bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
  return ((ipv4ToInt(ip) & mask) >>> 0) === ((ipv4ToInt(net) & mask) >>> 0);
}

/** An address with a prefix length, as numbers (IPv4 or IPv6). */
export interface Cidr {
  /** 4 or 6. */
  family: 4 | 6;
  /** The address as a number. */
  addr: bigint;
  /** The prefix length. */
  prefix: number;
}

function parseIpv4Number(text: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let value = 0n;
  for (const octet of m.slice(1)) {
    const n = Number(octet);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.split("::").length > 2) return undefined;
  let tail: bigint[] = [];
  let body = text;
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const embedded = parseIpv4Number(v4[2]);
    if (embedded === undefined) return undefined;
    tail = [embedded >> 16n, embedded & 0xffffn];
    body = v4[1].endsWith("::") ? v4[1] : v4[1].slice(0, -1);
  }
  const groups = (part: string) => part === "" ? [] : part.split(":");
  const [head, rest] = body.includes("::") ? body.split("::") : [body, undefined];
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const missing = 8 - tail.length - left.length - right.length;
  if (rest === undefined ? missing !== 0 : missing < 1) return undefined;
  let value = 0n;
  for (const g of [...left, ...Array(rest === undefined ? 0 : missing).fill("0"), ...right]) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  for (const g of tail) value = (value << 16n) | g;
  return value;
}

/** Parses `addr/prefix` (IPv4 or IPv6, host bits kept); `undefined` when it is not one. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  if (slash < 0 || !/^\d{1,3}$/.test(text.slice(slash + 1))) return undefined;
  const prefix = Number(text.slice(slash + 1));
  const ip = text.slice(0, slash);
  const v4 = parseIpv4Number(ip);
  if (v4 !== undefined) return prefix <= 32 ? { family: 4, addr: v4, prefix } : undefined;
  const v6 = parseIpv6(ip);
  if (v6 !== undefined) return prefix <= 128 ? { family: 6, addr: v6, prefix } : undefined;
  return undefined;
}

/** The network of `c`: its host bits cleared. */
export function networkOf(c: Cidr): Cidr {
  const bits = c.family === 4 ? 32 : 128;
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - c.prefix)) - 1n);
  return { ...c, addr: c.addr & mask };
}

function formatIp(family: 4 | 6, addr: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn)).join(".");
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((s) => Number((addr >> s) & 0xffffn));
  // RFC 5952: the longest run of two or more zero groups becomes "::" (the first one on a tie).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = Math.max(i, j);
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** `addr/prefix` in the canonical text form (RFC 5952 for IPv6). */
export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.addr)}/${c.prefix}`;
}

/** True when `inner` lies inside `outer` (same family, no shorter prefix). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.prefix <= inner.prefix &&
    networkOf({ ...inner, prefix: outer.prefix }).addr === networkOf(outer).addr;
}
