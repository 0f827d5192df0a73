/**
 * Connection agents for the network policy kernel tests: one {@linkcode Agent} per namespace (a Deno process
 * running netpol_agent.ts there, echo servers on the given ports), asked to try connections and answering
 * whether bytes went there and back.
 * @module
 */
import type { Netns } from "./netns.ts";

const AGENT = new URL("./netpol_agent.ts", import.meta.url).pathname;

/** A running agent inside one namespace. */
export class Agent {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #waiting = new Map<number, (ok: boolean) => void>();
  readonly #reading: Promise<void>;
  #next = 1;

  private constructor(child: Deno.ChildProcess, ready: () => void) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#reading = (async () => {
      let pending = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const msg = JSON.parse(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
          if (msg.ready) ready();
          else {
            this.#waiting.get(msg.id)?.(msg.ok);
            this.#waiting.delete(msg.id);
          }
        }
      }
    })();
  }

  /** Starts an agent in `ns` serving TCP and UDP echo on `ports`. */
  static async start(ns: Netns, ports: { tcp: number[]; udp: number[] }): Promise<Agent> {
    const list = (p: number[]) => (p.length ? p.join(",") : "-");
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns.name,
        Deno.execPath(),
        "run",
        "-A",
        "--quiet",
        AGENT,
        list(ports.tcp),
        list(ports.udp),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let ready!: () => void;
    const isReady = new Promise<void>((r) => ready = r);
    const agent = new Agent(child, ready);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        isReady,
        new Promise<never>((_, reject) =>
          timer = setTimeout(() => reject(new Error(`agent in ${ns.name} not ready`)), 20_000)
        ),
      ]);
    } catch (e) {
      await agent.stop();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return agent;
  }

  #ask(req: Record<string, unknown>): Promise<boolean> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#writer.write(new TextEncoder().encode(JSON.stringify({ id, ...req }) + "\n"));
    });
  }

  /**
   * Tries a new connection (TCP) or datagram exchange (UDP), from `sourcePort` when given (a fresh 5-tuple, so
   * conntrack cannot let it through as part of an earlier flow).
   */
  try(
    proto: "tcp" | "udp",
    host: string,
    port: number,
    timeoutMs = 800,
    sourcePort?: number,
  ): Promise<boolean> {
    return this.#ask({ op: "try", proto, host, port, timeoutMs, sourcePort });
  }

  /** Opens a TCP connection kept under `conn`. */
  open(conn: string, host: string, port: number): Promise<boolean> {
    return this.#ask({ op: "open", conn, host, port, timeoutMs: 800 });
  }

  /** Sends over a kept connection and waits for the echo. */
  send(conn: string): Promise<boolean> {
    return this.#ask({ op: "send", conn, timeoutMs: 800 });
  }

  /** Stops the agent (by its PID) and waits for it. */
  async stop(): Promise<void> {
    await this.#writer.close().catch(() => {});
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // exited already
    }
    await this.#child.status;
    await this.#reading.catch(() => {});
  }
}
