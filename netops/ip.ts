/**
 * iproute2 as batches: typed operations ({@linkcode IpOp}) that render to `ip -batch` lines
 * ({@linkcode batchText}, pure), one `ip -batch` process per namespace per step ({@linkcode runBatch}),
 * and reads through `ip -j` parsed into small typed objects. Names longer than 15 bytes are refused
 * ({@linkcode validateIfName}).
 *
 * A batch line is split on whitespace by `ip` (which also honours quotes, backslashes and `#` comments), so
 * every token is checked: none may be empty or contain whitespace, quotes, a backslash or `#`.
 *
 * Its length: one typed builder per `ip` operation and one typed reader per `ip -j` listing; a flat catalogue,
 * kept in one file so that every batch line is checked by the same token rules.
 * @module
 */
import { ifnameProblem } from "./ifname.ts";
import { isIP } from "./ip_address.ts";
import { runCommands } from "./netns.ts";

/** A bad argument to an operation (the batch is never sent). */
export class IpArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IpArgumentError";
  }
}

/** An interface name the kernel would refuse (more than 15 bytes, empty, or with a forbidden character). */
export class IfNameError extends IpArgumentError {
  /** The offending name. */
  readonly ifName: string;

  constructor(ifName: string, reason: string) {
    super(`interface name ${reason}`);
    this.name = "IfNameError";
    this.ifName = ifName;
  }
}

/**
 * Throws an {@linkcode IfNameError} unless `name` is a valid Linux interface name (the rule of
 * `ifname.ts`); returns it otherwise.
 */
export function validateIfName(name: string): string {
  const problem = ifnameProblem(name);
  if (problem) throw new IfNameError(String(name), problem);
  return name;
}

/** One `ip -batch` line, as tokens. Build it with the functions of this module. */
export interface IpOp {
  /** The tokens of the line, without the leading `ip`. */
  readonly args: readonly string[];
}

