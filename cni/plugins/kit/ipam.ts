/**
 * Where a plugin's addresses come from: `ipinfos` in CNI_ARGS (set by galaxy-ipam through the pod's galaxy args
 * annotation), else the delegated `ipam` plugin of the configuration; releasing them, and forwarding CHECK,
 * STATUS and GC to that IPAM. Shared by every built-in plugin.
 * @module
 */
import { isIPv4Cidr } from "../../../netops/ip_address.ts";
import { delegateVerb, getVersionInfo } from "../../invoke.ts";
import { cniArg } from "../../request.ts";
import type { PluginRequest } from "../../skel.ts";
import { asCniError, CniError, ErrorCode, type Result } from "../../version.ts";
import { logLine } from "./errors.ts";

/** True when the request carries `ipinfos`, so no IPAM plugin was (or will be) involved; lenient for DEL. */
export function hasIpInfos(req: PluginRequest): boolean {
  try {
    return parseIpInfos(req) !== undefined;
  } catch {
    return false;
  }
}

/** Releases delegated IPAM unless the addresses came from `ipinfos` (nothing was reserved then). */
export async function releaseDelegated(req: PluginRequest): Promise<void> {
  if (!hasIpInfos(req)) await release(req);
}

/**
 * Forwards CHECK, STATUS or GC to the configuration's IPAM plugin (not when `ipinfos` replaced it). STATUS
 * and GC only go to an IPAM that lists 1.1.0 in its VERSION answer: older ones (Debian's host-local) do not
 * know the verbs, so there is nothing to forward and that is logged.
 */
export async function forwardToIpam(
  verb: "CHECK" | "STATUS" | "GC",
  req: PluginRequest,
  options: { plugin?: string } = {},
): Promise<void> {
  const plugin = options.plugin ?? req.config.type;
  const ipam = req.config.ipam as { type?: unknown } | undefined;
  const type = typeof ipam?.type === "string" && ipam.type ? ipam.type : undefined;
  if (!type || hasIpInfos(req)) return;
  const label = `ipam ${type}: ${verb}`;
  if (verb !== "CHECK") {
    let versions: readonly string[];
    try {
      versions = (await getVersionInfo(type, { path: req.path })).supportedVersions;
    } catch (err) {
      const e = asCniError(err);
      throw new CniError(e.code, `${label}: ${e.message}`, e.details);
    }
    if (!versions.includes("1.1.0")) {
      logLine(plugin, `ipam ${type} does not support CNI 1.1.0, so ${verb} is not forwarded to it`);
      return;
    }
  }
  await delegateIpam(verb, req, label);
}

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
  /** Gives the addresses back (the delegated IPAM's DEL); nothing to do for `ipinfos`. */
  release(): Promise<void>;
}

/** Parses `ipinfos` from CNI_ARGS; `undefined` when absent or empty, a CniError (code 7) when malformed. */
export function parseIpInfos(req: Pick<PluginRequest, "args">): IpInfo[] | undefined {
  const raw = cniArg(req.args, "ipinfos")?.trim();
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
    if (typeof e?.ip !== "string" || !isIPv4Cidr(e.ip)) {
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

/**
 * Runs one verb of the configuration's IPAM plugin with the plugin's own stdin and environment; a failure
 * keeps its code and is prefixed with `label` (default `ipam <type>`).
 */
export async function delegateIpam(
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
  req: PluginRequest,
  label?: string,
): Promise<Result | undefined> {
  const type = ipamType(req);
  if (!type) return undefined;
  const rt = { containerId: req.containerId, netns: req.netns, ifname: req.ifname, args: req.args };
  // Debian's IPAM plugins stop at 1.0.0: a 1.1.0 configuration is handed to them at the version they speak.
  const conf = type === "host-local" ? unnamedHostLocal(req.config) : req.config;
  return await delegateVerb(verb, conf, rt, {
    path: req.path,
    env: req.env,
    pluginType: type,
    negotiate: true,
    label: label ?? `ipam ${type}`,
  });
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
      release: () => Promise.resolve(),
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
    throw e;
  }
  const v4 = (result?.ips ?? []).filter((ip) => isIPv4Cidr(ip.address));
  if (!result || v4.length === 0) {
    await delegateIpam("DEL", req).catch(() => {});
    throw new CniError(ErrorCode.PluginFailure, `ipam ${type} returned no IPv4 address`);
  }
  return {
    delegated: true,
    release: async () => void await delegateIpam("DEL", req),
    vlans: v4.map(() => 0),
    result: { ...result, ips: v4 },
  };
}

/** Releases delegated IPAM for a DEL; with no `ipam.type` there is nothing to release. */
export async function release(req: PluginRequest): Promise<void> {
  await delegateIpam("DEL", req);
}

/**
 * STATUS of a plugin: not available (code 50, with the reason) while `ready` throws; then whatever the IPAM
 * plugin says.
 */
export async function statusThenIpam(
  req: PluginRequest,
  plugin: string,
  ready?: () => Promise<unknown>,
): Promise<void> {
  try {
    await ready?.();
  } catch (err) {
    throw new CniError(ErrorCode.NotAvailable, asCniError(err).message);
  }
  await forwardToIpam("STATUS", req, { plugin });
}

/** GC of a plugin whose only state beyond what DEL removes is IPAM's: forwarded to IPAM. */
export async function gcThroughIpam(req: PluginRequest, plugin: string): Promise<void> {
  await forwardToIpam("GC", req, { plugin });
}
