/**
 * Galaxy as a library: the CNI types and schemas, the plugin side and the runtime side.
 * @module
 */
export * from "./cni/spec.ts";
export { handle, type Plugin, type PluginRequest, runPlugin } from "./cni/skel.ts";
export * from "./cni/invoke.ts";
export { type CniWireRequest, DEFAULT_SOCKET_PATH, requestDaemon, type WireReply } from "./cni/wire.ts";
