/**
 * The CNI request as the environment gives it (SPEC.md "Parameters"), read one way for the plugin side
 * (`skel.ts`) and for the daemon (`daemon/handler.ts`): one table of required variables per verb, one
 * container-ID rule, one interface-name rule, one `CNI_ARGS` parser, and the one reading of
 * `cni.dev/valid-attachments`. Dependency-free but for the core's errors and the interface-name rule.
 * @module
 */
import { ifnameProblem } from "../netops/ifname.ts";
import { CNI_NAME, CniError, ErrorCode } from "./version.ts";

/** The verbs of CNI 1.1. */
export type Verb = "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" | "VERSION";
/** Every verb, in the spec's order. */
export const VERBS: readonly Verb[] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"];

/** Which environment variables each verb requires (SPEC.md "Parameters"). */
export const REQUIRED_ENV: Record<Verb, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
  GC: ["CNI_PATH"],
  STATUS: [],
  VERSION: [],
};

const CONTAINER_ID = CNI_NAME;

/** True when `id` is a valid container ID (libcni: a letter or digit, then letters, digits, `_`, `.`, `-`). */
export function isValidContainerId(id: string): boolean {
  return CONTAINER_ID.test(id);
}

/** The part of a request that the environment carries. */
export interface EnvRequest {
  /** The verb. */
  command: Exclude<Verb, "VERSION">;
  /** `CNI_CONTAINERID` (empty for STATUS and GC). */
  containerId: string;
  /** `CNI_NETNS`: a path, possibly empty for DEL. */
  netns: string;
  /** `CNI_IFNAME` (empty for STATUS and GC). */
  ifname: string;
  /** `CNI_ARGS` as key/value pairs, in order. */
  args: [string, string][];
  /** `CNI_PATH` split on `:`. */
  path: string[];
}

/** Parses `CNI_ARGS` (`K=V;K2=V2`), rejecting a pair without `=` with code 4. */
export function parseCniArgs(raw: string | undefined): [string, string][] {
  if (!raw) return [];
  const pairs: [string, string][] = [];
  for (const part of raw.split(";")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) throw new CniError(ErrorCode.InvalidEnvironment, `CNI_ARGS: invalid pair "${part}"`);
    pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  return pairs;
}

/** The value of one `CNI_ARGS` key (key and value trimmed, as Galaxy reads them); `undefined` when absent. */
export function cniArg(args: readonly [string, string][], key: string): string | undefined {
  return args.find(([k]) => k.trim() === key)?.[1].trim();
}

/** The verb of `CNI_COMMAND`; throws code 4 when it is missing or not a verb. */
export function verbOf(env: Record<string, string | undefined>): Verb {
  const raw = env.CNI_COMMAND;
  if (!raw) {
    throw new CniError(ErrorCode.InvalidEnvironment, "required environment variable(s) missing: CNI_COMMAND");
  }
  if (!(VERBS as readonly string[]).includes(raw)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_COMMAND "${raw}" is not one of ${VERBS.join(", ")}`,
    );
  }
  return raw as Verb;
}

/**
 * Reads and checks the environment of one call of `verb`; throws code 4 when a required variable is missing
 * or a container ID, interface name or `CNI_ARGS` is malformed. `pluginPathKnown`: the caller finds plugins
 * without `CNI_PATH` (the daemon has `--cni-paths`), so GC does not require it.
 */
export function requestFromEnv(
  verb: Exclude<Verb, "VERSION">,
  env: Record<string, string | undefined>,
  options: { pluginPathKnown?: boolean } = {},
): EnvRequest {
  const required = REQUIRED_ENV[verb].filter((k) => !(options.pluginPathKnown && k === "CNI_PATH"));
  const missing = required.filter((k) => !env[k]);
  if (missing.length) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `required environment variable(s) missing: ${missing.join(", ")}`,
    );
  }
  const containerId = env.CNI_CONTAINERID ?? "";
  if (required.includes("CNI_CONTAINERID") && !isValidContainerId(containerId)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_CONTAINERID "${containerId}" has invalid characters (allowed: ${CONTAINER_ID.source})`,
    );
  }
  const ifname = env.CNI_IFNAME ?? "";
  if (required.includes("CNI_IFNAME")) {
    const problem = ifnameProblem(ifname);
    if (problem) throw new CniError(ErrorCode.InvalidEnvironment, `CNI_IFNAME ${problem}`);
  }
  return {
    command: verb,
    containerId,
    netns: env.CNI_NETNS ?? "",
    ifname,
    args: parseCniArgs(env.CNI_ARGS),
    path: (env.CNI_PATH ?? "").split(":").filter((p) => p !== ""),
  };
}

/** One entry of `cni.dev/valid-attachments`. */
export interface ValidAttachment {
  /** The container ID. */
  containerID: string;
  /** The interface name in the container. */
  ifname: string;
}

/**
 * The attachments a GC must keep, from a configuration's `cni.dev/valid-attachments`. Strict: a missing key
 * is an error (code 7), not an empty list, since an empty list means "remove everything of this network" and
 * a caller that forgot the key must not get that. Every entry needs a string `containerID` and `ifname`.
 */
export function parseValidAttachments(config: Record<string, unknown>): ValidAttachment[] {
  const raw = config["cni.dev/valid-attachments"];
  if (raw === undefined) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      "GC needs cni.dev/valid-attachments in the configuration",
    );
  }
  if (!Array.isArray(raw)) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, "cni.dev/valid-attachments must be a list");
  }
  return raw.map((a, i) => {
    const entry = a as { containerID?: unknown; ifname?: unknown } | null;
    if (typeof entry?.containerID !== "string" || typeof entry.ifname !== "string") {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `cni.dev/valid-attachments[${i}] must have string containerID and ifname`,
      );
    }
    return { containerID: entry.containerID, ifname: entry.ifname };
  });
}

/** The key of one attachment in a set built from {@linkcode parseValidAttachments}. */
export function attachmentKey(containerId: string, ifname: string): string {
  return `${containerId}\u0000${ifname}`;
}
