/**
 * The read-only subcommands' (`galaxy plan`, `galaxy audit`) one request to the daemon's socket: a JSON reply,
 * or a printed reason (an HTTP error or an unreachable daemon) for the caller's exit status 2.
 * @module
 */
import { requestDaemon } from "../cni/wire.ts";

/** Asks the daemon at `socketPath` for `path`; returns the parsed reply, or undefined after printing why not. */
export async function askDaemonJson<T>(
  command: string,
  socketPath: string,
  options: { path: string; method?: string; timeoutMs: number },
): Promise<T | undefined> {
  try {
    const reply = await requestDaemon(socketPath, options.path, options);
    if (reply.status !== 200) {
      console.error(`galaxy ${command}: the daemon answered ${reply.status}: ${reply.body.trim()}`);
      return undefined;
    }
    return JSON.parse(reply.body) as T;
  } catch (e) {
    console.error(`galaxy ${command}: cannot reach ${socketPath}: ${(e as Error).message}`);
    return undefined;
  }
}
