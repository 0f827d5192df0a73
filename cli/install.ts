/**
 * `galaxy install` (not built yet).
 * @module
 */

/** Says that `galaxy install` is not available in this build. */
export function main(_args: string[]): Promise<number> {
  console.error("galaxy install: not available in this build yet");
  return Promise.resolve(1);
}
