/**
 * The galaxy-flannel CNI plugin, a meta-plugin like the standard flannel CNI plugin: it reads the node's lease
 * from flanneld's `subnet.env`, builds the configuration of a delegate plugin (`bridge` by default) with
 * host-local IPAM over the node's subnet, saves that configuration to `<dataDir>/<containerID>` before it
 * delegates ADD, and replays the saved configuration for DEL and CHECK.
 *
 * Behaviour beyond the upstream plugin:
 * - the delegate gets the highest version that both it (its VERSION answer) and the caller support; its result
 *   is converted back to the caller's version;
 * - the saved file records the attachment (container ID, ifname, netns, network) next to the delegate
 *   configuration, so GC can DEL attachments the runtime no longer lists;
 * - an ADD that fails removes what it made (delegate DEL, then the saved file);
 * - a DEL without a saved file rebuilds the delegate configuration when it can and still calls the delegate's
 *   DEL, so the IPAM reservation is released even when the file was lost.
 * @module
 */
import {
  execVerb,
  getVersionInfo,
  type InvokeOptions,
  type RuntimeConf,
  writeFileAtomic,
} from "../invoke.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import {
  ALL_VERSIONS,
  CniError,
  type CniVersion,
  compareVersions,
  convertResult,
  ErrorCode,
  isSupportedVersion,
  type Result,
  versionAtLeast,
} from "../version.ts";

/** Where flanneld writes the node's lease, unless `subnetFile` says otherwise. */
export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
/** Where delegate configurations are saved, unless `dataDir` says otherwise. */
export const DEFAULT_DATA_DIR = "/var/lib/cni/flannel";
/** The `kind` of a saved file written by this plugin. */
export const SAVED_KIND = "galaxyFlannelV1";

/** galaxy-flannel's configuration, as read from stdin. */
export interface FlannelConf {
  /** The network name (the delegate gets the same); absent for an unnamed configuration. */
  name?: string;
  /** The caller's version. */
  cniVersion: CniVersion;
  /** The flanneld lease file. */
  subnetFile: string;
  /** Where delegate configurations are saved. */
  dataDir: string;
  /** Keys for the delegate's configuration; never `name` or `ipam`. */
  delegate: Record<string, unknown>;
  /** Keys merged into the delegate's `ipam` (`dataDir`, extra `routes`, another `type`, ...). */
  ipam?: Record<string, unknown>;
  /** Passed on to the delegate. */
  runtimeConfig?: Record<string, unknown>;
}

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

/** The configuration the delegate gets. */
export type DelegateConf = Record<string, unknown> & { cniVersion: CniVersion; name?: string; type: string };

/** The content of `<dataDir>/<containerID>`. */
export interface SavedAttachment {
  /** Always {@linkcode SAVED_KIND}. */
  kind: typeof SAVED_KIND;
  /** The container ID. */
  containerID: string;
  /** The interface name in the container. */
  ifname: string;
  /** The netns path given to ADD. */
  netns: string;
  /** The network name. */
  network: string;
  /** The delegate configuration exactly as ADD sent it. */
  delegate: DelegateConf;
}

