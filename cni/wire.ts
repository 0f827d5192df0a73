/**
 * The one wire type between galaxy-sdn and galaxy serve, shared by both sides. It is Galaxy's: `POST /cni` with
 * `{"env": {...}, "config": "<base64 of the CNI stdin>"}` over a unix socket, so old shims keep working. The
 * reply is a CNI 1.1.0 result (200, possibly empty) or a CNI error object (4xx/5xx).
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
 * Sends one HTTP request to the daemon's unix socket and returns status and body. Throws when the socket
 * cannot be reached or the reply does not arrive within `timeoutMs`.
 */
export async function requestDaemon(
  socketPath: string,
  path: string,
  options: { method?: string; body?: string; timeoutMs: number },
): Promise<WireReply> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  const signal = AbortSignal.timeout(options.timeoutMs);
  try {
    const res = await fetch(`http://galaxy${path}`, {
      method: options.method ?? "GET",
      body: options.body,
      headers: options.body === undefined ? undefined : { "content-type": "application/json" },
      client,
      signal,
    });
    return { status: res.status, body: await res.text() };
  } finally {
    client.close();
  }
}
