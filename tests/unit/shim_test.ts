import assert from "node:assert/strict";
import { ALL_VERSIONS } from "../../cni/spec.ts";
import { decodeBase64, encodeBase64 } from "../../cni/wire.ts";
import { launcherDir } from "../helpers/launchers.ts";
import { runCommand, type RunResult } from "../helpers/netns.ts";

const NETNS = "/proc/self/ns/net";

interface Seen {
  method: string;
  path: string;
  body: string;
}

type Responder = (path: string, body: string, seen: Seen[]) => Response | Promise<Response>;

/** A tiny stand-in for galaxy serve on a unix socket in a temp folder; it records every request. */
async function withFakeDaemon(
  respond: Responder,
  fn: (socket: string, seen: Seen[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-shim-test-" });
  const socket = `${dir}/galaxy.sock`;
  const seen: Seen[] = [];
  const server = Deno.serve({ path: socket, onListen: () => {} }, async (req) => {
    const body = await req.text();
    const path = new URL(req.url).pathname;
    seen.push({ method: req.method, path, body });
    return await respond(path, body, seen);
  });
  try {
    await fn(socket, seen);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A folder for a socket path on which nothing listens. */
async function withNoDaemon(fn: (socket: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-shim-test-" });
  try {
    await fn(`${dir}/galaxy.sock`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function conf(socket: string, cniVersion = "1.1.0", extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion, name: "galaxy-sdn", type: "galaxy-sdn", socketPath: socket, ...extra });
}

/** Runs the real galaxy-sdn launcher the way a runtime execs a plugin. */
async function shim(verb: string, stdin: string, extraEnv: Record<string, string> = {}): Promise<RunResult> {
  const dir = await launcherDir();
  const env: Record<string, string> = { CNI_COMMAND: verb, CNI_PATH: dir };
  if (verb === "ADD" || verb === "DEL" || verb === "CHECK") {
    Object.assign(env, {
      CNI_CONTAINERID: "ctr-shim",
      CNI_NETNS: NETNS,
      CNI_IFNAME: "eth0",
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1",
    });
  }
  return await runCommand(`${dir}/galaxy-sdn`, [], { env: { ...env, ...extraEnv }, stdin });
}

/** The one JSON document on stdout (asserting there is exactly one). */
function stdoutJson(r: RunResult): Record<string, unknown> {
  assert.ok(r.stdout.endsWith("\n"), `stdout not newline-terminated: ${JSON.stringify(r.stdout)}`);
  const lines = r.stdout.slice(0, -1).split("\n");
  assert.equal(lines.length, 1, `stdout holds more than one line: ${JSON.stringify(r.stdout)}`);
  return JSON.parse(lines[0]);
}

function failure(r: RunResult): { cniVersion: string; code: number; msg: string; details?: string } {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}: ${r.stdout} ${r.stderr}`);
  return stdoutJson(r) as { cniVersion: string; code: number; msg: string; details?: string };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

const ready: Responder = (path) =>
  path === "/readyz" ? new Response("ok\n") : new Response("", { status: 200 });

const RESULT = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "veth1", mac: "0a:58:00:00:00:01", mtu: 1400 },
    { name: "eth0", sandbox: NETNS, mac: "0a:58:00:00:00:02", mtu: 1400 },
  ],
  ips: [{ address: "198.18.0.5/24", gateway: "198.18.0.1", interface: 1 }],
  routes: [{ dst: "0.0.0.0/0", gw: "198.18.0.1", mtu: 1400 }],
  dns: { nameservers: ["198.18.0.53"] },
};

Deno.test("shim: VERSION is answered without a daemon", async () => {
  await withNoDaemon(async (socket) => {
    const r = await shim("VERSION", conf(socket));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(stdoutJson(r), { cniVersion: "1.1.0", supportedVersions: [...ALL_VERSIONS] });
  });
});

Deno.test("shim: without a daemon, ADD gives code 11 within the ready wait (default 2 s), CHECK/GC 11, STATUS 50", async () => {
  await withNoDaemon(async (socket) => {
    const started = Date.now();
    const add = failure(await shim("ADD", conf(socket, "1.1.0")));
    const took = Date.now() - started;
    assert.equal(add.code, 11, add.msg);
    assert.match(add.msg, /not ready/);
    assert.ok(add.msg.includes(socket), add.msg);
    assert.ok(took >= 1500, `ADD gave up after ${took} ms without waiting for the daemon`);
    assert.ok(took < 4_000, `ADD took ${took} ms with the default ready wait of 2 s`);
    const t1 = Date.now();
    const quick = failure(await shim("ADD", conf(socket, "1.1.0", { readyWaitSeconds: 0.3 })));
    assert.equal(quick.code, 11, quick.msg);
    assert.ok(Date.now() - t1 < 1500, `readyWaitSeconds 0.3 took ${Date.now() - t1} ms`);

    for (const verb of ["CHECK", "GC"]) {
      const t0 = Date.now();
      const err = failure(await shim(verb, conf(socket, "1.1.0", { "cni.dev/valid-attachments": [] })));
      assert.equal(err.code, 11, `${verb}: ${err.msg}`);
      assert.match(err.msg, /try again later/);
      assert.ok(Date.now() - t0 < 5000, `${verb} waited for a daemon that is not there`);
    }
    const status = failure(await shim("STATUS", conf(socket)));
    assert.equal(status.code, 50, status.msg);
    assert.ok(status.msg.includes(socket), status.msg);
  });
});

Deno.test("shim: DEL during a daemon outage succeeds and is queued (the wire body, 0600) under stateDir", async () => {
  await withNoDaemon(async (socket) => {
    const stateDir = `${socket.slice(0, socket.lastIndexOf("/"))}/state`;
    const stdin = conf(socket, "1.1.0", { stateDir });
    const r = await shim("DEL", stdin);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout, "");
    const path = `${stateDir}/del-queue/ctr-shim`;
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const body = JSON.parse(await Deno.readTextFile(path));
    assert.equal(body.env.CNI_COMMAND, "DEL");
    assert.equal(body.env.CNI_CONTAINERID, "ctr-shim");
    assert.deepEqual(decodeBase64(body.config), new TextEncoder().encode(stdin));
    // A relative stateDir is refused (code 7), and the DEL is then not reported done.
    const bad = failure(await shim("DEL", conf(socket, "1.1.0", { stateDir: "rel" })));
    assert.equal(bad.code, 7, bad.msg);
  });
});

Deno.test("shim: ADD waits for /readyz, relays env and the exact stdin bytes, prints the result as 1.1.0", async () => {
  await withFakeDaemon(
    (path) => path === "/readyz" ? new Response("ok\n") : json(200, RESULT),
    async (socket, seen) => {
      // odd spacing and non-ASCII text: the daemon must get these bytes, not a re-serialization
      const stdin = `  {"cniVersion": "1.1.0", "name":"galaxy-sdn", "type": "galaxy-sdn",\n\t"socketPath": ${
        JSON.stringify(socket)
      }, "note": "héllo ✓ \\u00e9"}\n`;
      const r = await shim("ADD", stdin);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(stdoutJson(r), RESULT);

      assert.deepEqual(seen.map((s) => `${s.method} ${s.path}`), ["GET /readyz", "POST /cni"]);
      const body = JSON.parse(seen[1].body);
      assert.deepEqual(Object.keys(body).sort(), ["config", "env"]);
      assert.equal(body.config, encodeBase64(new TextEncoder().encode(stdin)));
      assert.deepEqual(decodeBase64(body.config), new TextEncoder().encode(stdin));
      assert.equal(body.env.CNI_COMMAND, "ADD");
      assert.equal(body.env.CNI_CONTAINERID, "ctr-shim");
      assert.equal(body.env.CNI_NETNS, NETNS);
      assert.equal(body.env.CNI_IFNAME, "eth0");
      assert.equal(body.env.CNI_ARGS, "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1");
      assert.equal(body.env.CNI_PATH, await launcherDir());
    },
  );
});

Deno.test("shim: the daemon's 1.1.0 result is converted to the shim config's cniVersion", async () => {
  const expected: Record<string, unknown> = {
    "0.2.0": {
      cniVersion: "0.2.0",
      ip4: { ip: "198.18.0.5/24", gateway: "198.18.0.1", routes: [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }] },
      dns: { nameservers: ["198.18.0.53"] },
    },
    "0.4.0": {
      cniVersion: "0.4.0",
      interfaces: [
        { name: "veth1", mac: "0a:58:00:00:00:01" },
        { name: "eth0", sandbox: NETNS, mac: "0a:58:00:00:00:02" },
      ],
      ips: [{ version: "4", address: "198.18.0.5/24", gateway: "198.18.0.1", interface: 1 }],
      routes: [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }],
      dns: { nameservers: ["198.18.0.53"] },
    },
    "1.0.0": {
      cniVersion: "1.0.0",
      interfaces: [
        { name: "veth1", mac: "0a:58:00:00:00:01" },
        { name: "eth0", sandbox: NETNS, mac: "0a:58:00:00:00:02" },
      ],
      ips: [{ address: "198.18.0.5/24", gateway: "198.18.0.1", interface: 1 }],
      routes: [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }],
      dns: { nameservers: ["198.18.0.53"] },
    },
  };
  await withFakeDaemon(
    (path) => path === "/readyz" ? new Response("ok\n") : json(200, RESULT),
    async (socket) => {
      for (const [version, want] of Object.entries(expected)) {
        const r = await shim("ADD", conf(socket, version));
        assert.equal(r.code, 0, `${version}: ${r.stdout}${r.stderr}`);
        assert.deepEqual(stdoutJson(r), want, version);
      }
    },
  );
});

Deno.test("shim: DEL, CHECK, STATUS and GC are relayed without a readiness wait and print nothing", async () => {
  await withFakeDaemon(ready, async (socket, seen) => {
    const valid = [{ containerID: "ctr-keep", ifname: "eth0" }];
    for (const verb of ["DEL", "CHECK", "STATUS", "GC"]) {
      seen.length = 0;
      const stdin = conf(socket, "1.1.0", verb === "GC" ? { "cni.dev/valid-attachments": valid } : {});
      const r = await shim(verb, stdin);
      assert.equal(r.code, 0, `${verb}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, "", verb);
      assert.deepEqual(seen.map((s) => `${s.method} ${s.path}`), ["POST /cni"], verb);
      const body = JSON.parse(seen[0].body);
      assert.equal(body.env.CNI_COMMAND, verb);
      assert.equal(body.config, encodeBase64(new TextEncoder().encode(stdin)), verb);
    }
  });
});

