/**
 * A TCP and UDP echo tool for port-mapping tests, run inside a test namespace with `ip netns exec`.
 *
 * - `echo.ts serve <port>...`: echoes on every port over TCP and UDP (0.0.0.0), replying `<tag>:<bytes>`
 *   where the tag is `$ECHO_TAG` (default `echo`); runs until killed.
 * - `echo.ts tcp|udp <host> <port> <message>`: sends the message, prints the reply; exit 1 and `refused`,
 *   `timeout` or the error on failure (3 s).
 * @module
 */
import dgram from "node:dgram";

const [mode, ...rest] = Deno.args;
const tag = Deno.env.get("ECHO_TAG") ?? "echo";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function serveTcp(port: number): Promise<void> {
  for await (const conn of Deno.listen({ hostname: "0.0.0.0", port })) {
    (async () => {
      const buf = new Uint8Array(1024);
      const n = await conn.read(buf).catch(() => null);
      if (n) await conn.write(encoder.encode(`${tag}:${decoder.decode(buf.subarray(0, n))}`)).catch(() => {});
      conn.close();
    })();
  }
}

function serveUdp(port: number): void {
  const s = dgram.createSocket("udp4");
  s.on("message", (msg, rinfo) => s.send(`${tag}:${msg.toString()}`, rinfo.port, rinfo.address));
  s.bind(port, "0.0.0.0");
}

function timeout<T>(p: Promise<T>): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error("timeout")), 3000)),
  ]);
}

async function tcp(host: string, port: number, message: string): Promise<string> {
  const conn = await timeout(Deno.connect({ hostname: host, port }));
  try {
    await conn.write(encoder.encode(message));
    const buf = new Uint8Array(1024);
    const n = await timeout(conn.read(buf));
    return n ? decoder.decode(buf.subarray(0, n)) : "";
  } finally {
    conn.close();
  }
}

function udp(host: string, port: number, message: string): Promise<string> {
  const s = dgram.createSocket("udp4");
  return timeout(
    new Promise<string>((resolve, reject) => {
      s.on("message", (msg) => resolve(msg.toString()));
      s.on("error", reject);
      s.send(message, port, host);
    }),
  ).finally(() => s.close());
}

if (mode === "serve") {
  for (const p of rest) {
    serveUdp(Number(p));
    serveTcp(Number(p));
  }
  console.log("ready");
} else {
  try {
    const [host, port, message] = rest;
    console.log(await (mode === "udp" ? udp : tcp)(host, Number(port), message));
    Deno.exit(0);
  } catch (e) {
    const err = e as Error & { code?: string };
    console.log(
      err instanceof Deno.errors.ConnectionRefused || err.code === "ECONNREFUSED" ? "refused" : err.message,
    );
    Deno.exit(1);
  }
}
