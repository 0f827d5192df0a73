/**
 * Built-in plugins called inside the calling process (the daemon) instead of as executables: the same
 * {@linkcode handle} the executable's entry runs, over the same environment and stdin, giving the same exit
 * code and stdout. What differs is only what cannot be the same: no process (so no 40–60 MB Deno per
 * plugin and per delegate), and the plugin's log lines go to this process's stderr instead of a pipe.
 * Third-party plugins, and every plugin in a process that registered none (the executables themselves, the
 * shim), run as processes.
 *
 * The registry is filled by the process that wants it ({@linkcode configureInProcessPlugins}); this module
 * imports no plugin, so the shim and the executables load nothing more than before.
 * @module
 */
import { handle, type Plugin } from "./skel.ts";
import { CniError, ErrorCode } from "./version.ts";

/** Loads one built-in plugin, by executable name. */
export type PluginLoader = () => Promise<Plugin>;

let registry: Readonly<Record<string, PluginLoader>> = {};
const loaded = new Map<string, Promise<Plugin>>();

/**
 * Makes this process call these plugins directly when a call finds an executable of one of these names
 * (`galaxy-veth`, `galaxy-flannel`, ...) in the plugin path. An empty registry turns it off.
 */
export function configureInProcessPlugins(plugins: Readonly<Record<string, PluginLoader>>): void {
  registry = { ...plugins };
  loaded.clear();
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
export function guardDelegation(_pluginPath: string, _env: Record<string, string>): void {
  // The recursion guard (issue 10) is called here; until it lands, every call is allowed.
}

/**
 * Runs the built-in plugin at `pluginPath` in this process, or returns `undefined` when it is not one this
 * process registered (the caller executes it then). The outcome is the executable's: exit code, stdout with
 * its trailing newline, and an empty stderr. A call that outlives `timeoutMs` fails as a killed executable
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
    try {
      const out = await Promise.race([handle(await plugin, env, stdin), timeout]);
      return { code: out.exitCode, stdout: out.stdout ? `${out.stdout}\n` : "", stderr: "" };
    } finally {
      clearTimeout(timer);
    }
  })();
}
