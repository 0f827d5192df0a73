/**
 * Reading a plugin's own or previous result: which interface is whose, its MAC, its first IPv4 address.
 * @module
 */
import { isIPv4 } from "../../../netops/ip_address.ts";
import type { Result, ResultInterface } from "../../version.ts";

/** The first IPv4 address of a result: the bare address and its CIDR as given. */
export function firstIpv4(result: Result): { ip: string; cidr: string } | undefined {
  for (const entry of result.ips ?? []) {
    const ip = entry.address.split("/")[0];
    if (isIPv4(ip)) return { ip, cidr: entry.address };
  }
  return undefined;
}

/** The index of interface `name` in a result, optionally only one in `sandbox`; -1 when absent. */
export function interfaceIndex(
  result: Result | undefined,
  name: string,
  options: { sandbox?: string } = {},
): number {
  return (result?.interfaces ?? []).findIndex((i: ResultInterface) =>
    i.name === name && (options.sandbox === undefined || i.sandbox === options.sandbox)
  );
}

/** The MAC `result` reports for interface `name`, if any. */
export function interfaceMac(result: Result | undefined, name: string): string | undefined {
  const index = interfaceIndex(result, name);
  return index >= 0 ? result?.interfaces?.[index].mac : undefined;
}

/**
 * The first IPv4 address (bare) that `result` gives to interface `ifname`: the one in sandbox `netns` when it
 * is given (CHECK), else the first interface of that name (DEL, whose CNI_NETNS may be empty).
 */
export function ipv4Of(
  result: Result | undefined,
  attachment: { ifname: string; netns?: string },
): string | undefined {
  const index = interfaceIndex(result, attachment.ifname, { sandbox: attachment.netns || undefined });
  if (index < 0) return undefined;
  for (const entry of result?.ips ?? []) {
    const ip = entry.address.split("/")[0];
    if (entry.interface === index && isIPv4(ip)) return ip;
  }
  return undefined;
}