Deno.test("shim: ADD waits while /readyz says 503, then relays once it says 200", async () => {
  let readyzCalls = 0;
  await withFakeDaemon((path) => {
    if (path === "/readyz") {
      readyzCalls++;
      return readyzCalls <= 3
        ? new Response("not ready: pod cache of node n1 not synced\n", { status: 503 })
        : new Response("ok\n");
    }
    return json(200, RESULT);
  }, async (socket, seen) => {
    const r = await shim("ADD", conf(socket, "1.1.0", { timeoutSeconds: 10 }));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(stdoutJson(r), RESULT);
    assert.equal(readyzCalls, 4);
    assert.deepEqual(seen.map((s) => s.path), ["/readyz", "/readyz", "/readyz", "/readyz", "/cni"]);
  });
});

Deno.test("shim: a daemon that stays not ready gives code 11 with its reason; /cni is never called", async () => {
  await withFakeDaemon(
    (path) =>
      path === "/readyz" ? new Response("not ready: shutting down\n", { status: 503 }) : json(200, RESULT),
    async (socket, seen) => {
      const started = Date.now();
      const err = failure(await shim("ADD", conf(socket, "1.1.0", { timeoutSeconds: 1 })));
      assert.ok(Date.now() - started < 10_000);
      assert.equal(err.code, 11);
      assert.match(err.msg, /shutting down/);
      assert.ok(seen.every((s) => s.path === "/readyz"), "ADD was sent to a daemon that is not ready");
    },
  );
});

