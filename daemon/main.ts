/**
 * `galaxy serve` (not built yet).
 * @module
 */

/** Says that `galaxy serve` is not available in this build. */
export function main(_args: string[]): Promise<number> {
  console.error("galaxy serve: not available in this build yet");
  return Promise.resolve(1);
}
