/**
 * The runtime side of CNI, as libcni does it: find a plugin in `CNI_PATH`, execute it with the CNI
 * environment and the configuration on stdin, read its result or error, and run whole configuration lists
 * (ADD in order with `prevResult`, DEL in reverse, CHECK, GC, STATUS) with libcni's result cache.
 *
 * Its length: libcni's runtime side is one contract (exec, VERSION, delegation, the lists with their
 * ordering rules, the result cache); the cache could move to its own file once GC builds on it.
 * @module
 */
import { writeFileAtomic } from "../netops/fs_atomic.ts";
import { childOutput } from "../netops/child_output.ts";
import { delegationEnv } from "./delegation.ts";
import { guardDelegation, runInProcess } from "./in_process.ts";
import { encodeBase64 } from "./wire.ts";
import {
  asCniError,
  CniError,
  type CniVersion,
  configVersion,
  convertResult,
  ErrorCode,
  highestVersion,
  isCniErrorObject,
  isSupportedVersion,
  type NetConf,
  type NetConfList,
  parseResult,
  type Result,
  selectVersion,
  versionAtLeast,
} from "./version.ts";

/** libcni's default cache directory. */
export const DEFAULT_CACHE_DIR = "/var/lib/cni";
/** How long a plugin may run before it is killed, unless the caller says otherwise. */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** What the runtime knows about one attachment (libcni's `RuntimeConf`). */
export interface RuntimeConf {
  /** The container ID. */
  containerId: string;
  /** The network namespace path; may be empty for DEL. */
  netns: string;
  /** The interface name inside the container. */
  ifname: string;
  /** `CNI_ARGS` pairs. */
  args?: [string, string][];
  /** Capability arguments (`portMappings`, `ips`, `mac`, ...), injected as `runtimeConfig` where allowed. */
  capabilityArgs?: Record<string, unknown>;
}

/** Where plugins are found and how they run. */
export interface InvokeOptions {
  /** Directories searched for plugins, in order. */
  path: string[];
  /**
   * Cache directory; results go to `<cacheDir>/results`. Default {@linkcode DEFAULT_CACHE_DIR}. `null` keeps no
   * cache: for a caller that stores results itself and passes `prevResult` (the daemon's state file).
   */
  cacheDir?: string | null;
  /** Kill a plugin after this long. Default {@linkcode DEFAULT_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** Environment for the plugin process; its CNI_* variables are dropped (the call sets its own). */
  env?: Record<string, string>;
  /** For DEL and CHECK: the attachment's final ADD result, used instead of the cache when given. */
  prevResult?: Result;
  /**
   * For {@linkcode execVerb}: run this plugin instead of the configuration's `type`. Delegation (IPAM) uses it:
   * the delegate reads its caller's configuration unchanged.
   */
  pluginType?: string;
  /** Called after every plugin process {@linkcode execVerb} runs (per-plugin metrics, failure reports). */
  onPluginExec?: (exec: PluginExec) => void;
}

/** One plugin process as {@linkcode InvokeOptions.onPluginExec} sees it. */
export interface PluginExec {
  /** The verb. */
  verb: string;
  /** The plugin (`type`, or the delegate run instead). */
  plugin: string;
  /** The network (the configuration's `name`). */
  network: string;
  /** The CNI error code; 0 for success. */
  code: number;
  /** Wall time of the process. */
  seconds: number;
  /** What the plugin printed on stderr (empty when it could not be started). */
  stderr: string;
  /** The error, when it failed. */
  error?: CniError;
}

/** A plugin's answer to VERSION. */
export interface VersionInfo {
  /** The version the answer is written in. */
  cniVersion: string;
  /** The versions the plugin accepts. */
  supportedVersions: string[];
}

/** An attachment that GC must keep. */
export interface Attachment {
  /** The container ID. */
  containerID: string;
  /** The interface name. */
  ifname: string;
}

/** Finds the executable for plugin `type` in `path`, or throws a {@linkcode CniError}. */
export function findPlugin(type: string, path: string[]): string {
  if (type.includes("/")) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `plugin type "${type}" may not contain '/'`);
  }
  for (const dir of path) {
    const candidate = `${dir.replace(/\/+$/, "")}/${type}`;
    try {
      const st = Deno.statSync(candidate);
      if (st.isFile && (st.mode ?? 0o111) & 0o111) return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `failed to find plugin "${type}" in path [${path.join(" ")}]`,
  );
}

