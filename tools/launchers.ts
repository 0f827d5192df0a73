/**
 * Development launchers: one small executable per Galaxy name, each running `main.ts` from this checkout
 * under its own argv[0] with exactly the permissions a compiled Galaxy has.
 * @module
 */
import { PERMISSION_FLAGS } from "./permissions.ts";

/** Every name the one executable answers to. */
export const EXECUTABLE_NAMES: readonly string[] = [
  "galaxy",
  "galaxy-sdn",
  "galaxy-veth",
  "galaxy-k8s-vlan",
  "galaxy-underlay-veth",
  "galaxy-k8s-sriov",
  "tke-route-eni",
  "galaxy-flannel",
];

/** How every launcher begins, so that `galaxy install --uninstall` can tell its own files. */
export const LAUNCHER_HEADER = '#!/bin/bash\n# Written by "deno task dev-install"';

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The launcher script for `name`, running `<repo>/main.ts` with the deno at `deno`. */
export function launcherScript(name: string, options: { deno: string; repo: string }): string {
  const repo = options.repo.replace(/\/+$/, "");
  const args = [
    "run",
    "--quiet",
    "--cached-only",
    // The shim and the plugins import no npm package (tests/unit/entry_test.ts checks the shim): skipping npm
    // resolution saves ~8 ms on every pod's start-up. `galaxy` itself (the daemon) needs npm.
    ...(name === "galaxy" ? [] : ["--no-npm"]),
    ...PERMISSION_FLAGS,
    "--config",
    `${repo}/deno.json`,
    `${repo}/main.ts`,
  ];
  // exec -a gives deno the argv[0] that main.ts dispatches on, as a link to a compiled galaxy would.
  return `${LAUNCHER_HEADER}; runs Galaxy from source as ${name}.\n` +
    `exec -a ${name} ${shellQuote(options.deno)} ${args.map(shellQuote).join(" ")} "$@"\n`;
}

/** Writes a launcher for every name into `dir` (created if missing) and returns their paths. */
export async function writeLaunchers(
  dir: string,
  options: { deno?: string; repo?: string } = {},
): Promise<string[]> {
  const deno = options.deno ?? Deno.execPath();
  const repo = options.repo ?? new URL("..", import.meta.url).pathname;
  await Deno.mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const name of EXECUTABLE_NAMES) {
    const path = `${dir.replace(/\/+$/, "")}/${name}`;
    const tmp = `${path}.tmp-${Deno.pid}`;
    await Deno.writeTextFile(tmp, launcherScript(name, { deno, repo }), { mode: 0o755 });
    await Deno.chmod(tmp, 0o755);
    await Deno.rename(tmp, path);
    written.push(path);
  }
  return written;
}
