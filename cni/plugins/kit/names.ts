/**
 * The names Galaxy's plugins give node-side interfaces (galaxy-behaviour.md §3.0): `v-h`/`v-s` + the first 9
 * characters of the container ID, `eni` + a digest of the pod's name; and the MAC derived from an address.
 * Pure: nothing here touches the kernel.
 * @module
 */
import { IpArgumentError, validateIfName } from "../../../netops/ip.ts";
import { isIPv4 } from "../../../netops/ip_address.ts";

/** The first 9 characters of a container ID, or the whole ID when it is shorter (Galaxy panicked there). */
export function cid9(containerId: string): string {
  return containerId.slice(0, 9);
}

/** Options for the veth names. */
export interface NameOptions {
  /** `""` for galaxy-veth, `-l<i>` for k8s-vlan, `-u<i>` for underlay-veth. */
  suffix?: string;
}

/** The host end of a pod's veth, `v-h<cid9><suffix>`; throws `IfNameError` when over 15 characters. */
export function hostVethName(containerId: string, options: NameOptions = {}): string {
  return validateIfName(`v-h${cid9(containerId)}${options.suffix ?? ""}`);
}

/** The temporary name of the pod end until it is renamed, `v-s<cid9><suffix>`; validated like the host end. */
export function tempPeerName(containerId: string, options: NameOptions = {}): string {
  return validateIfName(`v-s${cid9(containerId)}${options.suffix ?? ""}`);
}

/** tke-route-eni's host veth: `eni` + the first 11 hex digits of SHA-1(`<namespace>.<pod>`). */
export async function eniVethName(namespace: string, podName: string): Promise<string> {
  // Web Crypto rather than node:crypto, whose Node compatibility layer costs ~15 ms per plugin start.
  const bytes = new Uint8Array(
    await crypto.subtle.digest("SHA-1", new TextEncoder().encode(`${namespace}.${podName}`)),
  );
  const digest = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return validateIfName(`eni${digest.slice(0, 11)}`);
}

/** The MAC Galaxy derives from an IPv4 address: `02:42:a:b:c:d`, each octet as two hex digits. */
export function macFromIp(ip: string): string {
  if (!isIPv4(ip)) throw new IpArgumentError(`MAC from IP needs an IPv4 address, got ${JSON.stringify(ip)}`);
  return ["02", "42", ...ip.split(".").map((o) => Number(o).toString(16).padStart(2, "0"))].join(":");
}