/** The raw outcome of one plugin process. */
export interface ExecOutcome {
  /** Exit code. */
  code: number;
  /** Everything printed on stdout. */
  stdout: string;
  /** Everything printed on stderr. */
  stderr: string;
}

/**
 * The one way a plugin runs from here (a runtime's call, a list's member, a delegate): the delegation guard
 * first, on every call, then the plugin in this process when it is a built-in this process registered
 * (`configureInProcessPlugins`, the daemon), else its executable. Both give the same outcome: the executable's
 * exit code and stdout; stderr, in process, stays empty (the plugin's log lines go to this process's stderr).
 */
export function runPluginFile(
  pluginPath: string,
  env: Record<string, string>,
  options: { stdin: string; timeoutMs?: number },
): Promise<ExecOutcome> {
  guardDelegation(pluginPath, env);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const inProcess = runInProcess(pluginPath, env, { stdin: options.stdin, timeoutMs });
  return inProcess ?? execPlugin(pluginPath, env, options);
}

/**
 * Executes a plugin once with `env` and `stdin`. Throws a {@linkcode CniError} (code 102) when it runs longer
 * than `timeoutMs`, after killing it and everything it started: the plugin runs in its own process group
 * (session), and the timeout kills the group, so a plugin that forks (or a chain of delegates) cannot outlive
 * it.
 */
export async function execPlugin(
  pluginPath: string,
  env: Record<string, string>,
  options: { stdin: string; timeoutMs?: number },
): Promise<ExecOutcome> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(pluginPath, {
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true, // setsid: the plugin leads its own process group, which the timeout kills whole
    }).spawn();
  } catch (e) {
    throw new CniError(
      ErrorCode.DelegateFailure,
      `cannot execute plugin ${pluginPath}: ${(e as Error).message}`,
    );
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  }, timeoutMs);
  try {
    const writer = child.stdin.getWriter();
    // A plugin may exit without reading stdin (VERSION): a broken pipe is not an error then.
    await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
    await writer.close().catch(() => {});
    const out = await childOutput(child);
    if (timedOut) {
      throw new CniError(
        ErrorCode.Timeout,
        `plugin ${pluginPath} did not finish within ${timeoutMs} ms and was killed`,
      );
    }
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

function lastLines(text: string, n = 5): string {
  return text.trim().split("\n").slice(-n).join(" | ");
}

/** Turns a failed plugin run into the CniError it reported, or one that quotes its stderr. */
function errorFromOutcome(pluginPath: string, outcome: ExecOutcome): CniError {
  const text = outcome.stdout.trim();
  if (text) {
    try {
      const parsed = JSON.parse(text);
      if (isCniErrorObject(parsed)) return new CniError(parsed.code, parsed.msg, parsed.details);
    } catch {
      // not JSON: fall through
    }
  }
  const stderr = lastLines(outcome.stderr) || "(no output)";
  return new CniError(
    ErrorCode.DelegateFailure,
    `plugin ${pluginPath} exited with code ${outcome.code} and no error object; stderr: ${stderr}`,
  );
}

/**
 * The environment of one plugin call: `options.env` without its CNI_* variables (a caller passes its own whole
 * environment; the call's CNI variables are set here, never inherited), then the call's.
 */
function cniEnv(verb: string, rt: RuntimeConf | undefined, options: InvokeOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.env ?? {})) if (!k.startsWith("CNI_")) env[k] = v;
  Object.assign(env, {
    CNI_COMMAND: verb,
    CNI_PATH: options.path.join(":"),
  });
  if (!env.PATH) env.PATH = Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin";
  if (rt) {
    env.CNI_CONTAINERID = rt.containerId;
    env.CNI_NETNS = rt.netns;
    env.CNI_IFNAME = rt.ifname;
    env.CNI_ARGS = (rt.args ?? []).map(([k, v]) => `${k}=${v}`).join(";");
  }
  return env;
}

/**
 * VERSION answers by plugin file: path, size and mtime. A plugin's answer is a property of its file, so a
 * replaced or upgraded file (another size or mtime) is asked again; without it every IPAM delegation and every
 * flannel ADD would start one more process just to learn the same two lines.
 */
const versionCache = new Map<string, { key: string; info: VersionInfo }>();

