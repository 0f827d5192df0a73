/**
 * {@linkcode childOutput}: what `Deno.ChildProcess.output()` returns, read with less native memory.
 *
 * `output()` gives each piped stream of each child its own native 64 KiB read buffer that is freed only by a
 * full GC; a daemon spawning hundreds of plugins and commands grew its RSS by tens of MB per 200 pods that
 * way. Here each stream is read through a BYOB reader into one reused 8 KiB buffer, and only exact-sized
 * copies of what arrived are kept.
 * @module
 */

/** Bytes read per call from a child's pipe; the buffer is reused across reads. */
const CHUNK_BYTES = 8 * 1024;

/** The exit status and the output of a finished child: the fields of `Deno.CommandOutput`. */
export interface ChildOutput {
  code: number;
  success: boolean;
  signal: Deno.Signal | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

/**
 * Reads `child`'s stdout and stderr to their ends (both at once, so a full pipe never stalls the child) and
 * awaits its exit. A stream that is not piped reads as empty bytes.
 */
export async function childOutput(child: Deno.ChildProcess): Promise<ChildOutput> {
  const [stdout, stderr, status] = await Promise.all([
    readAll(pipedStream(() => child.stdout)),
    readAll(pipedStream(() => child.stderr)),
    child.status,
  ]);
  return { code: status.code, success: status.success, signal: status.signal, stdout, stderr };
}

/** The stream, or `null` when it is not piped (Deno's getters throw then). */
function pipedStream(
  get: () => ReadableStream<Uint8Array> | null | undefined,
): ReadableStream<Uint8Array> | null {
  try {
    return get() ?? null;
  } catch {
    return null;
  }
}

async function readAll(stream: ReadableStream<Uint8Array> | null): Promise<Uint8Array> {
  if (!stream) return new Uint8Array(0);
  const reader = stream.getReader({ mode: "byob" });
  const chunks: Uint8Array[] = [];
  let total = 0;
  // A BYOB read transfers the buffer it was given; the view it returns holds the same memory, reused next.
  let buffer: ArrayBuffer = new ArrayBuffer(CHUNK_BYTES);
  try {
    while (true) {
      const { value, done } = await reader.read(new Uint8Array(buffer));
      if (value) {
        if (value.byteLength > 0) {
          chunks.push(value.slice());
          total += value.byteLength;
        }
        buffer = value.buffer as ArrayBuffer;
      }
      if (done) break;
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
