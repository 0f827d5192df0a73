/**
 * Runs Galaxy's built-in plugins the way a runtime does: the launcher executable for the plugin's name, exec'd
 * inside a lab's node namespace with the CNI environment and the configuration on stdin. The output is parsed
 * and validated with the schema of the version the configuration asked for, so every test that goes through
 * here also checks the wire format. Plugin tests build one table over {@linkcode TEST_VERSIONS} with it.
 * @module
 */
import assert from "node:assert/strict";
import {
  type CniErrorObject,
  CniErrorSchema,
  type CniVersion,
  convertResult,
  describeZodError,
  parseResult,
  type Result,
  resultSchemaFor,
} from "../../cni/spec.ts";
import { launcherDir } from "./launchers.ts";
import type { Lab, Netns } from "./netns.ts";

/** Where Debian's containernetworking-plugins live. */
export const STANDARD_PLUGIN_DIR = "/usr/lib/cni";

/** The versions every plugin is tested at (0.3.0 is 0.3.1 with a typo; 0.1.0 and 0.2.0 share a shape). */
export const TEST_VERSIONS: readonly CniVersion[] = ["0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/** One call of a built-in plugin. */
export interface PluginCall {
  /** CNI_COMMAND. */
  verb: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" | "VERSION";
  /** The configuration written to stdin. */
  conf: Record<string, unknown>;
  /** CNI_CONTAINERID (omitted when absent). */
  containerId?: string;
  /** The pod namespace, given as CNI_NETNS (its path); a string is used as is ("" for none). */
  netns?: Netns | string;
  /** CNI_IFNAME (default eth0 for ADD, DEL and CHECK). */
  ifname?: string;
  /** CNI_ARGS as pairs, joined with `;`. */
  args?: Record<string, string>;
  /** Folders searched before the launchers and the standard plugins (CNI_PATH). */
  extraPath?: string[];
  /** The namespace to run in; the lab's node by default. */
  in?: Netns;
  /**
   * How the plugin runs: its executable (`exec`, the default) or called in process the daemon's way
   * (`in-process`, through `tests/helpers/in_process_runner.ts`), which must give the same output.
   */
  via?: PluginVia;
}

/** The two ways a built-in plugin runs: as its executable, or in the daemon's process. */
export type PluginVia = "exec" | "in-process";

/** Both ways, in the order a table runs them. */
export const PLUGIN_VIAS: readonly PluginVia[] = ["exec", "in-process"];

const IN_PROCESS_RUNNER = new URL("./in_process_runner.ts", import.meta.url).pathname;

/** What a plugin call printed, parsed. */
export interface PluginRun {
  /** Exit code. */
  code: number;
  /** Raw stdout. */
  stdout: string;
  /** Raw stderr (the plugin's log lines). */
  stderr: string;
  /** The printed result, in the configuration's version, validated against its schema (ADD success). */
  output?: Record<string, unknown>;
  /** The same result in the internal 1.1.0 shape. */
  result?: Result;
  /** The printed error object (failure). */
  error?: CniErrorObject;
}

/** The version a configuration asks for (libcni reads a missing one as 0.1.0). */
export function confVersion(conf: Record<string, unknown>): CniVersion {
  return (conf.cniVersion ?? "0.1.0") as CniVersion;
}

/** `conf` with `prevResult` (given in the 1.1.0 shape) converted to the configuration's version. */
export function withPrevResult(conf: Record<string, unknown>, prev: Result): Record<string, unknown> {
  return { ...conf, prevResult: convertResult(prev, confVersion(conf)) };
}

/** Host-local IPAM whose state lives in the lab's folder. */
export function hostLocalIpam(
  lab: Lab,
  subnet: string,
  options: { rangeEnd?: string } = {},
): Record<string, unknown> {
  const range: Record<string, string> = { subnet };
  if (options.rangeEnd) range.rangeEnd = options.rangeEnd;
  return { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[range]] };
}

