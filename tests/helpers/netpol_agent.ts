/**
 * A connection agent for the network policy tests, run inside one namespace with
 * `ip netns exec <ns> deno run -A netpol_agent.ts <tcp ports> <udp ports>` (comma lists, `-` for none).
 * It serves TCP and UDP echo on those ports and answers JSON lines on stdin, one JSON line each on stdout:
 * - `{"id":1,"op":"try","proto":"tcp"|"udp","host":"198.18.20.2","port":80,"timeoutMs":800}` → `{"id":1,"ok":true}`
 *   when bytes went there and came back (a new connection each time; `sourcePort` picks the local port, so a
 *   test can keep a new check from reusing the conntrack entry of an earlier flow);
 * - `{"id":2,"op":"open","conn":"c1","host":...,"port":...}` opens and keeps a TCP connection;
 * - `{"id":3,"op":"send","conn":"c1","timeoutMs":800}` sends over it and waits for the echo.
 * It prints `{"ready":true}` once listening.
 * @module
 */
import { createSocket } from "node:dgram";
import { connect, type Socket } from "node:net";

const [tcpArg = "-", udpArg = "-"] = Deno.args;
const list = (s: string) => (s === "-" ? [] : s.split(",").map(Number));
const encoder = new TextEncoder();

for (const port of list(tcpArg)) {
  const listener = Deno.listen({ hostname: "0.0.0.0", port });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(512);
        try {
          while (true) {
            const n = await conn.read(buf);
            if (n === null) break;
            await conn.write(buf.subarray(0, n));
          }
        } catch {
          // peer went away
        }
        try {
          conn.close();
        } catch {
          // closed already
        }
      })();
    }
  })();
}
for (const port of list(udpArg)) {
  const sock = createSocket("udp4");
  sock.on("message", (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((resolve) => sock.bind(port, "0.0.0.0", resolve));
}

function tryTcp(host: string, port: number, timeoutMs: number, localPort?: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, localPort });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on("connect", () => s.write("ping"));
    s.on("data", () => done(true));
    s.on("error", () => done(false));
  });
}

function tryUdp(host: string, port: number, timeoutMs: number, localPort?: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket("udp4");
    if (localPort !== undefined) s.bind(localPort);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on("message", () => done(true));
    s.on("error", () => done(false));
    s.send("ping", port, host);
  });
}

const conns = new Map<string, Socket>();

function open(name: string, host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => resolve(false), timeoutMs);
    s.on("connect", () => {
      clearTimeout(timer);
      conns.set(name, s);
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

function send(name: string, timeoutMs: number): Promise<boolean> {
  const s = conns.get(name);
  if (!s) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.off("data", onData);
      resolve(false);
    }, timeoutMs);
    const onData = () => {
      clearTimeout(timer);
      s.off("data", onData);
      resolve(true);
    };
    s.on("data", onData);
    s.write("again");
  });
}

type Request = {
  sourcePort?: number;
  id: number;
  op: string;
  proto?: string;
  host?: string;
  port?: number;
  conn?: string;
  timeoutMs?: number;
};

async function answer(req: Request): Promise<void> {
  const t = req.timeoutMs ?? 800;
  let ok = false;
  if (req.op === "try") {
    ok = req.proto === "udp"
      ? await tryUdp(req.host!, req.port!, t, req.sourcePort)
      : await tryTcp(req.host!, req.port!, t, req.sourcePort);
  } else if (req.op === "open") ok = await open(req.conn!, req.host!, req.port!, t);
  else if (req.op === "send") ok = await send(req.conn!, t);
  await Deno.stdout.write(encoder.encode(JSON.stringify({ id: req.id, ok }) + "\n"));
}

await Deno.stdout.write(encoder.encode(JSON.stringify({ ready: true }) + "\n"));
let pending = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (line.trim()) answer(JSON.parse(line));
  }
}
Deno.exit(0);
