/**
 * Route-ENI (`--route-eni`): a route table per extra ENI of the node, from the instance metadata service
 * (Tencent's by default; `--eni-metadata-url`). For each ENI other than the primary: the link up, `default via
 * <ENI gateway> dev <if> onlink table <N>` (N from the interface name, eth2 → 2), and the main table's connected
 * route of the ENI's subnet (`<subnet> src <ENI IP>`) removed, so that only policy routing sends traffic out of
 * it. As Galaxy, retried until the first success; unlike Galaxy, re-checked periodically afterwards (an ENI
 * attached later, a route someone removed), a non-200 answer is an error rather than an empty value, and an
 * interface without a number is skipped with a warning instead of aborting the pass.
 * @module
 */
import { type IpOp, linkSet, listLinks, listRoutes, routeDel, routeReplace, runBatch } from "../netops/ip.ts";
import { isIPv4 } from "../netops/ip_address.ts";
import type { Counters } from "./metrics.ts";

/** Galaxy's metadata service base URL. */
export const DEFAULT_METADATA_URL = "http://metadata.tencentyun.com/latest/meta-data/";
/** The first retry after a failure; each later one waits twice as long, up to {@linkcode ENI_MAX_RETRY_MS}. */
export const ENI_FIRST_RETRY_MS = 1000;
/** The longest wait between retries (Galaxy's poll period). */
export const ENI_MAX_RETRY_MS = 2 * 60_000;
/** How often the tables are re-checked after a success. */
export const ENI_RECHECK_MS = 5 * 60_000;
/** How long one metadata request may take. */
const REQUEST_TIMEOUT_MS = 5000;

/** One ENI as the metadata service describes it. */
export interface Eni {
  /** MAC address, lower case. */
  mac: string;
  /** The ENI's primary IPv4 address. */
  ip: string;
  /** Its subnet as `network/prefix`. */
  subnet: string;
  /** Its gateway: the metadata's, else the subnet's first host. */
  gateway: string;
}

/** What the metadata service says about the node's ENIs. */
export interface EniInventory {
  /** The primary ENI's MAC (lower case). */
  primaryMac: string;
  /** Every ENI, the primary included. */
  enis: Eni[];
}

/** A metadata request that failed. */
export class MetadataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MetadataError";
  }
}

async function getText(base: string, path: string): Promise<string> {
  const url = new URL(path, base).toString();
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (e) {
    throw new MetadataError(`GET ${url}: ${(e as Error).message}`);
  }
  const text = await res.text();
  if (res.status !== 200) throw new MetadataError(`GET ${url}: HTTP ${res.status}`);
  return text.trim();
}

function lines(text: string): string[] {
  return text.split("\n").map((l) => l.trim().replace(/\/$/, "")).filter(Boolean);
}

