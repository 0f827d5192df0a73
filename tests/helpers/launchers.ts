/**
 * The development launchers, written once per test process into a temporary folder, so that tests run the
 * code as a real executable under each Galaxy name, the way a runtime execs a plugin.
 * @module
 */
import { writeLaunchers } from "../../cli/launchers.ts";

let binDir: Promise<string> | undefined;

/** The folder holding a launcher for every Galaxy name (made on first use, removed at process exit). */
export function launcherDir(): Promise<string> {
  binDir ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "galaxy-test-bin-" });
    await writeLaunchers(dir);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // already gone
      }
    });
    return dir;
  })();
  return binDir;
}

/** The path of this repository's root. */
export const REPO_ROOT: string = new URL("../..", import.meta.url).pathname.replace(/\/+$/, "");
