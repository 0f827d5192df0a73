/**
 * The daemon's HTTP layer on its unix socket: `POST /cni` (Galaxy's wire format), `GET /healthz`,
 * `GET /readyz`, `GET /plan?namespace=&name=` (`galaxy plan`) and `GET /audit` / `POST /audit?fix=true`
 * (`galaxy audit`). It bounds how many CNI requests run at once (the rest wait in line) and shuts down cleanly.
 * @module
 */
import { bodyVersion } from "./reply.ts";

/** What the server calls for each part of its work. */
export interface ServerHandlers {
  /** Handles one CNI wire request body. */
  cni(body: string): Promise<{ status: number; body: string }>;
  /** Why the daemon is not ready, or `undefined` when it is. */
  notReadyReason(): string | undefined;
  /** The plan of a pod (daemon/plan.ts), as a JSON-able object. */
  plan?(namespace: string, name: string, ifname: string): Promise<unknown>;
  /** One audit (daemon/audit.ts), fixing orphans when `fix`. */
  audit?(fix: boolean): Promise<unknown>;
}

/** Options of {@linkcode startServer}. */
export interface ServerOptions {
  /** The unix socket path; its folder is created 0755 and a stale socket removed. */
  socketPath: string;
  /** At most this many CNI requests run at once. */
  maxConcurrent: number;
  /** Requests beyond this many waiting get code 11 at once instead of queueing. */
  maxQueued?: number;
  /** The largest request body accepted (default {@linkcode MAX_BODY_BYTES}); a larger one gets 413. */
  maxBodyBytes?: number;
  /** A request body not complete within this long gets 408 (default {@linkcode BODY_TIMEOUT_MS}). */
  bodyTimeoutMs?: number;
}

/** The largest request body: the shim's are a few KiB; a 128 MiB one took the daemon from 375 to 918 MB. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** How long a request body may take to arrive: a client that stops half-way is dropped. */
export const BODY_TIMEOUT_MS = 30_000;

/** A request body that is too large, too slow, or broken. */
class BodyError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * Reads a request body of at most `limit` bytes within `timeoutMs`, without ever buffering more than the limit:
 * the declared length is checked first, then the bytes as they come.
 */
async function readBody(req: Request, limit: number, timeoutMs: number): Promise<string> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw new BodyError(413, `request body of ${declared} bytes exceeds ${limit}`);
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BodyError(408, `request body not complete within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    while (true) {
      const { done, value } = await Promise.race([reader.read(), timeout]);
      if (done) break;
      size += value.byteLength;
      if (size > limit) throw new BodyError(413, `request body exceeds ${limit} bytes`);
      chunks.push(value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    if (e instanceof BodyError) throw e;
    throw new BodyError(400, `request body: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

/**
 * Binds the socket inside a fresh 0700 folder beside `path`, gives it mode 0600 and only then renames it into
 * place: at no moment is there a socket at `path` that others may connect to, whatever the umask.
 */
function serveOnPrivateSocket(
  path: string,
  handler: (req: Request) => Promise<Response>,
  onError: (e: unknown) => Response,
): Deno.HttpServer {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  const privateDir = Deno.makeTempDirSync({ dir, prefix: ".galaxy-sock-" });
  Deno.chmodSync(privateDir, 0o700);
  const staged = `${privateDir}/s`;
  try {
    const server = Deno.serve({ path: staged, onListen: () => {}, onError }, handler);
    Deno.chmodSync(staged, 0o600);
    Deno.renameSync(staged, path);
    return server;
  } finally {
    Deno.removeSync(privateDir, { recursive: true });
  }
}

/** A running server. */
export interface RunningServer {
  /** Stops accepting, waits for in-flight requests up to `graceMs`, then closes. */
  shutdown(graceMs: number): Promise<void>;
  /** Resolves when the server has closed. */
  finished: Promise<void>;
  /** Requests being handled now and waiting now. */
  load(): { active: number; queued: number };
}

/** A counting semaphore: `acquire` waits while `limit` holders are inside. */
export class Semaphore {
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Holders inside now. */
  get active(): number {
    return this.#active;
  }

  /** Callers waiting now. */
  get queued(): number {
    return this.#waiting.length;
  }

  /** Waits for a free slot. */
  async acquire(): Promise<void> {
    if (this.#active < this.#limit) {
      this.#active++;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  /** Frees a slot, handing it to the longest waiter. */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** Listens on the socket and serves until shut down. */
export function startServer(handlers: ServerHandlers, options: ServerOptions): RunningServer {
  const dir = options.socketPath.slice(0, options.socketPath.lastIndexOf("/")) || "/";
  Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  try {
    Deno.removeSync(options.socketPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const slots = new Semaphore(options.maxConcurrent);
  const maxQueued = options.maxQueued ?? 4096;
  let stopping = false;

  async function route(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/healthz" && req.method === "GET") return new Response("ok\n");
    if (url.pathname === "/readyz" && req.method === "GET") {
      const reason = stopping ? "shutting down" : handlers.notReadyReason();
      return reason ? new Response(`not ready: ${reason}\n`, { status: 503 }) : new Response("ok\n");
    }
    if (url.pathname === "/plan" && handlers.plan) {
      if (req.method !== "GET") return new Response("use GET\n", { status: 405 });
      const namespace = url.searchParams.get("namespace") ?? "";
      const name = url.searchParams.get("name") ?? "";
      if (!namespace || !name) {
        return new Response("plan: namespace and name are required\n", { status: 400 });
      }
      return json(200, await handlers.plan(namespace, name, url.searchParams.get("ifname") || "eth0"));
    }
    if (url.pathname === "/audit" && handlers.audit) {
      const fix = url.searchParams.get("fix") === "true";
      // A GET never changes the node: fixing needs POST.
      if (req.method !== (fix ? "POST" : "GET") && !(req.method === "POST" && !fix)) {
        return new Response(fix ? "audit: fix=true needs POST\n" : "use GET or POST\n", { status: 405 });
      }
      return json(200, await handlers.audit(fix));
    }
    if (url.pathname !== "/cni") return new Response("not found\n", { status: 404 });
    if (req.method !== "POST") return new Response("use POST\n", { status: 405 });
    let body: string;
    try {
      body = await readBody(
        req,
        options.maxBodyBytes ?? MAX_BODY_BYTES,
        options.bodyTimeoutMs ?? BODY_TIMEOUT_MS,
      );
    } catch (e) {
      const err = e as BodyError;
      return json(err.status ?? 400, { cniVersion: "1.1.0", code: 6, msg: `galaxy daemon: ${err.message}` });
    }
    if (slots.active >= options.maxConcurrent && slots.queued >= maxQueued) {
      return json(503, {
        cniVersion: bodyVersion(body),
        code: 11,
        msg: "galaxy daemon is overloaded; try again later",
      });
    }
    await slots.acquire();
    try {
      const reply = await handlers.cni(body);
      return new Response(reply.body, {
        status: reply.status,
        headers: reply.body ? { "content-type": "application/json" } : {},
      });
    } finally {
      slots.release();
    }
  }

  const server = serveOnPrivateSocket(
    options.socketPath,
    route,
    (e) => json(500, { cniVersion: "1.1.0", code: 100, msg: `galaxy daemon: ${(e as Error).message}` }),
  );

  return {
    finished: server.finished,
    load: () => ({ active: slots.active, queued: slots.queued }),
    async shutdown(graceMs: number): Promise<void> {
      stopping = true;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs));
      await Promise.race([server.shutdown(), deadline]);
      clearTimeout(timer);
    },
  };
}
