/**
 * The CNI specification as data: versions, error codes, zod schemas for configurations and results, and
 * conversion of results between every pair of versions (as libcni's `pkg/types/{020,040,100}` do it).
 *
 * Inside Galaxy every result is handled in the 1.1.0 shape ({@linkcode Result}); it is converted to the
 * caller's version only at the edge.
 * @module
 */
import { z } from "zod";

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
 * The version a runtime must use for a configuration: the highest of `cniVersion` ∪ `cniVersions` that is
 * also in `supported` (ours by default). Versions we do not know are ignored, as libcni does; when none is
 * left the result is `undefined`.
 */
export function selectVersion(
  conf: { cniVersion?: unknown; cniVersions?: unknown },
  supported: readonly string[] = ALL_VERSIONS,
): CniVersion | undefined {
  const offered: unknown[] = [conf.cniVersion, ...(Array.isArray(conf.cniVersions) ? conf.cniVersions : [])];
  let best: CniVersion | undefined;
  for (const v of offered) {
    if (!isSupportedVersion(v) || !supported.includes(v)) continue;
    if (!best || compareVersions(v, best) > 0) best = v;
  }
  return best;
}

// ---------------------------------------------------------------------------------------------------------
// Schemas. Every object is loose: fields we do not know pass through untouched.

const cidr = z.string().regex(/^[0-9a-fA-F:.]+\/\d{1,3}$/, "expected an address with a prefix length");
const ipAddress = z.string().regex(/^[0-9a-fA-F:.]+$/, "expected an IP address");

/** The `dns` object of configurations and results. */
export const DnsSchema = z.looseObject({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});
/** DNS settings. */
export type Dns = z.infer<typeof DnsSchema>;

const networkName = z.string().regex(
  /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/,
  "must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
);

/** One plugin's configuration: what a plugin reads on stdin (without the runtime's injected keys). */
export const NetConfSchema = z.looseObject({
  cniVersion: z.string().optional(),
  name: networkName.optional(),
  type: z.string().min(1, "must name the plugin"),
  capabilities: z.record(z.string(), z.boolean()).optional(),
  ipMasq: z.boolean().optional(),
  ipam: z.looseObject({ type: z.string().optional() }).optional(),
  dns: DnsSchema.optional(),
  args: z.record(z.string(), z.unknown()).optional(),
  runtimeConfig: z.record(z.string(), z.unknown()).optional(),
  prevResult: z.record(z.string(), z.unknown()).optional(),
});
/** A parsed plugin configuration. */
export type NetConf = z.infer<typeof NetConfSchema>;

/** A network configuration list (a `.conflist`). */
export const NetConfListSchema = z.looseObject({
  cniVersion: z.string().optional(),
  cniVersions: z.array(z.string()).optional(),
  name: networkName,
  disableCheck: z.boolean().optional(),
  disableGC: z.boolean().optional(),
  loadOnlyInlinedPlugins: z.boolean().optional(),
  plugins: z.array(NetConfSchema).min(1, "a configuration list needs at least one plugin"),
});
/** A parsed configuration list. */
export type NetConfList = z.infer<typeof NetConfListSchema>;

/** The spec's error object. */
export const CniErrorSchema = z.looseObject({
  cniVersion: z.string().optional(),
  code: z.number().int(),
  msg: z.string(),
  details: z.string().optional(),
});
/** The spec's error object as JSON. */
export type CniErrorObject = z.infer<typeof CniErrorSchema>;

// 0.1.0 / 0.2.0
const Route020Schema = z.looseObject({ dst: cidr, gw: ipAddress.optional() });
const IpConfig020Schema = z.looseObject({
  ip: cidr,
  gateway: ipAddress.optional(),
  routes: z.array(Route020Schema).optional(),
});
/** A 0.1.0 or 0.2.0 result. */
export const Result020Schema = z.looseObject({
  cniVersion: z.enum(["0.1.0", "0.2.0"]),
  ip4: IpConfig020Schema.optional(),
  ip6: IpConfig020Schema.optional(),
  dns: DnsSchema.optional(),
});
/** A 0.1.0 or 0.2.0 result. */
export type Result020 = z.infer<typeof Result020Schema>;

