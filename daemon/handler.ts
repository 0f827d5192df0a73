/**
 * What the daemon does with one CNI request from the shim: a plain function from the wire request to a reply,
 * so that tests call it directly and the HTTP server stays a thin layer.
 *
 * ADD finds the pod, resolves its networks, writes the state file, runs every network's plugins in order
 * (rolling back on failure), merges the results and writes the network-status annotation. DEL, CHECK and GC
 * work from the state file alone.
 *
 * Its length: the five verbs share the request parsing, the container lock and the state file, and port
 * mapping, GC and policy hooks are about to land here; split it by verb when they have (handler_add.ts, ...).
 * @module
 */
import {
  addNetworkList,
  checkNetworkList,
  clearVersionCache,
  confAsList,
  delNetworkList,
  gcNetworkList,
  getVersionInfo,
  type InvokeOptions,
  type PluginExec,
  type RuntimeConf,
  statusNetworkList,
} from "../cni/invoke.ts";
import { DELEGATION_CHAIN_ENV } from "../cni/delegation.ts";
import { cniArg, type EnvRequest, parseValidAttachments, requestFromEnv, verbOf } from "../cni/request.ts";
import {
  ALL_VERSIONS,
  appendResult,
  asCniError,
  CniError,
  type CniVersion,
  configVersion,
  CURRENT_VERSION,
  describeZodError,
  ErrorCode,
  highestVersion,
  type NetConf,
  type NetConfList,
  NetConfListSchema,
  type Result,
  versionAtLeast,
} from "../cni/spec.ts";
import { type CniWireRequest, decodeBase64 } from "../cni/wire.ts";
import { z } from "zod";

/** The shim's request body, validated at the daemon's edge. */
const CniWireRequestSchema = z.object({
  env: z.record(z.string(), z.string()),
  config: z.string().optional(),
});
import type { GalaxyConfig } from "./config.ts";
import { refuseHeldAddresses } from "./address_holders.ts";
import { checkPodName } from "./k8s_names.ts";
import { findNetworkInConfDir, type PodLike, resolveNetworks } from "./networks.ts";
import { writtenByGoGalaxy } from "./go_state.ts";
import { MIRROR_ANNOTATION, runtimeUidOf } from "./pod_uid.ts";
import { bodyVersion, errorBody, replyVersion, resultBody } from "./reply.ts";
import { listStates, readState, removeState, statePath, type StoredNetwork, writeState } from "./state.ts";
import { firstIPv4, type PortMapper } from "./portmap.ts";
import { describeFailure, type FailureReporter } from "./failure.ts";

/** Annotation the daemon writes after a successful ADD (Multus' format). */
export const NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status";
/** GC leaves alone state files younger than this, so a container in the middle of its ADD is never collected. */
export const GC_GRACE_MS = 2 * 60_000;
/** How long a CNI GC waits for requests in flight to finish before it asks the plugins. */
const GC_DRAIN_MS = 30_000;

/** Logging as the handler needs it. */
export interface HandlerLog {
  /** Informational message. */
  info(msg: string): void;
  /** Something went wrong but the request goes on. */
  warn(msg: string): void;
  /** Verbose message at glog level `level`. */
  v(level: number, msg: string): void;
}

/** Where pods come from; absent in standalone mode. */
export interface PodSource {
  /** The pod, from the node's cache or the apiserver; throws a CniError when it cannot be found. */
  getPod(
    namespace: string,
    name: string,
    options?: { uid?: string },
  ): Promise<PodLike & { metadata?: { uid?: string } }>;
  /** Writes the network-status annotation of a pod. */
  setNetworkStatus(namespace: string, name: string, value: string): Promise<void>;
  /** Why the source cannot serve yet, or `undefined` when it is synced. */
  notReadyReason(): string | undefined;
}

