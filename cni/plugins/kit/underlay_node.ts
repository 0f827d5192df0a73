/**
 * The node-wide half of galaxy-k8s-vlan and galaxy-underlay-veth (galaxy-behaviour.md §3.3, §3.4): the
 * default bridge that takes over the uplink's addresses and routes, VLAN devices and their bridges (get or
 * create), and the pre-made VLAN masters of underlay-veth. galaxy-k8s-vlan does this work under a node-wide
 * flock (`withFileLock`), one plugin process at a time.
 *
 * Each object is planned by a pure function from what the kernel shows ({@linkcode planDefaultBridge},
 * {@linkcode planVlanBridge}), turned into `ip -batch` lines by pure functions ({@linkcode defaultBridgeOps},
 * {@linkcode vlanSetupOps}) and undone by their mirror images ({@linkcode defaultBridgeRollbackOps},
 * {@linkcode vlanRollbackOps}); tests check that text where the kernel lacks a link type. Re-exported by
 * underlay.ts, which is what the plugins import.
 *
 * Its length: the node's default bridge and its VLAN bridges are one concept (plan, batch, rollback, each
 * kept pure and testable apart from the one kernel step), and splitting the planners from their rollbacks would
 * separate what must change together.
 * @module
 */
import {
  type Addr,
  addrDel,
  addrReplace,
  IpBatchError,
  type IpOp,
  type Link,
  linkAddBridge,
  linkAddVlan,
  linkDel,
  linkSet,
  listAddrs,
  listLinks,
  listRoutes,
  type Route,
  routeDel,
  routeReplace,
  type RouteSpec,
  runBatch,
  type Scope,
  validateIfName,
} from "../../../netops/ip.ts";
import { CniError, ErrorCode } from "../../version.ts";
import { kernelError, logLine } from "./errors.ts";

function isDefault(dst: string): boolean {
  return dst === "0.0.0.0/0" || dst === "default";
}

/** What the kernel shows, for {@linkcode planDefaultBridge}. */
export interface DefaultBridgeState {
  /** The uplink. */
  uplink: Link;
  /** Every link of the node (to find the bridge and check names). */
  links: readonly Link[];
  /** The uplink's addresses. */
  addrs: readonly Addr[];
  /** The node's IPv4 routes of every table (`ip route show table all`). */
  routes: readonly Route[];
}

/** The moves that make `bridge` the owner of the uplink's addresses and routes. */
export interface DefaultBridgePlan {
  /** The uplink. */
  uplink: string;
  /** The default bridge. */
  bridge: string;
  /** The bridge does not exist yet. */
  createBridge: boolean;
  /** MAC for a new bridge: the uplink's. */
  bridgeMac?: string;
  /** The uplink's IPv4 addresses (CIDR), primary first, to move. */
  addresses: string[];
  /**
   * The uplink's routes (dev left out), link-scope first, to move; kernel prefix routes move by themselves.
   */
  routes: Omit<RouteSpec, "dev">[];
  /** The uplink is not a port of the bridge yet. */
  enslave: boolean;
}

function tableOf(table: string): number | string | undefined {
  if (table === "main" || table === "all" || table === "254") return undefined;
  return /^\d+$/.test(table) ? Number(table) : table;
}

/** A route as `ip -j route` showed it, turned into what re-adds it on another device. */
export function movableRoute(route: Route): Omit<RouteSpec, "dev"> {
  const spec: Omit<RouteSpec, "dev"> = { dst: isDefault(route.dst) ? "default" : route.dst };
  if (route.gateway) spec.gw = route.gateway;
  if (route.scope && route.scope !== "global" && route.scope !== "universe") {
    spec.scope = route.scope as Scope;
  }
  if (route.prefsrc) spec.src = route.prefsrc;
  if (route.metric !== undefined) spec.metric = route.metric;
  if (route.flags.includes("onlink")) spec.onlink = true;
  const table = tableOf(route.table);
  if (table !== undefined) spec.table = table;
  return spec;
}

function scopeRank(r: { scope?: Scope }): number {
  return r.scope === "host" ? 0 : r.scope === "link" ? 1 : 2;
}

/**
 * Plans the default bridge (bridge mode with an address on VLAN 0): the bridge must be a bridge when it
 * exists, and the uplink must not be a port of another master. The uplink's IPv4 addresses (loopback ones
 * aside) and its unicast routes of every table but `local` (kernel prefix routes aside: the kernel makes them
 * again with the addresses) move to the bridge, and the uplink becomes its port. Nothing to do when the
 * addresses were already moved and the uplink is already a port.
 */
