import assert from "node:assert/strict";
import { requestDaemon } from "../../cni/wire.ts";
import { type RunningServer, Semaphore, type ServerHandlers, startServer } from "../../daemon/server.ts";

/** A promise with its resolver, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => open = r);
  return { promise, open };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function get(socket: string, path: string) {
  return requestDaemon(socket, path, { timeoutMs: 5000 });
}

function post(socket: string, body: string, path = "/cni") {
  return requestDaemon(socket, path, { method: "POST", body, timeoutMs: 10_000 });
}

const okHandlers: ServerHandlers = {
  cni: () => Promise.resolve({ status: 200, body: "" }),
  notReadyReason: () => undefined,
};

/** Starts a server on a socket in a fresh temp folder; always shuts it down and removes the folder. */
async function withServer(
  handlers: ServerHandlers,
  options: { maxConcurrent?: number; maxQueued?: number; subdir?: string },
  fn: (socket: string, server: RunningServer, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-server-test-" });
  const socket = `${dir}/${options.subdir ?? "run"}/galaxy.sock`;
  const server = startServer(handlers, {
    socketPath: socket,
    maxConcurrent: options.maxConcurrent ?? 4,
    maxQueued: options.maxQueued,
  });
  try {
    await fn(socket, server, dir);
  } finally {
    await server.shutdown(5000);
    await server.finished;
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("server: /healthz is always 200; /readyz is 503 with the reason until ready, then 200", async () => {
  let reason: string | undefined = "pod cache of node n1 not synced";
  const handlers: ServerHandlers = { ...okHandlers, notReadyReason: () => reason };
  await withServer(handlers, {}, async (socket) => {
    const health = await get(socket, "/healthz");
    assert.equal(health.status, 200);
    assert.equal(health.body, "ok\n");

    const notReady = await get(socket, "/readyz");
    assert.equal(notReady.status, 503);
    assert.equal(notReady.body, "not ready: pod cache of node n1 not synced\n");

    reason = undefined;
    const ready = await get(socket, "/readyz");
    assert.equal(ready.status, 200);
    assert.equal(ready.body, "ok\n");

    reason = "galaxy.json not loaded";
    const again = await get(socket, "/readyz");
    assert.equal(again.status, 503);
    assert.match(again.body, /galaxy\.json not loaded/);
    assert.equal((await get(socket, "/healthz")).status, 200, "health does not depend on readiness");
  });
});

Deno.test("server: unknown paths get 404, a non-POST /cni gets 405, and the handler is not called", async () => {
  let calls = 0;
  const handlers: ServerHandlers = {
    ...okHandlers,
    cni: () => {
      calls++;
      return Promise.resolve({ status: 200, body: "" });
    },
  };
  await withServer(handlers, {}, async (socket) => {
    assert.equal((await get(socket, "/nope")).status, 404);
    assert.equal((await get(socket, "/cni/extra")).status, 404);
    assert.equal((await post(socket, "{}", "/healthz")).status, 404);
    const wrongMethod = await get(socket, "/cni");
    assert.equal(wrongMethod.status, 405);
    assert.match(wrongMethod.body, /POST/);
    const put = await requestDaemon(socket, "/cni", { method: "PUT", body: "{}", timeoutMs: 5000 });
    assert.equal(put.status, 405);
    assert.equal(calls, 0);
  });
});

Deno.test("server: POST /cni passes the exact body to the handler and relays its status and body", async () => {
  const seen: string[] = [];
  const handlers: ServerHandlers = {
    ...okHandlers,
    cni: (body) => {
      seen.push(body);
      if (body.includes("fail")) {
        return Promise.resolve({ status: 500, body: '{"cniVersion":"1.1.0","code":7,"msg":"bad"}' });
      }
      return Promise.resolve({ status: 200, body: '{"cniVersion":"1.1.0"}' });
    },
  };
  await withServer(handlers, {}, async (socket) => {
    const body = JSON.stringify({ env: { CNI_COMMAND: "ADD" }, config: "eyJhIjoxfQ==", note: "héllo ✓" });
    const ok = await post(socket, body);
    assert.equal(ok.status, 200);
    assert.equal(ok.body, '{"cniVersion":"1.1.0"}');
    const failed = await post(socket, '{"fail":true}');
    assert.equal(failed.status, 500);
    assert.deepEqual(JSON.parse(failed.body), { cniVersion: "1.1.0", code: 7, msg: "bad" });
    assert.deepEqual(seen, [body, '{"fail":true}']);
  });
});

Deno.test("server: a handler that throws gives a 500 CNI error (code 100) and frees its slot", async () => {
  let n = 0;
  const handlers: ServerHandlers = {
    ...okHandlers,
    cni: () => {
      n++;
      if (n === 1) return Promise.reject(new Error("kaboom"));
      return Promise.resolve({ status: 200, body: "" });
    },
  };
  await withServer(handlers, { maxConcurrent: 1 }, async (socket, server) => {
    const r = await post(socket, "{}");
    assert.equal(r.status, 500);
    const err = JSON.parse(r.body);
    assert.equal(err.code, 100);
    assert.match(err.msg, /kaboom/);
    assert.deepEqual(server.load(), { active: 0, queued: 0 });
    assert.equal((await post(socket, "{}")).status, 200, "the only slot was not released");
  });
});

Deno.test("server: the socket is 0600 in a newly created 0755 folder", async () => {
  await withServer(okHandlers, { subdir: "var/run/galaxy" }, async (socket, _server, dir) => {
    const st = await Deno.stat(socket);
    assert.ok(st.isSocket, "not a socket");
    assert.equal((st.mode! & 0o777).toString(8), "600");
    for (const folder of [`${dir}/var`, `${dir}/var/run`, `${dir}/var/run/galaxy`]) {
      const fst = await Deno.stat(folder);
      assert.ok(fst.isDirectory);
      assert.equal((fst.mode! & 0o777).toString(8), "755", folder);
    }
    assert.equal((await get(socket, "/healthz")).status, 200);
  });
});

Deno.test("server: a stale socket left by a dead daemon is removed and replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-server-test-" });
  try {
    // Deno unlinks a unix socket when its listener closes; a hard link keeps the dead socket's inode around.
    const live = `${dir}/live.sock`;
    const socket = `${dir}/galaxy.sock`;
    const listener = Deno.listen({ transport: "unix", path: live });
    await Deno.link(live, socket);
    listener.close();
    assert.ok((await Deno.stat(socket)).isSocket, "setup: no stale socket");
    await assert.rejects(get(socket, "/healthz"), "setup: the stale socket still answers");

    const server = startServer(okHandlers, { socketPath: socket, maxConcurrent: 1 });
    try {
      const r = await get(socket, "/healthz");
      assert.equal(r.status, 200);
      assert.equal(((await Deno.stat(socket)).mode! & 0o777).toString(8), "600");
    } finally {
      await server.shutdown(5000);
      await server.finished;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: at most maxConcurrent CNI requests run at once; the rest wait and all complete", async () => {
  let active = 0;
  let maxActive = 0;
  const handlers: ServerHandlers = {
    ...okHandlers,
    cni: async (body) => {
      active++;
      maxActive = Math.max(maxActive, active);
      await sleep(150);
      active--;
      return { status: 200, body: JSON.stringify({ echo: body }) };
    },
  };
  await withServer(handlers, { maxConcurrent: 2 }, async (socket, server) => {
    const replies = Promise.all([0, 1, 2, 3, 4, 5].map((i) => post(socket, `req-${i}`)));
    await until("two active and four queued", () => {
      const l = server.load();
      return l.active === 2 && l.queued === 4;
    });
    // health and readiness are not CNI requests: they are answered while every slot is taken
    assert.equal((await get(socket, "/healthz")).status, 200);
    assert.equal((await get(socket, "/readyz")).status, 200);
    const done = await replies;
    assert.equal(maxActive, 2);
    done.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { echo: `req-${i}` });
    });
    assert.deepEqual(server.load(), { active: 0, queued: 0 });
  });
});