function token(value: string, what: string): string {
  if (typeof value !== "string" || value.length === 0) throw new IpArgumentError(`${what} is empty`);
  if (/[\s"'\\#]/.test(value)) {
    throw new IpArgumentError(`${what} ${JSON.stringify(value)} contains whitespace, a quote, '\\' or '#'`);
  }
  return value;
}

function op(...args: string[]): IpOp {
  return Object.freeze({ args: Object.freeze(args) });
}

function ipAddr(value: string, what: string): string {
  if (isIP(token(value, what)) === 0) {
    throw new IpArgumentError(`${what} ${JSON.stringify(value)} is not an IP address`);
  }
  return value;
}

function cidr(value: string, what: string): string {
  const [addr, prefix, ...rest] = token(value, what).split("/");
  const family = isIP(addr);
  const max = family === 4 ? 32 : 128;
  if (
    family === 0 || rest.length > 0 || prefix === undefined || !/^\d{1,3}$/.test(prefix) ||
    Number(prefix) > max
  ) {
    throw new IpArgumentError(
      `${what} ${JSON.stringify(value)} is not an address with a prefix length (a.b.c.d/n)`,
    );
  }
  return value;
}

/** A route destination: `default`, an address, or an address with a prefix length. */
function destination(value: string): string {
  if (value === "default") return value;
  return value.includes("/") ? cidr(value, "route destination") : ipAddr(value, "route destination");
}

function uint(value: number, what: string, min = 0, max = 0xffffffff): string {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new IpArgumentError(`${what} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return String(value);
}

function mac(value: string, what = "MAC address"): string {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(token(value, what))) {
    throw new IpArgumentError(`${what} ${JSON.stringify(value)} is not of the form aa:bb:cc:dd:ee:ff`);
  }
  return value.toLowerCase();
}

function table(value: number | string): string {
  if (typeof value === "number") return uint(value, "table", 1);
  if (!/^[a-z][a-z0-9_-]*$/i.test(value)) {
    throw new IpArgumentError(`table ${JSON.stringify(value)} is not a number or name`);
  }
  return value;
}

function path(value: string, what: string): string {
  if (!token(value, what).startsWith("/")) {
    throw new IpArgumentError(`${what} ${JSON.stringify(value)} is not an absolute path`);
  }
  return value;
}

/** Route and address scopes `ip` understands. */
export type Scope = "global" | "universe" | "site" | "link" | "host" | "nowhere";
const SCOPES: readonly string[] = ["global", "universe", "site", "link", "host", "nowhere"];

function scope(value: Scope): string {
  if (!SCOPES.includes(value)) {
    throw new IpArgumentError(`scope ${JSON.stringify(value)} is not one of ${SCOPES.join(", ")}`);
  }
  return value;
}

function mtuArgs(mtu: number | undefined): string[] {
  return mtu === undefined ? [] : ["mtu", uint(mtu, "mtu", 68, 65535)];
}

/** Options for {@linkcode linkAddVeth}. */
export interface VethOptions {
  /** Create the peer directly inside this namespace (a path: `/proc/<pid>/ns/net`, `/var/run/netns/x`). */
  peerNetns?: string;
  /** MTU of both ends. */
  mtu?: number;
  /** Transmit queue length of both ends (Galaxy uses 0). */
  txqueuelen?: number;
}

/** `link add name <name> ... type veth peer name <peer> ... [netns <path>]`. */
export function linkAddVeth(name: string, peer: string, options: VethOptions = {}): IpOp {
  const common = [
    ...mtuArgs(options.mtu),
    ...(options.txqueuelen === undefined ? [] : ["txqueuelen", uint(options.txqueuelen, "txqueuelen")]),
  ];
  const netns = options.peerNetns === undefined ? [] : ["netns", path(options.peerNetns, "peer netns")];
  return op(
    "link",
    "add",
    "name",
    validateIfName(name),
    ...common,
    "type",
    "veth",
    "peer",
    "name",
    validateIfName(peer),
    ...common,
    ...netns,
  );
}

/** Options for {@linkcode linkAddVlan}. */
export interface VlanOptions {
  /** The 802.1Q id (0–4094). */
  id: number;
  /** MTU. */
  mtu?: number;
}

/** `link add link <parent> name <name> [mtu N] type vlan id <id>`. */
export function linkAddVlan(name: string, parent: string, options: VlanOptions): IpOp {
  return op(
    "link",
    "add",
    "link",
    validateIfName(parent),
    "name",
    validateIfName(name),
    ...mtuArgs(options.mtu),
    "type",
    "vlan",
    "id",
    uint(options.id, "vlan id", 0, 4094),
  );
}

/** Macvlan modes. */
export type MacvlanMode = "private" | "vepa" | "bridge" | "passthru" | "source";

/** `link add link <parent> name <name> [mtu N] type <kind> mode <mode>`, the mode checked against `modes`. */
function linkAddSlave(
  kind: "macvlan" | "ipvlan",
  modes: readonly string[],
  link: { name: string; parent: string; mode: string; mtu?: number },
): IpOp {
  if (!modes.includes(link.mode)) {
    throw new IpArgumentError(`${kind} mode ${JSON.stringify(link.mode)} is not valid`);
  }
  return op(
    "link",
    "add",
    "link",
    validateIfName(link.parent),
    "name",
    validateIfName(link.name),
    ...mtuArgs(link.mtu),
    "type",
    kind,
    "mode",
    link.mode,
  );
}

/** `link add link <parent> name <name> [mtu N] type macvlan mode <mode>` (mode defaults to bridge, as Galaxy). */
export function linkAddMacvlan(
  name: string,
  parent: string,
  options: { mode?: MacvlanMode; mtu?: number } = {},
): IpOp {
  const modes = ["private", "vepa", "bridge", "passthru", "source"];
  return linkAddSlave("macvlan", modes, { name, parent, mode: options.mode ?? "bridge", mtu: options.mtu });
}

/** Ipvlan modes. */
export type IpvlanMode = "l2" | "l3" | "l3s";

/** `link add link <parent> name <name> [mtu N] type ipvlan mode <mode>` (mode defaults to l3, the kernel's). */
export function linkAddIpvlan(
  name: string,
  parent: string,
  options: { mode?: IpvlanMode; mtu?: number } = {},
): IpOp {
  return linkAddSlave("ipvlan", ["l2", "l3", "l3s"], {
    name,
    parent,
    mode: options.mode ?? "l3",
    mtu: options.mtu,
  });
}

/** `link add name <name> [mtu N] type bridge`. */
export function linkAddBridge(name: string, options: { mtu?: number } = {}): IpOp {
  return op("link", "add", "name", validateIfName(name), ...mtuArgs(options.mtu), "type", "bridge");
}

/** `link add name <name> [mtu N] type dummy`. */
export function linkAddDummy(name: string, options: { mtu?: number } = {}): IpOp {
  return op("link", "add", "name", validateIfName(name), ...mtuArgs(options.mtu), "type", "dummy");
}

/** What {@linkcode linkSet} changes; all of it goes into one netlink request. */
export interface LinkSetOptions {
  /** `up` (true) or `down` (false). */
  up?: boolean;
  /** Move the link into this namespace (a path). */
  netns?: string;
  /** Rename the link. */
  name?: string;
  /** MTU. */
  mtu?: number;
  /** MAC address. */
  address?: string;
  /** Enslave to this bridge or bond; `null` releases it (`nomaster`). */
  master?: string | null;
  /** Transmit queue length. */
  txqueuelen?: number;
}

/** `link set dev <name> [netns P] [name N] [address M] [mtu N] [txqueuelen N] [master B|nomaster] [up|down]`. */
export function linkSet(name: string, options: LinkSetOptions): IpOp {
  const args = ["link", "set", "dev", validateIfName(name)];
  if (options.netns !== undefined) args.push("netns", path(options.netns, "netns"));
  if (options.name !== undefined) args.push("name", validateIfName(options.name));
  if (options.address !== undefined) args.push("address", mac(options.address));
  args.push(...mtuArgs(options.mtu));
  if (options.txqueuelen !== undefined) args.push("txqueuelen", uint(options.txqueuelen, "txqueuelen"));
  if (options.master === null) args.push("nomaster");
  else if (options.master !== undefined) args.push("master", validateIfName(options.master));
  if (options.up !== undefined) args.push(options.up ? "up" : "down");
  if (args.length === 4) throw new IpArgumentError(`link set ${name}: nothing to change`);
  return op(...args);
}

/** `link del dev <name>`. */
export function linkDel(name: string): IpOp {
  return op("link", "del", "dev", validateIfName(name));
}

/** Options for {@linkcode addrAdd}. */
export interface AddrOptions {
  /** Address scope. */
  scope?: Scope;
  /** Do not add the prefix route. */
  noprefixroute?: boolean;
}

function addrOp(verb: string, address: string, dev: string, options: AddrOptions): IpOp {
  const args = ["addr", verb, cidr(address, "address"), "dev", validateIfName(dev)];
  if (options.scope !== undefined) args.push("scope", scope(options.scope));
  if (options.noprefixroute) args.push("noprefixroute");
  return op(...args);
}

/** `addr add <cidr> dev <dev> [scope S] [noprefixroute]`. */
export function addrAdd(address: string, dev: string, options: AddrOptions = {}): IpOp {
  return addrOp("add", address, dev, options);
}

/** `addr replace <cidr> dev <dev> ...`: like {@linkcode addrAdd} but succeeds when it is already there. */
export function addrReplace(address: string, dev: string, options: AddrOptions = {}): IpOp {
  return addrOp("replace", address, dev, options);
}

/** `addr del <cidr> dev <dev>`. */
export function addrDel(address: string, dev: string): IpOp {
  return addrOp("del", address, dev, {});
}

/** A route for {@linkcode routeAdd}, {@linkcode routeReplace} and {@linkcode routeDel}. */
export interface RouteSpec {
  /** `default`, an address (a host route) or a CIDR. */
  dst: string;
  /** Next hop. */
  gw?: string;
  /** Output device. */
  dev?: string;
  /** Route scope. */
  scope?: Scope;
  /** Preferred source address. */
  src?: string;
  /** Routing table (number or name); the main table when absent. */
  table?: number | string;
  /** Treat the gateway as directly reachable on `dev`. */
  onlink?: boolean;
  /** Route metric (priority). */
  metric?: number;
}

function routeOp(verb: string, r: RouteSpec): IpOp {
  const args = ["route", verb, destination(r.dst)];
  if (r.gw !== undefined) args.push("via", ipAddr(r.gw, "gateway"));
  if (r.dev !== undefined) args.push("dev", validateIfName(r.dev));
  if (r.onlink) args.push("onlink");
  if (r.scope !== undefined) args.push("scope", scope(r.scope));
  if (r.src !== undefined) args.push("src", ipAddr(r.src, "route src"));
  if (r.metric !== undefined) args.push("metric", uint(r.metric, "metric"));
  if (r.table !== undefined) args.push("table", table(r.table));
  return op(...args);
}

/** `route add <dst> [via G] [dev D] [onlink] [scope S] [src A] [metric N] [table T]`. */
export function routeAdd(route: RouteSpec): IpOp {
  return routeOp("add", route);
}

/** `route replace ...`: adds the route or overwrites one with the same key. */
export function routeReplace(route: RouteSpec): IpOp {
  return routeOp("replace", route);
}

/** `route del ...`. */
export function routeDel(route: RouteSpec): IpOp {
  return routeOp("del", route);
}

/** A neighbour entry for {@linkcode neighAdd} and {@linkcode neighReplace}. */
export interface NeighSpec {
  /** The neighbour's IP address. */
  ip: string;
  /** Its MAC address. */
  lladdr: string;
  /** The device it is reached on. */
  dev: string;
  /** Entry state; `permanent` by default. */
  nud?: "permanent" | "reachable" | "stale" | "noarp";
}

function neighOp(verb: string, n: NeighSpec): IpOp {
  const nud = n.nud ?? "permanent";
  if (!["permanent", "reachable", "stale", "noarp"].includes(nud)) {
    throw new IpArgumentError(`nud ${JSON.stringify(nud)} is not valid`);
  }
  return op(
    "neigh",
    verb,
    ipAddr(n.ip, "neighbour address"),
    "lladdr",
    mac(n.lladdr, "lladdr"),
    "dev",
    validateIfName(n.dev),
    "nud",
    nud,
  );
}

/** `neigh add <ip> lladdr <mac> dev <dev> nud <state>`. */
export function neighAdd(neigh: NeighSpec): IpOp {
  return neighOp("add", neigh);
}

/** `neigh replace <ip> lladdr <mac> dev <dev> nud <state>`. */
export function neighReplace(neigh: NeighSpec): IpOp {
  return neighOp("replace", neigh);
}

/** `neigh del <ip> dev <dev>`. */
export function neighDel(neigh: { ip: string; dev: string }): IpOp {
  return op("neigh", "del", ipAddr(neigh.ip, "neighbour address"), "dev", validateIfName(neigh.dev));
}

/** A policy routing rule for {@linkcode ruleAdd} and {@linkcode ruleDel}. */
export interface RuleSpec {
  /** Source selector (address or CIDR). */
  from?: string;
  /** Destination selector (address or CIDR). */
  to?: string;
  /** Incoming interface. */
  iif?: string;
  /** Outgoing interface. */
  oif?: string;
  /** Rule priority (its key). */
  priority: number;
  /** The table to look up. */
  table: number | string;
}

function selector(value: string, what: string): string {
  return value.includes("/") ? cidr(value, what) : ipAddr(value, what);
}

function ruleOp(verb: string, r: RuleSpec): IpOp {
  const args = ["rule", verb];
  if (r.from !== undefined) args.push("from", selector(r.from, "rule from"));
  if (r.to !== undefined) args.push("to", selector(r.to, "rule to"));
  if (r.iif !== undefined) args.push("iif", validateIfName(r.iif));
  if (r.oif !== undefined) args.push("oif", validateIfName(r.oif));
  args.push("priority", uint(r.priority, "priority"), "table", table(r.table));
  return op(...args);
}

/** `rule add [from A] [to B] [iif I] [oif O] priority P table T`. */
export function ruleAdd(rule: RuleSpec): IpOp {
  return ruleOp("add", rule);
}

/** `rule del ...` with the same selectors. */
export function ruleDel(rule: RuleSpec): IpOp {
  return ruleOp("del", rule);
}

/** Escape hatch for a line this module does not model: the tokens are checked like every other. */
export function customOp(args: string[]): IpOp {
  if (args.length === 0) throw new IpArgumentError("an ip operation needs at least one token");
  return op(...args.map((a, i) => token(a, `token ${i + 1}`)));
}

/** The batch text for `ip -batch -`: one line per operation, each ending in a newline. */
export function batchText(ops: readonly IpOp[]): string {
  return ops.map((o) => o.args.join(" ") + "\n").join("");
}

/** One failed line of a batch. */
export interface BatchFailure {
  /** 1-based line number. */
  line: number;
  /** The line's text. */
  command: string;
  /** What `ip` printed about it. */
  message: string;
}

/** Pairs `ip -batch` stderr ("RTNETLINK answers: ...", "Command failed <file>:N") with the lines of `ops`. */
export function batchFailures(stderr: string, ops: readonly IpOp[]): BatchFailure[] {
  const failures: BatchFailure[] = [];
  let pending: string[] = [];
  for (const raw of stderr.split("\n")) {
    const text = raw.trim();
    if (text === "") continue;
    const m = /^Command failed .*:(\d+)$/.exec(text);
    if (m) {
      const line = Number(m[1]);
      failures.push({ line, command: ops[line - 1]?.args.join(" ") ?? "", message: pending.join("; ") });
      pending = [];
    } else {
      pending.push(text);
    }
  }
  return failures;
}

/** A batch that `ip` did not complete; `failures` says which lines failed and why. */
export class IpBatchError extends Error {
  /** The namespace path, or `null` for the process's own. */
  readonly netns: string | null;
  /** The failed lines. */
  readonly failures: BatchFailure[];
  /** All of ip's stderr. */
  readonly stderr: string;

  constructor(netns: string | null, outcome: { failures: BatchFailure[]; stderr: string; code: number }) {
    const { failures, stderr, code } = outcome;
    const where = netns ?? "the current namespace";
    const first = failures[0];
    const what = first
      ? `line ${first.line} "${first.command}": ${first.message}` +
        (failures.length > 1 ? ` (and ${failures.length - 1} more)` : "")
      : `exit code ${code}: ${stderr.trim()}`;
    super(`ip batch in ${where} failed at ${what}`);
    this.name = "IpBatchError";
    this.netns = netns;
    this.failures = failures;
    this.stderr = stderr;
  }
}

/**
 * Runs `ops` through one `ip -batch` process inside `netnsPath` (a pooled setns worker; `null` = this process's
 * namespace). Stops at the first failing line unless `force`, which runs every line; either way any failure
 * throws an {@linkcode IpBatchError}. A missing namespace throws `NetnsNotFoundError` (from netns.ts).
 */
export async function runBatch(
  netnsPath: string | null,
  ops: readonly IpOp[],
  options: { force?: boolean } = {},
): Promise<void> {
  if (ops.length === 0) return;
  // `/dev/stdin` rather than `-`: in a worker the text arrives as a file, which saves a shell (netns_worker.ts)
  const argv = ["ip", ...(options.force ? ["-force"] : []), "-batch", "/dev/stdin"];
  const [r] = await runCommands(netnsPath, [{ argv, stdin: batchText(ops) }]);
  if (r.code !== 0) {
    throw new IpBatchError(netnsPath, {
      failures: batchFailures(r.stderr, ops),
      stderr: r.stderr,
      code: r.code,
    });
  }
}

/**
 * {@linkcode runBatch} of `ops`, then the link `name` as it is afterwards, read by the same `ip` process (a
 * last `link show` line of the batch, printed as JSON): one process where a change and its read-back took
 * two. `undefined` when the batch went through but the link is gone.
 */
export async function runBatchThenLink(
  netnsPath: string | null,
  ops: readonly IpOp[],
  name: string,
): Promise<Link | undefined> {
  const show = op("link", "show", "dev", validateIfName(name));
  const all = [...ops, show];
  const [r] = await runCommands(netnsPath, [{
    argv: ["ip", "-j", "-d", "-batch", "/dev/stdin"],
    stdin: batchText(all),
  }]);
  if (r.code !== 0) {
    const failures = batchFailures(r.stderr, all);
    const onlyTheRead = failures.length === 1 && failures[0].line === all.length;
    if (onlyTheRead && /does not exist/.test(r.stderr)) return undefined;
    throw new IpBatchError(netnsPath, { failures, stderr: r.stderr, code: r.code });
  }
  // Only the last line prints anything: one JSON array with the link.
  const [raw] = JSON.parse(r.stdout.trim() || "[]") as RawLink[];
  return raw === undefined ? undefined : toLink(raw);
}

// ---------------------------------------------------------------------------------------------- reads

async function ipJson<T>(netnsPath: string | null, args: string[]): Promise<T[]> {
  const [r] = await runCommands(netnsPath, [{ argv: ["ip", "-j", ...args] }]);
  if (r.code !== 0) {
    throw new Error(`ip -j ${args.join(" ")} in ${netnsPath ?? "the current namespace"}: ${r.stderr.trim()}`);
  }
  const text = r.stdout.trim();
  return text === "" ? [] : JSON.parse(text) as T[];
}

function familyFlag(family: 4 | 6 | undefined): string[] {
  return family === undefined ? [] : [`-${family}`];
}

/** A network interface as `ip -d -j link` reports it. */
export interface Link {
  /** ifindex. */
  index: number;
  /** Interface name. */
  name: string;
  /** Administratively up (the UP flag). */
  up: boolean;
  /** Flags such as UP, LOWER_UP, BROADCAST. */
  flags: string[];
  /** MTU. */
  mtu: number;
  /** MAC address (absent for some link types). */
  address?: string;
  /** Operational state (UP, DOWN, UNKNOWN, LOWERLAYERDOWN). */
  operstate: string;
  /** Transmit queue length. */
  txqlen?: number;
  /** Link type: veth, bridge, vlan, macvlan, ipvlan, dummy, ... (absent for plain devices). */
  kind?: string;
  /** The bridge or bond it is enslaved to. */
  master?: string;
  /** The parent or peer (name when in the same namespace), from the `link` field. */
  parent?: string;
  /** The peer's namespace id when the peer is in another namespace. */
  linkNetnsId?: number;
  /** The 802.1Q id of a vlan link. */
  vlanId?: number;
  /** The mode of a macvlan or ipvlan link. */
  mode?: string;
}

interface RawLink {
  ifindex: number;
  ifname: string;
  flags?: string[];
  mtu: number;
  address?: string;
  operstate?: string;
  txqlen?: number;
  master?: string;
  link?: string | null;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; mode?: string } };
}

function toLink(raw: RawLink): Link {
  const flags = raw.flags ?? [];
  const link: Link = {
    index: raw.ifindex,
    name: raw.ifname,
    up: flags.includes("UP"),
    flags,
    mtu: raw.mtu,
    operstate: raw.operstate ?? "UNKNOWN",
  };
  if (raw.address !== undefined) link.address = raw.address;
  if (raw.txqlen !== undefined) link.txqlen = raw.txqlen;
  if (raw.linkinfo?.info_kind) link.kind = raw.linkinfo.info_kind;
  if (raw.master) link.master = raw.master;
  if (raw.link) link.parent = raw.link;
  if (raw.link_netnsid !== undefined) link.linkNetnsId = raw.link_netnsid;
  if (link.kind === "vlan" && raw.linkinfo?.info_data?.id !== undefined) {
    link.vlanId = raw.linkinfo.info_data.id;
  }
  if (raw.linkinfo?.info_data?.mode !== undefined) link.mode = String(raw.linkinfo.info_data.mode);
  return link;
}

/** Every link in the namespace (`null` = this process's). */
export async function listLinks(netnsPath: string | null): Promise<Link[]> {
  return (await ipJson<RawLink>(netnsPath, ["-d", "link", "show"])).map(toLink);
}

/** One link by name, or `undefined` when there is none. */
export async function getLink(netnsPath: string | null, name: string): Promise<Link | undefined> {
  const args = ["-j", "-d", "link", "show", "dev", validateIfName(name)];
  const [r] = await runCommands(netnsPath, [{ argv: ["ip", ...args] }]);
  if (r.code !== 0) {
    if (/does not exist/.test(r.stderr)) return undefined;
    throw new Error(`ip ${args.join(" ")} in ${netnsPath ?? "the current namespace"}: ${r.stderr.trim()}`);
  }
  const [raw] = JSON.parse(r.stdout.trim() || "[]") as RawLink[];
  return raw === undefined ? undefined : toLink(raw);
}

/** An interface address. */
export interface Addr {
  /** The interface name. */
  dev: string;
  /** The interface index. */
  index: number;
  /** 4 or 6. */
  family: 4 | 6;
  /** The address. */
  local: string;
  /** Prefix length. */
  prefixlen: number;
  /** `local/prefixlen`. */
  cidr: string;
  /** Scope (global, link, host). */
  scope: string;
}

/** Addresses in the namespace, optionally of one device or family. */
export async function listAddrs(
  netnsPath: string | null,
  options: { dev?: string; family?: 4 | 6 } = {},
): Promise<Addr[]> {
  const args = [...familyFlag(options.family), "addr", "show"];
  if (options.dev !== undefined) args.push("dev", validateIfName(options.dev));
  type RawAddr = {
    ifindex: number;
    ifname: string;
    addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
  };
  const links = await ipJson<RawAddr>(netnsPath, args);
  return links.flatMap((l) =>
    (l.addr_info ?? []).filter((a) => a.local !== undefined).map((a): Addr => ({
      dev: l.ifname,
      index: l.ifindex,
      family: a.family === "inet6" ? 6 : 4,
      local: a.local,
      prefixlen: a.prefixlen,
      cidr: `${a.local}/${a.prefixlen}`,
      scope: a.scope,
    }))
  );
}

/** A route as `ip -j route` reports it. */
export interface Route {
  /** `default`, an address, or a CIDR. */
  dst: string;
  /** The table it was found in. */
  table: string;
  /** Next hop. */
  gateway?: string;
  /** Output device. */
  dev?: string;
  /** Scope (absent means universe/global). */
  scope?: string;
  /** Preferred source. */
  prefsrc?: string;
  /** Protocol (kernel, static, boot...). */
  protocol?: string;
  /** Metric. */
  metric?: number;
  /** Route type when not unicast (local, broadcast...). */
  type?: string;
  /** Next-hop flags such as `onlink`. */
  flags: string[];
}

/** Routes of one table (`main` by default; `"all"` for every table) and family (4 by default). */
export async function listRoutes(
  netnsPath: string | null,
  options: { table?: number | string; family?: 4 | 6 } = {},
): Promise<Route[]> {
  const tableName = options.table === undefined ? "main" : table(options.table);
  const args = [...familyFlag(options.family), "route", "show", "table", tableName];
  type RawRoute = Omit<Route, "table" | "flags"> & { table?: string; flags?: string[] };
  const raw = await ipJson<RawRoute>(netnsPath, args);
  return raw.map((r) => {
    const route: Route = { dst: r.dst, table: r.table ?? tableName, flags: r.flags ?? [] };
    for (const key of ["gateway", "dev", "scope", "prefsrc", "protocol", "metric", "type"] as const) {
      if (r[key] !== undefined) (route as unknown as Record<string, unknown>)[key] = r[key];
    }
    return route;
  });
}

/** A policy routing rule. */
export interface Rule {
  /** Priority. */
  priority: number;
  /** The table looked up. */
  table: string;
  /** Source selector as CIDR (absent for "all"). */
  from?: string;
  /** Destination selector as CIDR. */
  to?: string;
  /** Incoming interface. */
  iif?: string;
  /** Outgoing interface. */
  oif?: string;
}

function prefixOf(addr: string, len: number | undefined): string {
  return `${addr}/${len ?? (isIP(addr) === 6 ? 128 : 32)}`;
}

/** Policy routing rules (family 4 by default). */
export async function listRules(netnsPath: string | null, options: { family?: 4 | 6 } = {}): Promise<Rule[]> {
  type RawRule = {
    priority: number;
    table: string;
    src?: string;
    srclen?: number;
    dst?: string;
    dstlen?: number;
    iif?: string;
    oif?: string;
  };
  const raw = await ipJson<RawRule>(netnsPath, [...familyFlag(options.family), "rule", "show"]);
  return raw.map((r) => {
    const rule: Rule = { priority: r.priority, table: String(r.table) };
    if (r.src !== undefined && r.src !== "all") rule.from = prefixOf(r.src, r.srclen);
    if (r.dst !== undefined && r.dst !== "all") rule.to = prefixOf(r.dst, r.dstlen);
    if (r.iif !== undefined) rule.iif = r.iif;
    if (r.oif !== undefined) rule.oif = r.oif;
    return rule;
  });
}

/** A neighbour (ARP/NDP) entry. */
export interface Neighbour {
  /** The neighbour's address. */
  ip: string;
  /** The device. */
  dev: string;
  /** Its MAC address, when known. */
  lladdr?: string;
  /** States such as PERMANENT, REACHABLE, STALE. */
  state: string[];
}

/** Neighbour entries, optionally of one device or family. */
export async function listNeighbours(
  netnsPath: string | null,
  options: { dev?: string; family?: 4 | 6 } = {},
): Promise<Neighbour[]> {
  const args = [...familyFlag(options.family), "neigh", "show"];
  if (options.dev !== undefined) args.push("dev", validateIfName(options.dev));
  type RawNeigh = { dst: string; dev?: string; lladdr?: string; state?: string[] };
  const raw = await ipJson<RawNeigh>(netnsPath, args);
  return raw.map((n) => {
    // `ip -j neigh show dev X` leaves the dev out of each entry
    const neigh: Neighbour = { ip: n.dst, dev: n.dev ?? options.dev ?? "", state: n.state ?? [] };
    if (n.lladdr !== undefined) neigh.lladdr = n.lladdr;
    return neigh;
  });
}

/** The route the kernel picks for `dst` (`ip -j route get`): output device, gateway, source; `undefined` if none. */
export async function routeGet(
  netnsPath: string | null,
  dst: string,
): Promise<{ dev?: string; gateway?: string; prefsrc?: string } | undefined> {
  const [r] = await ipJson<{ dev?: string; gateway?: string; prefsrc?: string }>(netnsPath, [
    "route",
    "get",
    ipAddr(dst, "route destination"),
  ]);
  return r;
}
