/**
 * The daemon's side of the DEL queue (`cni/del_queue.ts`): at start, every DEL that a shim queued while the
 * daemon was down is run through the handler like any DEL, before the daemon reports ready.
 * @module
 */
import { drainDelQueue } from "../cni/del_queue.ts";
import { handleCni, type HandlerContext } from "./handler.ts";

/** Runs the queued DELs of `ctx.stateDir`; one that fails stays queued (and is logged) for the next start. */
export async function runQueuedDels(ctx: HandlerContext): Promise<{ done: string[]; kept: string[] }> {
  const outcome = await drainDelQueue(ctx.stateDir, async ({ containerId, body }) => {
    const reply = await handleCni(ctx, body);
    if (reply.status === 200) {
      ctx.log.info(`queued DEL of container ${containerId} done`);
      return true;
    }
    // A request that can never succeed (malformed) is dropped, not retried at every start.
    if (reply.status === 400) {
      ctx.log.warn(`queued DEL of container ${containerId} dropped: ${reply.body}`);
      return true;
    }
    ctx.log.warn(`queued DEL of container ${containerId} failed, kept for the next start: ${reply.body}`);
    return false;
  });
  return outcome;
}
