/**
 * galaxy-sdn, the CNI shim (not built yet: it answers VERSION and refuses other verbs).
 * @module
 */
import { type Plugin, runPlugin } from "./skel.ts";
import { pendingPlugin } from "./plugins/pending.ts";

/** The shim as a plugin. */
export const plugin: Plugin = pendingPlugin("galaxy-sdn");

/** Runs the shim. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