Deno.test("shim: a daemon error object is relayed unchanged (code, msg, details) in the config's version", async () => {
  const error = { cniVersion: "1.1.0", code: 7, msg: "x", details: "d" };
  await withFakeDaemon(
    (path) => path === "/readyz" ? new Response("ok\n") : json(500, error),
    async (socket) => {
      for (const verb of ["ADD", "DEL", "CHECK"]) {
        const err = failure(await shim(verb, conf(socket, "1.0.0")));
        assert.deepEqual(err, { cniVersion: "1.0.0", code: 7, msg: "x", details: "d" }, verb);
      }
    },
  );
  await withFakeDaemon(
    (path) =>
      path === "/readyz"
        ? new Response("ok\n")
        : json(500, { cniVersion: "1.1.0", code: 50, msg: "not ready: y" }),
    async (socket) => {
      assert.deepEqual(failure(await shim("STATUS", conf(socket))), {
        cniVersion: "1.1.0",
        code: 50,
        msg: "not ready: y",
      });
    },
  );
  await withFakeDaemon(
    () => json(503, { cniVersion: "1.1.0", code: 11, msg: "galaxy daemon is overloaded; try again later" }),
    async (socket) => {
      const err = failure(await shim("DEL", conf(socket)));
      assert.equal(err.code, 11);
      assert.equal(err.msg, "galaxy daemon is overloaded; try again later");
    },
  );
});