/** Everything a request needs from the running daemon. */
export interface HandlerContext {
  /** galaxy.json as loaded at start. */
  config: GalaxyConfig;
  /** `--network-conf-dir`. */
  confDir: string;
  /** `--cni-paths`, searched after the runtime's CNI_PATH. */
  cniPaths: string[];
  /** `--state-dir`. */
  stateDir: string;
  /** The pod source, or `undefined` in standalone mode. */
  pods?: PodSource;
  /** The logger. */
  log: HandlerLog;
  /** Environment every plugin inherits (the daemon's own, as Galaxy does). */
  pluginEnv?: Record<string, string>;
  /** Per-plugin timeout. */
  pluginTimeoutMs?: number;
  /** Host-port mapping; absent when the daemon runs without it (unit tests). */
  portmap?: PortMapper;
  /** Set when shutdown has begun: new ADDs are refused with code 11. */
  shuttingDown?: () => boolean;
  /** `--gc-grace-period`: GC leaves alone state younger than this (default {@linkcode GC_GRACE_MS}). */
  gcGraceMs?: number;
  /** Receives every plugin process's duration (`galaxy_cni_plugin_duration_seconds`). */
  pluginMetrics?: {
    observePlugin(
      labels: { network: string; plugin: string; verb: string; code: number },
      seconds: number,
    ): void;
  };
  /** Writes failed ADDs to their pods (Event and annotation) and clears them after a success. */
  failures?: FailureReporter;
}

/** The reply to the shim. */
export interface HandlerReply {
  /** HTTP status. */
  status: number;
  /** A result or a CNI error object in the request's `cniVersion`, or empty. */
  body: string;
}

// ---------------------------------------------------------------------------------------------------------
// Serialization per container and version negotiation.

const containerLocks = new Map<string, Promise<void>>();
const inFlight = new Set<string>();
/** Set while a CNI GC asks the plugins: no request starts, so no attachment appears behind GC's back. */
let pluginGcGate: Promise<void> | undefined;

/** Runs `fn` when no other request for `containerId` is running; requests for one container queue in order. */
export async function withContainerLock<T>(containerId: string, fn: () => Promise<T>): Promise<T> {
  const previous = containerLocks.get(containerId) ?? Promise.resolve();
  let release!: () => void;
  const current = new Promise<void>((r) => release = r);
  const chained = previous.then(() => current);
  containerLocks.set(containerId, chained);
  await previous;
  while (pluginGcGate) await pluginGcGate;
  inFlight.add(containerId);
  try {
    return await fn();
  } finally {
    inFlight.delete(containerId);
    release();
    if (containerLocks.get(containerId) === chained) containerLocks.delete(containerId);
  }
}

/** True while a request (or the GC) holds or waits for `containerId`'s lock: the GC then leaves it alone. */
export function isContainerBusy(containerId: string): boolean {
  return containerLocks.has(containerId);
}

/** Container IDs with a request holding or waiting for their lock. */
export function busyContainers(): string[] {
  return [...containerLocks.keys()];
}

/** Runs `fn` with no request running and none starting: waits (bounded) for those in flight to finish. */
async function withRequestsPaused<T>(fn: () => Promise<T>): Promise<T> {
  while (pluginGcGate) await pluginGcGate;
  let open!: () => void;
  pluginGcGate = new Promise<void>((r) => open = r);
  try {
    const deadline = Date.now() + GC_DRAIN_MS;
    while (inFlight.size > 0) {
      if (Date.now() >= deadline) {
        throw new CniError(
          ErrorCode.TryAgainLater,
          `GC: ${inFlight.size} request(s) still running after ${GC_DRAIN_MS / 1000} s; try again later`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return await fn();
  } finally {
    pluginGcGate = undefined;
    open();
  }
}

/** The versions a plugin supports: its VERSION answer, which `getVersionInfo` caches per plugin file. */
async function supportedVersionsOf(type: string, options: InvokeOptions): Promise<readonly string[]> {
  return (await getVersionInfo(type, options)).supportedVersions;
}

/**
 * Gives a list without `cniVersion`/`cniVersions` (Galaxy's galaxy.json has none) the highest version that we
 * and every plugin of the list support, learned from their VERSION answers (cached per plugin file).
 */
async function negotiateVersion(list: NetConfList, options: InvokeOptions): Promise<NetConfList> {
  if (list.cniVersion !== undefined || list.cniVersions?.length) return list;
  let common: string[] = [...ALL_VERSIONS];
  for (const plugin of list.plugins) {
    const theirs = await supportedVersionsOf(plugin.type, options);
    common = common.filter((v) => theirs.includes(v));
  }
  const best = highestVersion(common);
  if (!best) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `network "${list.name}": its plugins share no CNI version with galaxy (${ALL_VERSIONS.join(", ")})`,
    );
  }
  return { ...list, cniVersion: best, plugins: list.plugins.map((p) => ({ ...p, cniVersion: best })) };
}

// ---------------------------------------------------------------------------------------------------------
// Request parsing.

/** A request as the daemon works on it: the CNI request from env, and the runtime's configuration. */
interface ParsedRequest extends EnvRequest {
  config: Record<string, unknown>;
  /** The caller's chain of plugin types (the shim's, or a plugin's that delegated to the shim). */
  chain?: string;
  /** The version the reply is written in (the configuration's). */
  version: CniVersion;
  /** The plugin processes this request ran, in order (for the failure report). */
  execs?: PluginExec[];
}

function parseWire(body: string): CniWireRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (e) {
    throw new CniError(ErrorCode.DecodingFailure, `request body is not JSON: ${(e as Error).message}`);
  }
  const checked = CniWireRequestSchema.safeParse(raw);
  if (!checked.success) {
    throw new CniError(ErrorCode.DecodingFailure, `request body: ${describeZodError(checked.error)}`);
  }
  return checked.data;
}

