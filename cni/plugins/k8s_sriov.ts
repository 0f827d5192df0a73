/**
 * The galaxy-k8s-sriov CNI plugin (not built yet: it answers VERSION and refuses other verbs).
 * @module
 */
import { type Plugin, runPlugin } from "../skel.ts";
import { pendingPlugin } from "./pending.ts";

/** The galaxy-k8s-sriov plugin. */
export const plugin: Plugin = pendingPlugin("galaxy-k8s-sriov");

/** Runs galaxy-k8s-sriov as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