Deno.test("server: beyond maxQueued waiting requests, a CNI request gets code 11 at once", async () => {
  const hold = gate();
  let calls = 0;
  const handlers: ServerHandlers = {
    ...okHandlers,
    cni: async () => {
      calls++;
      await hold.promise;
      return { status: 200, body: "" };
    },
  };
  await withServer(handlers, { maxConcurrent: 1, maxQueued: 1 }, async (socket, server) => {
    const first = post(socket, "a");
    await until("one active", () => server.load().active === 1);
    const second = post(socket, "b");
    await until("one queued", () => server.load().queued === 1);
    const started = Date.now();
    const third = await post(socket, "c");
    assert.ok(Date.now() - started < 2000, "the overflow answer was not immediate");
    assert.equal(third.status, 503);
    const err = JSON.parse(third.body);
    assert.equal(err.code, 11);
    assert.match(err.msg, /try again later/);
    assert.equal(calls, 1, "the rejected request reached the handler");
    hold.open();
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
    assert.equal(calls, 2);
  });
});

// BUG (daemon/server.ts, route): the overflow test is `slots.queued >= maxQueued` and runs before looking at
// free slots, so with `maxQueued: 0` ("never queue") every CNI request is refused with code 11, even when all
// slots are free. Input: startServer(h, {maxConcurrent: 2, maxQueued: 0}), one POST /cni on an idle server.
// Expected: 200 from the handler. Actual: 503 {"code": 11, "msg": "galaxy daemon is overloaded; ..."}.
Deno.test({
  name: "server: maxQueued 0 refuses only requests that would have to wait",
  ignore: false,
  fn: async () => {
    await withServer(okHandlers, { maxConcurrent: 2, maxQueued: 0 }, async (socket) => {
      const r = await post(socket, "{}");
      assert.equal(r.status, 200, r.body);
    });
  },
});

