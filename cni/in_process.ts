/**
 * Built-in plugins called inside the calling process (the daemon) instead of as executables: the same
 * {@linkcode handle} the executable's entry runs, over the same environment and stdin, giving the same exit
 * code, stdout and stderr. What differs is only what cannot be the same: no process (so no 40–60 MB Deno
 * per plugin and per delegate). The plugin's log lines (`console.error`/`console.warn`) are caught per call
 * (AsyncLocalStorage follows the call through its awaits, a delegate's call gets its own) and returned as
 * the call's stderr, as the executable's pipe would have them, instead of reaching this process's streams.
 * Third-party plugins, and every plugin in a process that registered none (the executables themselves, the
 * shim), run as processes.
 *
 * The registry is filled by the process that wants it ({@linkcode configureInProcessPlugins}); this module
 * imports no plugin, so the shim and the executables load nothing more than before.
 * @module
 */
import { checkDelegationChain } from "./delegation.ts";
import type { AsyncLocalStorage } from "node:async_hooks";
import { handle, type Plugin } from "./skel.ts";
import { CniError, ErrorCode } from "./version.ts";

/** Loads one built-in plugin, by executable name. */
export type PluginLoader = () => Promise<Plugin>;

let registry: Readonly<Record<string, PluginLoader>> = {};
const loaded = new Map<string, Promise<Plugin>>();
let stderrOfCall: AsyncLocalStorage<string[]> | undefined;

/**
 * Makes this process call these plugins directly when a call finds an executable of one of these names
 * (`galaxy-veth`, `galaxy-flannel`, ...) in the plugin path. An empty registry turns it off. From the first
 * call on, `console.error` and `console.warn` inside an in-process call write to that call's stderr.
 */
export async function configureInProcessPlugins(
  plugins: Readonly<Record<string, PluginLoader>>,
): Promise<void> {
  registry = { ...plugins };
  loaded.clear();
  if (stderrOfCall || Object.keys(plugins).length === 0) return;
  // Loaded here, not at the top: the plugin executables import this module and never need it.
  const { AsyncLocalStorage } = await import("node:async_hooks");
  const storage = new AsyncLocalStorage<string[]>();
  stderrOfCall = storage;
  for (const level of ["error", "warn"] as const) {
    const original = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      const lines = storage.getStore();
      if (!lines) return original(...args);
      lines.push(args.map((a) => typeof a === "string" ? a : Deno.inspect(a)).join(" ") + "\n");
    };
  }
}

/** The names this process runs in process (for metrics and tests). */
export function inProcessPluginNames(): string[] {
  return Object.keys(registry);
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * The seam of the delegation guard: called once for every plugin call from this process, whether it then
 * runs in process or as an executable, with the environment the plugin gets (which carries the guard's
 * state, so it survives both ways). Throws a {@linkcode CniError} to refuse the call.
 */
export function guardDelegation(_pluginPath: string, env: Record<string, string>): void {
  // execVerb has put the callee into the chain with delegationEnv (which refuses loops and depth); this checks
  // the chain once more on the one path every call takes, so that no caller can skip it.
  checkDelegationChain(env);
}

/**
 * Runs the built-in plugin at `pluginPath` in this process, or returns `undefined` when it is not one this
 * process registered (the caller executes it then). The outcome is the executable's: exit code, stdout with
 * its trailing newline, and the log lines as stderr. A call that outlives `timeoutMs` fails as a killed executable
 * would (code 102); the call itself cannot be killed and finishes in the background.
 */
export function runInProcess(
  pluginPath: string,
  env: Record<string, string>,
  options: { stdin: string; timeoutMs: number },
): Promise<{ code: number; stdout: string; stderr: string }> | undefined {
  const name = baseName(pluginPath);
  const load = registry[name];
  if (!load) return undefined;
  return (async () => {
    let plugin = loaded.get(name);
    if (!plugin) {
      plugin = load();
      loaded.set(name, plugin);
      plugin.catch(() => loaded.delete(name));
    }
    const stdin = env.CNI_COMMAND === "VERSION" ? new Uint8Array() : new TextEncoder().encode(options.stdin);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new CniError(
            ErrorCode.Timeout,
            `plugin ${pluginPath} did not finish within ${options.timeoutMs} ms and was killed`,
          ),
        );
      }, options.timeoutMs);
    });
    const stderr: string[] = [];
    const call = async () => handle(await plugin, env, stdin);
    try {
      const out = await Promise.race([stderrOfCall ? stderrOfCall.run(stderr, call) : call(), timeout]);
      return { code: out.exitCode, stdout: out.stdout ? `${out.stdout}\n` : "", stderr: stderr.join("") };
    } finally {
      clearTimeout(timer);
    }
  })();
}
