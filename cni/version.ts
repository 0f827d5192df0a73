/**
 * The CNI specification's versions, error codes and result types, and the conversion of results between every
 * pair of versions (as libcni's `pkg/types/{020,040,100}` do it), without any dependency: this module is on
 * every pod's start-up path (shim and plugins), where loading zod would cost ~30 ms per process. The zod
 * schemas live in `spec.ts`, which re-exports all of this.
 *
 * Inside Galaxy every result is handled in the 1.1.0 shape ({@linkcode Result}); it is converted to the
 * caller's version only at the edge.
 *
 * Its length: the dependency-free core has to carry the result conversion between all seven versions and the
 * hand-written result checks (the zod schemas cost the plugins start-up time); both are tables by version.
 * @module
 */

/** Every CNI specification version this implementation speaks, oldest first. */
export const ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
/** One of {@linkcode ALL_VERSIONS}. */
export type CniVersion = typeof ALL_VERSIONS[number];
/** The newest version we speak; results are handled internally in its shape. */
export const CURRENT_VERSION: CniVersion = "1.1.0";

/** The spec's well-known error codes (SPEC.md "Error"); 100 and above are ours. */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  NotAvailable: 50,
  LimitedConnectivity: 51,
  /** A plugin or the daemon failed for a reason of its own. */
  PluginFailure: 100,
  /** A delegated plugin could not be executed or gave no usable answer. */
  DelegateFailure: 101,
  /** A timeout while waiting for a plugin or the daemon. */
  Timeout: 102,
  /** libcni's catch-all, seen from third-party plugins. */
  Internal: 999,
} as const;

/** An error that travels as the spec's error object: a code, a message and optional details. */
export class CniError extends Error {
  /** The spec's error code. */
  readonly code: number;
  /** Extra text for humans (the spec's `details`). */
  readonly details?: string;

  constructor(code: number, msg: string, details?: string) {
    super(msg);
    this.name = "CniError";
    this.code = code;
    if (details) this.details = details;
  }

  /** The spec's JSON error object for `cniVersion`. */
  toJSON(cniVersion: string = CURRENT_VERSION): CniErrorObject {
    const obj: CniErrorObject = { cniVersion, code: this.code, msg: this.message };
    if (this.details) obj.details = this.details;
    return obj;
  }
}

/** Turns anything thrown into a {@linkcode CniError}, keeping a CniError as it is. */
export function asCniError(err: unknown, code: number = ErrorCode.PluginFailure): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof Error) return new CniError(code, err.message);
  return new CniError(code, String(err));
}

/** True when `v` is one of the versions we speak. */
export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === "string" && (ALL_VERSIONS as readonly string[]).includes(v);
}

/**
 * The version a configuration is written in, as libcni reads it: a missing or empty `cniVersion` means 0.1.0
 * (libcni's `version.Legacy` lists `""` with 0.1.0, and the Go Galaxy's shim and plugins accept it). The one place that
 * says so: every reader of a configuration's version goes through it. Anything else is returned as it is.
 */
export function configVersion(conf: object): unknown {
  const v = (conf as { cniVersion?: unknown }).cniVersion;
  return v === undefined || v === "" ? "0.1.0" : v;
}

/** Compares two dotted versions numerically: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map((p) => parseInt(p, 10) || 0);
  const pb = b.split(".").map((p) => parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** True when version `v` is at least `min`. */
export function versionAtLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}

/**
 * The highest version we speak that is in `candidates` and, when `atMost` is given, not above it: the one
 * rule for "the highest version ≤ wanted" (delegates, galaxy.json networks without a version).
 */
export function highestVersion(candidates: readonly string[], atMost?: string): CniVersion | undefined {
  return ALL_VERSIONS.filter((v) =>
    candidates.includes(v) && (atMost === undefined || compareVersions(v, atMost) <= 0)
  )
    .at(-1);
}

/**
 * The version a runtime must use for a configuration: the highest of `cniVersion` ∪ `cniVersions` that is
 * also in `supported` (ours by default). Versions we do not know are ignored, as libcni does; when none is
 * left the result is `undefined`.
 */
export function selectVersion(
  conf: { cniVersion?: unknown; cniVersions?: unknown },
  supported: readonly string[] = ALL_VERSIONS,
): CniVersion | undefined {
  const offered: unknown[] = [
    configVersion(conf),
    ...(Array.isArray(conf.cniVersions) ? conf.cniVersions : []),
  ];
  let best: CniVersion | undefined;
  for (const v of offered) {
    if (!isSupportedVersion(v) || !supported.includes(v)) continue;
    if (!best || compareVersions(v, best) > 0) best = v;
  }
  return best;
}