Deno.test("server: shutdown stops accepting, waits for the in-flight request, then closes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-server-test-" });
  const socket = `${dir}/galaxy.sock`;
  const hold = gate();
  let handled = 0;
  const server = startServer({
    ...okHandlers,
    cni: async () => {
      await hold.promise;
      handled++;
      return { status: 200, body: '{"cniVersion":"1.1.0"}' };
    },
  }, { socketPath: socket, maxConcurrent: 2 });
  try {
    const inFlight = post(socket, "slow");
    await until("the request to be in flight", () => server.load().active === 1);
    let shutDown = false;
    let finished = false;
    const stopping = server.shutdown(5000).then(() => shutDown = true);
    server.finished.then(() => finished = true);
    await sleep(200);
    assert.equal(shutDown, false, "shutdown returned while a request was in flight");
    assert.equal(finished, false);
    await assert.rejects(get(socket, "/healthz"), "a new connection was accepted after shutdown began");

    hold.open();
    const reply = await inFlight;
    assert.equal(reply.status, 200);
    assert.equal(reply.body, '{"cniVersion":"1.1.0"}');
    await stopping;
    await server.finished;
    assert.equal(handled, 1);
    assert.equal(finished, true);
  } finally {
    hold.open();
    await server.shutdown(5000);
    await server.finished;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: shutdown is bounded by its grace period when a request does not finish", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-server-test-" });
  const socket = `${dir}/galaxy.sock`;
  const hold = gate();
  const server = startServer({
    ...okHandlers,
    cni: async () => {
      await hold.promise;
      return { status: 200, body: "" };
    },
  }, { socketPath: socket, maxConcurrent: 1 });
  let inFlight: Promise<unknown> | undefined;
  try {
    inFlight = post(socket, "stuck").catch((e) => e);
    await until("the request to be in flight", () => server.load().active === 1);
    const started = Date.now();
    await server.shutdown(300);
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 3000, `shutdown(300) took ${took} ms`);
  } finally {
    hold.open();
    await inFlight;
    await server.finished;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Semaphore: admits up to its limit, queues the rest and hands slots over in FIFO order", async () => {
  const sem = new Semaphore(2);
  await sem.acquire();
  await sem.acquire();
  assert.equal(sem.active, 2);
  assert.equal(sem.queued, 0);

  const order: string[] = [];
  const a = sem.acquire().then(() => order.push("a"));
  const b = sem.acquire().then(() => order.push("b"));
  const c = sem.acquire().then(() => order.push("c"));
  await sleep(10);
  assert.deepEqual(order, [], "acquired beyond the limit");
  assert.equal(sem.queued, 3);

  sem.release();
  await a;
  assert.deepEqual(order, ["a"]);
  assert.equal(sem.active, 2, "a hand-over must not change the number inside");
  assert.equal(sem.queued, 2);

  sem.release();
  sem.release();
  await Promise.all([b, c]);
  assert.deepEqual(order, ["a", "b", "c"]);
  assert.equal(sem.active, 2);
  assert.equal(sem.queued, 0);

  sem.release();
  sem.release();
  assert.equal(sem.active, 0);
  await sem.acquire();
  assert.equal(sem.active, 1, "a free slot is taken at once");
  sem.release();
});
