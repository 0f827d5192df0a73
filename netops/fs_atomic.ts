/**
 * The one atomic file write: a temporary file in the same folder, written in full and fsynced, then renamed
 * over the target. A crash leaves the old file or the new one, never a torn or empty one (a rename without
 * fsync may reach the disk before the data does). State files, result caches, saved delegate configurations,
 * SR-IOV records, CNI configurations and launchers all go through it.
 * @module
 */

/** How {@linkcode writeFileAtomic} creates what it writes. */
export interface AtomicWriteOptions {
  /** The file's mode, set exactly (not narrowed by the umask). Default 0600. */
  mode?: number;
  /** The mode of folders it has to create. Default 0700. */
  dirMode?: number;
}

/** Writes `data` to `path` atomically (temp file in the same folder, fsync, rename); creates the folder. */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const mode = options.mode ?? 0o600;
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".";
  await Deno.mkdir(dir, { recursive: true, mode: options.dirMode ?? 0o700 });
  // A leading dot keeps the temporary name out of every namespace of real names (container IDs, networks).
  const tmp = `${dir}/.${path.slice(slash + 1)}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true, mode });
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
