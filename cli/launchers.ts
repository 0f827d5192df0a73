/**
 * Development launchers: one small executable per Galaxy name, each running `main.ts` from this checkout
 * under its own argv[0] with exactly the permissions a compiled Galaxy has. `galaxy install` and `galaxy demo`
 * write them when Galaxy runs from source, so this is part of the executable, not of `tools/`.
 * @module
 */
import { writeFileAtomic } from "../netops/fs_atomic.ts";
import { EXECUTABLE_NAMES, MAIN_NAME } from "./executables.ts";
import { PERMISSION_FLAGS } from "./permissions.ts";

export { EXECUTABLE_NAMES };

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
    ...(name === MAIN_NAME ? [] : ["--no-npm"]),
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
  const written: string[] = [];
  for (const name of EXECUTABLE_NAMES) {
    const path = `${dir.replace(/\/+$/, "")}/${name}`;
    await writeFileAtomic(path, launcherScript(name, { deno, repo }), { mode: 0o755, dirMode: 0o755 });
    written.push(path);
  }
  return written;
}
