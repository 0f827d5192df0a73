/**
 * Reading a plugin's own configuration keys with clear errors (code 7, naming the key), without zod: plugins
 * run once per pod, and loading zod would cost ~30 ms each time.
 * @module
 */
import { CniError, type Dns, ErrorCode } from "../../version.ts";

function invalid(plugin: string, key: string, expected: string, value: unknown): CniError {
  return new CniError(
    ErrorCode.InvalidNetworkConfig,
    `${plugin}: invalid config: ${key}: expected ${expected}, got ${JSON.stringify(value)}`,
  );
}

/** An optional integer key within `[min, max]`; `undefined` when absent. */
export function optionalInteger(
  conf: Record<string, unknown>,
  key: string,
  options: { plugin: string; min: number; max: number; alsoAllowed?: number[] },
): number | undefined {
  const v = conf[key];
  if (v === undefined || v === null) return undefined;
  const ok = typeof v === "number" && Number.isInteger(v) &&
    ((v >= options.min && v <= options.max) || (options.alsoAllowed ?? []).includes(v));
  if (!ok) {
    const extra = options.alsoAllowed?.length ? ` or ${options.alsoAllowed.join(", ")}` : "";
    throw invalid(options.plugin, key, `an integer ${options.min}–${options.max}${extra}`, v);
  }
  return v as number;
}

/** An optional string key that passes `check` (which describes what it wants); `undefined` when absent. */
export function optionalString(
  conf: Record<string, unknown>,
  key: string,
  options: { plugin: string; check?: (s: string) => boolean; expected?: string },
): string | undefined {
  const v = conf[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || (options.check && !options.check(v))) {
    throw invalid(options.plugin, key, options.expected ?? "a string", v);
  }
  return v;
}

/** An optional boolean key. */
export function optionalBoolean(
  conf: Record<string, unknown>,
  key: string,
  options: { plugin: string },
): boolean | undefined {
  const v = conf[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalid(options.plugin, key, "true or false", v);
  return v;
}

/** The optional `dns` object of the spec, checked field by field. */
export function optionalDns(conf: Record<string, unknown>, options: { plugin: string }): Dns | undefined {
  const v = conf.dns;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw invalid(options.plugin, "dns", "an object", v);
  const dns = v as Record<string, unknown>;
  for (const key of ["nameservers", "search", "options"]) {
    const list = dns[key];
    if (list !== undefined && !(Array.isArray(list) && list.every((x) => typeof x === "string"))) {
      throw invalid(options.plugin, `dns.${key}`, "a list of strings", list);
    }
  }
  if (dns.domain !== undefined && typeof dns.domain !== "string") {
    throw invalid(options.plugin, "dns.domain", "a string", dns.domain);
  }
  return dns as Dns;
}