/** A saved file as read back: this plugin's record, or a bare delegate configuration from upstream flannel. */
type Saved =
  | { state: "missing" }
  | { state: "corrupt"; reason: string }
  | { state: "found"; ifname?: string; network?: string; netns?: string; delegate: DelegateConf };

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function invalid(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

// ---------------------------------------------------------------------------------------------------------
// Addresses: just enough CIDR arithmetic to normalise and compare subnets.

interface Cidr {
  family: 4 | 6;
  addr: bigint;
  prefix: number;
}

function parseIpv4(text: string): bigint | undefined {
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
    const embedded = parseIpv4(v4[2]);
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

function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  if (slash < 0 || !/^\d{1,3}$/.test(text.slice(slash + 1))) return undefined;
  const prefix = Number(text.slice(slash + 1));
  const ip = text.slice(0, slash);
  const v4 = parseIpv4(ip);
  if (v4 !== undefined) return prefix <= 32 ? { family: 4, addr: v4, prefix } : undefined;
  const v6 = parseIpv6(ip);
  if (v6 !== undefined) return prefix <= 128 ? { family: 6, addr: v6, prefix } : undefined;
  return undefined;
}

function networkOf(c: Cidr): Cidr {
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

function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.addr)}/${c.prefix}`;
}

function contains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.prefix <= inner.prefix &&
    networkOf({ ...inner, prefix: outer.prefix }).addr === networkOf(outer).addr;
}

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
    if (!networks.some((n) => contains(n, subnet))) {
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

// ---------------------------------------------------------------------------------------------------------
// Configuration

function optionalPath(config: Json, key: string, fallback: string): string {
  const v = config[key];
  if (v === undefined) return fallback;
  if (typeof v !== "string" || v === "") throw invalid(`${key} must be a non-empty string`);
  return v;
}

function validateRoutes(routes: unknown): void {
  if (!Array.isArray(routes)) throw invalid("ipam.routes must be a list");
  routes.forEach((r, i) => {
    if (!isObject(r) || typeof r.dst !== "string" || !parseCidr(r.dst)) {
      throw invalid(`ipam.routes[${i}].dst must be a CIDR, got ${JSON.stringify(isObject(r) ? r.dst : r)}`);
    }
    if (r.gw !== undefined && (typeof r.gw !== "string" || !parseCidr(`${r.gw}/32`))) {
      throw invalid(`ipam.routes[${i}].gw must be an IP address, got ${JSON.stringify(r.gw)}`);
    }
  });
}

/**
 * Reads galaxy-flannel's keys from a configuration: `subnetFile`, `dataDir`, `delegate` (an object whose
 * `type` is a string and that has no `name` or `ipam`), `ipam` (merged into the delegate's; its `subnet` and
 * `ranges` come from `subnet.env` and may not be set). Throws a {@linkcode CniError} (code 7) naming the key.
 */
export function parseFlannelConf(config: Json, cniVersion: CniVersion): FlannelConf {
  const delegate = config.delegate ?? {};
  if (!isObject(delegate)) throw invalid("delegate must be an object");
  if (delegate.type !== undefined && (typeof delegate.type !== "string" || delegate.type === "")) {
    throw invalid("delegate.type must be a non-empty string");
  }
  for (const key of ["name", "ipam"]) {
    if (Object.hasOwn(delegate, key)) {
      throw invalid(`delegate.${key} may not be set: galaxy-flannel sets it (use the top-level "${key}")`);
    }
  }
  const ipam = config.ipam;
  if (ipam !== undefined) {
    if (!isObject(ipam)) throw invalid("ipam must be an object");
    if (ipam.type !== undefined && (typeof ipam.type !== "string" || ipam.type === "")) {
      throw invalid("ipam.type must be a non-empty string");
    }
    for (const key of ["subnet", "ranges"]) {
      if (Object.hasOwn(ipam, key)) {
        throw invalid(`ipam.${key} may not be set: galaxy-flannel takes the subnet from the subnet file`);
      }
    }
    if (ipam.routes !== undefined) validateRoutes(ipam.routes);
  }
  const runtimeConfig = config.runtimeConfig;
  if (runtimeConfig !== undefined && !isObject(runtimeConfig)) {
    throw invalid("runtimeConfig must be an object");
  }
  if (config.name !== undefined && typeof config.name !== "string") throw invalid("name: expected a string");
  return {
    // Unnamed (galaxy.json without a name): the delegate stays unnamed too, as upstream flannel leaves it.
    name: config.name || undefined,
    cniVersion,
    subnetFile: optionalPath(config, "subnetFile", DEFAULT_SUBNET_FILE),
    dataDir: optionalPath(config, "dataDir", DEFAULT_DATA_DIR),
    delegate,
    ipam,
    runtimeConfig,
  };
}

/**
 * The delegate's configuration, as the standard flannel plugin builds it: the `delegate` keys, with `name` and
 * `cniVersion` from the outer configuration, `type` defaulting to `bridge`, `ipMasq` to `!FLANNEL_IPMASQ`, `mtu`
 * to `FLANNEL_MTU`, `isGateway` to true for `bridge`, `runtimeConfig` passed on, and `ipam` = the outer `ipam`
 * keys + `type` (default `host-local`) + `ranges` from the subnets + `routes` (the outer ones, then one per
 * flannel network not already routed).
 */
export function buildDelegateConf(conf: FlannelConf, env: SubnetEnv): DelegateConf {
  const { type, ...rest } = structuredClone(conf.delegate);
  const d: DelegateConf = {
    cniVersion: conf.cniVersion,
    type: typeof type === "string" ? type : "bridge",
    ...rest,
  };
  d.cniVersion = conf.cniVersion;
  if (conf.name !== undefined) d.name = conf.name;
  if (!Object.hasOwn(d, "ipMasq")) d.ipMasq = !env.ipMasq;
  if (!Object.hasOwn(d, "mtu")) d.mtu = env.mtu;
  if (d.type === "bridge" && !Object.hasOwn(d, "isGateway")) d.isGateway = true;
  if (conf.runtimeConfig) d.runtimeConfig = structuredClone(conf.runtimeConfig);
  else delete d.runtimeConfig;
  delete d.prevResult;

  const ipam: Json = { type: "host-local", ...structuredClone(conf.ipam ?? {}) };
  const ranges: Json[][] = [];
  if (env.subnet) ranges.push([{ subnet: env.subnet }]);
  if (env.ipv6Subnet) ranges.push([{ subnet: env.ipv6Subnet }]);
  ipam.ranges = ranges;
  const routes = (ipam.routes as Json[] | undefined) ?? [];
  const routed = new Set(routes.map((r) => r.dst));
  for (const dst of [...env.networks, ...env.ipv6Networks]) {
    if (!routed.has(dst)) routes.push({ dst });
  }
  ipam.routes = routes;
  d.ipam = ipam;
  return d;
}

/**
 * The version to run the delegate at: the highest version it supports that is not above the caller's. Throws
 * a {@linkcode CniError} (code 1) when there is none.
 */
export function negotiateVersion(wanted: CniVersion, supported: readonly string[], type: string): CniVersion {
  const common = ALL_VERSIONS.filter((v) => supported.includes(v) && compareVersions(v, wanted) <= 0);
  const best = common.at(-1);
  if (!best) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `delegate ${type} supports ${supported.join(", ") || "no version"}, none at or below ${wanted}`,
    );
  }
  return best;
}

/**
 * The result of a chained ADD: `prevResult` with the delegate's interfaces, addresses (their interface index
 * shifted past the previous interfaces) and routes appended; the delegate's DNS wins when it has any.
 */
export function mergeResults(prev: Result | undefined, own: Result): Result {
  if (!prev) return own;
  const offset = prev.interfaces?.length ?? 0;
  const merged: Result = { ...prev, cniVersion: "1.1.0" };
  const interfaces = [...(prev.interfaces ?? []), ...(own.interfaces ?? [])];
  const ips = [
    ...(prev.ips ?? []),
    ...(own.ips ?? []).map((ip) =>
      ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }
    ),
  ];
  const routes = [...(prev.routes ?? []), ...(own.routes ?? [])];
  if (interfaces.length) merged.interfaces = interfaces;
  if (ips.length) merged.ips = ips;
  if (routes.length) merged.routes = routes;
  if (own.dns && Object.keys(own.dns).length) merged.dns = own.dns;
  return merged;
}

// ---------------------------------------------------------------------------------------------------------
// The saved file

/** `<dataDir>/<containerID>`. */
export function savedPath(dataDir: string, containerId: string): string {
  return `${dataDir.replace(/\/+$/, "")}/${containerId}`;
}

function asDelegateConf(v: unknown): DelegateConf | undefined {
  if (!isObject(v) || typeof v.type !== "string" || v.type === "" || v.type.includes("/")) return undefined;
  return v as DelegateConf;
}

/** Reads a saved file's text: this plugin's record, or the bare delegate configuration upstream flannel saves. */
export function parseSaved(text: string): Saved {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { state: "corrupt", reason: `not JSON: ${(e as Error).message}` };
  }
  if (isObject(parsed) && parsed.kind === SAVED_KIND) {
    const delegate = asDelegateConf(parsed.delegate);
    if (!delegate || typeof parsed.ifname !== "string" || typeof parsed.containerID !== "string") {
      return { state: "corrupt", reason: `a ${SAVED_KIND} record without delegate, containerID or ifname` };
    }
    return {
      state: "found",
      ifname: parsed.ifname,
      netns: typeof parsed.netns === "string" ? parsed.netns : "",
      network: typeof parsed.network === "string" ? parsed.network : delegate.name,
      delegate,
    };
  }
  const legacy = asDelegateConf(parsed);
  if (legacy) return { state: "found", network: legacy.name, delegate: legacy };
  return { state: "corrupt", reason: "neither a saved record nor a delegate configuration" };
}

async function readSaved(path: string): Promise<Saved> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { state: "missing" };
    throw new CniError(ErrorCode.IoFailure, `cannot read ${path}: ${(e as Error).message}`);
  }
  return parseSaved(text);
}

async function removeSaved(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new CniError(ErrorCode.IoFailure, `cannot remove ${path}: ${(e as Error).message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Delegation

function log(msg: string): void {
  console.error(`galaxy-flannel: ${msg}`);
}

function invokeOptions(req: PluginRequest): InvokeOptions {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.env)) if (!k.startsWith("CNI_")) env[k] = v;
  return { path: req.path, env };
}

