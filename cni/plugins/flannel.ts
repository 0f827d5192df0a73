/**
 * The galaxy-flannel CNI plugin (not built yet: it answers VERSION and refuses other verbs).
 * @module
 */
import { type Plugin, runPlugin } from "../skel.ts";
import { pendingPlugin } from "./pending.ts";

/** The galaxy-flannel plugin. */
export const plugin: Plugin = pendingPlugin("galaxy-flannel");

/** Runs galaxy-flannel as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
