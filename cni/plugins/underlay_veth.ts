/**
 * The galaxy-underlay-veth CNI plugin (not built yet: it answers VERSION and refuses other verbs).
 * @module
 */
import { type Plugin, runPlugin } from "../skel.ts";
import { pendingPlugin } from "./pending.ts";

/** The galaxy-underlay-veth plugin. */
export const plugin: Plugin = pendingPlugin("galaxy-underlay-veth");

/** Runs galaxy-underlay-veth as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
