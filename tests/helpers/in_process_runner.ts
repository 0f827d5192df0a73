/**
 * A stand-in for the daemon's side of one plugin call, for the plugin table's in-process rows: run inside
 * the lab's node namespace like the executable would be, it calls the built-in plugin named by its argument
 * the daemon's way (setns workers, built-ins registered in process, `runPluginFile`) with its own environment
 * and stdin, and prints the outcome exactly as the executable would: stdout, then its exit code.
 * `deno run -A tests/helpers/in_process_runner.ts <plugin>`.
 * @module
 */
import { builtinPluginLoaders } from "../../cli/executables.ts";
import { configureInProcessPlugins, inProcessPluginNames } from "../../cni/in_process.ts";
import { findPlugin, runPluginFile } from "../../cni/invoke.ts";
import { configureNetnsWorkers, shutdownNetnsWorkers } from "../../netops/netns.ts";

async function main(name: string): Promise<number> {
  configureNetnsWorkers({ executor: "worker" });
  await configureInProcessPlugins(builtinPluginLoaders());
  const env = Deno.env.toObject();
  const stdin = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer());
  if (!inProcessPluginNames().includes(name)) {
    console.error(`in_process_runner: ${name} is not a built-in plugin, so it would not run in process`);
    return 70;
  }
  try {
    const path = findPlugin(name, (env.CNI_PATH ?? "").split(":").filter((p) => p));
    const out = await runPluginFile(path, env, { stdin });
    await Deno.stdout.write(new TextEncoder().encode(out.stdout));
    if (out.stderr) await Deno.stderr.write(new TextEncoder().encode(out.stderr));
    return out.code;
  } finally {
    await shutdownNetnsWorkers();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args[0]));
