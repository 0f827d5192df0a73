/**
 * galaxy-sdn, the CNI shim: validates the call like any plugin, relays ADD, DEL, CHECK, STATUS and GC to the
 * daemon over its unix socket, and prints the daemon's answer in the caller's `cniVersion`. VERSION is answered
 * here. It never imports the Kubernetes client: it is on every pod's start-up path.
 *
 * Config keys: `socketPath` (default {@linkcode DEFAULT_SOCKET_PATH}), `timeoutSeconds` (default 120).
 * @module
 */
import { type Plugin, type PluginRequest, runPlugin } from "./skel.ts";
import { CniError, ErrorCode, isCniErrorObject, parseResult, type Result } from "./version.ts";
import { DEFAULT_SOCKET_PATH, encodeBase64, requestDaemon } from "./wire.ts";

const DEFAULT_TIMEOUT_SECONDS = 120;
/** How long ADD waits for the daemon to become ready before asking the runtime to retry. */
const READY_WAIT_MS = 10_000;

function socketOf(req: PluginRequest): string {
  const path = req.config.socketPath;
  if (path === undefined) return DEFAULT_SOCKET_PATH;
  if (typeof path !== "string" || path === "") {
    throw new CniError(ErrorCode.InvalidNetworkConfig, "socketPath must be a non-empty string");
  }
  return path;
}

function timeoutOf(req: PluginRequest): number {
  const t = req.config.timeoutSeconds;
  if (t === undefined) return DEFAULT_TIMEOUT_SECONDS * 1000;
  if (typeof t !== "number" || !(t > 0)) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, "timeoutSeconds must be a positive number");
  }
  return t * 1000;
}

function unreachable(socket: string, verb: string, err: unknown): CniError {
  return new CniError(
    ErrorCode.TryAgainLater,
    `cannot reach the galaxy daemon at ${socket} for ${verb}: ${(err as Error).message}; try again later`,
  );
}

/** Waits until the daemon answers `/readyz` with 200, or throws code 11 with the last reason. */
async function waitReady(socket: string, deadline: number): Promise<void> {
  let reason = "no answer";
  while (true) {
    try {
      const r = await requestDaemon(socket, "/readyz", { timeoutMs: Math.max(100, deadline - Date.now()) });
      if (r.status === 200) return;
      reason = r.body.trim() || `HTTP ${r.status}`;
    } catch (e) {
      reason = (e as Error).message;
    }
    if (Date.now() + 200 > deadline) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new CniError(
    ErrorCode.TryAgainLater,
    `galaxy daemon at ${socket} is not ready (${reason}); try again later`,
  );
}

/** Relays one verb to the daemon and returns the reply body of a success. */
async function relay(req: PluginRequest): Promise<string> {
  const socket = socketOf(req);
  const timeoutMs = timeoutOf(req);
  if (req.command === "ADD") await waitReady(socket, Date.now() + Math.min(READY_WAIT_MS, timeoutMs));
  const body = JSON.stringify({ env: req.env, config: encodeBase64(req.stdin) });
  let reply;
  try {
    reply = await requestDaemon(socket, "/cni", { method: "POST", body, timeoutMs });
  } catch (e) {
    if (e instanceof DOMException && e.name === "TimeoutError") {
      throw new CniError(
        ErrorCode.Timeout,
        `galaxy daemon did not answer ${req.command} within ${timeoutMs} ms`,
      );
    }
    throw unreachable(socket, req.command, e);
  }
  if (reply.status === 200) return reply.body;
  let parsed: unknown;
  try {
    parsed = JSON.parse(reply.body);
  } catch {
    parsed = undefined;
  }
  if (isCniErrorObject(parsed)) throw new CniError(parsed.code, parsed.msg, parsed.details);
  throw new CniError(ErrorCode.PluginFailure, `galaxy returns HTTP ${reply.status}: ${reply.body.trim()}`);
}

/** The shim as a plugin: each verb is a relay to the daemon. */
export const plugin: Plugin = {
  name: "galaxy-sdn",
  async add(req): Promise<Result> {
    const body = await relay(req);
    try {
      return parseResult(JSON.parse(body), req.cniVersion); // the daemon answers in the request's version
    } catch (e) {
      throw new CniError(
        ErrorCode.DecodingFailure,
        `galaxy daemon sent an invalid result: ${(e as Error).message}`,
      );
    }
  },
  async del(req) {
    await relay(req);
  },
  async check(req) {
    await relay(req);
  },
  async status(req) {
    try {
      await relay(req);
    } catch (e) {
      if (e instanceof CniError && e.code === ErrorCode.TryAgainLater) {
        throw new CniError(ErrorCode.NotAvailable, e.message);
      }
      throw e;
    }
  },
  async gc(req) {
    await relay(req);
  },
};

/** Runs the shim. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