function runtimeOf(req: PluginRequest): RuntimeConf {
  return { containerId: req.containerId, netns: req.netns, ifname: req.ifname, args: req.args };
}

/** Runs one verb of the delegate; its error keeps its code and gains the delegate's name and the verb. */
async function runDelegate(
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
  delegate: DelegateConf,
  req: PluginRequest,
  options: { prevResult?: Result; rt?: RuntimeConf; extra?: Json } = {},
): Promise<Result | undefined> {
  const conf: DelegateConf = { ...structuredClone(delegate), ...options.extra };
  try {
    if (
      options.prevResult && isSupportedVersion(conf.cniVersion) && versionAtLeast(conf.cniVersion, "0.4.0")
    ) {
      try {
        conf.prevResult = convertResult(options.prevResult, conf.cniVersion);
      } catch (e) {
        if (verb !== "DEL") throw e; // DEL must work without prevResult
      }
    }
    const rt = verb === "STATUS" || verb === "GC" ? undefined : options.rt ?? runtimeOf(req);
    return await execVerb(verb, conf, rt, invokeOptions(req));
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(ErrorCode.DelegateFailure, String(e));
    throw new CniError(err.code, `delegate ${delegate.type} ${verb}: ${err.message}`, err.details);
  }
}

/** The versions the delegate supports (its VERSION answer). */
async function delegateVersions(type: string, req: PluginRequest): Promise<string[]> {
  try {
    return (await getVersionInfo(type, invokeOptions(req))).supportedVersions;
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(ErrorCode.DelegateFailure, String(e));
    throw new CniError(err.code, `delegate ${type} VERSION: ${err.message}`, err.details);
  }
}

