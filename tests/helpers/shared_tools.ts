/**
 * The reference tools some tests drive the project with, found where present: the Go Galaxy's binaries
 * (`reference/gogalaxy-bin/`), libcni in three generations (`tools/cnirun/cnirun-v*`) and the containerd lab
 * (`tools/containerd-lab/`). They live outside the repository (`../shared` of a checkout, or the folder named
 * by `$GALAXY_SHARED_DIR`); the project never needs them to run, and a test that needs one skips with a
 * printed reason when it is absent.
 * @module
 */
import { REPO_ROOT } from "./launchers.ts";

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The shared folder, or `undefined` when there is none: `$GALAXY_SHARED_DIR`, else `../shared` or `../../shared`. */
export function sharedDir(): string | undefined {
  const env = Deno.env.get("GALAXY_SHARED_DIR");
  const candidates = env ? [env] : [`${REPO_ROOT}/../shared`, `${REPO_ROOT}/../../shared`];
  return candidates.find((d) => isDir(`${d}/tools`) || isDir(`${d}/reference`));
}

/** The libcni generations `cnirun` is built with, oldest first. */
export const LIBCNI_VERSIONS = ["0.8.1", "1.1.2", "1.2.3"] as const;
/** One of {@linkcode LIBCNI_VERSIONS}. */
export type LibcniVersion = typeof LIBCNI_VERSIONS[number];

/** The `cnirun` executable built with libcni `version`, or `undefined` when absent. */
export function cnirun(version: LibcniVersion): string | undefined {
  const dir = sharedDir();
  const path = dir && `${dir}/tools/cnirun/cnirun-v${version}`;
  return path && isExecutable(path) ? path : undefined;
}

/** The Go Galaxy's executable `name` (e.g. `galaxy-sdn`, `galaxy-flannel`), or `undefined` when absent. */
export function goGalaxyBinary(name: string): string | undefined {
  const dir = sharedDir();
  const path = dir && `${dir}/reference/gogalaxy-bin/${name}`;
  return path && isExecutable(path) ? path : undefined;
}

/** The containerd lab script, or `undefined` when absent. */
export function containerdLab(): string | undefined {
  const dir = sharedDir();
  const path = dir && `${dir}/tools/containerd-lab/containerd_lab.sh`;
  return path && isExecutable(path) ? path : undefined;
}

/**
 * The command line that runs `argv` where `/var/run/galaxy` is `socketDir`: the Go shim only ever talks to
 * `/var/run/galaxy/galaxy.sock`. It runs in a private mount namespace whose `/run` is a fresh tmpfs with
 * `socketDir` bound at `galaxy/`, so nothing on the host is touched (the netns paths it passes on are only
 * strings to it).
 */
export function withGalaxySocketDir(socketDir: string, argv: string[]): string[] {
  const script = 'run=$(readlink -f /var/run) && mount -t tmpfs tmpfs "$run" && mkdir "$run/galaxy" && ' +
    'mount --bind "$1" "$run/galaxy" && shift && exec "$@"';
  return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", socketDir, ...argv];
}
