/**
 * Where a plugin's addresses come from: `ipinfos` in CNI_ARGS (set by galaxy-ipam through the pod's galaxy args
 * annotation), else the delegated `ipam` plugin of the configuration. Shared by every built-in plugin.
 * @module
 */
import { confForDelegate, execVerb } from "./invoke.ts";
import type { PluginRequest } from "./skel.ts";
import { CniError, ErrorCode, type Result } from "./version.ts";

/** One address handed out by galaxy-ipam (`constant.IPInfo`). */
export interface IpInfo {
  /** Address with its prefix length, host bits kept (`198.18.0.3/24`). */
  ip: string;
  /** VLAN ID; 0 is untagged. */
  vlan: number;
  /** Gateway, when the network has one. */
  gateway?: string;
}

/** Addresses for one attachment. */
export interface Allocation {
  /** A 1.1.0 result without interfaces: the addresses with their gateways, and routes. */
  result: Result;
  /** The VLAN of each address of `result.ips`, in the same order (0 when untagged or from IPAM). */
  vlans: number[];
  /** True when the addresses came from the delegated IPAM plugin, which DEL must release. */
  delegated: boolean;
}

const CIDR4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** True when `cidr` is an IPv4 address with a prefix length. */
export function isIpv4Cidr(cidr: string): boolean {
  const m = CIDR4.exec(cidr);
  return !!m && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
}

/** The value of one CNI_ARGS key, `undefined` when absent. */
export function cniArg(req: Pick<PluginRequest, "args">, key: string): string | undefined {
  return req.args.find(([k]) => k.trim() === key)?.[1];
}

/** Parses `ipinfos` from CNI_ARGS; `undefined` when absent or empty, a CniError (code 7) when malformed. */
export function parseIpInfos(req: Pick<PluginRequest, "args">): IpInfo[] | undefined {
  const raw = cniArg(req, "ipinfos")?.trim();
  if (!raw) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `CNI_ARGS ipinfos is not JSON: ${(e as Error).message}`,
    );
  }
  if (!Array.isArray(parsed) || parsed.length === 0) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, "CNI_ARGS ipinfos must be a non-empty JSON array");
  }
  return parsed.map((entry, i) => {
    const e = entry as Record<string, unknown>;
    if (typeof e?.ip !== "string" || !isIpv4Cidr(e.ip)) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `CNI_ARGS ipinfos[${i}].ip must be an IPv4 CIDR, got ${JSON.stringify(e?.ip)}`,
      );
    }
    const vlan = e.vlan ?? 0;
    if (typeof vlan !== "number" || !Number.isInteger(vlan) || vlan < 0 || vlan > 4094) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `CNI_ARGS ipinfos[${i}].vlan must be 0–4094, got ${JSON.stringify(vlan)}`,
      );
    }
    if (e.gateway !== undefined && e.gateway !== "" && typeof e.gateway !== "string") {
      throw new CniError(ErrorCode.InvalidNetworkConfig, `CNI_ARGS ipinfos[${i}].gateway must be a string`);
    }
    const info: IpInfo = { ip: e.ip, vlan };
    if (typeof e.gateway === "string" && e.gateway) info.gateway = e.gateway;
    return info;
  });
}

function ipamType(req: PluginRequest): string | undefined {
  const ipam = req.config.ipam as { type?: unknown } | undefined;
  return typeof ipam?.type === "string" && ipam.type ? ipam.type : undefined;
}

/** Runs one verb of the configuration's IPAM plugin with the plugin's own stdin and environment. */
export async function delegateIpam(
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
  req: PluginRequest,
): Promise<Result | undefined> {
  const type = ipamType(req);
  if (!type) return undefined;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.env)) if (!k.startsWith("CNI_")) env[k] = v;
  const rt = { containerId: req.containerId, netns: req.netns, ifname: req.ifname, args: req.args };
  const options = { path: req.path, env, pluginType: type };
  // Debian's IPAM plugins stop at 1.0.0: a 1.1.0 configuration is handed to them at the version they speak.
  const conf = type === "host-local" ? unnamedHostLocal(req.config) : req.config;
  return await execVerb(verb, await confForDelegate(conf, options), rt, options);
}

/** host-local's folder when `ipam.dataDir` is not set. */
const HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks";

/**
 * host-local keeps its reservations in `<ipam.dataDir>/<name>`. A galaxy.json network without a name reaches
 * its plugins unnamed, as the Go daemon passed it (galaxy-behaviour.md §2.5), and host-local is then meant to
 * use `<dataDir>` itself (the folder the flannel GC's default list covers). host-local ≥ 1.0, like every plugin
 * on CNI ≥ 0.8's skel (the Go Galaxy's own included), refuses a configuration without a name ("missing network
 * name"), so an unnamed one is handed over as `name` = the folder's last part and `dataDir` = its parent: the
 * same folder, for every host-local version. Named configurations are passed unchanged.
 */
export function unnamedHostLocal<T extends Record<string, unknown>>(conf: T): T {
  if (typeof conf.name === "string" && conf.name !== "") return conf;
  const ipam = (conf.ipam ?? {}) as Record<string, unknown>;
  const dir = (typeof ipam.dataDir === "string" && ipam.dataDir ? ipam.dataDir : HOST_LOCAL_DATA_DIR)
    .replace(/\/+$/, "");
  const cut = dir.lastIndexOf("/");
  const name = dir.slice(cut + 1);
  if (cut <= 0 || !/^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/.test(name)) return conf;
  return { ...conf, name, ipam: { ...ipam, dataDir: dir.slice(0, cut) } };
}

/**
 * Addresses for an ADD: `ipinfos` from CNI_ARGS when present, else the delegated IPAM plugin. A delegated
 * IPAM whose result is unusable is released before the error is thrown, so nothing stays reserved.
 */
export async function allocate(req: PluginRequest): Promise<Allocation> {
  const infos = parseIpInfos(req);
  if (infos) {
    return {
      delegated: false,
      vlans: infos.map((i) => i.vlan),
      result: {
        cniVersion: "1.1.0",
        ips: infos.map((i) => i.gateway ? { address: i.ip, gateway: i.gateway } : { address: i.ip }),
      },
    };
  }
  const type = ipamType(req);
  if (!type) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      "no addresses: neither ipinfos in CNI_ARGS nor ipam.type in the config",
    );
  }
  let result: Result | undefined;
  try {
    result = await delegateIpam("ADD", req);
  } catch (e) {
    await delegateIpam("DEL", req).catch(() => {});
    const err = e instanceof CniError ? e : new CniError(ErrorCode.PluginFailure, String(e));
    throw new CniError(err.code, `ipam ${type}: ${err.message}`, err.details);
  }
  const v4 = (result?.ips ?? []).filter((ip) => isIpv4Cidr(ip.address));
  if (!result || v4.length === 0) {
    await delegateIpam("DEL", req).catch(() => {});
    throw new CniError(ErrorCode.PluginFailure, `ipam ${type} returned no IPv4 address`);
  }
  return { delegated: true, vlans: v4.map(() => 0), result: { ...result, ips: v4 } };
}

/** Releases delegated IPAM for a DEL; with no `ipam.type` there is nothing to release. */
export async function release(req: PluginRequest): Promise<void> {
  const type = ipamType(req);
  if (!type) return;
  try {
    await delegateIpam("DEL", req);
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(ErrorCode.PluginFailure, String(e));
    throw new CniError(err.code, `ipam ${type}: ${err.message}`, err.details);
  }
}
