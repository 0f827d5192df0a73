/**
 * The executables the tests run, written once per test process into a temporary folder, so that tests run the
 * code as a real executable under each Galaxy name, the way a runtime execs a plugin.
 *
 * By default they are the development launchers (Galaxy from source). With `GALAXY_BINARY` set to a compiled
 * executable (e.g. `GALAXY_BINARY=dist/galaxy`, relative to the current directory), every name is instead a
 * symlink to it, exactly as `galaxy install` lays out a node: the same tests then run against the artifact.
 * @module
 */
import { EXECUTABLE_NAMES, writeLaunchers } from "../../cli/launchers.ts";

let binDir: Promise<string> | undefined;

/**
 * The absolute path of the compiled executable the tests run (`GALAXY_BINARY`), or `undefined` when they run
 * from source. A `GALAXY_BINARY` that names no executable file is an error, not a silent fallback to source.
 */
export function compiledBinary(): string | undefined {
  const value = Deno.env.get("GALAXY_BINARY");
  if (!value) return undefined;
  const path = value.startsWith("/") ? value : `${Deno.cwd()}/${value}`;
  let info;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new Error(`GALAXY_BINARY=${value}: no such file (${path})`);
  }
  if (!info.isFile || ((info.mode ?? 0) & 0o111) === 0) {
    throw new Error(`GALAXY_BINARY=${value} is not an executable file`);
  }
  return Deno.realPathSync(path);
}

/** The Deno version the compiled executable runs on (from its `--version`), or `undefined` from source. */
export function compiledDenoVersion(): string | undefined {
  const binary = compiledBinary();
  if (binary === undefined) return undefined;
  const out = new Deno.Command(binary, { args: ["--version"], stdout: "piped", stderr: "null" }).outputSync();
  return /deno (\d+\.\d+\.\d+)/.exec(new TextDecoder().decode(out.stdout))?.[1];
}

/**
 * Why the executable under test cannot be a gRPC client of a runtime on a unix socket, or `undefined`. Deno
 * 2.7's node:http2 client never completes the connection (grpc-js: "Deadline exceeded"); 2.9 does. The compile
 * toolchain of machines without Deno's release server is 2.7.11, so executables built there lack the CRI client.
 */
export function grpcSkipReason(): string | undefined {
  const version = compiledDenoVersion();
  if (version === undefined) return undefined;
  const [major, minor] = version.split(".").map(Number);
  if (major > 2 || (major === 2 && minor >= 9)) return undefined;
  return `the executable runs on Deno ${version}, whose node:http2 client cannot reach a gRPC server on a ` +
    "unix socket (the CRI client needs the pinned Deno 2.9)";
}

async function linkBinary(dir: string, binary: string): Promise<void> {
  for (const name of EXECUTABLE_NAMES) await Deno.symlink(binary, `${dir}/${name}`);
}

/** The folder holding an executable for every Galaxy name (made on first use, removed at process exit). */
export function launcherDir(): Promise<string> {
  binDir ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "galaxy-test-bin-" });
    const binary = compiledBinary();
    if (binary) await linkBinary(dir, binary);
    else await writeLaunchers(dir);
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