function parseRequest(wire: CniWireRequest, cniPaths: string[]): ParsedRequest {
  const verb = verbOf(wire.env);
  if (verb === "VERSION") {
    // The shim answers VERSION itself; a VERSION that reaches the daemon is a caller's mistake.
    throw new CniError(ErrorCode.InvalidEnvironment, 'unexpected CNI_COMMAND "VERSION"');
  }
  // The daemon finds plugins through --cni-paths too: GC does not need the runtime's CNI_PATH.
  const fromEnv = requestFromEnv(verb, wire.env, { pluginPathKnown: true });
  let config: Record<string, unknown> = {};
  if (wire.config) {
    try {
      config = JSON.parse(new TextDecoder().decode(decodeBase64(wire.config)));
    } catch (e) {
      throw new CniError(
        ErrorCode.DecodingFailure,
        `request config is not base64 JSON: ${(e as Error).message}`,
      );
    }
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `request config must be a JSON object, got ${Array.isArray(config) ? "an array" : String(config)}`,
    );
  }
  const runtimePath = fromEnv.path;
  return {
    ...fromEnv,
    path: [...runtimePath, ...cniPaths.filter((p) => !runtimePath.includes(p))],
    config,
    chain: wire.env[DELEGATION_CHAIN_ENV],
    version: replyVersion(wire.config ? config : undefined),
  };
}

/** Runtime args first, then the network's own; a later key replaces an earlier one. */
function mergeArgs(...sets: [string, string][][]): [string, string][] {
  const merged = new Map<string, string>();
  for (const set of sets) for (const [k, v] of set) merged.set(k, v);
  return [...merged];
}

function invokeOptions(ctx: HandlerContext, req: ParsedRequest): InvokeOptions {
  // The state file holds every network's result (passed back as prevResult): no libcni cache beside it.
  // The caller's delegation chain goes on to the plugins: a network whose plugin is galaxy-sdn (or that
  // delegates to it) would otherwise loop through the socket.
  const env = { ...ctx.pluginEnv };
  if (req.chain) env[DELEGATION_CHAIN_ENV] = req.chain;
  else delete env[DELEGATION_CHAIN_ENV];
  const onPluginExec = (exec: PluginExec) => {
    req.execs?.push(exec);
    ctx.pluginMetrics?.observePlugin(exec, exec.seconds);
  };
  return {
    path: req.path,
    cacheDir: null,
    timeoutMs: ctx.pluginTimeoutMs,
    env,
    onPluginExec,
  };
}

/** What the runtime side needs to run one stored network of the request's container. */
function attachmentRuntime(req: ParsedRequest, stored: StoredNetwork): RuntimeConf {
  return {
    containerId: req.containerId,
    netns: req.netns,
    // Galaxy's state files before "fix missing ifName" have none: the runtime's interface is the best guess.
    ifname: stored.IfName || req.ifname,
    args: mergeArgs(req.args, Object.entries(stored.Args ?? {})),
    capabilityArgs: stored.CapabilityArgs,
  };
}

/** A one-plugin list as the state file keeps it (Galaxy's `Conf`): the plugin's keys, unnamed when it was. */
function singleConf(list: NetConfList): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...list.plugins[0], cniVersion: list.cniVersion };
  if (list.name !== "") conf.name = list.name;
  else delete conf.name;
  return conf;
}

