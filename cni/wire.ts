/**
 * The one wire type between galaxy-sdn and galaxy serve, shared by both sides. It is Galaxy's: `POST /cni` with
 * `{"env": {...}, "config": "<base64 of the CNI stdin>"}` over a unix socket, so old shims keep working. The
 * reply is a result (200, possibly empty) or a CNI error object (4xx/5xx), both in the `cniVersion` of the
 * request's own config (`""` and none are 0.1.0; 1.1.0 when no config came along), because the Go Galaxy's shim
 * prints the body unconverted.
 *
 * Tested (tests/e2e/runtimes_test.ts, containerd_test.ts): this shim and the Go Galaxy's galaxy-sdn (commit
 * 1b17268, CNI 0.8 skel) against libcni 0.8.1, 1.1.2 and 1.2.3 at every config version each speaks, and
 * containerd 1.6.20's CRI with `00-galaxy.conflist`. The Go shim always dials `/var/run/galaxy/galaxy.sock`,
 * drops the address of 0.1.0/0.2.0 results, and reports every daemon error as code 999 with the error object
 * as its message.
 * @module
 */
/** Where the daemon listens unless told otherwise. */
export const DEFAULT_SOCKET_PATH = "/var/run/galaxy/galaxy.sock";

/** The request body the shim sends. */
export interface CniWireRequest {
  /** The shim's whole environment (CNI_* among it). */
  env: Record<string, string>;
  /** Base64 of the CNI configuration the runtime gave the shim on stdin. */
  config?: string;
}

/** Base64 of raw bytes (Go's encoding of `[]byte`). */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** The bytes of a base64 string; throws on malformed input. */
export function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The daemon's reply as the shim sees it. */
export interface WireReply {
  /** HTTP status. */
  status: number;
  /** The body text. */
  body: string;
}

/**
 * Sends one HTTP/1.1 request to the daemon's unix socket and returns status and body. Throws when the socket
 * cannot be reached or the reply does not arrive within `timeoutMs` (a `DOMException` named `TimeoutError`).
 *
 * Written on `Deno.connect` rather than `fetch`: the first `fetch` of a process costs ~10 ms of set-up, and the
 * shim makes one or two requests per process, on every pod's start-up path.
 */
export async function requestDaemon(
  socketPath: string,
  path: string,
  options: { method?: string; body?: string; timeoutMs: number },
): Promise<WireReply> {
  const body = new TextEncoder().encode(options.body ?? "");
  const method = options.method ?? "GET";
  const head = `${method} ${path} HTTP/1.1\r\nHost: galaxy\r\nConnection: close\r\n` +
    (options.body === undefined
      ? ""
      : `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n`) +
    "\r\n";
  let timedOut = false;
  let conn: Deno.UnixConn | undefined;
  // AbortSignal.timeout, not setTimeout: a process's first setTimeout costs ~5 ms of set-up in Deno 2.9.
  const signal = AbortSignal.timeout(options.timeoutMs);
  const onTimeout = () => {
    timedOut = true;
    try {
      conn?.close();
    } catch {
      // already closed
    }
  };
  signal.addEventListener("abort", onTimeout, { once: true });
  try {
    conn = await Deno.connect({ transport: "unix", path: socketPath });
    if (timedOut) throw new DOMException("timed out", "TimeoutError");
    const request = new Uint8Array(head.length + body.length);
    request.set(new TextEncoder().encode(head));
    request.set(body, head.length);
    for (let off = 0; off < request.length;) off += await conn.write(request.subarray(off));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(16 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    return parseHttpResponse(concat(chunks));
  } catch (e) {
    if (timedOut) {
      throw new DOMException(`no reply from ${socketPath} within ${options.timeoutMs} ms`, "TimeoutError");
    }
    throw e;
  } finally {
    signal.removeEventListener("abort", onTimeout);
    try {
      conn?.close();
    } catch {
      // already closed
    }
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Parses a whole HTTP/1.1 response (read to EOF): status, and the body with chunked encoding undone. */
export function parseHttpResponse(raw: Uint8Array): WireReply {
  const text = new TextDecoder().decode(raw);
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) throw new Error("malformed HTTP response from the daemon (no header end)");
  const [statusLine, ...headerLines] = text.slice(0, end).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
  if (!status) throw new Error(`malformed HTTP status line from the daemon: ${JSON.stringify(statusLine)}`);
  const chunked = headerLines.some((l) => /^transfer-encoding:\s*chunked/i.test(l));
  let body = text.slice(end + 4);
  if (chunked) {
    let decoded = "";
    let rest = body;
    while (true) {
      const lineEnd = rest.indexOf("\r\n");
      const size = parseInt(rest.slice(0, lineEnd), 16);
      if (!(size > 0)) break;
      // Sizes count bytes: cut on the encoded form so that multi-byte characters stay whole.
      const data = new TextEncoder().encode(rest.slice(lineEnd + 2));
      decoded += new TextDecoder().decode(data.subarray(0, size));
      rest = new TextDecoder().decode(data.subarray(size + 2));
    }
    body = decoded;
  }
  return { status, body };
}