/** Builds the delegate configuration from the subnet file and sets the version the delegate can take. */
async function prepareDelegate(req: PluginRequest, conf: FlannelConf): Promise<DelegateConf> {
  const delegate = buildDelegateConf(conf, await readSubnetEnv(conf.subnetFile));
  delegate.cniVersion = negotiateVersion(
    conf.cniVersion,
    await delegateVersions(delegate.type, req),
    delegate.type,
  );
  return delegate;
}

// ---------------------------------------------------------------------------------------------------------
// Verbs

/** ADD: build, save (atomically, before anything else), delegate; undo everything when a step fails. */
async function add(req: PluginRequest): Promise<Result> {
  const conf = parseFlannelConf(req.config, req.cniVersion);
  const delegate = await prepareDelegate(req, conf);
  const path = savedPath(conf.dataDir, req.containerId);
  const existing = await readSaved(path);
  if (existing.state === "found" && existing.ifname !== undefined && existing.ifname !== req.ifname) {
    throw invalid(
      `network "${conf.name}": ${path} already holds attachment ${req.containerId}/${existing.ifname}; ` +
        `galaxy-flannel keeps one attachment per container and dataDir (give this network its own dataDir)`,
    );
  }
  const record: SavedAttachment = {
    kind: SAVED_KIND,
    containerID: req.containerId,
    ifname: req.ifname,
    netns: req.netns,
    network: conf.name ?? "",
    delegate,
  };
  try {
    await writeFileAtomic(path, JSON.stringify(record));
  } catch (e) {
    throw new CniError(ErrorCode.IoFailure, `cannot save ${path}: ${(e as Error).message}`);
  }
  try {
    const own = await runDelegate("ADD", delegate, req);
    const result = mergeResults(req.prevResult, own!);
    convertResult(result, req.cniVersion); // fails here, not after the return, when the caller cannot read it
    return result;
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(ErrorCode.PluginFailure, String(e));
    let details = err.details;
    try {
      await runDelegate("DEL", delegate, req);
      await removeSaved(path);
    } catch (cleanup) {
      const note = `cleanup after the failed ADD failed, ${path} is kept for DEL: ${
        (cleanup as Error).message
      }`;
      log(note);
      details = details ? `${details}; ${note}` : note;
    }
    throw new CniError(err.code, err.message, details);
  }
}

