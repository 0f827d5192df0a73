/**
 * `galaxy version` and `galaxy --version`.
 * @module
 */
import { BUILD_COMMIT, BUILD_TIME, GALAXY_VERSION } from "./build_info.ts";

function commitFromGit(): string | null {
  // Only when running from a source checkout; a compiled executable has the commit stamped in.
  const repo = new URL("..", import.meta.url);
  if (repo.protocol !== "file:") return null;
  try {
    const out = new Deno.Command("git", {
      args: ["-C", repo.pathname, "rev-parse", "--short=12", "HEAD"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const sha = new TextDecoder().decode(out.stdout).trim();
    return out.success && sha ? sha : null;
  } catch {
    return null;
  }
}

/** The one-line version string: `galaxy <semver> (commit <sha>, built <time>, deno <version>)`. */
export function versionLine(): string {
  const commit = BUILD_COMMIT ?? commitFromGit() ?? "unknown";
  const built = BUILD_TIME ?? "unknown";
  return `galaxy ${GALAXY_VERSION} (commit ${commit}, built ${built}, deno ${Deno.version.deno})`;
}

/** Prints the version line; any argument is a usage error. */
export function main(args: string[]): Promise<number> {
  if (args.length > 0) {
    console.error(`galaxy version: unexpected argument "${args[0]}"`);
    return Promise.resolve(2);
  }
  console.log(versionLine());
  return Promise.resolve(0);
}