function fileKey(path: string): string | undefined {
  try {
    const st = Deno.statSync(path);
    return `${st.size}:${st.mtime?.getTime() ?? "?"}:${st.ino ?? "?"}`;
  } catch {
    return undefined;
  }
}

/** Forgets every cached VERSION answer (tests). */
export function clearVersionCache(): void {
  versionCache.clear();
}

/** Asks a plugin which versions it supports; the answer is cached per file (path, size, mtime). */
export async function getVersionInfo(type: string, options: InvokeOptions): Promise<VersionInfo> {
  const path = findPlugin(type, options.path);
  const key = fileKey(path);
  const cached = versionCache.get(path);
  if (key !== undefined && cached?.key === key) return structuredClone(cached.info);
  const outcome = await runPluginFile(path, cniEnv("VERSION", undefined, options), {
    stdin: JSON.stringify({ cniVersion: "1.1.0" }),
    timeoutMs: options.timeoutMs,
  });
  if (outcome.code !== 0) throw errorFromOutcome(path, outcome);
  let info: VersionInfo;
  try {
    info = JSON.parse(outcome.stdout);
  } catch {
    throw new CniError(ErrorCode.DecodingFailure, `plugin ${path} answered VERSION with invalid JSON`);
  }
  // Plugins from before 0.2.0 cannot answer VERSION; libcni reads that as "0.1.0 only".
  if (!Array.isArray(info?.supportedVersions)) info = { cniVersion: "0.1.0", supportedVersions: ["0.1.0"] };
  if (key !== undefined) versionCache.set(path, { key, info: structuredClone(info) });
  return info;
}

/**
 * The configuration `conf` rewritten for a delegate that may not speak its version: the highest version the
 * delegate supports that is not above `conf.cniVersion`, with `prevResult` converted to it. A delegate that
 * supports `conf.cniVersion` gets `conf` unchanged. Throws code 1 when there is no such version.
 */
export async function confForDelegate(
  conf: Record<string, unknown> & { type: string },
  options: InvokeOptions,
): Promise<Record<string, unknown> & { type: string }> {
  const wanted = String(configVersion(conf));
  const type = options.pluginType ?? conf.type;
  const supported = (await getVersionInfo(type, options)).supportedVersions;
  if (supported.includes(wanted)) return conf;
  const best = highestVersion(supported, wanted);
  if (!best) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `plugin ${type} supports ${supported.join(", ")}, none at or below ${wanted}`,
    );
  }
  const rewritten: Record<string, unknown> & { type: string } = { ...conf, cniVersion: best };
  if (conf.prevResult) {
    rewritten.prevResult = convertResult(parseResult(conf.prevResult, wanted as CniVersion), best);
  }
  return rewritten;
}

/**
 * The one delegate call (a plugin running another: IPAM, galaxy-flannel's delegate): `prevResult` converted to
 * the delegate's version (DEL goes on without it when it cannot be), the version negotiated down with
 * {@linkcode confForDelegate} when `negotiate` is set, then {@linkcode execVerb}. A failure keeps its code and
 * gains `label` (`ipam host-local`, `delegate bridge ADD`).
 */
export async function delegateVerb(
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
  conf: Record<string, unknown> & { type: string },
  rt: RuntimeConf | undefined,
  options: InvokeOptions & { label: string; negotiate?: boolean },
): Promise<Result | undefined> {
  try {
    if (options.pluginType !== undefined && options.pluginType === conf.type) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `plugin ${conf.type} may not delegate to its own type`,
      );
    }
    let sent = conf;
    const version = conf.cniVersion;
    if (options.prevResult && isSupportedVersion(version) && versionAtLeast(version, "0.4.0")) {
      try {
        sent = { ...conf, prevResult: convertResult(options.prevResult, version) };
      } catch (e) {
        if (verb !== "DEL") throw e; // DEL must work without prevResult
      }
    }
    if (options.negotiate) sent = await confForDelegate(sent, options);
    return await execVerb(verb, sent, rt, options);
  } catch (e) {
    const err = asCniError(e, ErrorCode.DelegateFailure);
    throw new CniError(err.code, `${options.label}: ${err.message}`, err.details);
  }
}

/**
 * Executes one verb of one plugin with a complete configuration. For ADD the parsed result (1.1.0 shape) is
 * returned; for the other verbs `undefined`. A plugin error becomes a thrown {@linkcode CniError}.
 */
