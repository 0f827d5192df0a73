/**
 * The plugin side of CNI: turns the environment and stdin into a validated {@linkcode PluginRequest}, calls
 * the plugin's verb function and prints the result or the spec's error object. Plugins are plain functions
 * over a request; this module is the only place that knows about env, stdin and stdout.
 * @module
 */
import {
  ALL_VERSIONS,
  asCniError,
  checkResult,
  CniError,
  type CniVersion,
  configVersion,
  convertResult,
  CURRENT_VERSION,
  ErrorCode,
  isSupportedVersion,
  netConfProblem,
  parseResult,
  type Result,
  versionAtLeast,
} from "./version.ts";
import { type EnvRequest, requestFromEnv, type Verb, verbOf } from "./request.ts";

export type { Verb } from "./request.ts";

/** One validated plugin call: what the environment says ({@linkcode EnvRequest}) and what stdin says. */
export interface PluginRequest extends EnvRequest {
  /** The configuration from stdin, every field kept. */
  config: Record<string, unknown> & { type: string; name?: string };
  /** The configuration's version, which the result is printed in. */
  cniVersion: CniVersion;
  /** `prevResult`, converted to the 1.1.0 shape. */
  prevResult?: Result;
  /** The environment the plugin was called with, for delegation. */
  env: Record<string, string>;
  /** The raw stdin, for delegation. */
  stdin: Uint8Array;
}

/** A CNI plugin as plain functions; each throws a {@linkcode CniError} to fail. */
export interface Plugin {
  /** The plugin's type name, used in messages. */
  name: string;
  /** Versions this plugin accepts; all seven when absent. */
  supportedVersions?: readonly CniVersion[];
  /** Creates the attachment and returns what it made. */
  add(req: PluginRequest): Promise<Result>;
  /** Removes the attachment; must succeed when things are already gone. */
  del(req: PluginRequest): Promise<void>;
  /** Verifies the attachment against `prevResult`. */
  check?(req: PluginRequest): Promise<void>;
  /** Says whether the plugin can serve ADD; succeeds when absent. */
  status?(req: PluginRequest): Promise<void>;
  /** Removes resources of attachments not in `cni.dev/valid-attachments`; succeeds when absent. */
  gc?(req: PluginRequest): Promise<void>;
}

/** What a plugin call printed and how it exits. */
export interface PluginOutput {
  /** The text for stdout: a result, the VERSION answer, an error object, or nothing. */
  stdout: string;
  /** 0 on success, 1 on error. */
  exitCode: number;
}

function decodeConfig(stdin: Uint8Array): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(stdin));
  } catch (e) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `cannot decode network configuration on stdin: ${(e as Error).message}`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CniError(ErrorCode.DecodingFailure, "network configuration on stdin is not a JSON object");
  }
  return parsed as Record<string, unknown>;
}

/** The answer to VERSION. */
export function versionAnswer(plugin: Plugin): string {
  return JSON.stringify({
    cniVersion: CURRENT_VERSION,
    supportedVersions: plugin.supportedVersions ?? ALL_VERSIONS,
  });
}