/**
 * DEL: replay the saved configuration, then remove the file. Without a saved file for this interface, rebuild
 * the configuration from the subnet file and still DEL the delegate (it releases IPAM); when it cannot be
 * rebuilt there is nothing this plugin could have made, and DEL succeeds.
 */
async function del(req: PluginRequest): Promise<void> {
  const conf = parseFlannelConf(req.config, req.cniVersion);
  const path = savedPath(conf.dataDir, req.containerId);
  const saved = await readSaved(path);
  if (saved.state === "found" && (saved.ifname === undefined || saved.ifname === req.ifname)) {
    await runDelegate("DEL", saved.delegate, req, { prevResult: req.prevResult });
    await removeSaved(path);
    return;
  }
  if (saved.state === "corrupt") log(`${path} is unusable (${saved.reason}); rebuilding the delegate config`);
  let delegate: DelegateConf;
  try {
    delegate = await prepareDelegate(req, conf);
  } catch (e) {
    log(
      `no saved delegate config for ${req.containerId}/${req.ifname} and none can be built: ` +
        `${(e as Error).message}; nothing to delete`,
    );
    if (saved.state === "corrupt") await removeSaved(path);
    return;
  }
  await runDelegate("DEL", delegate, req, { prevResult: req.prevResult });
  if (saved.state === "corrupt") await removeSaved(path);
}

