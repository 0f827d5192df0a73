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
import { writeFileAtomic } from "../../netops/fs_atomic.ts";
import { parseCidr } from "../../netops/ip_address.ts";
import { delegateVerb, getVersionInfo, type RuntimeConf } from "../invoke.ts";
import { attachmentKey, parseValidAttachments } from "../request.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import {
  appendResult,
  asCniError,
  CniError,
  type CniVersion,
  convertResult,
  ErrorCode,
  highestVersion,
  isSupportedVersion,
  type Result,
  versionAtLeast,
} from "../version.ts";
import {
  type DelegateConf,
  readSaved,
  removeSaved,
  SAVED_KIND,
  type SavedAttachment,
  savedPath,
} from "./kit/flannel_saved.ts";
import {
  DEFAULT_SUBNET_FILE,
  invalid,
  isObject,
  type Json,
  readSubnetEnv,
  type SubnetEnv,
} from "./kit/flannel_subnet.ts";

/** Where delegate configurations are saved, unless `dataDir` says otherwise. */
export const DEFAULT_DATA_DIR = "/var/lib/cni/flannel";

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

// ---------------------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------------------
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
  const best = highestVersion(supported, wanted);
  if (!best) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `delegate ${type} supports ${supported.join(", ") || "no version"}, none at or below ${wanted}`,
    );
  }
  return best;
}

// ---------------------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------------------
// Delegation
function log(msg: string): void {
  console.error(`galaxy-flannel: ${msg}`);
}

function runtimeOf(req: PluginRequest): RuntimeConf {
  return { containerId: req.containerId, netns: req.netns, ifname: req.ifname, args: req.args };
}

/** Runs one verb of the delegate; its error keeps its code and gains the delegate's name and the verb. */
function runDelegate(
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
  delegate: DelegateConf,
  req: PluginRequest,
  options: { prevResult?: Result; rt?: RuntimeConf; extra?: Json } = {},
): Promise<Result | undefined> {
  const conf: DelegateConf = { ...structuredClone(delegate), ...options.extra };
  const rt = verb === "STATUS" || verb === "GC" ? undefined : options.rt ?? runtimeOf(req);
  return delegateVerb(verb, conf, rt, {
    path: req.path,
    env: req.env,
    prevResult: options.prevResult,
    label: `delegate ${delegate.type} ${verb}`,
  });
}

/** The versions the delegate supports (its VERSION answer). */
async function delegateVersions(type: string, req: PluginRequest): Promise<string[]> {
  try {
    return (await getVersionInfo(type, { path: req.path, env: req.env })).supportedVersions;
  } catch (e) {
    const err = asCniError(e, ErrorCode.DelegateFailure);
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
    const result = appendResult(req.prevResult, own!);
    convertResult(result, req.cniVersion); // fails here, not after the return, when the caller cannot read it
    return result;
  } catch (e) {
    const err = asCniError(e);
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

/**
 * GC: DEL the delegate for every saved attachment of this network that the runtime no longer lists, removing
 * its file; then forward GC to the delegate when it speaks 1.1.0. Goes on past errors and reports them all.
 */
async function gc(req: PluginRequest): Promise<void> {
  const conf = parseFlannelConf(req.config, req.cniVersion);
  const keep = new Set(parseValidAttachments(req.config).map((a) => attachmentKey(a.containerID, a.ifname)));
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
      if (keep.has(attachmentKey(name, saved.ifname))) continue;
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
      const valid = req.config["cni.dev/valid-attachments"];
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