/**
 * A container's stored networks; `undefined` when it has no state file. A file that cannot be read or parsed
 * is a CNI error (code 6) naming the file, not a raw exception: DEL reports it and leaves the file for a human.
 */
async function loadState(ctx: HandlerContext, containerId: string): Promise<StoredNetwork[] | undefined> {
  try {
    return await readState(ctx.stateDir, containerId);
  } catch (e) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `state file ${statePath(ctx.stateDir, containerId)}: ${asCniError(e).message}`,
    );
  }
}

/** A stored network's configuration as a list; a stored list that is not one is a CNI error (code 6). */
function storedList(stored: StoredNetwork): NetConfList {
  const conf = stored.Conf;
  if (Array.isArray(conf.plugins)) {
    const parsed = NetConfListSchema.safeParse(conf);
    if (!parsed.success) {
      throw new CniError(
        ErrorCode.DecodingFailure,
        `stored configuration: ${describeZodError(parsed.error)}`,
      );
    }
    return parsed.data;
  }
  // No name: a galaxy.json network without one (ours, or the Go Galaxy's state file); it stays unnamed.
  const name = typeof conf.name === "string" ? conf.name : "";
  return confAsList({ ...(conf as NetConf), name });
}

// ---------------------------------------------------------------------------------------------------------
// Verbs.

/**
 * Merges the networks' results: every interface, addresses with corrected interface indexes, all routes; DNS
 * only from the first network (the pod's default), as Galaxy does.
 */
export function mergeResults(results: Result[]): Result {
  let merged: Result = { cniVersion: "1.1.0" };
  for (const { dns: _, ...r } of results) merged = appendResult(merged, r as Result);
  if (results[0]?.dns) merged.dns = structuredClone(results[0].dns);
  return merged;
}

/** One entry of the network-status annotation. */
export interface NetworkStatusEntry {
  /** The network name. */
  name: string;
  /** The interface in the pod. */
  interface: string;
  /** Addresses without prefix length. */
  ips: string[];
  /** MAC address, when the plugin reported one. */
  mac?: string;
  /** True for the pod's first (default) network. */
  default: boolean;
  /** DNS settings reported by the plugin. */
  dns?: Result["dns"];
}

/** The network-status entry of one attachment, from its result. */
export function networkStatusEntry(
  name: string,
  ifname: string,
  result: Result,
  isDefault: boolean,
): NetworkStatusEntry {
  const interfaces = result.interfaces ?? [];
  let index = interfaces.findIndex((i) => i.name === ifname && i.sandbox);
  if (index < 0) index = interfaces.findIndex((i) => i.name === ifname);
  const ips = (result.ips ?? [])
    .filter((ip) => index < 0 || ip.interface === undefined || ip.interface === index)
    .map((ip) => ip.address.split("/")[0]);
  const entry: NetworkStatusEntry = { name, interface: ifname, ips, default: isDefault };
  const mac = index >= 0 ? interfaces[index].mac : undefined;
  if (mac) entry.mac = mac;
  if (result.dns && Object.keys(result.dns).length) entry.dns = result.dns;
  return entry;
}

async function delNetworks(
  ctx: HandlerContext,
  req: ParsedRequest,
  networks: StoredNetwork[],
): Promise<{ failed: StoredNetwork[]; errors: string[] }> {
  const failed: StoredNetwork[] = [];
  const errors: string[] = [];
  for (const stored of [...networks].reverse()) {
    try {
      const list = await negotiateVersion(storedList(stored), invokeOptions(ctx, req));
      const rt = attachmentRuntime(req, stored);
      await delNetworkList(list, rt, { ...invokeOptions(ctx, req), prevResult: stored.Result });
      ctx.log.v(3, `DEL ${req.containerId}: network "${stored.NetworkType}" (${stored.IfName}) removed`);
    } catch (e) {
      failed.unshift(stored);
      errors.push(`network "${stored.NetworkType}": ${asCniError(e).message}`);
    }
  }
  return { failed, errors };
}

async function releasePorts(ctx: HandlerContext, req: ParsedRequest): Promise<string | undefined> {
  if (!ctx.portmap) return undefined;
  try {
    await ctx.portmap.releasePortMappings(req.containerId);
    const namespace = cniArg(req.args, "K8S_POD_NAMESPACE");
    const name = cniArg(req.args, "K8S_POD_NAME");
    if (namespace && name) await ctx.portmap.releasePod(namespace, name);
    return undefined;
  } catch (e) {
    return `port mapping: ${(e as Error).message}`;
  }
}

