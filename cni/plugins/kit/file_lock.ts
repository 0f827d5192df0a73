/**
 * A cross-process lock for plugins: an exclusive `flock` on a file, which the kernel drops when its holder
 * dies, so a crashed plugin never leaves a stale lock behind.
 * @module
 */
import { CniError, ErrorCode } from "../../version.ts";

/** How long a plugin waits for the lock before failing with "try again later" (code 11). */
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/** Options for {@linkcode withFileLock}. */
export interface FileLockOptions {
  /** Give up after this long (default {@linkcode DEFAULT_LOCK_TIMEOUT_MS}) with CNI error code 11. */
  timeoutMs?: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs `fn` while holding an exclusive `flock` on `path` (created, with its folder, when missing). Works across
 * processes; the kernel drops the lock when the holder dies. Waiting polls `tryLock` with a short back-off
 * and gives up after `timeoutMs` with a CniError (code 11) naming the holder's pid, which the holder writes
 * into the file.
 */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T>,
  options: FileLockOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true, mode: 0o700 });
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  try {
    const deadline = Date.now() + timeoutMs;
    let delay = 2;
    while (!(await file.tryLock(true))) {
      if (Date.now() >= deadline) {
        const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
        throw new CniError(
          ErrorCode.TryAgainLater,
          `lock ${path} still held${holder ? ` by pid ${holder}` : ""} after ${timeoutMs} ms`,
        );
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 50);
    }
    try {
      await file.truncate(0);
      await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
      return await fn();
    } finally {
      await file.unlock();
    }
  } finally {
    file.close();
  }
}
