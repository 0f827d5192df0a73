/**
 * The galaxy-k8s-vlan CNI plugin (not built yet: it answers VERSION and refuses other verbs).
 * @module
 */
import { type Plugin, runPlugin } from "../skel.ts";
import { pendingPlugin } from "./pending.ts";

/** The galaxy-k8s-vlan plugin. */
export const plugin: Plugin = pendingPlugin("galaxy-k8s-vlan");

/** Runs galaxy-k8s-vlan as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