export function planDefaultBridge(state: DefaultBridgeState, options: { bridge: string }): DefaultBridgePlan {
  const { uplink } = state;
  const bridge = validateIfName(options.bridge);
  const existing = state.links.find((l) => l.name === bridge);
  if (existing && existing.kind !== "bridge") {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `default bridge ${bridge} exists and is a ${existing.kind ?? "plain device"}, not a bridge`,
    );
  }
  if (uplink.name === bridge) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `the uplink ${bridge} cannot be its own default bridge`,
    );
  }
  if (uplink.master && uplink.master !== bridge) {
    throw new CniError(
      ErrorCode.PluginFailure,
      `uplink ${uplink.name} is already a port of ${uplink.master}, not of the default bridge ${bridge}`,
    );
  }
  const addresses = state.addrs
    .filter((a) => a.family === 4 && a.dev === uplink.name && !a.local.startsWith("127."))
    .map((a) => a.cidr);
  const routes = state.routes
    .filter((r) =>
      r.dev === uplink.name && r.table !== "local" && (r.type === undefined || r.type === "unicast") &&
      r.protocol !== "kernel"
    )
    .map(movableRoute)
    .map((r, i) => ({ r, i }))
    .sort((a, b) => scopeRank(a.r) - scopeRank(b.r) || a.i - b.i)
    .map(({ r }) => r);
  const plan: DefaultBridgePlan = {
    uplink: uplink.name,
    bridge,
    createBridge: !existing,
    addresses,
    routes,
    enslave: uplink.master !== bridge,
  };
  if (!existing && uplink.address) plan.bridgeMac = uplink.address;
  return plan;
}

/** True when the plan changes nothing (the addresses were moved by an earlier ADD). */
export function isNoop(plan: DefaultBridgePlan): boolean {
  return !plan.createBridge && !plan.enslave && plan.addresses.length === 0 && plan.routes.length === 0;
}

/**
 * The node batch of a default-bridge plan: create the bridge (the uplink's MAC) and set it up; delete the
 * addresses from the uplink (secondaries first, so none is dropped with its primary) and add them to the
 * bridge; make the uplink a port; re-add the routes through the bridge.
 */
export function defaultBridgeOps(plan: DefaultBridgePlan): IpOp[] {
  const { uplink, bridge } = plan;
  const ops: IpOp[] = [];
  if (plan.createBridge) ops.push(linkAddBridge(bridge));
  ops.push(linkSet(bridge, { address: plan.createBridge ? plan.bridgeMac : undefined, up: true }));
  for (const a of [...plan.addresses].reverse()) ops.push(addrDel(a, uplink));
  for (const a of plan.addresses) ops.push(addrReplace(a, bridge));
  if (plan.enslave) ops.push(linkSet(uplink, { master: bridge }));
  for (const r of plan.routes) ops.push(routeReplace({ ...r, dev: bridge }));
  return ops;
}

/**
 * The mirror image of {@linkcode defaultBridgeOps}, run with `ip -force` so that every line is tried: routes
 * off the bridge, the uplink released from it (Galaxy forgot this), the addresses back on the uplink, the
 * routes back through it, and the bridge deleted when the plan created it.
 */
export function defaultBridgeRollbackOps(plan: DefaultBridgePlan): IpOp[] {
  const { uplink, bridge } = plan;
  const ops: IpOp[] = [];
  for (const r of [...plan.routes].reverse()) ops.push(routeDel({ ...r, dev: bridge }));
  if (plan.enslave) ops.push(linkSet(uplink, { master: null }));
  for (const a of [...plan.addresses].reverse()) ops.push(addrDel(a, bridge));
  for (const a of plan.addresses) ops.push(addrReplace(a, uplink));
  for (const r of plan.routes) ops.push(routeReplace({ ...r, dev: uplink }));
  if (plan.createBridge) ops.push(linkDel(bridge));
  return ops;
}

/**
 * Runs a rollback batch with `-force`; lines that fail (often steps that never ran) are logged, not thrown.
 */
export async function runRollback(
  ops: readonly IpOp[],
  options: { plugin: string; what: string },
): Promise<void> {
  try {
    await runBatch(null, ops, { force: true });
  } catch (err) {
    const lines = err instanceof IpBatchError
      ? err.failures.map((f) => `"${f.command}": ${f.message}`).join("; ")
      : (err as Error).message;
    logLine(
      options.plugin,
      `rollback of ${options.what}: some lines failed (steps that never ran fail too): ${lines}`,
    );
  }
}

/**
 * Sets up the default bridge on the node (call it under the node lock): reads the uplink, its
 * addresses and the routes, plans, runs one batch, and on failure runs the rollback before throwing. Returns
 * the plan, whose rollback the caller registers while later node steps may still fail.
 */