/** CHECK: the delegate's CHECK with the saved configuration and the runtime's `prevResult`. */
async function check(req: PluginRequest): Promise<void> {
  const conf = parseFlannelConf(req.config, req.cniVersion);
  const path = savedPath(conf.dataDir, req.containerId);
  const saved = await readSaved(path);
  if (saved.state !== "found" || (saved.ifname !== undefined && saved.ifname !== req.ifname)) {
    throw new CniError(
      ErrorCode.UnknownContainer,
      `no saved delegate config for ${req.containerId}/${req.ifname} in ${conf.dataDir}`,
    );
  }
  const version = saved.delegate.cniVersion;
  if (!isSupportedVersion(version) || !versionAtLeast(version, "0.4.0")) {
    log(
      `delegate ${saved.delegate.type} runs at ${version}, which has no CHECK; only the saved file is checked`,
    );
    return;
  }
  await runDelegate("CHECK", saved.delegate, req, { prevResult: req.prevResult });
}

/** STATUS: the subnet file must be readable and valid (else code 50); then the delegate's STATUS, if it has one. */
async function status(req: PluginRequest): Promise<void> {
  const conf = parseFlannelConf(req.config, req.cniVersion);
  let delegate: DelegateConf;
  let versions: string[];
  try {
    delegate = buildDelegateConf(conf, await readSubnetEnv(conf.subnetFile));
    versions = await delegateVersions(delegate.type, req);
  } catch (e) {
    throw new CniError(ErrorCode.NotAvailable, (e as Error).message);
  }
  if (!versions.includes("1.1.0")) return; // a delegate from before 1.1.0 has no STATUS to ask
  await runDelegate("STATUS", { ...delegate, cniVersion: "1.1.0" }, req);
}

function validAttachments(config: Json): Set<string> {
  const raw = config["cni.dev/valid-attachments"] ?? [];
  if (!Array.isArray(raw)) throw invalid("cni.dev/valid-attachments must be a list");
  return new Set(raw.map((a, i) => {
    if (!isObject(a) || typeof a.containerID !== "string" || typeof a.ifname !== "string") {
      throw invalid(`cni.dev/valid-attachments[${i}] must have string containerID and ifname`);
    }
    return `${a.containerID}\u0000${a.ifname}`;
  }));
}

/**
 * GC: DEL the delegate for every saved attachment of this network that the runtime no longer lists, removing
 * its file; then forward GC to the delegate when it speaks 1.1.0. Goes on past errors and reports them all.
 */
async function gc(req: PluginRequest): Promise<void> {
  const conf = parseFlannelConf(req.config, req.cniVersion);
  const keep = validAttachments(req.config);
  const errors: string[] = [];
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(conf.dataDir)) {
      if (e.isFile && !e.name.includes(".tmp-")) names.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      errors.push(`cannot list ${conf.dataDir}: ${(e as Error).message}`);
    }
  }
  for (const name of names.sort()) {
    const path = savedPath(conf.dataDir, name);
    try {
      const saved = await readSaved(path);
      // Upstream flannel's bare configurations name no interface; Galaxy's own GC of dataDir handles those.
      if (saved.state !== "found" || saved.ifname === undefined || saved.network !== conf.name) continue;
      if (keep.has(`${name}\u0000${saved.ifname}`)) continue;
      const rt = { containerId: name, netns: saved.netns ?? "", ifname: saved.ifname, args: [] };
      await runDelegate("DEL", saved.delegate, req, { rt });
      await removeSaved(path);
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
    }
  }
  try {
    const delegate = buildDelegateConf(conf, await readSubnetEnv(conf.subnetFile));
    if ((await delegateVersions(delegate.type, req)).includes("1.1.0")) {
      const valid = req.config["cni.dev/valid-attachments"] ?? [];
      await runDelegate("GC", { ...delegate, cniVersion: "1.1.0" }, req, {
        extra: { "cni.dev/valid-attachments": valid, "cni.dev/attachments": valid },
      });
    }
  } catch (e) {
    errors.push((e as Error).message);
  }
  if (errors.length) {
    throw new CniError(ErrorCode.PluginFailure, `GC errors: ${errors.join("; ")}`);
  }
}

/** The galaxy-flannel plugin. */
export const plugin: Plugin = { name: "galaxy-flannel", add, del, check, status, gc };

/** Runs galaxy-flannel as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
