/**
 * Topology and probes for the underlay plugin tests (galaxy-k8s-vlan, galaxy-underlay-veth): an uplink `u0`
 * in the lab's node namespace, a veth whose other end `u1` sits in a "net" namespace that plays the underlay
 * network and its gateway; and a probe that says whether this kernel can make a link type at all (some have
 * no 8021q, ipvlan or dummy modules), tried inside the lab, never in the host namespace.
 * @module
 */
import type { Lab, Netns } from "./netns.ts";

/** The underlay a test gets from {@linkcode underlayNet}. */
export interface Underlay {
  /** The namespace playing the network: `u1`, carrying the gateway address. */
  net: Netns;
  /** The uplink's name in the node namespace. */
  uplink: string;
  /** The node's address on the uplink (CIDR). */
  nodeCidr: string;
  /** The gateway's address (bare), in `net`. */
  gateway: string;
}

/** Options for {@linkcode underlayNet}. */
export interface UnderlayOptions {
  /** The first three octets of the /24, e.g. `198.18.70`. */
  subnet: string;
  /** Also add a static route `<subnet+1>.0/24 dev u0` and a default route via the gateway on the node. */
  routes?: boolean;
  /** Enable forwarding in the node (routed pods: pure mode, underlay-veth). */
  forwarding?: boolean;
}

/**
 * Makes the underlay: `u0` (node, `<subnet>.2/24`, up) ↔ `u1` (net, `<subnet>.1/24`, up, arp_accept 1 so that
 * gratuitous ARP is learnt), optionally with node routes and forwarding.
 */
export async function underlayNet(lab: Lab, options: UnderlayOptions): Promise<Underlay> {
  const net = await lab.pod("net");
  const { subnet } = options;
  await lab.ip(lab.node, ["link", "add", "u0", "type", "veth", "peer", "name", "u1", "netns", net.name]);
  await lab.ip(lab.node, ["addr", "add", `${subnet}.2/24`, "dev", "u0"]);
  await lab.ip(lab.node, ["link", "set", "u0", "up"]);
  await lab.ip(net, ["addr", "add", `${subnet}.1/24`, "dev", "u1"]);
  await lab.ip(net, ["link", "set", "u1", "up"]);
  await lab.exec(net, "sh", ["-c", "echo 1 > /proc/sys/net/ipv4/conf/u1/arp_accept"]);
  if (options.routes) {
    const [a, b, c] = subnet.split(".").map(Number);
    await lab.ip(lab.node, ["route", "add", `${a}.${b}.${c + 1}.0/24`, "dev", "u0"]);
    await lab.ip(lab.node, ["route", "add", "default", "via", `${subnet}.1`, "dev", "u0"]);
  }
  if (options.forwarding) {
    await lab.exec(lab.node, "sh", ["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
  }
  return { net, uplink: "u0", nodeCidr: `${subnet}.2/24`, gateway: `${subnet}.1` };
}

/**
 * Why this kernel cannot make `kind` links (`vlan`, `ipvlan`, `macvlan`, `dummy`), or `undefined` when it
 * can. The attempt runs inside the lab's node namespace on a throwaway veth, which is removed again.
 */
export async function linkTypeMissing(lab: Lab, kind: "vlan" | "ipvlan" | "macvlan" | "dummy"): Promise<
  string | undefined
> {
  const spec: Record<typeof kind, string[]> = {
    vlan: ["link", "gt-probe0", "name", "gt-probe-x", "type", "vlan", "id", "7"],
    ipvlan: ["link", "gt-probe0", "name", "gt-probe-x", "type", "ipvlan", "mode", "l2"],
    macvlan: ["link", "gt-probe0", "name", "gt-probe-x", "type", "macvlan", "mode", "bridge"],
    dummy: ["name", "gt-probe-x", "type", "dummy"],
  };
  await lab.ip(lab.node, ["link", "add", "gt-probe0", "type", "veth", "peer", "name", "gt-probe1"]);
  try {
    const r = await lab.tryExec(lab.node, "ip", ["link", "add", ...spec[kind]]);
    if (r.code === 0) return undefined;
    return `this kernel cannot create ${kind} links (ip: ${r.stderr.trim()})`;
  } finally {
    await lab.tryExec(lab.node, "ip", ["link", "del", "gt-probe-x"]);
    await lab.tryExec(lab.node, "ip", ["link", "del", "gt-probe0"]);
  }
}

/** Says that the kernel part of a test was skipped, and why (the test then checked the batch text). */
export function skippedKernelPart(reason: string): void {
  console.log(`skipped kernel part: ${reason}`);
}

/** A sysctl of a namespace (a /proc/sys path relative to /proc/sys/net/ipv4), trimmed. */
export async function ipv4Sysctl(lab: Lab, ns: Netns, key: string): Promise<string> {
  return (await lab.exec(ns, "cat", [`/proc/sys/net/ipv4/${key}`])).trim();
}

/** The neighbour entries of a device in a namespace: address → MAC. */
export async function neighbours(lab: Lab, ns: Netns, dev: string): Promise<Record<string, string>> {
  const list = await lab.ipJson<{ dst: string; lladdr?: string }[]>(ns, ["neigh", "show", "dev", dev]);
  return Object.fromEntries(list.filter((n) => n.lladdr).map((n) => [n.dst, n.lladdr!]));
}

/**
 * The neighbour entries of `addresses` on a device once all of them are there (gratuitous ARP is sent in the
 * background, so it may land a moment after ADD returned), or what there is after `timeoutMs` (default 3 s).
 */
export async function learntNeighbours(
  lab: Lab,
  ns: Netns,
  options: { dev: string; addresses: string[]; timeoutMs?: number },
): Promise<Record<string, string>> {
  const deadline = Date.now() + (options.timeoutMs ?? 3000);
  for (;;) {
    const all = await neighbours(lab, ns, options.dev);
    const wanted = Object.fromEntries(options.addresses.filter((a) => all[a]).map((a) => [a, all[a]]));
    if (Object.keys(wanted).length === options.addresses.length || Date.now() > deadline) return wanted;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
