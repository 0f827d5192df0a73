/**
 * The one check of a `CNI_NETNS` path, shared by the CNI request reader (plugin side and daemon) and the DEL
 * paths that must tell a live namespace from one that is gone. A namespace file lives on nsfs, the kernel's
 * one internal namespace filesystem, so a path is a namespace exactly when it stats to the same device as
 * `/proc/self/ns/net`; a netns file that was unmounted but not removed (a runtime that crashed between the two)
 * is then an empty file on another filesystem: not a namespace. Import-free.
 * @module
 */

/** The longest `CNI_NETNS` accepted (PATH_MAX - 1). */
export const NETNS_PATH_MAX = 4095;

/** Why `path` cannot name a namespace at all (a phrase after the path), or `undefined` when its form is fine. */
export function netnsPathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return "is not an absolute path";
  if (path.includes("\0")) return "contains a NUL byte";
  if (new TextEncoder().encode(path).length > NETNS_PATH_MAX) {
    return `is longer than ${NETNS_PATH_MAX} bytes`;
  }
  return undefined;
}

let nsfsDev: number | undefined;

/** What is at `path`: a namespace, nothing, or something that is not a namespace (with what it is). */
export function netnsState(path: string): { kind: "netns" } | { kind: "missing" } | {
  kind: "other";
  what: string;
} {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return { kind: "missing" };
    }
    return { kind: "other", what: (e as Error).message };
  }
  if (st.isDirectory) return { kind: "other", what: "a directory" };
  nsfsDev ??= Deno.statSync("/proc/self/ns/net").dev;
  if (st.dev !== nsfsDev) return { kind: "other", what: "not a namespace (an unmounted or plain file)" };
  return { kind: "netns" };
}

/** True when `path` is a live namespace file. */
export function isNetns(path: string): boolean {
  return path !== "" && netnsPathProblem(path) === undefined && netnsState(path).kind === "netns";
}
