/**
 * The one definition of the permissions Galaxy runs with, used both by the development launchers
 * (`deno task dev-install`) and by `deno task compile`.
 *
 * Every role needs all of them at some point: plugins run `ip`/`nsenter` and delegates (run), read and write
 * state, `/proc/sys` and `/sys` (read, write), enter namespaces through libc `setns` (ffi), talk to the
 * daemon's socket and the apiserver (net), read the CNI environment (env) and the hostname (sys). Import
 * loads nothing remote (there are no remote imports), but Deno lets a program read `/proc/self/cmdline`, where
 * `main.ts` finds the name it was run as, only when it holds every permission: without `--allow-import` a
 * compiled executable started as `galaxy-veth` cannot tell and runs as the shim.
 * @module
 */

/** Permission flags for `deno run` and `deno compile`. */
export const PERMISSION_FLAGS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-ffi",
  "--allow-sys",
  "--allow-import",
];