/** The addresses host-local holds for network `name` in the lab (its reservation files). */
export async function reservations(lab: Lab, name: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(`${lab.dir}/ipam/${name}`)) {
      if (/^\d+\.\d+\.\d+\.\d+$/.test(e.name)) found.push(e.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return found.sort();
}

/**
 * Runs `plugin` (a Galaxy executable name) inside the lab's node namespace and parses what it printed. A
 * successful ADD must print a result that validates against the schema of the configuration's version
 * and carries that version; a failure must print a valid error object. Either mismatch fails the test.
 */
export async function runBuiltin(lab: Lab, plugin: string, call: PluginCall): Promise<PluginRun> {
  const bin = await launcherDir();
  const env: Record<string, string> = {
    CNI_COMMAND: call.verb,
    CNI_PATH: [...(call.extraPath ?? []), bin, STANDARD_PLUGIN_DIR].join(":"),
  };
  if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
  if (call.verb === "ADD" || call.verb === "DEL" || call.verb === "CHECK") {
    env.CNI_IFNAME = call.ifname ?? "eth0";
    const ns = call.netns;
    env.CNI_NETNS = ns === undefined ? "" : typeof ns === "string" ? ns : ns.path;
  }
  if (call.args) env.CNI_ARGS = Object.entries(call.args).map(([k, v]) => `${k}=${v}`).join(";");
  const [cmd, args] = call.via === "in-process"
    ? [Deno.execPath(), ["run", "-A", "--quiet", IN_PROCESS_RUNNER, plugin]]
    : [`${bin}/${plugin}`, []];
  const out = await lab.tryExec(call.in ?? lab.node, cmd, args, { stdin: JSON.stringify(call.conf), env });
  const run: PluginRun = { code: out.code, stdout: out.stdout, stderr: out.stderr };
  const text = out.stdout.trim();
  if (out.code === 0) {
    if (call.verb === "ADD") {
      const version = confVersion(call.conf);
      const output = JSON.parse(text) as Record<string, unknown>;
      const checked = resultSchemaFor(version).safeParse(output);
      assert.ok(
        checked.success,
        `${plugin} ADD printed an invalid ${version} result: ${
          checked.success ? "" : describeZodError(checked.error)
        }\n${text}`,
      );
      assert.equal(output.cniVersion, version, `${plugin} answered a ${version} config in another version`);
      run.output = output;
      run.result = parseResult(output, version);
    } else if (call.verb !== "VERSION") {
      assert.equal(text, "", `${plugin} ${call.verb} printed something on success: ${text}`);
    }
  } else {
    const parsed = CniErrorSchema.safeParse(JSON.parse(text || "null"));
    assert.ok(parsed.success, `${plugin} ${call.verb} failed without an error object: ${text} ${out.stderr}`);
    run.error = parsed.data;
  }
  return run;
}

/** Asserts that a call succeeded, showing its output and logs when it did not. */
export function assertOk(run: PluginRun, what: string): void {
  assert.equal(run.code, 0, `${what} failed: ${run.stdout.trim()}\nstderr: ${run.stderr.trim()}`);
}

/** Asserts that a call failed with an error whose message matches `msg` (and `code`, when given). */
export function assertFails(
  run: PluginRun,
  what: string,
  expect: { msg: RegExp; code?: number },
): CniErrorObject {
  assert.notEqual(run.code, 0, `${what} should have failed; it printed ${run.stdout.trim()}`);
  assert.ok(run.error, `${what}: no error object`);
  assert.match(run.error.msg, expect.msg, `${what}: unexpected message`);
  if (expect.code !== undefined) assert.equal(run.error.code, expect.code, `${what}: ${run.error.msg}`);
  return run.error;
}

/** The links of the lab's node namespace whose name starts with `prefix`. */
export async function nodeLinks(lab: Lab, prefix: string): Promise<string[]> {
  return (await lab.linkNames(lab.node)).filter((n) => n.startsWith(prefix));
}

/** The main-table routes of a namespace as `ip -j route` prints them. */
export function routes(
  lab: Lab,
  ns: Netns,
): Promise<{ dst: string; gateway?: string; dev?: string; prefsrc?: string; scope?: string }[]> {
  return lab.ipJson(ns, ["route", "show"]);
}

/** The policy rules of a namespace as `ip -j rule` prints them. */
export function rules(
  lab: Lab,
  ns: Netns,
): Promise<{ priority: number; src?: string; dst?: string; table: string }[]> {
  return lab.ipJson(ns, ["rule", "show"]);
}

/** Pings `ip` from inside `ns` (one packet, two seconds); true when it answered. */
export async function ping(lab: Lab, ns: Netns, ip: string): Promise<boolean> {
  const r = await lab.tryExec(ns, "ping", ["-c", "1", "-W", "2", ip]);
  return r.code === 0;
}
