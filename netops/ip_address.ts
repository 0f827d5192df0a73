/**
 * IP address syntax checks with `node:net`'s meaning, without loading `node:net`: plugins start once per pod,
 * and Deno's Node compatibility layer costs ~15 ms to initialise.
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
