/**
 * Galaxy as a library: the CNI types and schemas, the plugin side and the runtime side. An explicit list, so
 * that what is public is decided here and a helper added to a module does not become API by accident.
 * @module
 */
export {
  ALL_VERSIONS,
  appendResult,
  asCniError,
  checkResult,
  CniError,
  type CniErrorObject,
  CniErrorSchema,
  type CniVersion,
  compareVersions,
  convertResult,
  CURRENT_VERSION,
  type Dns,
  DnsSchema,
  ErrorCode,
  highestVersion,
  isCniErrorObject,
  isSupportedVersion,
  type NetConf,
  type NetConfList,
  NetConfListSchema,
  NetConfSchema,
  parseResult,
  type Result,
  type ResultInterface,
  type ResultIp,
  type ResultRoute,
  resultSchemaFor,
  selectVersion,
  versionAtLeast,
} from "./cni/spec.ts";
export {
  cniArg,
  parseValidAttachments,
  requestFromEnv,
  type ValidAttachment,
  type Verb,
} from "./cni/request.ts";
export { handle, type Plugin, type PluginRequest, runPlugin } from "./cni/skel.ts";
export {
  addNetworkList,
  checkNetworkList,
  confAsList,
  DEFAULT_CACHE_DIR,
  DEFAULT_TIMEOUT_MS,
  delegateVerb,
  delNetworkList,
  execVerb,
  findPlugin,
  gcNetworkList,
  getVersionInfo,
  type InvokeOptions,
  type RuntimeConf,
  statusNetworkList,
  type VersionInfo,
} from "./cni/invoke.ts";
export { type CniWireRequest, DEFAULT_SOCKET_PATH, requestDaemon, type WireReply } from "./cni/wire.ts";