async function cmdDel(ctx: HandlerContext, req: ParsedRequest): Promise<HandlerReply> {
  // Host ports first (as Galaxy): they work from the port file alone, state file or not.
  const portError = await releasePorts(ctx, req);
  const networks = await loadState(ctx, req.containerId);
  if (!networks) {
    if (portError) throw new CniError(ErrorCode.PluginFailure, portError);
    return { status: 200, body: "" };
  }
  const { failed, errors } = await delNetworks(ctx, req, networks);
  if (portError) errors.push(portError);
  if (failed.length) await writeState(ctx.stateDir, req.containerId, failed);
  else await removeState(ctx.stateDir, req.containerId);
  if (errors.length) throw new CniError(ErrorCode.PluginFailure, errors.join(" / "));
  return { status: 200, body: "" };
}

async function getPod(ctx: HandlerContext, req: ParsedRequest): Promise<PodLike> {
  const namespace = cniArg(req.args, "K8S_POD_NAMESPACE");
  const name = cniArg(req.args, "K8S_POD_NAME");
  // Standalone (no apiserver) serves runtimes outside Kubernetes too: pod names are then optional.
  if (!ctx.pods) return { metadata: { namespace: namespace ?? "", name: name ?? "" } };
  if (!namespace || !name) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_ARGS: missing ${!namespace ? "K8S_POD_NAMESPACE" : "K8S_POD_NAME"}`,
    );
  }
  checkPodName(namespace, name);
  const uid = cniArg(req.args, "K8S_POD_UID");
  const pod = await ctx.pods.getPod(namespace, name, { uid });
  const expected = runtimeUidOf(pod);
  if (uid && expected && expected !== uid) {
    const mirror = expected !== pod.metadata?.uid ? ` (its ${MIRROR_ANNOTATION} annotation)` : "";
    throw new CniError(
      ErrorCode.PluginFailure,
      `pod ${namespace}/${name}: the runtime asked for UID ${uid}, the apiserver has ${expected}${mirror}`,
    );
  }
  return pod;
}

/**
 * What an earlier, unfinished ADD of this container left. An unreadable state file is moved aside (not
 * overwritten) so that what it describes can still be cleaned up by hand, and the ADD goes on.
 */
async function readLeftover(ctx: HandlerContext, containerId: string): Promise<StoredNetwork[] | undefined> {
  try {
    return await loadState(ctx, containerId);
  } catch (e) {
    const aside = `${ctx.stateDir}/.corrupt-${containerId}-${Date.now()}`;
    await Deno.rename(statePath(ctx.stateDir, containerId), aside).catch(() => {});
    ctx.log.warn(`ADD ${containerId}: unreadable state file moved to ${aside}: ${(e as Error).message}`);
    return undefined;
  }
}

async function cmdAdd(ctx: HandlerContext, req: ParsedRequest): Promise<HandlerReply> {
  if (ctx.shuttingDown?.()) {
    throw new CniError(ErrorCode.TryAgainLater, "galaxy daemon is shutting down; try again later");
  }
  const pod = await getPod(ctx, req);
  const resolved = await resolveNetworks(pod, req.ifname, ctx.config, {
    confDir: ctx.confDir,
    warn: (m) => ctx.log.warn(m),
  });
  const options = invokeOptions(ctx, req);
  const capabilityArgs = (req.config.runtimeConfig ?? {}) as Record<string, unknown>;
  await refuseHeldAddresses(ctx.stateDir, req.containerId, resolved);

  // Leftovers of an ADD that never finished (daemon crash, runtime retry without DEL) are removed first.
  const leftover = await readLeftover(ctx, req.containerId);
  if (leftover?.length) {
    ctx.log.warn(`ADD ${req.containerId}: removing ${leftover.length} network(s) left by an earlier ADD`);
    const { errors } = await delNetworks(ctx, req, leftover);
    if (errors.length) {
      throw new CniError(ErrorCode.TryAgainLater, `cleanup of an earlier ADD failed: ${errors.join(" / ")}`);
    }
  }

  const stored: StoredNetwork[] = [];
  for (const net of resolved) {
    const list = await negotiateVersion(net.list, options);
    stored.push({
      NetworkType: net.name,
      Args: Object.fromEntries(net.args),
      Conf: net.isList ? list : singleConf(list),
      IfName: net.ifname,
      CapabilityArgs: { ...capabilityArgs, ...net.capabilityArgs },
      Runtime: { netns: req.netns, args: Object.fromEntries(req.args), path: req.path },
    });
  }
  await writeState(ctx.stateDir, req.containerId, stored);

  const results: Result[] = [];
  for (const [i, net] of stored.entries()) {
    try {
      const rt = attachmentRuntime(req, net);
      const result = await addNetworkList(storedList(net), rt, options);
      net.Result = result;
      results.push(result);
      await writeState(ctx.stateDir, req.containerId, stored);
      ctx.log.v(3, `ADD ${req.containerId}: network "${net.NetworkType}" up as ${net.IfName}`);
    } catch (e) {
      const err = asCniError(e);
      await rollBack(ctx, req, stored.slice(0, i + 1));
      const source = resolved[i].isList ? "" : ` plugin ${resolved[i].list.plugins[0].type}:`;
      throw new CniError(err.code, `network "${net.NetworkType}":${source} ${err.message}`, err.details);
    }
  }

  const merged = mergeResults(results);
  const body = await replyOrRollBack(ctx, req, stored, merged);
  if (ctx.portmap) {
    try {
      await ctx.portmap.setUp({
        containerId: req.containerId,
        pod,
        podIP: firstIPv4(merged),
        runtimeConfig: capabilityArgs,
      });
    } catch (e) {
      // A failed ADD leaves nothing: the networks just built go too.
      await rollBack(ctx, req, stored);
      throw e;
    }
  }
  if (ctx.pods) {
    const status = stored.map((net, i) =>
      networkStatusEntry(net.NetworkType, net.IfName, net.Result!, i === 0)
    );
    const namespace = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    try {
      await ctx.pods.setNetworkStatus(namespace, name, JSON.stringify(status));
    } catch (e) {
      ctx.log.warn(
        `pod ${namespace}/${name}: cannot write ${NETWORK_STATUS_ANNOTATION}: ${(e as Error).message}`,
      );
    }
    ctx.failures?.clear({ namespace, name, annotations: pod.metadata?.annotations });
  }
  return { status: 200, body };
}

/**
 * The ADD reply in the request's version. A result that version cannot hold (0.1.0/0.2.0 without an IPv4 or
 * IPv6 address) fails the ADD, and the networks just added are removed first: the runtime would not know them.
 */
async function replyOrRollBack(
  ctx: HandlerContext,
  req: ParsedRequest,
  stored: StoredNetwork[],
  merged: Result,
): Promise<string> {
  try {
    return resultBody(merged, req.version);
  } catch (e) {
    await rollBack(ctx, req, stored);
    throw e;
  }
}

/** Removes the networks of a failed ADD; what cannot be removed stays in the state file for DEL. */
async function rollBack(ctx: HandlerContext, req: ParsedRequest, networks: StoredNetwork[]): Promise<void> {
  const { failed, errors } = await delNetworks(ctx, req, networks);
  if (failed.length) {
    await writeState(ctx.stateDir, req.containerId, failed);
    ctx.log.warn(`ADD ${req.containerId}: rollback incomplete: ${errors.join(" / ")}`);
  } else {
    await removeState(ctx.stateDir, req.containerId);
  }
}

async function cmdCheck(ctx: HandlerContext, req: ParsedRequest): Promise<HandlerReply> {
  const networks = await loadState(ctx, req.containerId);
  if (!networks) {
    throw new CniError(ErrorCode.UnknownContainer, `no galaxy state for container ${req.containerId}`);
  }
  const options = invokeOptions(ctx, req);
  for (const stored of networks) {
    if (writtenByGoGalaxy(stored)) {
      ctx.log.v(
        3,
        `CHECK ${req.containerId}: network "${stored.NetworkType}" was added by the Go Galaxy: no result to check`,
      );
      continue;
    }
    if (!stored.Result) {
      throw new CniError(ErrorCode.PluginFailure, `network "${stored.NetworkType}" never finished its ADD`);
    }
    const list = await negotiateVersion(storedList(stored), options);
    if (!versionAtLeast(String(configVersion(list)), "0.4.0")) continue; // CHECK does not exist before 0.4.0
    const rt = attachmentRuntime(req, stored);
    try {
      await checkNetworkList(list, rt, { ...options, prevResult: stored.Result });
    } catch (e) {
      const err = asCniError(e);
      throw new CniError(err.code, `network "${stored.NetworkType}": ${err.message}`, err.details);
    }
  }
  return { status: 200, body: "" };
}

/**
 * STATUS: the daemon must be ready, then every default network's plugins are asked (from 1.1.0 on). A plugin's
 * 50/51 is passed on with the network named; any other failure is 50, as the network cannot take ADDs.
 */
async function cmdStatus(ctx: HandlerContext, req: ParsedRequest): Promise<HandlerReply> {
  if (ctx.shuttingDown?.()) throw new CniError(ErrorCode.NotAvailable, "galaxy daemon is shutting down");
  const reason = ctx.pods?.notReadyReason();
  if (reason) throw new CniError(ErrorCode.NotAvailable, `galaxy daemon is not ready: ${reason}`);
  const options = invokeOptions(ctx, req);
  for (const name of ctx.config.defaultNetworks) {
    try {
      const found = networkList(ctx, name) ??
        (await findNetworkInConfDir(ctx.confDir, name, { warn: (m) => ctx.log.warn(m) }))?.list;
      if (!found) {
        throw new CniError(ErrorCode.NotAvailable, `not in galaxy.json NetworkConf nor in ${ctx.confDir}`);
      }
      await statusNetworkList(await negotiateVersion(found, options), options);
    } catch (e) {
      const err = asCniError(e);
      const code = err.code === ErrorCode.NotAvailable || err.code === ErrorCode.LimitedConnectivity
        ? err.code
        : ErrorCode.NotAvailable;
      throw new CniError(code, `default network "${name}": ${err.message}`, err.details);
    }
  }
  return { status: 200, body: "" };
}

/** A galaxy.json network as a list, or `undefined` when galaxy.json has no such network. */
function networkList(ctx: HandlerContext, name: string): NetConfList | undefined {
  const entry = ctx.config.networks.get(name);
  return entry ? confAsList(structuredClone(entry) as NetConf & { name: string }) : undefined;
}

/**
 * GC: DEL (through the plugins, from the state file) every container the runtime no longer lists, except
 * those younger than the grace period or with a request in flight; then, with requests paused, GC goes to the
 * plugins of every galaxy.json network and of every network a kept container uses, each with the
 * attachments of that network that remain (so plugins drop records, VFs and IPs of containers long gone).
 */
async function cmdGc(ctx: HandlerContext, req: ParsedRequest): Promise<HandlerReply> {
  const keep = new Set(parseValidAttachments(req.config).map((a) => a.containerID));
  const graceMs = ctx.gcGraceMs ?? GC_GRACE_MS;
  const errors: string[] = [];
  for (const { containerId, mtime } of await listStates(ctx.stateDir)) {
    if (keep.has(containerId) || isContainerBusy(containerId)) continue;
    if (Date.now() - mtime.getTime() < graceMs) continue;
    await withContainerLock(containerId, async () => {
      try {
        if (await releaseFromState(ctx, containerId)) {
          ctx.log.info(`GC: removed the networks of container ${containerId} (not in the runtime's list)`);
        }
      } catch (e) {
        errors.push(`${containerId}: ${(e as Error).message}`);
      }
    });
  }
  await withRequestsPaused(async () => {
    const lists = new Map<string, NetConfList>();
    const valid = new Map<string, { containerID: string; ifname: string }[]>();
    for (const name of ctx.config.networks.keys()) {
      lists.set(name, networkList(ctx, name)!);
      valid.set(name, []);
    }
    const kept = (await listStates(ctx.stateDir)).map((s) => s.containerId).sort();
    for (const containerId of kept) {
      const networks = await readState(ctx.stateDir, containerId).catch(() => undefined) ?? [];
      for (const stored of networks) {
        if (!lists.has(stored.NetworkType)) {
          try {
            lists.set(stored.NetworkType, storedList(stored));
            valid.set(stored.NetworkType, []);
          } catch {
            continue; // a conf that no longer parses: its DEL reports that
          }
        }
        valid.get(stored.NetworkType)!.push({ containerID: containerId, ifname: stored.IfName });
      }
    }
    const options = invokeOptions(ctx, req);
    for (const [name, list] of lists) {
      try {
        await gcNetworkList(await negotiateVersion(list, options), valid.get(name)!, options);
      } catch (e) {
        errors.push(`network "${name}": ${(e as Error).message}`);
      }
    }
  });
  if (errors.length) throw new CniError(ErrorCode.PluginFailure, `GC errors: ${errors.join("; ")}`);
  return { status: 200, body: "" };
}