export async function execVerb(
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
  conf: Record<string, unknown> & { type: string },
  rt: RuntimeConf | undefined,
  options: InvokeOptions,
): Promise<Result | undefined> {
  if (!options.onPluginExec) return await execVerbOnce(verb, conf, rt, options, { stderr: "" });
  const started = performance.now();
  const seen = { stderr: "" };
  const report = (code: number, error?: CniError) =>
    options.onPluginExec!({
      verb,
      plugin: options.pluginType ?? conf.type,
      network: typeof conf.name === "string" ? conf.name : "",
      code,
      seconds: (performance.now() - started) / 1000,
      stderr: seen.stderr,
      error,
    });
  try {
    const result = await execVerbOnce(verb, conf, rt, options, seen);
    report(0);
    return result;
  } catch (e) {
    const err = e instanceof CniError
      ? e
      : new CniError(ErrorCode.PluginFailure, String((e as Error)?.message ?? e));
    report(err.code, err);
    throw e;
  }
}

async function execVerbOnce(
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
  conf: Record<string, unknown> & { type: string },
  rt: RuntimeConf | undefined,
  options: InvokeOptions,
  seen: { stderr: string },
): Promise<Result | undefined> {
  const type = options.pluginType ?? conf.type;
  const path = findPlugin(type, options.path);
  // The recursion guard (cni/delegation.ts): the callee joins the chain its environment carries, in process or
  // not; a type already in the chain, or a chain too deep, is refused here, before anything runs.
  const env = delegationEnv(type, cniEnv(verb, rt, options));
  const outcome = await runPluginFile(path, env, {
    stdin: JSON.stringify(conf),
    timeoutMs: options.timeoutMs,
  });
  seen.stderr = outcome.stderr;
  if (outcome.code !== 0) throw errorFromOutcome(path, outcome);
  if (verb !== "ADD") return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(outcome.stdout);
  } catch {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `plugin ${path} printed no valid result: ${JSON.stringify(outcome.stdout.slice(0, 200))}`,
    );
  }
  const claimed = (raw as { cniVersion?: unknown })?.cniVersion;
  const asked = configVersion(conf);
  // 0.1.0 and 0.2.0 results have one shape: a legacy plugin may answer a 0.1.0 (or "") config in 0.2.0.
  const legacy = (v: unknown) => v === "0.1.0" || v === "0.2.0";
  if (
    claimed !== undefined && claimed !== "" && conf.cniVersion !== undefined && claimed !== asked &&
    !(legacy(claimed) && legacy(asked))
  ) {
    // libcni ≥ 1.0 refuses this too: the caller asked for one format and would misread another.
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `plugin ${path} returned a ${JSON.stringify(claimed)} result for a ${
        JSON.stringify(conf.cniVersion)
      } config`,
    );
  }
  return parseResult(raw, asked as CniVersion);
}

/**
 * The configuration one plugin of a list receives: the plugin's own keys, the list's `name` and selected
 * `cniVersion`, `runtimeConfig` from the capabilities both sides have, and `prevResult`; `capabilities` is
 * removed. Unknown keys are kept. A list named `""` (an unnamed single configuration) passes no name.
 */
export function pluginConfig(
  plugin: NetConf,
  list: { name: string; cniVersion: CniVersion },
  rt: RuntimeConf | undefined,
  prevResult: Result | undefined,
): Record<string, unknown> & { type: string } {
  const conf: Record<string, unknown> & { type: string } = structuredClone(plugin) as
    & Record<string, unknown>
    & { type: string };
  // The list name "" stands for a single configuration without a name (a galaxy.json network, as the Go Galaxy
  // passed it): its plugin gets no name, as it always did.
  if (list.name !== "") conf.name = list.name;
  else delete conf.name;
  conf.cniVersion = list.cniVersion;
  const caps = plugin.capabilities ?? {};
  delete conf.capabilities;
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, value] of Object.entries(rt?.capabilityArgs ?? {})) {
    if (caps[cap]) runtimeConfig[cap] = value;
  }
  if (Object.keys(runtimeConfig).length) conf.runtimeConfig = runtimeConfig;
  if (prevResult) conf.prevResult = convertResult(prevResult, list.cniVersion);
  else delete conf.prevResult;
  return conf;
}

