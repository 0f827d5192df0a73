/**
 * The DEL queue for daemon outages, shared by the shim (which writes it) and the daemon (which runs it). When
 * the daemon cannot be reached, galaxy-sdn records the DEL as the wire body it would have sent, one file per
 * container (`<stateDir>/del-queue/<containerID>`), and tells the runtime the DEL succeeded: pod deletion on
 * the node no longer stalls until the daemon is back (Multus #1146/#1165). The daemon runs every queued DEL
 * first thing at start, before it reports ready. Each file is guarded by flock, so a shim writing and a daemon
 * reading never see half a file; a DEL is idempotent, so running one twice is harmless.
 * @module
 */
import { isValidContainerId } from "./request.ts";

/** The queue folder under a state directory. */
export function delQueueDir(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/del-queue`;
}

/** Records the DEL of `containerId` (its wire body) in the queue; replaces an earlier record. */
export async function queueDel(stateDir: string, containerId: string, body: string): Promise<string> {
  if (!isValidContainerId(containerId)) {
    throw new Error(`invalid container ID ${JSON.stringify(containerId)}`);
  }
  const dir = delQueueDir(stateDir);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = `${dir}/${containerId}`;
  const file = await Deno.open(path, { write: true, create: true, mode: 0o600 });
  try {
    await file.lock(true);
    await file.truncate(0);
    const bytes = new TextEncoder().encode(body);
    for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
    await file.syncData();
  } finally {
    file.close(); // closing releases the lock
  }
  return path;
}

/** One queued DEL. */
export interface QueuedDel {
  /** The container ID (the file name). */
  containerId: string;
  /** The wire body the shim would have sent. */
  body: string;
}

/**
 * Runs `run` for every queued DEL, oldest first, each under its file's lock; a DEL that `run` reports done
 * (true) is removed from the queue, one that fails stays for the next start. Returns what was done and what
 * stayed.
 */
export async function drainDelQueue(
  stateDir: string,
  run: (entry: QueuedDel) => Promise<boolean>,
): Promise<{ done: string[]; kept: string[] }> {
  const dir = delQueueDir(stateDir);
  const entries: { name: string; mtime: number }[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !isValidContainerId(e.name)) continue;
      const st = await Deno.stat(`${dir}/${e.name}`).catch(() => undefined);
      if (st) entries.push({ name: e.name, mtime: st.mtime?.getTime() ?? 0 });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { done: [], kept: [] };
    throw e;
  }
  entries.sort((a, b) => a.mtime - b.mtime);
  const done: string[] = [];
  const kept: string[] = [];
  for (const { name } of entries) {
    const path = `${dir}/${name}`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true });
    } catch {
      continue; // removed meanwhile
    }
    try {
      await file.lock(true);
      const body = new TextDecoder().decode(await readAll(file));
      let ok = false;
      try {
        ok = body !== "" && await run({ containerId: name, body });
      } catch {
        ok = false;
      }
      if (ok || body === "") {
        await Deno.remove(path).catch(() => {});
        done.push(name);
      } else {
        kept.push(name);
      }
    } finally {
      file.close();
    }
  }
  return { done, kept };
}

async function readAll(file: Deno.FsFile): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    const n = await file.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    size += n;
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}