function v4ToInt(ip: string): number {
  return ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

function intToV4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** The prefix length of a dotted mask (`255.255.240.0` → 20); throws on a non-contiguous mask. */
export function maskPrefix(mask: string): number {
  if (!isIPv4(mask)) throw new MetadataError(`subnet mask ${JSON.stringify(mask)} is not an IPv4 mask`);
  const bits = v4ToInt(mask).toString(2).padStart(32, "0");
  if (!/^1*0*$/.test(bits)) throw new MetadataError(`subnet mask ${mask} is not contiguous`);
  return bits.indexOf("0") < 0 ? 32 : bits.indexOf("0");
}

/** Reads every ENI from the metadata service at `base` (ending in `/`). */
export async function readEnis(base: string): Promise<EniInventory> {
  const macs = lines(await getText(base, "network/interfaces/macs")).map((m) => m.toLowerCase());
  const primaryMac = (await getText(base, "mac")).toLowerCase();
  const enis: Eni[] = [];
  for (const mac of macs) {
    const prefix = `network/interfaces/macs/${mac}`;
    const ip = await getText(base, `${prefix}/primary-local-ipv4`);
    if (!isIPv4(ip)) {
      throw new MetadataError(`ENI ${mac}: primary-local-ipv4 ${JSON.stringify(ip)} is not IPv4`);
    }
    const bits = maskPrefix(await getText(base, `${prefix}/local-ipv4s/${ip}/subnet-mask`));
    const size = 2 ** (32 - bits);
    const network = Math.floor(v4ToInt(ip) / size) * size;
    let gateway = await getText(base, `${prefix}/local-ipv4s/${ip}/gateway`).catch(() => "");
    if (!isIPv4(gateway)) gateway = intToV4(network + 1);
    enis.push({ mac, ip, subnet: `${intToV4(network)}/${bits}`, gateway });
  }
  return { primaryMac, enis };
}

/** The route table of an ENI interface: the number its name ends in (eth2 → 2; 0 → 1, as Galaxy). */
export function eniTable(ifname: string): number {
  const m = /(\d+)$/.exec(ifname);
  if (!m) throw new Error(`interface ${ifname} has no number to name its route table after`);
  const n = Number(m[1]);
  if (n === 0) return 1;
  if (n >= 253 && n <= 255) {
    throw new Error(`interface ${ifname}: table ${n} is reserved (default/main/local)`);
  }
  return n;
}

/** Logging as the keeper needs it. */
export interface EniLog {
  /** Informational. */
  info(msg: string): void;
  /** A failure, retried. */
  warn(msg: string): void;
}

/** Options of {@linkcode EniKeeper}. */
export interface EniKeeperOptions {
  /** The metadata base URL (`--eni-metadata-url`). */
  metadataUrl: string;
  /** Where to count passes. */
  counters?: Counters;
  /** The namespace whose links and routes are set (`null`, the default: the daemon's own). */
  netns?: string | null;
  /** First retry delay; default {@linkcode ENI_FIRST_RETRY_MS}. */
  firstRetryMs?: number;
  /** Re-check period after a success; default {@linkcode ENI_RECHECK_MS}. */
  recheckMs?: number;
}

/** Keeps the ENI route tables: retried with back-off until the first success, then re-checked. */
export class EniKeeper {
  readonly #o: EniKeeperOptions;
  readonly #log: EniLog;
  #timer?: ReturnType<typeof setTimeout>;
  #running?: Promise<unknown>;
  #stopped = false;
  #lastError = "";

  constructor(log: EniLog, options: EniKeeperOptions) {
    this.#o = options;
    this.#log = log;
    options.counters?.declare("galaxy_eni_setup_total", "Route-ENI set-up passes, by result.");
  }

  /** One pass: reads the metadata and makes the tables; throws when anything is missing or fails. */
  async apply(): Promise<{ table: number; ifname: string; eni: Eni }[]> {
    const netns = this.#o.netns ?? null;
    const inventory = await readEnis(this.#o.metadataUrl);
    const extra = inventory.enis.filter((e) => e.mac !== inventory.primaryMac);
    if (extra.length === 0) {
      throw new Error(
        `the metadata lists only the primary ENI (${inventory.primaryMac}); nothing to route yet`,
      );
    }
    const links = await listLinks(netns);
    const done: { table: number; ifname: string; eni: Eni }[] = [];
    const problems: string[] = [];
    const found: { link: string; table: number; eni: Eni }[] = [];
    for (const eni of extra) {
      const link = links.find((l) => l.address?.toLowerCase() === eni.mac);
      if (!link) {
        problems.push(`ENI ${eni.mac} (${eni.ip}) has no interface on this node yet`);
        continue;
      }
      let table: number;
      try {
        table = eniTable(link.name);
      } catch (e) {
        problems.push((e as Error).message);
        continue;
      }
      found.push({ link: link.name, table, eni });
    }
    // Step 1, links up: that is when the kernel adds each ENI's connected route, which step 2 then removes.
    await runBatch(netns, found.map((f) => linkSet(f.link, { up: true })));
    const main = await listRoutes(netns);
    const ops: IpOp[] = [];
    for (const { link, table, eni } of found) {
      ops.push(routeReplace({ dst: "default", gw: eni.gateway, dev: link, onlink: true, table }));
      if (main.some((r) => r.dst === eni.subnet && r.prefsrc === eni.ip)) {
        ops.push(routeDel({ dst: eni.subnet, src: eni.ip, scope: "link", dev: link }));
      }
      done.push({ table, ifname: link, eni });
    }
    await runBatch(netns, ops);
    if (problems.length) throw new Error(problems.join("; "));
    return done;
  }

  /** Starts the loop: a pass now, retried with back-off until it succeeds, then every re-check period. */
  start(): void {
    let delay = this.#o.firstRetryMs ?? ENI_FIRST_RETRY_MS;
    const tick = () => {
      this.#running = this.apply().then((done) => {
        this.#o.counters?.inc("galaxy_eni_setup_total", { result: "ok" });
        const text = done.map((d) => `${d.ifname} (${d.eni.ip}) -> table ${d.table}`).join(", ");
        if (this.#lastError !== "ok") this.#log.info(`route-ENI: ${text}`);
        this.#lastError = "ok";
        delay = this.#o.firstRetryMs ?? ENI_FIRST_RETRY_MS;
        return this.#o.recheckMs ?? ENI_RECHECK_MS;
      }, (e) => {
        this.#o.counters?.inc("galaxy_eni_setup_total", { result: "error" });
        const msg = (e as Error).message;
        const wait = delay;
        delay = Math.min(delay * 2, ENI_MAX_RETRY_MS);
        if (msg !== this.#lastError) this.#log.warn(`route-ENI: ${msg}; retrying in ${wait / 1000} s`);
        this.#lastError = msg;
        return wait;
      }).then((next) => {
        if (!this.#stopped) this.#timer = setTimeout(tick, next);
      });
    };
    tick();
  }

  /** Stops the loop and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    clearTimeout(this.#timer);
  }
}