// ---------------------------------------------------------------------------------------------------------
// Types. Every object may carry fields we do not know; they pass through untouched.

/** DNS settings of a configuration or result. */
export interface Dns {
  /** Name servers. */
  nameservers?: string[];
  /** Local domain. */
  domain?: string;
  /** Search domains. */
  search?: string[];
  /** Resolver options. */
  options?: string[];
  [key: string]: unknown;
}

/** One plugin's configuration, as a plugin reads it on stdin. */
export interface NetConf {
  /** The configuration's version. */
  cniVersion?: string;
  /** The network name. */
  name?: string;
  /** The plugin to run. */
  type: string;
  /** Capabilities the plugin accepts as runtimeConfig. */
  capabilities?: Record<string, boolean>;
  /** Masquerade traffic leaving the pod. */
  ipMasq?: boolean;
  /** The IPAM plugin's configuration. */
  ipam?: { type?: string; [key: string]: unknown };
  /** DNS settings. */
  dns?: Dns;
  /** Extra arguments (CONVENTIONS.md). */
  args?: Record<string, unknown>;
  /** Capability values injected by the runtime. */
  runtimeConfig?: Record<string, unknown>;
  /** The previous plugin's result in a chain. */
  prevResult?: Record<string, unknown>;
  [key: string]: unknown;
}

/** A network configuration list (a `.conflist`). */
export interface NetConfList {
  /** The list's version. */
  cniVersion?: string;
  /** Versions the list can be run at (1.1.0). */
  cniVersions?: string[];
  /** The network name. */
  name: string;
  /** Skip CHECK. */
  disableCheck?: boolean;
  /** Skip GC. */
  disableGC?: boolean;
  /** Ignore plugins from sub-folders. */
  loadOnlyInlinedPlugins?: boolean;
  /** The plugins, run in order. */
  plugins: NetConf[];
  [key: string]: unknown;
}

/** The spec's error object. */
export interface CniErrorObject {
  /** The version it is written in. */
  cniVersion?: string;
  /** The error code. */
  code: number;
  /** The message. */
  msg: string;
  /** More text for humans. */
  details?: string;
  [key: string]: unknown;
}

/** An interface of a result. */
export interface ResultInterface {
  /** Interface name. */
  name: string;
  /** MAC address. */
  mac?: string;
  /** The netns path, for interfaces inside the container. */
  sandbox?: string;
  /** MTU (1.1.0). */
  mtu?: number;
  /** vhost-user socket (1.1.0). */
  socketPath?: string;
  /** PCI address of a device (1.1.0). */
  pciID?: string;
  [key: string]: unknown;
}

/** An address of a result. */
export interface ResultIp {
  /** Address with prefix length. */
  address: string;
  /** Gateway. */
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
  [key: string]: unknown;
}

/** A route of a result. */
export interface ResultRoute {
  /** Destination with prefix length. */
  dst: string;
  /** Next hop. */
  gw?: string;
  /** Route MTU (1.1.0). */
  mtu?: number;
  /** Advertised MSS (1.1.0). */
  advmss?: number;
  /** Route priority (1.1.0). */
  priority?: number;
  /** Routing table (1.1.0). */
  table?: number;
  /** Route scope (1.1.0). */
  scope?: number;
  [key: string]: unknown;
}

