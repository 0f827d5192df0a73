/**
 * The CNI request as the environment gives it (SPEC.md "Parameters"), read one way for the plugin side
 * (`skel.ts`) and for the daemon (`daemon/handler.ts`): one table of required variables per verb, one
 * container-ID rule, one interface-name rule, one `CNI_ARGS` parser, and the one reading of
 * `cni.dev/valid-attachments`. Dependency-free but for the core's errors and the interface-name rule.
 * @module
 */
import { ifnameProblem } from "../netops/ifname.ts";
import { netnsPathProblem, netnsState } from "../netops/netns_path.ts";
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
/** The longest container ID accepted: file names built from it (`<id>.tmp-<rand>`, ...) stay under 255. */
export const CONTAINER_ID_MAX = 200;

/**
 * `CNI_NETNS` checked for `verb`: ADD and CHECK need a live namespace (code 4 when the path is malformed or
 * not a namespace, code 3 when nothing is there). DEL takes a namespace that is gone, unmounted or not a
 * namespace as no namespace (""): the plugins then release what is outside the pod and skip what was inside,
 * so that DEL converges (code 4 only for a malformed path).
 */
function checkedNetns(verb: Exclude<Verb, "VERSION">, netns: string): string {
  if (netns === "" || verb === "STATUS" || verb === "GC") return netns;
  const problem = netnsPathProblem(netns);
  if (problem) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_NETNS ${JSON.stringify(netns.slice(0, 200))} ${problem}`,
    );
  }
  const state = netnsState(netns);
  if (verb === "DEL") return state.kind === "netns" ? netns : "";
  if (state.kind === "missing") {
    throw new CniError(ErrorCode.UnknownContainer, `CNI_NETNS ${netns} does not exist`);
  }
  if (state.kind === "other") {
    throw new CniError(ErrorCode.InvalidEnvironment, `CNI_NETNS ${netns} is ${state.what}`);
  }
  return netns;
}

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
  // No plugin could be started with it (an environment cannot carry NUL): refused here, not half-way.
  if (raw.includes("\0")) throw new CniError(ErrorCode.InvalidEnvironment, "CNI_ARGS contains a NUL byte");
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
  if (containerId.length > CONTAINER_ID_MAX) {
    // Container IDs name files (state, port, flannel, host-local's last-reserved): a name over 255 bytes
    // cannot be created, so it fails here rather than half-way through an ADD.
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_CONTAINERID is ${containerId.length} characters long; galaxy allows at most ${CONTAINER_ID_MAX}`,
    );
  }
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
  if ((env.CNI_PATH ?? "").includes("\0")) {
    throw new CniError(ErrorCode.InvalidEnvironment, "CNI_PATH contains a NUL byte");
  }
  return {
    command: verb,
    containerId,
    netns: checkedNetns(verb, env.CNI_NETNS ?? ""),
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