Deno.test("shim: a reply that is not a CNI error object gives code 100 quoting the body", async () => {
  const bodies = ["internal meltdown\n", '{"unexpected": true}'];
  for (const text of bodies) {
    await withFakeDaemon(
      (path) => path === "/readyz" ? new Response("ok\n") : new Response(text, { status: 500 }),
      async (socket) => {
        for (const verb of ["ADD", "DEL"]) {
          const err = failure(await shim(verb, conf(socket)));
          assert.equal(err.code, 100, `${verb}: ${err.msg}`);
          assert.match(err.msg, /HTTP 500/);
          assert.ok(err.msg.includes(text.trim()), `${verb}: the body is not quoted: ${err.msg}`);
        }
      },
    );
  }
});

Deno.test("shim: an ADD reply that is not a valid result gives code 6", async () => {
  await withFakeDaemon(
    (path) =>
      path === "/readyz"
        ? new Response("ok\n")
        : json(200, { cniVersion: "1.1.0", ips: [{ address: "nope" }] }),
    async (socket) => {
      const err = failure(await shim("ADD", conf(socket)));
      assert.equal(err.code, 6, err.msg);
      assert.match(err.msg, /invalid result/);
    },
  );
});

Deno.test("shim: a daemon that does not answer within timeoutSeconds gives code 102", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  await withFakeDaemon(async (path) => {
    if (path === "/readyz") return new Response("ok\n");
    await held;
    return new Response("");
  }, async (socket) => {
    try {
      const started = Date.now();
      const err = failure(await shim("DEL", conf(socket, "1.1.0", { timeoutSeconds: 1 })));
      assert.equal(err.code, 102, err.msg);
      assert.ok(Date.now() - started < 8000);
    } finally {
      release();
    }
  });
});

Deno.test("shim: a bad socketPath or timeoutSeconds is a config error (code 7) and nothing is sent", async () => {
  await withFakeDaemon(ready, async (socket, seen) => {
    const cases: Record<string, unknown>[] = [
      { socketPath: "" },
      { socketPath: 5 },
      { timeoutSeconds: 0 },
      { timeoutSeconds: "10" },
    ];
    for (const extra of cases) {
      const err = failure(await shim("DEL", conf(socket, "1.1.0", extra)));
      assert.equal(err.code, 7, JSON.stringify(extra));
      assert.match(err.msg, /socketPath|timeoutSeconds/);
    }
    assert.deepEqual(seen, []);
  });
});
