/**
 * galaxy-flannel's saved file `<dataDir>/<containerID>`: the delegate configuration and the attachment it was
 * made for, or the bare delegate configuration upstream flannel saves.
 * @module
 */
import { CniError, type CniVersion, ErrorCode } from "../../version.ts";
import { isObject } from "./flannel_subnet.ts";

/** The `kind` of a saved file written by this plugin. */
export const SAVED_KIND = "galaxyFlannelV1";

/** The configuration the delegate gets. */
export type DelegateConf = Record<string, unknown> & { cniVersion: CniVersion; name?: string; type: string };

/** The content of `<dataDir>/<containerID>`. */
export interface SavedAttachment {
  /** Always {@linkcode SAVED_KIND}. */
  kind: typeof SAVED_KIND;
  /** The container ID. */
  containerID: string;
  /** The interface name in the container. */
  ifname: string;
  /** The netns path given to ADD. */
  netns: string;
  /** The network name. */
  network: string;
  /** The delegate configuration exactly as ADD sent it. */
  delegate: DelegateConf;
}

/** A saved file as read back: this plugin's record, or a bare delegate configuration from upstream flannel. */
type Saved =
  | { state: "missing" }
  | { state: "corrupt"; reason: string }
  | { state: "found"; ifname?: string; network?: string; netns?: string; delegate: DelegateConf };

/** `<dataDir>/<containerID>`. */
export function savedPath(dataDir: string, containerId: string): string {
  return `${dataDir.replace(/\/+$/, "")}/${containerId}`;
}

function asDelegateConf(v: unknown): DelegateConf | undefined {
  if (!isObject(v) || typeof v.type !== "string" || v.type === "" || v.type.includes("/")) return undefined;
  return v as DelegateConf;
}

/** Reads a saved file's text: this plugin's record, or the bare delegate configuration upstream flannel saves. */
export function parseSaved(text: string): Saved {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { state: "corrupt", reason: `not JSON: ${(e as Error).message}` };
  }
  if (isObject(parsed) && parsed.kind === SAVED_KIND) {
    const delegate = asDelegateConf(parsed.delegate);
    if (!delegate || typeof parsed.ifname !== "string" || typeof parsed.containerID !== "string") {
      return { state: "corrupt", reason: `a ${SAVED_KIND} record without delegate, containerID or ifname` };
    }
    return {
      state: "found",
      ifname: parsed.ifname,
      netns: typeof parsed.netns === "string" ? parsed.netns : "",
      network: typeof parsed.network === "string" ? parsed.network : delegate.name,
      delegate,
    };
  }
  const legacy = asDelegateConf(parsed);
  if (legacy) return { state: "found", network: legacy.name, delegate: legacy };
  return { state: "corrupt", reason: "neither a saved record nor a delegate configuration" };
}

/** Reads a saved file: `missing`, `corrupt` (with the reason) or `found`; an unreadable file is code 5. */
export async function readSaved(path: string): Promise<Saved> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { state: "missing" };
    throw new CniError(ErrorCode.IoFailure, `cannot read ${path}: ${(e as Error).message}`);
  }
  return parseSaved(text);
}

/** Removes a saved file; a missing one is fine, another failure is code 5. */
export async function removeSaved(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new CniError(ErrorCode.IoFailure, `cannot remove ${path}: ${(e as Error).message}`);
    }
  }
}
