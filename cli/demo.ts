/**
 * `galaxy demo` (not built yet).
 * @module
 */

/** Says that `galaxy demo` is not available in this build. */
export function main(_args: string[]): Promise<number> {
  console.error("galaxy demo: not available in this build yet");
  return Promise.resolve(1);
}
