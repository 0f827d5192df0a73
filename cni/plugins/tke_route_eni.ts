/**
 * The tke-route-eni CNI plugin (not built yet: it answers VERSION and refuses other verbs).
 * @module
 */
import { type Plugin, runPlugin } from "../skel.ts";
import { pendingPlugin } from "./pending.ts";

/** The tke-route-eni plugin. */
export const plugin: Plugin = pendingPlugin("tke-route-eni");

/** Runs tke-route-eni as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
