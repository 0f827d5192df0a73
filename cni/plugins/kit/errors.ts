/**
 * The one place where errors of the kernel layer (netops) become CNI errors, and the plugins' stderr log line.
 * @module
 */
import { IpArgumentError } from "../../../netops/ip.ts";
import { NetnsNotFoundError } from "../../../netops/netns.ts";
import { CniError, ErrorCode } from "../../version.ts";

/**
 * Turns an error from netops (or anything) into a CniError whose message starts with `context`: a vanished
 * namespace is code 3, a refused argument (an over-long name) code 7, anything else code 100.
 */
export function kernelError(err: unknown, context: string): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof NetnsNotFoundError) {
    return new CniError(ErrorCode.UnknownContainer, `${context}: ${err.message}`);
  }
  if (err instanceof IpArgumentError) {
    return new CniError(ErrorCode.InvalidNetworkConfig, `${context}: ${err.message}`);
  }
  return new CniError(
    ErrorCode.PluginFailure,
    `${context}: ${err instanceof Error ? err.message : String(err)}`,
  );
}

/** Writes one log line to stderr (stdout is the CNI channel). */
export function logLine(plugin: string, message: string): void {
  console.error(`${plugin}: ${message}`);
}