/** The version a list runs at, or a CniError when it offers none we speak. */
export function listVersion(list: { cniVersion?: string; cniVersions?: string[]; name: string }): CniVersion {
  const v = selectVersion(list);
  if (!v) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `network "${list.name}": no supported version in cniVersion ${JSON.stringify(list.cniVersion)}` +
        (list.cniVersions ? ` / cniVersions ${JSON.stringify(list.cniVersions)}` : ""),
    );
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Result cache (libcni layout).

/** One cache entry, libcni's `cniCacheV1` body. */
export interface CacheEntry {
  /** Always `cniCacheV1`. */
  kind: "cniCacheV1";
  /** The container ID. */
  containerId: string;
  /** The list's bytes, base64. */
  config: string;
  /** The interface name. */
  ifName: string;
  /** The network (list) name. */
  networkName: string;
  /** The netns path. */
  netns: string;
  /** CNI_ARGS pairs. */
  cniArgs?: [string, string][];
  /** Capability arguments. */
  capabilityArgs?: Record<string, unknown>;
  /** The final ADD result, in the list's version. */
  result?: Record<string, unknown>;
}

/** `<cacheDir>/results/<network>-<containerID>-<ifname>`. */
export function cacheFilePath(cacheDir: string, network: string, rt: RuntimeConf): string {
  return `${cacheDir}/results/${network}-${rt.containerId}-${rt.ifname}`;
}

async function readCache(path: string): Promise<CacheEntry | undefined> {
  try {
    const entry = JSON.parse(await Deno.readTextFile(path));
    return entry?.kind === "cniCacheV1" ? entry : undefined;
  } catch {
    return undefined;
  }
}

