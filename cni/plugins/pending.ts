/**
 * A plugin whose verbs are not built yet: it answers VERSION like every Galaxy plugin and refuses everything
 * else with a clear error, so a runtime never mistakes it for a working network.
 * @module
 */
import type { Plugin } from "../skel.ts";
import { CniError, ErrorCode } from "../version.ts";

/** A {@linkcode Plugin} named `name` whose every verb fails with code 50 (not available). */
export function pendingPlugin(name: string): Plugin {
  const refuse = (verb: string) => () =>
    Promise.reject(
      new CniError(ErrorCode.NotAvailable, `${name}: ${verb} is not available in this build yet`),
    );
  return { name, add: refuse("ADD"), del: refuse("DEL"), check: refuse("CHECK"), status: refuse("STATUS") };
}