/** A 1.1.0 result: the shape Galaxy uses internally. */
export interface Result {
  /** Always 1.1.0 inside Galaxy. */
  cniVersion: "1.1.0";
  /** Interfaces created. */
  interfaces?: ResultInterface[];
  /** Addresses assigned. */
  ips?: ResultIp[];
  /** Routes added. */
  routes?: ResultRoute[];
  /** DNS settings. */
  dns?: Dns;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------------------------------------
// Conversion. Three families with two conversions between neighbours, as in libcni:
// 0.x-legacy (0.1.0, 0.2.0) ⇄ 0.x-rich (0.3.0, 0.3.1, 0.4.0) ⇄ 1.x (1.0.0, 1.1.0).

type Family = "legacy" | "rich" | "current";

function familyOf(v: CniVersion): Family {
  if (v === "0.1.0" || v === "0.2.0") return "legacy";
  if (v === "1.0.0" || v === "1.1.0") return "current";
  return "rich";
}

const KNOWN_RESULT_KEYS = new Set(["cniVersion", "ip4", "ip6", "interfaces", "ips", "routes", "dns"]);
const V110_INTERFACE_KEYS = ["mtu", "socketPath", "pciID"];
const V110_ROUTE_KEYS = ["mtu", "advmss", "priority", "table", "scope"];

type Json = Record<string, unknown>;

/** Top-level keys no version defines: they travel with the result whatever its version. */
function extraKeys(result: Json): Json {
  const extra: Json = {};
  for (const [k, v] of Object.entries(result)) if (!KNOWN_RESULT_KEYS.has(k)) extra[k] = v;
  return extra;
}

function ipFamily(addressOrCidr: string): "4" | "6" {
  return addressOrCidr.includes(":") ? "6" : "4";
}

function withoutKeys<T extends Json>(obj: T, keys: string[]): T {
  const copy: Json = { ...obj };
  for (const k of keys) delete copy[k];
  return copy as T;
}

/** Drops undefined values and the empty lists libcni omits (`omitempty`). */
function compact<T extends Json>(obj: T): T {
  for (const k of Object.keys(obj)) {
    const v = obj[k];
    if (v === undefined || (Array.isArray(v) && v.length === 0 && LIST_KEYS.has(k))) delete obj[k];
  }
  return obj;
}

const LIST_KEYS = new Set(["interfaces", "ips", "routes"]);

function legacyToCurrent(r: Json): Json {
  const ips: Json[] = [];
  const routes: Json[] = [];
  for (const key of ["ip4", "ip6"]) {
    const cfg = r[key] as Json | undefined;
    if (!cfg) continue;
    ips.push(compact({ address: cfg.ip, gateway: cfg.gateway }));
    for (const route of (cfg.routes as Json[] | undefined) ?? []) {
      routes.push(compact({ dst: route.dst, gw: route.gw }));
    }
  }
  return compact({
    ...extraKeys(r),
    ips: ips.length ? ips : undefined,
    routes: routes.length ? routes : undefined,
    dns: r.dns,
  });
}

function currentToLegacy(r: Json, target: CniVersion): Json {
  let ip4: Json | undefined;
  let ip6: Json | undefined;
  // 0.2.0 holds one address per family: the first of each wins, the rest are lost.
  for (const ip of (r.ips as Json[] | undefined) ?? []) {
    const cfg = compact({ ip: ip.address, gateway: ip.gateway });
    if (ipFamily(String(ip.address)) === "4") ip4 ??= cfg;
    else ip6 ??= cfg;
  }
  if (!ip4 && !ip6) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `cannot convert result to version ${target}: it has no IP address, and ${target} results need one`,
    );
  }
  for (const route of (r.routes as Json[] | undefined) ?? []) {
    const owner = ipFamily(String(route.dst)) === "4" ? ip4 : ip6;
    if (!owner) continue;
    owner.routes = [
      ...((owner.routes as Json[] | undefined) ?? []),
      compact({ dst: route.dst, gw: route.gw }),
    ];
  }
  return compact({ ...extraKeys(r), ip4, ip6, dns: r.dns });
}

/** Brings a result of any version into the family-neutral 1.1.0 body (without `cniVersion`). */
function toCurrentBody(r: Json, from: CniVersion): Json {
  switch (familyOf(from)) {
    case "legacy":
      return legacyToCurrent(r);
    case "rich":
      return compact({
        ...extraKeys(r),
        interfaces: r.interfaces,
        ips: (r.ips as Json[] | undefined)?.map((ip) => withoutKeys(ip, ["version"])),
        routes: r.routes,
        dns: r.dns,
      });
    case "current":
      return compact({ ...r, cniVersion: undefined });
  }
}

/**
 * A chained plugin's result: `prev` (its `prevResult`) with `ours` appended — prev's interfaces, addresses and
 * routes first, our address interface indexes shifted past prev's interfaces, our `dns` when it has any
 * (else prev's), prev's other keys kept. Empty lists are left out. Neither input is changed.
 */
export function appendResult(prev: Result | undefined, ours: Result): Result {
  if (!prev) return ours;
  const offset = prev.interfaces?.length ?? 0;
  const merged: Result = { ...structuredClone(prev), cniVersion: "1.1.0" };
  const interfaces = [...(prev.interfaces ?? []), ...(ours.interfaces ?? [])];
  const ips = [
    ...(prev.ips ?? []),
    ...(ours.ips ?? []).map((ip) =>
      ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }
    ),
  ];
  const routes = [...(prev.routes ?? []), ...(ours.routes ?? [])];
  for (const [key, list] of [["interfaces", interfaces], ["ips", ips], ["routes", routes]] as const) {
    if (list.length) (merged as Record<string, unknown>)[key] = structuredClone(list);
    else delete merged[key];
  }
  if (ours.dns && Object.keys(ours.dns).length) merged.dns = structuredClone(ours.dns);
  return merged;
}