async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** The attachments cached for a network (libcni's `GetCachedAttachments`, by network). */
export async function cachedAttachments(cacheDir: string, network: string): Promise<CacheEntry[]> {
  const found: CacheEntry[] = [];
  try {
    for await (const e of Deno.readDir(`${cacheDir}/results`)) {
      if (!e.isFile || !e.name.startsWith(`${network}-`)) continue;
      const entry = await readCache(`${cacheDir}/results/${e.name}`);
      if (entry?.networkName === network) found.push(entry);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return found;
}

/** Reads the cached final ADD result of one attachment, in the 1.1.0 shape. */
export async function cachedResult(
  list: NetConfList,
  rt: RuntimeConf,
  options: InvokeOptions,
): Promise<Result | undefined> {
  if (options.cacheDir === null) return undefined;
  const entry = await readCache(cacheFilePath(options.cacheDir ?? DEFAULT_CACHE_DIR, list.name, rt));
  if (!entry?.result) return undefined;
  try {
    return parseResult(entry.result);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Lists.

/** Wraps a single plugin configuration (a `.conf`) as a one-plugin list, as libcni does. */
export function confAsList(conf: NetConf & { name: string }): NetConfList {
  const { cniVersion, name, ...rest } = conf;
  return { cniVersion, name, plugins: [{ ...rest, cniVersion, name } as NetConf] };
}

/** ADD: every plugin in order, each given the previous result; the final result is cached and returned. */
export async function addNetworkList(
  list: NetConfList,
  rt: RuntimeConf,
  options: InvokeOptions,
): Promise<Result> {
  const version = listVersion(list);
  let prev: Result | undefined;
  for (const plugin of list.plugins) {
    const conf = pluginConfig(plugin, { name: list.name, cniVersion: version }, rt, prev);
    prev = await execVerb("ADD", conf, rt, options);
  }
  if (!prev) {
    throw new CniError(ErrorCode.PluginFailure, `network "${list.name}": no plugin returned a result`);
  }
  if (options.cacheDir === null) return prev;
  const cacheDir = options.cacheDir ?? DEFAULT_CACHE_DIR;
  const entry: CacheEntry = {
    kind: "cniCacheV1",
    containerId: rt.containerId,
    config: encodeBase64(new TextEncoder().encode(JSON.stringify(list))),
    ifName: rt.ifname,
    networkName: list.name,
    netns: rt.netns,
    cniArgs: rt.args ?? [],
    capabilityArgs: rt.capabilityArgs ?? {},
    result: convertResult(prev, version),
  };
  await writeFileAtomic(cacheFilePath(cacheDir, list.name, rt), JSON.stringify(entry));
  return prev;
}

/**
 * DEL: every plugin in reverse order with the cached result as `prevResult` (from 0.4.0 on); the cache entry is
 * removed once all succeeded. A missing or unreadable cache entry is not an error.
 */
export async function delNetworkList(
  list: NetConfList,
  rt: RuntimeConf,
  options: InvokeOptions,
): Promise<void> {
  const version = listVersion(list);
  const cacheFile = options.cacheDir === null
    ? undefined
    : cacheFilePath(options.cacheDir ?? DEFAULT_CACHE_DIR, list.name, rt);
  const prev = versionAtLeast(version, "0.4.0")
    ? options.prevResult ?? await cachedResult(list, rt, options)
    : undefined;
  for (const plugin of [...list.plugins].reverse()) {
    await execVerb(
      "DEL",
      pluginConfig(plugin, { name: list.name, cniVersion: version }, rt, prev),
      rt,
      options,
    );
  }
  if (cacheFile) await removeIfPresent(cacheFile);
}

/** CHECK: every plugin in order with the cached result; skipped when `disableCheck`; needs 0.4.0. */
export async function checkNetworkList(
  list: NetConfList,
  rt: RuntimeConf,
  options: InvokeOptions,
): Promise<void> {
  const version = listVersion(list);
  if (!versionAtLeast(version, "0.4.0")) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `network "${list.name}": CHECK needs 0.4.0, config is ${version}`,
    );
  }
  if (list.disableCheck) return;
  const prev = options.prevResult ?? await cachedResult(list, rt, options);
  if (!prev) {
    throw new CniError(
      ErrorCode.UnknownContainer,
      `network "${list.name}": no cached result for ${rt.containerId}/${rt.ifname}; CHECK needs a prior ADD`,
    );
  }
  for (const plugin of list.plugins) {
    await execVerb(
      "CHECK",
      pluginConfig(plugin, { name: list.name, cniVersion: version }, rt, prev),
      rt,
      options,
    );
  }
}

/** STATUS: every plugin in order (from 1.1.0 on); the first error is returned. */
export async function statusNetworkList(list: NetConfList, options: InvokeOptions): Promise<void> {
  const version = listVersion(list);
  if (!versionAtLeast(version, "1.1.0")) return;
  for (const plugin of list.plugins) {
    await execVerb(
      "STATUS",
      pluginConfig(plugin, { name: list.name, cniVersion: version }, undefined, undefined),
      undefined,
      options,
    );
  }
}

/**
 * GC as libcni does it: first DEL every cached attachment of this network that is not in `valid`, then (from
 * 1.1.0 on, unless `disableGC`) send GC with `cni.dev/valid-attachments` to every plugin. It goes on past
 * errors and throws one error that lists them all.
 */
export async function gcNetworkList(
  list: NetConfList,
  valid: Attachment[],
  options: InvokeOptions,
): Promise<void> {
  const version = listVersion(list);
  const keep = new Set(valid.map((a) => `${a.containerID}\u0000${a.ifname}`));
  const errors: string[] = [];
  const cached = options.cacheDir === null
    ? []
    : await cachedAttachments(options.cacheDir ?? DEFAULT_CACHE_DIR, list.name);
  for (const entry of cached) {
    if (keep.has(`${entry.containerId}\u0000${entry.ifName}`)) continue;
    const rt: RuntimeConf = {
      containerId: entry.containerId,
      netns: entry.netns,
      ifname: entry.ifName,
      args: entry.cniArgs,
      capabilityArgs: entry.capabilityArgs,
    };
    try {
      await delNetworkList(list, rt, options);
    } catch (e) {
      errors.push(`DEL ${entry.containerId}/${entry.ifName}: ${(e as Error).message}`);
    }
  }
  if (versionAtLeast(version, "1.1.0") && !list.disableGC) {
    for (const plugin of list.plugins) {
      const conf = pluginConfig(plugin, { name: list.name, cniVersion: version }, undefined, undefined);
      conf["cni.dev/valid-attachments"] = valid;
      conf["cni.dev/attachments"] = valid; // the legacy key libcni still sends
      try {
        await execVerb("GC", conf, undefined, options);
      } catch (e) {
        errors.push(`GC ${plugin.type}: ${(e as Error).message}`);
      }
    }
  }
  if (errors.length) {
    throw new CniError(ErrorCode.PluginFailure, `network "${list.name}": GC errors: ${errors.join("; ")}`);
  }
}