/**
 * Runs DEL of every network in a container's state file, with the netns, CNI_ARGS and plugin path its ADD had,
 * for a container the runtime forgot (no DEL will ever come). The caller holds the container's lock. Returns
 * false when there is no state file; throws (leaving the failed networks recorded) when a plugin fails.
 */
export async function releaseFromState(ctx: HandlerContext, containerId: string): Promise<boolean> {
  const networks = await loadState(ctx, containerId);
  if (!networks) return false;
  const runtime = networks.find((n) => n.Runtime)?.Runtime;
  // A namespace that is gone is not passed: the plugins then clean up the host side only, as DEL allows.
  const netns = runtime?.netns && await Deno.stat(runtime.netns).then(() => true, () => false)
    ? runtime.netns
    : "";
  const path = runtime?.path?.length ? runtime.path : ctx.cniPaths;
  await cmdDel(ctx, {
    command: "DEL",
    containerId,
    netns,
    ifname: networks[0]?.IfName ?? "eth0",
    args: Object.entries(runtime?.args ?? {}),
    path: [...path, ...ctx.cniPaths.filter((p) => !path.includes(p))],
    config: {},
    version: CURRENT_VERSION,
  });
  return true;
}

/** Puts a failed ADD on its pod (Event and annotation), off the request path; a pod-less ADD has none. */
function reportAddFailure(ctx: HandlerContext, req: ParsedRequest, err: CniError, seconds: number): void {
  const namespace = cniArg(req.args, "K8S_POD_NAMESPACE");
  const name = cniArg(req.args, "K8S_POD_NAME");
  if (!ctx.failures || !ctx.pods || !namespace || !name) return;
  // Refused because the daemon is stopping: the runtime retries elsewhere in time, nothing is wrong with the pod.
  if (err.code === ErrorCode.TryAgainLater && ctx.shuttingDown?.()) return;
  const failure = describeFailure(err, req.execs ?? [], { containerId: req.containerId, seconds });
  const uid = cniArg(req.args, "K8S_POD_UID");
  void ctx.failures.report({ namespace, name, uid }, failure);
}