/**
 * Converts a result from one version to another, as libcni does: 0.2.0 keeps only the first IPv4 and the first
 * IPv6 address (routes follow their family), 0.3.x/0.4.0 gain `ips[].version`, 1.0.0 drops the fields that
 * 1.1.0 added (interface `mtu`, `socketPath`, `pciID`; route `mtu`, `advmss`, `priority`, `table`, `scope`).
 * Interface indexes survive every conversion that keeps interfaces. Converting to 0.1.0/0.2.0 a result with
 * no address throws a {@linkcode CniError} with code 1. Keys no version defines are carried along.
 */
export function convertResult(result: Json, to: CniVersion): Json {
  const from = result.cniVersion;
  if (!isSupportedVersion(from)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `unsupported result cniVersion ${JSON.stringify(from)}`,
    );
  }
  const body = toCurrentBody(structuredClone(result), from);
  switch (familyOf(to)) {
    case "legacy":
      return { cniVersion: to, ...currentToLegacy(body, to) };
    case "rich":
      return compact({
        cniVersion: to,
        ...extraKeys(body),
        interfaces: (body.interfaces as Json[] | undefined)?.map((i) => withoutKeys(i, V110_INTERFACE_KEYS)),
        ips: (body.ips as Json[] | undefined)?.map((ip) =>
          compact({ version: ipFamily(String(ip.address)), ...ip })
        ),
        routes: (body.routes as Json[] | undefined)?.map((r) => withoutKeys(r, V110_ROUTE_KEYS)),
        dns: body.dns,
      });
    case "current":
      if (to === "1.1.0") return compact({ cniVersion: to, ...body });
      return compact({
        cniVersion: to,
        ...body,
        interfaces: (body.interfaces as Json[] | undefined)?.map((i) => withoutKeys(i, V110_INTERFACE_KEYS)),
        routes: (body.routes as Json[] | undefined)?.map((r) => withoutKeys(r, V110_ROUTE_KEYS)),
      });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Structural validation of results (the checks of the zod schemas in spec.ts, written out by hand).

/**
 * The shape results are checked against: loose on purpose (a plugin's address is its business, and a strict
 * check here would refuse results libcni accepts); the same patterns as the zod schemas of `spec.ts`.
 */
export const CIDR_SHAPE = /^[0-9a-fA-F:.]+\/\d{1,3}$/;
/** See {@linkcode CIDR_SHAPE}. */
export const IP_SHAPE = /^[0-9a-fA-F:.]+$/;
const CIDR = CIDR_SHAPE;
const IP = IP_SHAPE;

function problem(path: string, msg: string): never {
  throw new CniError(ErrorCode.DecodingFailure, `invalid result: ${path}: ${msg}`);
}

function checkObject(v: unknown, path: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) problem(path, "expected an object");
  return v as Json;
}

function checkList(v: unknown, path: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) problem(path, "expected an array");
  return v;
}

function checkString(v: unknown, path: string, pattern?: RegExp, what = "a string"): void {
  if (typeof v !== "string" || (pattern && !pattern.test(v))) problem(path, `expected ${what}`);
}

function checkOptional(obj: Json, key: string, path: string, pattern: RegExp, what: string): void {
  if (obj[key] !== undefined) checkString(obj[key], `${path}.${key}`, pattern, what);
}

function checkCount(obj: Json, key: string, path: string): void {
  const v = obj[key];
  if (v !== undefined && !(typeof v === "number" && Number.isInteger(v) && v >= 0)) {
    problem(`${path}.${key}`, "expected a non-negative integer");
  }
}

function checkRoutes(v: unknown, path: string, v110: boolean): void {
  checkList(v, path).forEach((r, i) => {
    const route = checkObject(r, `${path}.${i}`);
    checkString(route.dst, `${path}.${i}.dst`, CIDR, "an address with a prefix length");
    checkOptional(route, "gw", `${path}.${i}`, IP, "an IP address");
    if (v110) { for (const k of V110_ROUTE_KEYS) checkCount(route, k, `${path}.${i}`); }
  });
}

