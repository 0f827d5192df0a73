/**
 * `galaxy healthcheck [--socket-path PATH]`: asks the daemon's `/readyz` over its socket; exit 0 when ready,
 * 1 when not (with the reason on stderr). Made for readiness and liveness probes.
 * @module
 */
import { parseArgs } from "node:util";
import { DEFAULT_SOCKET_PATH, requestDaemon } from "../cni/wire.ts";

/** Runs the health check. */
export async function main(args: string[]): Promise<number> {
  let socketPath: string;
  try {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: { "socket-path": { type: "string", default: DEFAULT_SOCKET_PATH } },
    });
    socketPath = values["socket-path"];
  } catch (e) {
    console.error(`galaxy healthcheck: ${(e as Error).message}`);
    console.error("Usage: galaxy healthcheck [--socket-path PATH]");
    return 2;
  }
  try {
    const reply = await requestDaemon(socketPath, "/readyz", { timeoutMs: 5000 });
    if (reply.status === 200) return 0;
    console.error(`galaxy healthcheck: ${reply.body.trim() || `HTTP ${reply.status}`}`);
  } catch (e) {
    console.error(`galaxy healthcheck: cannot reach ${socketPath}: ${(e as Error).message}`);
  }
  return 1;
}
