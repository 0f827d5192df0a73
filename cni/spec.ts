/**
 * The CNI specification as data: everything of {@linkcode ./version.ts} (versions, error codes, result types
 * and conversion) plus zod schemas for configurations, configuration lists, results of every version and the
 * error object. The daemon and the tests validate with these; the shim and the plugins use `version.ts`
 * directly so that they never load zod.
 * @module
 */
import { z } from "zod";
import { CIDR_SHAPE, CNI_NAME, type CniVersion, IP_SHAPE } from "./version.ts";

export * from "./version.ts";
// ---------------------------------------------------------------------------------------------------------
// Schemas. Every object is loose: fields we do not know pass through untouched.

const cidr = z.string().regex(CIDR_SHAPE, "expected an address with a prefix length");
const ipAddress = z.string().regex(IP_SHAPE, "expected an IP address");

/** The `dns` object of configurations and results. */
export const DnsSchema = z.looseObject({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});

const networkName = z.string().regex(
  CNI_NAME,
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

/** The spec's error object. */
export const CniErrorSchema = z.looseObject({
  cniVersion: z.string().optional(),
  code: z.number().int(),
  msg: z.string(),
  details: z.string().optional(),
});

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

/** A readable one-line summary of a zod error, naming the fields. */
export function describeZodError(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`).join("; ");
}