// 0.3.0 / 0.3.1 / 0.4.0
const Interface040Schema = z.looseObject({
  name: z.string().min(1),
  mac: z.string().optional(),
  sandbox: z.string().optional(),
});
const Route040Schema = z.looseObject({ dst: cidr, gw: ipAddress.optional() });
const IpConfig040Schema = z.looseObject({
  version: z.enum(["4", "6"]),
  address: cidr,
  gateway: ipAddress.optional(),
  interface: z.number().int().nonnegative().optional(),
});
/** A 0.3.0, 0.3.1 or 0.4.0 result. */
export const Result040Schema = z.looseObject({
  cniVersion: z.enum(["0.3.0", "0.3.1", "0.4.0"]),
  interfaces: z.array(Interface040Schema).optional(),
  ips: z.array(IpConfig040Schema).optional(),
  routes: z.array(Route040Schema).optional(),
  dns: DnsSchema.optional(),
});
/** A 0.3.x or 0.4.0 result. */
export type Result040 = z.infer<typeof Result040Schema>;

// 1.0.0 / 1.1.0
const Interface100Schema = z.looseObject({
  name: z.string().min(1),
  mac: z.string().optional(),
  sandbox: z.string().optional(),
});
const Interface110Schema = Interface100Schema.extend({
  mtu: z.number().int().nonnegative().optional(),
  socketPath: z.string().optional(),
  pciID: z.string().optional(),
});
const IpConfig100Schema = z.looseObject({
  address: cidr,
  gateway: ipAddress.optional(),
  interface: z.number().int().nonnegative().optional(),
});
const Route100Schema = z.looseObject({ dst: cidr, gw: ipAddress.optional() });
const Route110Schema = Route100Schema.extend({
  mtu: z.number().int().nonnegative().optional(),
  advmss: z.number().int().nonnegative().optional(),
  priority: z.number().int().nonnegative().optional(),
  table: z.number().int().nonnegative().optional(),
  scope: z.number().int().nonnegative().optional(),
});
/** A 1.0.0 result. */
export const Result100Schema = z.looseObject({
  cniVersion: z.literal("1.0.0"),
  interfaces: z.array(Interface100Schema).optional(),
  ips: z.array(IpConfig100Schema).optional(),
  routes: z.array(Route100Schema).optional(),
  dns: DnsSchema.optional(),
});
/** A 1.1.0 result: the shape Galaxy uses internally. */
export const Result110Schema = z.looseObject({
  cniVersion: z.literal("1.1.0"),
  interfaces: z.array(Interface110Schema).optional(),
  ips: z.array(IpConfig100Schema).optional(),
  routes: z.array(Route110Schema).optional(),
  dns: DnsSchema.optional(),
});
/** A 1.1.0 result, the internal shape. */
export type Result = z.infer<typeof Result110Schema>;
/** An interface of a 1.1.0 result. */
export type ResultInterface = NonNullable<Result["interfaces"]>[number];
/** An address of a 1.1.0 result. */
export type ResultIp = NonNullable<Result["ips"]>[number];
/** A route of a 1.1.0 result. */
export type ResultRoute = NonNullable<Result["routes"]>[number];
/** A result of any version. */
export type AnyResult = Result020 | Result040 | z.infer<typeof Result100Schema> | Result;

/** The schema that validates a result of version `v`. */
export function resultSchemaFor(v: CniVersion): z.ZodType {
  switch (v) {
    case "0.1.0":
    case "0.2.0":
      return Result020Schema;
    case "0.3.0":
    case "0.3.1":
    case "0.4.0":
      return Result040Schema;
    case "1.0.0":
      return Result100Schema;
    case "1.1.0":
      return Result110Schema;
  }
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

/**
 * Parses and validates a result of any version and returns it in the internal 1.1.0 shape. Throws a
 * {@linkcode CniError} (code 6) that names the offending field.
 */
export function parseResult(raw: unknown, expectedVersion?: CniVersion): Result {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(ErrorCode.DecodingFailure, "result is not a JSON object");
  }
  const obj = raw as Json;
  // Some plugins (and libcni's delegated IPAM results) omit cniVersion: take the one we asked for.
  const version = obj.cniVersion ?? expectedVersion;
  if (!isSupportedVersion(version)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `result has unsupported cniVersion ${JSON.stringify(version)}`,
    );
  }
  const withVersion = { ...obj, cniVersion: version };
  const parsed = resultSchemaFor(version).safeParse(withVersion);
  if (!parsed.success) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `invalid ${version} result: ${z.prettifyError(parsed.error).replaceAll("\n", "; ")}`,
    );
  }
  return convertResult(parsed.data as Json, CURRENT_VERSION) as Result;
}

/** A readable one-line summary of a zod error, naming the fields. */
export function describeZodError(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`).join("; ");
}
