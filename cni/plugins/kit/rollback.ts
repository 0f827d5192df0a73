/**
 * The shapes of the verbs: every ADD allocates, then works under a rollback whose first step gives the
 * addresses back; every DEL cleans up, then always releases IPAM; a failed ADD is undone step by step.
 * @module
 */
import type { PluginRequest } from "../../skel.ts";
import { kernelError, logLine } from "./errors.ts";
import { allocate, type Allocation, releaseDelegated } from "./ipam.ts";

/** Cleanup steps recorded while an ADD goes along. */
export interface Undo {
  /** Records a step; steps run in reverse order when the ADD fails. */
  push(what: string, step: () => Promise<unknown>): void;
}

/**
 * Runs an ADD and, when it throws, runs the recorded undo steps in reverse (each one even if another failed;
 * failures are logged to stderr), then rethrows the original error.
 */
export async function withRollback<T>(plugin: string, fn: (undo: Undo) => Promise<T>): Promise<T> {
  const steps: { what: string; step: () => Promise<unknown> }[] = [];
  try {
    return await fn({ push: (what, step) => void steps.push({ what, step }) });
  } catch (err) {
    for (const { what, step } of steps.reverse()) {
      try {
        await step();
      } catch (undoErr) {
        logLine(plugin, `rollback: ${what} failed: ${(undoErr as Error).message}`);
      }
    }
    throw err;
  }
}

/**
 * The shape of every DEL: run `cleanup`, then release delegated IPAM whatever happened before (an address must
 * never leak), and throw the first failure as a CNI error of `plugin`.
 */
export async function cleanUpThenRelease(
  req: PluginRequest,
  cleanup: () => Promise<void>,
  options: { plugin: string },
): Promise<void> {
  let failure: unknown;
  try {
    await cleanup();
  } catch (err) {
    failure = err;
  }
  try {
    await releaseDelegated(req);
  } catch (err) {
    failure ??= err;
  }
  if (failure !== undefined) throw kernelError(failure, options.plugin);
}

/**
 * The shape of every ADD: the addresses ({@linkcode allocate}), then `fn` under {@linkcode withRollback} with
 * the release of those addresses recorded first, so that a failed ADD never keeps one.
 */
export async function allocateThenAdd<T>(
  req: PluginRequest,
  plugin: string,
  fn: (alloc: Allocation, undo: Undo) => Promise<T>,
): Promise<T> {
  const alloc = await allocate(req);
  return await withRollback(plugin, async (undo) => {
    if (alloc.delegated) undo.push("release IPAM", () => alloc.release());
    return await fn(alloc, undo);
  });
}
