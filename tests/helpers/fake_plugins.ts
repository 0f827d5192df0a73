/**
 * Installs {@linkcode fake_plugin.ts} under any plugin names in a folder, for runtime-side tests.
 * @module
 */
import { REPO_ROOT } from "./launchers.ts";

/** Writes an executable per name in `dir` that runs the fake plugin; returns `dir`. */
export async function writeFakePlugins(dir: string, names: string[]): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  for (const name of names) {
    const script =
      `#!/bin/bash\nexec '${Deno.execPath()}' run -A --quiet --config '${REPO_ROOT}/deno.json' ` +
      `'${REPO_ROOT}/tests/helpers/fake_plugin.ts'\n`;
    await Deno.writeTextFile(`${dir}/${name}`, script, { mode: 0o755 });
  }
  return dir;
}

/** The calls a fake plugin recorded, in order. */
export async function readCalls(recordFile: string): Promise<
  { verb: string; env: Record<string, string>; conf: Record<string, unknown>; start: number; end: number }[]
> {
  try {
    return (await Deno.readTextFile(recordFile)).trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}
