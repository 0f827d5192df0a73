/**
 * Kernel parameters (sysctls) as plain file writes under /proc/sys, as Galaxy does them. Inside a pod
 * namespace they run synchronously in a netns worker (an async write would land in the host namespace);
 * the host variants act on the namespace of this process and never touch a worker.
 * @module
 */
import { inNetns, type ReadStepResult, type WriteStepResult } from "./netns.ts";

/** A sysctl that could not be read or written. */
export class SysctlError extends Error {
  /** The key as given. */
  readonly key: string;
  /** The namespace path, or `null` for this process's own. */
  readonly netns: string | null;
  /** True when the sysctl does not exist (unknown key, interface not there, module not loaded). */
  readonly missing: boolean;

  constructor(key: string, message: string, options: { netns?: string | null; missing?: boolean } = {}) {
    const netns = options.netns ?? null;
    super(`sysctl ${key}${netns === null ? "" : ` in ${netns}`}: ${message}`);
    this.name = "SysctlError";
    this.key = key;
    this.netns = netns;
    this.missing = options.missing ?? false;
  }
}

/**
 * The /proc/sys path of a key. Keys follow sysctl(8): `net.ipv4.conf.eth0.rp_filter` (dots separate, and a
 * `/` stands for a dot inside a name: `net.ipv4.conf.eth0/100.rp_filter` is interface `eth0.100`),
 * `net/ipv4/ip_forward` (slashes separate), or an absolute `/proc/sys/...` path.
 */
export function sysctlPath(key: string): string {
  if (typeof key !== "string" || key === "" || /[\s\0]/.test(key)) {
    throw new SysctlError(String(key), "is not a valid sysctl key");
  }
  let rel: string;
  if (key.startsWith("/proc/sys/")) {
    rel = key.slice("/proc/sys/".length);
  } else {
    const firstDot = key.indexOf(".");
    const firstSlash = key.indexOf("/");
    const slashes = firstSlash >= 0 && (firstDot < 0 || firstSlash < firstDot);
    rel = slashes ? key : key.replace(/[./]/g, (c) => (c === "." ? "/" : "."));
  }
  if (rel === "" || rel.split("/").some((part) => part === "" || part === "." || part === "..")) {
    throw new SysctlError(key, "is not a valid sysctl key");
  }
  return `/proc/sys/${rel}`;
}

/** Options for the set functions. */
export interface SetSysctlOptions {
  /** Skip keys whose file does not exist instead of throwing (they are returned). */
  ignoreMissing?: boolean;
}

function check(
  results: WriteStepResult[],
  keys: string[],
  netns: string | null,
  ignoreMissing: boolean,
): string[] {
  const skipped: string[] = [];
  results.forEach((r, i) => {
    if (r.error === undefined) return;
    if (r.missing && ignoreMissing) skipped.push(keys[i]);
    else {throw new SysctlError(keys[i], r.missing ? "does not exist" : r.error, {
        netns,
        missing: r.missing,
      });}
  });
  return skipped;
}

/**
 * Writes sysctls inside the namespace at `netnsPath` (in order, exact values, no newline added). Every write
 * is attempted; the first failure then throws a {@linkcode SysctlError}. Returns the keys skipped as missing.
 */
export async function setSysctls(
  netnsPath: string,
  values: Record<string, string>,
  options: SetSysctlOptions = {},
): Promise<string[]> {
  const keys = Object.keys(values);
  const steps = keys.map((key) => ({ op: "write" as const, path: sysctlPath(key), value: values[key] }));
  const results = (await inNetns(netnsPath, steps)) as WriteStepResult[];
  return check(results, keys, netnsPath, options.ignoreMissing ?? false);
}

/** Reads sysctls inside the namespace at `netnsPath`, trimmed; `undefined` for keys that do not exist. */
export async function getSysctls(
  netnsPath: string,
  keys: string[],
): Promise<Record<string, string | undefined>> {
  const [result] = await inNetns(netnsPath, [{ op: "read", paths: keys.map(sysctlPath) }]);
  const out: Record<string, string | undefined> = {};
  keys.forEach((key, i) => out[key] = (result as ReadStepResult).values[i]?.trim() ?? undefined);
  return out;
}

/** Writes sysctls in this process's own namespace (the daemon's host side). Same rules as {@linkcode setSysctls}. */
export async function setHostSysctls(
  values: Record<string, string>,
  options: SetSysctlOptions = {},
): Promise<string[]> {
  const keys = Object.keys(values);
  const paths = keys.map(sysctlPath);
  const results: WriteStepResult[] = [];
  for (const [i, key] of keys.entries()) {
    try {
      await Deno.writeTextFile(paths[i], values[key], { create: false });
      results.push({ op: "write", path: paths[i] });
    } catch (err) {
      const missing = err instanceof Deno.errors.NotFound;
      results.push({ op: "write", path: paths[i], error: (err as Error).message, missing });
    }
  }
  return check(results, keys, null, options.ignoreMissing ?? false);
}

/** Reads sysctls in this process's own namespace, trimmed; `undefined` for keys that do not exist. */
export async function getHostSysctls(keys: string[]): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = {};
  for (const key of keys) {
    try {
      out[key] = (await Deno.readTextFile(sysctlPath(key))).trim();
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw new SysctlError(key, (err as Error).message);
      out[key] = undefined;
    }
  }
  return out;
}