export async function setupDefaultBridge(
  uplink: string,
  options: { bridge: string; plugin: string },
): Promise<DefaultBridgePlan> {
  const { plugin } = options;
  let plan: DefaultBridgePlan;
  try {
    const [links, addrs, routes] = await Promise.all([
      listLinks(null),
      listAddrs(null, { dev: uplink, family: 4 }),
      listRoutes(null, { table: "all", family: 4 }),
    ]);
    const link = links.find((l) => l.name === uplink);
    if (!link) throw new CniError(ErrorCode.PluginFailure, `uplink ${uplink} vanished`);
    plan = planDefaultBridge({ uplink: link, links, addrs, routes }, { bridge: options.bridge });
  } catch (err) {
    throw kernelError(err, `${plugin}: failed to set up bridge ${options.bridge}`);
  }
  if (isNoop(plan)) return plan;
  try {
    await runBatch(null, defaultBridgeOps(plan));
  } catch (err) {
    await runRollback(defaultBridgeRollbackOps(plan), { plugin, what: `default bridge ${plan.bridge}` });
    throw kernelError(err, `${plugin}: failed to set up bridge ${plan.bridge} on ${uplink} (rolled back)`);
  }
  logLine(
    plugin,
    `default bridge ${plan.bridge}: took ${
      plan.addresses.join(", ") || "no addresses"
    } and ${plan.routes.length} ` +
      `route(s) from ${uplink}${plan.enslave ? `, which is now its port` : ""}`,
  );
  return plan;
}

/** Options for {@linkcode planVlanBridge}. */
export interface VlanBridgeOptions {
  /** The VLAN ID (1–4094). */
  vlanId: number;
  /** The device VLAN devices hang off. */
  parent: string;
  /** `vlan_name_prefix`: a new VLAN device is `<prefix><id>`. */
  vlanPrefix: string;
  /** `bridge_name_prefix`; absent when no bridge is wanted (macvlan/ipvlan modes). */
  bridgePrefix?: string;
  /** MTU of a new VLAN device. */
  mtu?: number;
  /** MAC of a new bridge (a random `02:42:...` when absent). */
  bridgeMac?: string;
}

/** How a VLAN becomes usable: its device and, in bridge and pure modes, its bridge. */
export interface VlanBridgePlan {
  /** The VLAN ID. */
  vlanId: number;
  /** The parent device. */
  parent: string;
  /** The VLAN device (found under any name, else `<prefix><id>`). */
  device: string;
  /** The VLAN device must be created. */
  createDevice: boolean;
  /** MTU of a created VLAN device. */
  mtu?: number;
  /** The bridge (the VLAN device's present master, else `<prefix><id>`); absent without one. */
  bridge?: string;
  /** The bridge must be created. */
  createBridge: boolean;
  /** MAC of a created bridge. */
  bridgeMac?: string;
  /** The VLAN device must be made a port of the bridge. */
  enslave: boolean;
}

/** A random locally administered MAC in Galaxy's `02:42:xx:xx:xx:xx` range. */
export function randomMac(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return ["02", "42", ...[...bytes].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

/**
 * Plans a VLAN: an existing VLAN device with this ID on `parent` is used whatever its name; else
 * `<vlanPrefix><id>` is created (a link of that name that is something else is refused). With a bridge
 * prefix, the device's bridge is its present master (which must be a bridge), else `<bridgePrefix><id>`
 * (created when missing, refused when it is not a bridge).
 */
export function planVlanBridge(links: readonly Link[], options: VlanBridgeOptions): VlanBridgePlan {
  const { vlanId, parent } = options;
  if (!Number.isInteger(vlanId) || vlanId < 1 || vlanId > 4094) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `VLAN ID ${vlanId} is not in 1–4094`);
  }
  const device = links.find((l) => l.kind === "vlan" && l.vlanId === vlanId && l.parent === parent);
  const plan: VlanBridgePlan = {
    vlanId,
    parent,
    device: device?.name ?? validateIfName(`${options.vlanPrefix}${vlanId}`),
    createDevice: !device,
    createBridge: false,
    enslave: false,
  };
  if (!device) {
    const clash = links.find((l) => l.name === plan.device);
    if (clash) {
      const what = clash.kind === "vlan"
        ? `VLAN ${clash.vlanId} on ${clash.parent ?? "another device"}`
        : `a ${clash.kind ?? "plain device"}`;
      throw new CniError(
        ErrorCode.PluginFailure,
        `${plan.device} exists and is ${what}, not VLAN ${vlanId} on ${parent}; not touching it`,
      );
    }
    if (options.mtu !== undefined) plan.mtu = options.mtu;
  }
  if (options.bridgePrefix === undefined) return plan;
  if (device?.master) {
    const master = links.find((l) => l.name === device.master);
    if (master?.kind !== "bridge") {
      throw new CniError(
        ErrorCode.PluginFailure,
        `VLAN device ${device.name} is a port of ${device.master}, which is not a bridge`,
      );
    }
    plan.bridge = master.name;
    return plan;
  }
  plan.bridge = validateIfName(`${options.bridgePrefix}${vlanId}`);
  const bridge = links.find((l) => l.name === plan.bridge);
  if (bridge && bridge.kind !== "bridge") {
    throw new CniError(
      ErrorCode.PluginFailure,
      `${plan.bridge} exists and is a ${bridge.kind ?? "plain device"}, not a bridge; not touching it`,
    );
  }
  plan.createBridge = !bridge;
  if (!bridge) plan.bridgeMac = options.bridgeMac ?? randomMac();
  plan.enslave = true;
  return plan;
}

