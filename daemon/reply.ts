/**
 * The daemon's reply in the caller's CNI version. Every shim prints what it gets: Galaxy's Go shim prints the
 * body as it is (it never converts), ours converts it again, and libcni refuses a result whose version it does
 * not know (containerd 1.6: `unsupported CNI result version "1.1.0"`). So the daemon answers in the
 * `cniVersion` of the request's own configuration (`""` is 0.1.0, as in libcni), converted as the shim does.
 *
 * Errors keep their code: the body is the CNI error object in that version. Our shim prints it as it is; the
 * Go shim cannot pass a code on (its CNI 0.8 skel turns every error of its own into code 999 with the body as
 * `msg`: `{"code":999,"msg":"galaxy returns: {\"cniVersion\":…,\"code\":7,\"msg\":…}"}`), so there the code
 * travels inside the message, which is the most a daemon can do for it.
 * @module
 */
import {
  type CniError,
  type CniVersion,
  configVersion,
  convertResult,
  CURRENT_VERSION,
  isSupportedVersion,
  type Result,
} from "../cni/version.ts";
import { decodeBase64 } from "../cni/wire.ts";

/** The version to answer a request in: its configuration's, or 1.1.0 when it brought none we speak. */
export function replyVersion(config: Record<string, unknown> | undefined): CniVersion {
  if (config === undefined) return CURRENT_VERSION;
  const v = configVersion(config);
  return isSupportedVersion(v) ? v : CURRENT_VERSION;
}

/** The body of a successful ADD: `result` converted to `version` (throws code 1 when it cannot be). */
export function resultBody(result: Result, version: CniVersion): string {
  return JSON.stringify(convertResult(result, version));
}

/** The body of an error reply: the CNI error object in `version`. */
export function errorBody(err: CniError, version: CniVersion): string {
  return JSON.stringify(err.toJSON(version));
}

/** The reply version of a wire body that could not be made into a request: its config's, where readable. */
export function bodyVersion(body: string): CniVersion {
  try {
    const config = JSON.parse(body)?.config;
    if (typeof config !== "string" || config === "") return CURRENT_VERSION;
    const conf = JSON.parse(new TextDecoder().decode(decodeBase64(config)));
    return typeof conf === "object" && conf !== null && !Array.isArray(conf)
      ? replyVersion(conf)
      : CURRENT_VERSION;
  } catch {
    return CURRENT_VERSION;
  }
}
