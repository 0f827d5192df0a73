/**
 * The node sysctls pods need, kept at their values: `net.ipv4.ip_forward` (`--ip-forward`),
 * `net.bridge.bridge-nf-call-iptables` (`--bridge-nf-call-iptables`) and, with `--route-eni`, `rp_filter=0` on
 * all, eth0 and eth1. Set at start and re-checked every 5 minutes; a value is written only when it differs.
 * As in Galaxy, `false` actively writes 0. A key that does not exist (br_netfilter not loaded, no eth1) is a
 * warning, never a crash; a write failure is logged and counted.
 * @module
 */
import { getHostSysctls, getSysctls, setHostSysctls, setSysctls } from "../netops/sysctl.ts";
import type { Counters } from "./metrics.ts";

/** How often the values are re-checked. */
export const KERNEL_RECHECK_MS = 5 * 60_000;

/** The flags that decide the values. */
export interface KernelFlags {
  /** `--ip-forward`. */
  ipForward: boolean;
  /** `--bridge-nf-call-iptables`. */
  bridgeNfCallIptables: boolean;
  /** `--route-eni`. */
  routeEni: boolean;
}

/** Logging as the keeper needs it. */
export interface KernelLog {
  /** Something the operator should know. */
  warn(msg: string): void;
  /** Informational. */
  info(msg: string): void;
}

/** The sysctls and the values the flags ask for, in the order they are applied. */
export function desiredSysctls(flags: KernelFlags): Record<string, string> {
  const values: Record<string, string> = {
    "net.ipv4.ip_forward": flags.ipForward ? "1" : "0",
    "net.bridge.bridge-nf-call-iptables": flags.bridgeNfCallIptables ? "1" : "0",
  };
  if (flags.routeEni) {
    for (const dev of ["all", "eth0", "eth1"]) values[`net.ipv4.conf.${dev}.rp_filter`] = "0";
  }
  return values;
}

function missingHint(key: string): string {
  if (key.startsWith("net.bridge.")) {
    return "the br_netfilter module is not loaded (modprobe br_netfilter), so bridged pod traffic bypasses iptables";
  }
  const dev = /^net\.ipv4\.conf\.([^.]+)\./.exec(key)?.[1];
  return dev ? `interface ${dev} does not exist` : "it does not exist on this kernel";
}

/** Options of {@linkcode KernelKeeper}. */
export interface KernelKeeperOptions {
  /** Where to count writes and failures. */
  counters?: Counters;
  /** The namespace to keep (`null`, the default: the daemon's own). */
  netns?: string | null;
  /** Re-check period; default {@linkcode KERNEL_RECHECK_MS}. */
  intervalMs?: number;
}

/** Keeps the node sysctls at the flags' values until stopped. */
export class KernelKeeper {
  readonly #values: Record<string, string>;
  readonly #log: KernelLog;
  readonly #counters?: Counters;
  readonly #netns: string | null;
  readonly #intervalMs: number;
  readonly #warned = new Set<string>();
  #timer?: ReturnType<typeof setTimeout>;
  #running?: Promise<void>;
  #stopped = false;

  constructor(flags: KernelFlags, log: KernelLog, options: KernelKeeperOptions = {}) {
    this.#values = desiredSysctls(flags);
    this.#log = log;
    this.#counters = options.counters;
    this.#netns = options.netns ?? null;
    this.#intervalMs = options.intervalMs ?? KERNEL_RECHECK_MS;
    this.#counters?.declare("galaxy_sysctl_writes_total", "Node sysctls written because they differed.");
    this.#counters?.declare(
      "galaxy_sysctl_failures_total",
      "Node sysctls that could not be read or written.",
    );
  }

  async #read(keys: string[]): Promise<Record<string, string | undefined>> {
    return this.#netns === null ? await getHostSysctls(keys) : await getSysctls(this.#netns, keys);
  }

  async #write(key: string, value: string): Promise<boolean> {
    const values = { [key]: value };
    const skipped = this.#netns === null
      ? await setHostSysctls(values, { ignoreMissing: true })
      : await setSysctls(this.#netns, values, { ignoreMissing: true });
    return skipped.length === 0;
  }

  #failed(key: string, reason: string, message: string): void {
    this.#counters?.inc("galaxy_sysctl_failures_total", { key, reason });
    // Once per key and reason: the 5-minute re-check must not flood the log with the same warning.
    const id = `${key}\u0000${message}`;
    if (this.#warned.has(id)) return;
    this.#warned.add(id);
    this.#log.warn(message);
  }

  /** One pass: reads every key and writes those that differ. Never throws. */
  async reconcile(): Promise<void> {
    const keys = Object.keys(this.#values);
    let current: Record<string, string | undefined>;
    try {
      current = await this.#read(keys);
    } catch (e) {
      for (const key of keys) {
        this.#failed(key, "read", `sysctl ${key}: cannot read: ${(e as Error).message}`);
      }
      return;
    }
    for (const key of keys) {
      const want = this.#values[key];
      if (current[key] === want) continue;
      if (current[key] === undefined) {
        this.#failed(key, "missing", `sysctl ${key} cannot be set to ${want}: ${missingHint(key)}`);
        continue;
      }
      try {
        if (await this.#write(key, want)) {
          this.#counters?.inc("galaxy_sysctl_writes_total", { key });
          this.#log.info(`sysctl ${key}: ${current[key]} -> ${want}`);
        } else {
          this.#failed(key, "missing", `sysctl ${key} cannot be set to ${want}: ${missingHint(key)}`);
        }
      } catch (e) {
        this.#failed(key, "write", `sysctl ${key}: cannot write ${want}: ${(e as Error).message}`);
      }
    }
  }

  /** Runs a pass now and then every interval. */
  start(): void {
    const tick = () => {
      this.#running = this.reconcile().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#intervalMs);
      });
    };
    tick();
  }

  /** Stops the loop and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