/**
 * The node batch of a VLAN plan: create the VLAN device (802.1Q on the parent) and set it up (Galaxy left a
 * found one down), create the bridge with its MAC and set it up, make the VLAN device its port.
 */
export function vlanSetupOps(plan: VlanBridgePlan): IpOp[] {
  const ops: IpOp[] = [];
  if (plan.createDevice) ops.push(linkAddVlan(plan.device, plan.parent, { id: plan.vlanId, mtu: plan.mtu }));
  ops.push(linkSet(plan.device, { up: true }));
  if (plan.bridge) {
    if (plan.createBridge) ops.push(linkAddBridge(plan.bridge));
    ops.push(linkSet(plan.bridge, { address: plan.createBridge ? plan.bridgeMac : undefined, up: true }));
    if (plan.enslave) ops.push(linkSet(plan.device, { master: plan.bridge }));
  }
  return ops;
}

/**
 * The mirror image of {@linkcode vlanSetupOps} (run with `-force`): release the port, delete what was
 * created.
 */
export function vlanRollbackOps(plan: VlanBridgePlan): IpOp[] {
  const ops: IpOp[] = [];
  if (plan.bridge && plan.enslave) ops.push(linkSet(plan.device, { master: null }));
  if (plan.bridge && plan.createBridge) ops.push(linkDel(plan.bridge));
  if (plan.createDevice) ops.push(linkDel(plan.device));
  return ops;
}

/**
 * Gets or creates a VLAN device and (with a bridge prefix) its bridge on the node (call it under
 * the node lock); a failed batch is rolled back before the error is thrown. Returns the plan.
 */
export async function ensureVlanBridge(
  options: Omit<VlanBridgeOptions, "bridgeMac"> & { plugin: string },
): Promise<VlanBridgePlan> {
  const { plugin } = options;
  let plan: VlanBridgePlan;
  try {
    plan = planVlanBridge(await listLinks(null), options);
  } catch (err) {
    throw kernelError(err, `${plugin}: VLAN ${options.vlanId}`);
  }
  try {
    await runBatch(null, vlanSetupOps(plan));
  } catch (err) {
    await runRollback(vlanRollbackOps(plan), { plugin, what: `VLAN ${plan.vlanId}` });
    throw kernelError(err, `${plugin}: VLAN ${plan.vlanId} on ${plan.parent}`);
  }
  return plan;
}

/**
 * The pre-made VLAN device galaxy-underlay-veth uses for `vlanId`: the one link of type vlan with that ID on
 * `parent` (any parent when none is given; Galaxy always ignored it). None or several is a CniError.
 */
export function findVlanMaster(links: readonly Link[], options: { vlanId: number; parent?: string }): Link {
  const { vlanId, parent } = options;
  const found = links.filter((l) =>
    l.kind === "vlan" && l.vlanId === vlanId && (parent === undefined || l.parent === parent)
  );
  const where = parent === undefined ? "" : ` on ${parent}`;
  if (found.length === 1) return found[0];
  if (found.length === 0) {
    throw new CniError(
      ErrorCode.PluginFailure,
      `no VLAN device with ID ${vlanId}${where} in the node's network namespace (create it first)`,
    );
  }
  throw new CniError(
    ErrorCode.PluginFailure,
    `several VLAN devices with ID ${vlanId}${where}: ${found.map((l) => l.name).join(", ")}`,
  );
}

/** The first IPv4 address of a node device that is not a loopback one (the source of host routes). */
export async function firstNodeIpv4(dev: string): Promise<string | undefined> {
  const addrs = await listAddrs(null, { dev, family: 4 });
  return addrs.find((a) => !a.local.startsWith("127.") && a.scope !== "host")?.local;
}