function errorReply(err: CniError, status: number, version: CniVersion = CURRENT_VERSION): HandlerReply {
  return { status, body: errorBody(err, version) };
}

/** Handles one wire request body and never throws: every failure becomes a CNI error object. */
export async function handleCni(ctx: HandlerContext, body: string): Promise<HandlerReply> {
  let req: ParsedRequest;
  try {
    req = parseRequest(parseWire(body), ctx.cniPaths);
  } catch (e) {
    return errorReply(asCniError(e), 400, bodyVersion(body));
  }
  const started = performance.now();
  try {
    let reply: HandlerReply;
    switch (req.command) {
      case "ADD":
        req.execs = [];
        try {
          reply = await withContainerLock(req.containerId, () => cmdAdd(ctx, req));
        } catch (e) {
          reportAddFailure(ctx, req, asCniError(e), (performance.now() - started) / 1000);
          throw e;
        }
        break;
      case "DEL":
        reply = await withContainerLock(req.containerId, () => cmdDel(ctx, req));
        break;
      case "CHECK":
        reply = await withContainerLock(req.containerId, () => cmdCheck(ctx, req));
        break;
      case "STATUS":
        reply = await cmdStatus(ctx, req);
        break;
      case "GC":
        reply = await cmdGc(ctx, req);
        break;
    }
    ctx.log.v(2, `${req.command} ${req.containerId} ok in ${(performance.now() - started).toFixed(1)} ms`);
    return reply;
  } catch (e) {
    const err = asCniError(e);
    ctx.log.warn(`${req.command} ${req.containerId} failed (code ${err.code}): ${err.message}`);
    return errorReply(err, 500, req.version);
  }
}

/** Used by tests: the negotiated-version cache and lock tables start empty. */
export function resetHandlerCaches(): void {
  clearVersionCache();
}