/** Checks a result against the shape of its version and throws a CniError (code 6) naming the field. */
export function checkResult(r: Json, version: CniVersion): void {
  if (r.dns !== undefined) checkObject(r.dns, "dns");
  const family = familyOf(version);
  if (family === "legacy") {
    for (const key of ["ip4", "ip6"]) {
      if (r[key] === undefined) continue;
      const cfg = checkObject(r[key], key);
      checkString(cfg.ip, `${key}.ip`, CIDR, "an address with a prefix length");
      checkOptional(cfg, "gateway", key, IP, "an IP address");
      checkRoutes(cfg.routes, `${key}.routes`, false);
    }
    return;
  }
  const v110 = version === "1.1.0";
  checkList(r.interfaces, "interfaces").forEach((x, i) => {
    const iface = checkObject(x, `interfaces.${i}`);
    checkString(iface.name, `interfaces.${i}.name`, /./, "a non-empty string");
    if (v110) checkCount(iface, "mtu", `interfaces.${i}`);
  });
  checkList(r.ips, "ips").forEach((x, i) => {
    const ip = checkObject(x, `ips.${i}`);
    if (family === "rich" && ip.version !== "4" && ip.version !== "6") {
      problem(`ips.${i}.version`, 'expected "4" or "6"');
    }
    checkString(ip.address, `ips.${i}.address`, CIDR, "an address with a prefix length");
    checkOptional(ip, "gateway", `ips.${i}`, IP, "an IP address");
    checkCount(ip, "interface", `ips.${i}`);
  });
  checkRoutes(r.routes, "routes", v110);
}

/**
 * Parses and validates a result of any version and returns it in the internal 1.1.0 shape. Throws a
 * {@linkcode CniError} (code 6) that names the offending field, or code 1 for a version we do not speak.
 */
export function parseResult(raw: unknown, expectedVersion?: CniVersion): Result {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(ErrorCode.DecodingFailure, "result is not a JSON object");
  }
  const obj = raw as Json;
  // Some plugins (and libcni's delegated IPAM results) omit cniVersion or leave it empty: take the one we asked
  // for, as libcni does.
  const version = obj.cniVersion === undefined || obj.cniVersion === "" ? expectedVersion : obj.cniVersion;
  if (!isSupportedVersion(version)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `result has unsupported cniVersion ${JSON.stringify(version)}`,
    );
  }
  const withVersion = { ...obj, cniVersion: version };
  checkResult(withVersion, version);
  return convertResult(withVersion, CURRENT_VERSION) as unknown as Result;
}

/** True when `v` looks like the spec's error object. */
export function isCniErrorObject(v: unknown): v is CniErrorObject {
  const o = v as CniErrorObject;
  return typeof o === "object" && o !== null && Number.isInteger(o.code) && typeof o.msg === "string" &&
    (o.details === undefined || typeof o.details === "string");
}

/**
 * libcni's rule for network names and container IDs alike: a letter or digit, then letters, digits, `_`, `.`
 * and `-`.
 */
export const CNI_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;
const NETWORK_NAME = CNI_NAME;

/**
 * What is wrong with a plugin configuration (`field: problem`), or `undefined` when nothing is: `type` must name
 * a plugin, `name`, when present and not empty, must be a valid network name, and the well-known keys must have
 * their spec types. Unknown keys are not looked at.
 */
export function netConfProblem(raw: Json): string | undefined {
  if (typeof raw.type !== "string" || raw.type === "") return "type: must name the plugin";
  if (raw.cniVersion !== undefined && typeof raw.cniVersion !== "string") {
    return "cniVersion: expected a string";
  }
  // No name (or upstream flannel's empty one) is accepted: a galaxy.json network without a name reaches its
  // plugins unnamed, as the Go daemon passed it. (The Go plugins' CNI 0.8 skel refused that; ours take it.)
  if (
    raw.name !== undefined && raw.name !== "" &&
    (typeof raw.name !== "string" || !NETWORK_NAME.test(raw.name))
  ) {
    return "name: must start with a letter or digit and contain only letters, digits, '_', '.' and '-'";
  }
  if (raw.ipMasq !== undefined && typeof raw.ipMasq !== "boolean") return "ipMasq: expected a boolean";
  for (const key of ["ipam", "dns", "args", "runtimeConfig", "prevResult", "capabilities"]) {
    const v = raw[key];
    if (v !== undefined && (typeof v !== "object" || v === null || Array.isArray(v))) {
      return `${key}: expected an object`;
    }
  }
  const ipamType = (raw.ipam as Json | undefined)?.type;
  if (ipamType !== undefined && typeof ipamType !== "string") return "ipam.type: expected a string";
  for (const [cap, on] of Object.entries((raw.capabilities as Json | undefined) ?? {})) {
    if (typeof on !== "boolean") return `capabilities.${cap}: expected a boolean`;
  }
  return undefined;
}
