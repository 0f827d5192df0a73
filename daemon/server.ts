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
    const body = await req.text();
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

  const server = Deno.serve({
    path: options.socketPath,
    onListen: () => Deno.chmodSync(options.socketPath, 0o600),
    onError: (e) =>
      json(500, { cniVersion: "1.1.0", code: 100, msg: `galaxy daemon: ${(e as Error).message}` }),
  }, route);

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