/** Builds the request for a verb from env and stdin; throws a {@linkcode CniError} on bad input. */
export function buildRequest(
  plugin: Plugin,
  verb: Exclude<Verb, "VERSION">,
  env: Record<string, string>,
  stdin: Uint8Array,
): PluginRequest {
  const fromEnv = requestFromEnv(verb, env);
  const raw = decodeConfig(stdin);
  const version = configVersion(raw);
  const supported = plugin.supportedVersions ?? ALL_VERSIONS;
  if (!isSupportedVersion(version) || !supported.includes(version)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `incompatible CNI versions: config is ${JSON.stringify(version)}, plugin ${plugin.name} supports ${
        supported.join(", ")
      }`,
    );
  }
  if (verb === "CHECK" && !versionAtLeast(version, "0.4.0")) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `config version "${version}" does not allow CHECK (needs 0.4.0)`,
    );
  }
  if ((verb === "STATUS" || verb === "GC") && !versionAtLeast(version, "1.1.0")) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `config version "${version}" does not allow ${verb} (needs 1.1.0)`,
    );
  }
  const confProblem = netConfProblem(raw);
  if (confProblem) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid network configuration: ${confProblem}`);
  }
  let prevResult: Result | undefined;
  if (raw.prevResult !== undefined) {
    try {
      prevResult = parseResult(raw.prevResult, version);
    } catch (e) {
      throw new CniError(ErrorCode.DecodingFailure, `prevResult: ${(e as Error).message}`);
    }
  }
  return {
    ...fromEnv,
    config: raw as PluginRequest["config"],
    cniVersion: version,
    prevResult,
    env,
    stdin,
  };
}

/** Formats a plugin's 1.1.0 result in the request's version, checked against that version's shape. */
export function formatResult(result: Result, version: CniVersion): string {
  const converted = convertResult(result, version);
  try {
    checkResult(converted, version);
  } catch (e) {
    throw new CniError(
      ErrorCode.PluginFailure,
      `plugin produced an invalid ${version} result: ${(e as Error).message}`,
    );
  }
  return JSON.stringify(converted);
}

/** Runs one call of `plugin` from an environment and stdin, and says what to print and how to exit. */
export async function handle(
  plugin: Plugin,
  env: Record<string, string>,
  stdin: Uint8Array,
): Promise<PluginOutput> {
  let errorVersion: string = CURRENT_VERSION;
  try {
    const verb = verbOf(env);
    if (verb === "VERSION") return { stdout: versionAnswer(plugin), exitCode: 0 };
    const req = buildRequest(plugin, verb, env, stdin);
    errorVersion = req.cniVersion;
    switch (req.command) {
      case "ADD":
        return { stdout: formatResult(await plugin.add(req), req.cniVersion), exitCode: 0 };
      case "DEL":
        await plugin.del(req);
        break;
      case "CHECK":
        if (!plugin.check) {
          throw new CniError(ErrorCode.PluginFailure, `plugin ${plugin.name} does not implement CHECK`);
        }
        await plugin.check(req);
        break;
      case "STATUS":
        await plugin.status?.(req);
        break;
      case "GC":
        await plugin.gc?.(req);
        break;
    }
    return { stdout: "", exitCode: 0 };
  } catch (e) {
    return {
      stdout: JSON.stringify(asCniError(e).toJSON(stdinVersion(stdin) ?? errorVersion)),
      exitCode: 1,
    };
  }
}

/** The `cniVersion` of a readable configuration, so that errors are written in the caller's version. */
function stdinVersion(stdin: Uint8Array): string | undefined {
  try {
    const conf = JSON.parse(new TextDecoder().decode(stdin));
    if (typeof conf !== "object" || conf === null || Array.isArray(conf)) return undefined;
    const v = configVersion(conf);
    return isSupportedVersion(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * All of stdin. Plain synchronous reads: the first use of web streams (`Deno.stdin.readable`) costs ~6 ms of
 * set-up, on every pod's start-up path; a plugin has nothing else to do while it waits for its input anyway.
 */
function readStdin(): Uint8Array {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  let total = 0;
  for (let n = Deno.stdin.readSync(buf); n !== null; n = Deno.stdin.readSync(buf)) {
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return all;
}

/** The entry of a plugin executable: reads the real env and stdin, prints, and returns the exit code. */
export async function runPlugin(plugin: Plugin): Promise<number> {
  const env = Deno.env.toObject();
  let stdin: Uint8Array = new Uint8Array();
  if (env.CNI_COMMAND !== "VERSION") {
    try {
      stdin = readStdin();
    } catch (e) {
      const err = new CniError(ErrorCode.IoFailure, `cannot read stdin: ${(e as Error).message}`);
      console.log(JSON.stringify(err.toJSON()));
      return 1;
    }
  }
  const out = await handle(plugin, env, stdin);
  if (out.stdout) await Deno.stdout.write(new TextEncoder().encode(out.stdout + "\n"));
  return out.exitCode;
}
