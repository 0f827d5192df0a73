/**
 * The per-container state file `<state-dir>/<containerID>`: Galaxy's JSON array of
 * `{"NetworkType", "Args", "Conf", "IfName"}`, extended with each network's `Result` once it has one. It is
 * written atomically before the first plugin runs, so a crash at any point leaves what DEL needs.
 * @module
 */
import { writeFileAtomic } from "../netops/fs_atomic.ts";
import type { Result } from "../cni/spec.ts";
import { parseStateFile } from "./go_state.ts";

/** One network of one container, as stored. */
export interface StoredNetwork {
  /** The network's name (Galaxy's field name). */
  NetworkType: string;
  /** CNI_ARGS the network's plugins were given, as an object. */
  Args: Record<string, string>;
  /** The network's configuration: one plugin's conf, or a whole list (with `plugins`). */
  Conf: Record<string, unknown>;
  /** The interface name in the container. */
  IfName: string;
  /** Capability arguments the network was given (ours). */
  CapabilityArgs?: Record<string, unknown>;
  /** The network's ADD result in the 1.1.0 shape, once it succeeded (ours). */
  Result?: Result;
  /**
   * What the runtime gave the ADD (ours): the GC repeats the DEL with it when the runtime never sends one, and
   * tells from the pod and the namespace whether the container still lives when the runtime cannot be asked.
   */
  Runtime?: StoredRuntime;
}

/** The runtime's side of an ADD, as stored for a later DEL by the GC. */
export interface StoredRuntime {
  /** `CNI_NETNS`. */
  netns: string;
  /** `CNI_ARGS` (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, ...). */
  args: Record<string, string>;
  /** The plugin search path the ADD used (the runtime's `CNI_PATH`, then `--cni-paths`). */
  path: string[];
}

/** The file of one container. */
export function statePath(stateDir: string, containerId: string): string {
  return `${stateDir.replace(/\/+$/, "")}/${containerId}`;
}

/** Writes a container's networks atomically (folder 0700, file 0600). */
export async function writeState(
  stateDir: string,
  containerId: string,
  networks: StoredNetwork[],
): Promise<void> {
  await writeFileAtomic(statePath(stateDir, containerId), JSON.stringify(networks));
}

/**
 * Reads a container's networks; `undefined` when there is no file. A file that cannot be parsed throws, so
 * that DEL reports it instead of silently leaking what it describes.
 */
export async function readState(stateDir: string, containerId: string): Promise<StoredNetwork[] | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(statePath(stateDir, containerId));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  // The Go Galaxy's files (a node switched in place) and ours share one format, read by one parser.
  return parseStateFile(text, statePath(stateDir, containerId));
}

/** Removes a container's file; a missing file is fine. */
export async function removeState(stateDir: string, containerId: string): Promise<void> {
  try {
    await Deno.remove(statePath(stateDir, containerId));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Container IDs that have a state file, with the file's modification time. */
export async function listStates(stateDir: string): Promise<{ containerId: string; mtime: Date }[]> {
  const found: { containerId: string; mtime: Date }[] = [];
  try {
    for await (const e of Deno.readDir(stateDir)) {
      // Container IDs start with a letter or digit: dot-names are temporary or set-aside files.
      if (!e.isFile || e.name.startsWith(".")) continue;
      const st = await Deno.stat(`${stateDir}/${e.name}`).catch(() => undefined);
      if (st) found.push({ containerId: e.name, mtime: st.mtime ?? new Date(0) });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return found;
}
