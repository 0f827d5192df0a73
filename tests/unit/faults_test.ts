/**
 * Issue 10's reproducers that need no kernel: the fork bomb, the process-group kill, the codes of bad
 * CNI_NETNS / container IDs / socket bodies / pod names, the hijack refusal, the body limit, the socket mode
 * under umask 000, and the DEL queue carried out at the daemon's start.
 */
import assert from "node:assert/strict";
import {
  asRunningPlugin,
  DELEGATION_CHAIN_ENV,
  delegationEnv,
  MAX_DELEGATION_DEPTH,
} from "../../cni/delegation.ts";
import { drainDelQueue, queueDel } from "../../cni/del_queue.ts";
import { configureInProcessPlugins } from "../../cni/in_process.ts";
import { execPlugin, execVerb } from "../../cni/invoke.ts";
import type { Plugin } from "../../cni/skel.ts";
import { parseIpInfos } from "../../cni/plugins/kit/ipam.ts";
import { requestFromEnv } from "../../cni/request.ts";
import { CniError } from "../../cni/spec.ts";
import { encodeBase64, requestDaemon } from "../../cni/wire.ts";
import { handleCni, type PodSource } from "../../daemon/handler.ts";
import { parseGalaxyArgs } from "../../daemon/networks.ts";
import { runQueuedDels } from "../../daemon/queued_dels.ts";
import { startServer } from "../../daemon/server.ts";
import { readState, writeState } from "../../daemon/state.ts";
import { launcherDir, REPO_ROOT } from "../helpers/launchers.ts";
import { withShellHandler } from "../helpers/shell_plugin.ts";
import { runCommand } from "../helpers/netns.ts";

function code(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof CniError, String(e));
    return e.code;
  }
  return 0;
}

/** True while `pid` runs (a zombie waiting to be reaped has ended). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

Deno.test("delegation guard: own type refused, loops refused, depth bounded, chain carried in env", () => {
  const env = delegationEnv("galaxy-flannel", {});
  assert.equal(env[DELEGATION_CHAIN_ENV], "galaxy-flannel");
  const bridge = delegationEnv("bridge", env);
  assert.equal(bridge[DELEGATION_CHAIN_ENV], "galaxy-flannel,bridge");
  assert.equal(code(() => delegationEnv("galaxy-flannel", bridge)), 7);
  assert.equal(code(() => delegationEnv("bridge", bridge)), 7);
  let deep: Record<string, string> = {};
  for (let i = 0; i < MAX_DELEGATION_DEPTH; i++) deep = delegationEnv(`p${i}`, deep);
  assert.equal(code(() => delegationEnv("one-more", deep)), 7);
  // A plugin a runtime started directly puts itself in the chain once; from the daemon it is there already.
  assert.equal(asRunningPlugin("galaxy-veth", {})[DELEGATION_CHAIN_ENV], "galaxy-veth");
  assert.equal(
    asRunningPlugin("galaxy-veth", env as Record<string, string>)[DELEGATION_CHAIN_ENV],
    "galaxy-flannel,galaxy-veth",
  );
  assert.equal(
    asRunningPlugin("galaxy-veth", { [DELEGATION_CHAIN_ENV]: "galaxy-veth" })[DELEGATION_CHAIN_ENV],
    "galaxy-veth",
  );
});

Deno.test("fork bomb: a loop the runtime side would start is refused before the second process", async () => {
  const bin = await launcherDir();
  // Through the runtime side too: a loop a daemon would start is refused before the second process.
  const loop = { cniVersion: "1.0.0", name: "n", type: "galaxy-veth", ipam: { type: "galaxy-veth" } };
  await assert.rejects(
    execVerb("ADD", loop, { containerId: "forkbomb2", netns: "/proc/self/ns/net", ifname: "eth0" }, {
      path: [bin],
      env: { [DELEGATION_CHAIN_ENV]: "galaxy-veth" },
    }),
    (e: CniError) => e.code === 7,
  );
});

Deno.test("plugin timeout kills the plugin's whole process group (its forked children too)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-faults-" });
  try {
    const plugin = `${dir}/forker`;
    await Deno.writeTextFile(
      plugin,
      `#!/bin/sh\nsleep 300 &\necho $! > '${dir}/child.pid'\nsh -c 'sleep 300' &\necho $! > '${dir}/child2.pid'\nwait\n`,
      { mode: 0o755 },
    );
    const started = Date.now();
    await assert.rejects(
      execPlugin(plugin, { PATH: "/usr/bin:/bin" }, { stdin: "{}", timeoutMs: 500 }),
      (e: CniError) => e.code === 102,
    );
    assert.ok(Date.now() - started < 5000);
    for (const f of ["child.pid", "child2.pid"]) {
      const pid = Number(await Deno.readTextFile(`${dir}/${f}`));
      for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(!alive(pid), `grandchild ${pid} outlived the plugin's timeout`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CNI_NETNS: malformed, a directory or not a namespace is code 4, missing is 3; DEL takes a dead one as none", async () => {
  const base = { CNI_CONTAINERID: "ctr1", CNI_IFNAME: "eth0" };
  const dir = await Deno.makeTempDir({ prefix: "galaxy-faults-" });
  try {
    const plain = `${dir}/unmounted-netns`; // what a netns file is after umount without rm
    await Deno.writeTextFile(plain, "");
    const cases: [string, number][] = [
      ["relative/ns", 4],
      [dir, 4],
      [plain, 4],
      [`/${"x".repeat(5000)}`, 4],
      [`${dir}/gone`, 3],
      ["/proc/self/ns/net", 0],
    ];
    for (const [netns, want] of cases) {
      for (const verb of ["ADD", "CHECK"] as const) {
        assert.equal(
          code(() => requestFromEnv(verb, { ...base, CNI_NETNS: netns })),
          want,
          `${verb} ${netns.slice(0, 40)}`,
        );
      }
    }
    assert.equal(requestFromEnv("DEL", { ...base, CNI_NETNS: plain }).netns, "");
    assert.equal(requestFromEnv("DEL", { ...base, CNI_NETNS: `${dir}/gone` }).netns, "");
    assert.equal(
      requestFromEnv("DEL", { ...base, CNI_NETNS: "/proc/self/ns/net" }).netns,
      "/proc/self/ns/net",
    );
    assert.equal(code(() => requestFromEnv("DEL", { ...base, CNI_NETNS: "rel" })), 4);
    // The one ifname rule, and container IDs longer than file names allow.
    assert.equal(
      code(() => requestFromEnv("ADD", { ...base, CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0%d" })),
      4,
    );
    assert.equal(code(() => requestFromEnv("DEL", { ...base, CNI_CONTAINERID: "a".repeat(250) })), 4);
    assert.equal(code(() => requestFromEnv("DEL", { ...base, CNI_CONTAINERID: "a".repeat(200) })), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pod annotation: ipinfos ignored by overlay plugins; IgnoreUnknown, K8S_* and >16 KiB refused at ADD", () => {
  const args: [string, string][] = [["ipinfos", '[{"ip":"198.18.0.5/21","vlan":0}]']];
  assert.equal(parseIpInfos({ args, config: { type: "galaxy-veth" } }), undefined);
  assert.equal(parseIpInfos({ args, config: { type: "galaxy-k8s-vlan" } })?.[0].ip, "198.18.0.5/21");
  assert.throws(() => parseGalaxyArgs('{"common":{"IgnoreUnknown":"0"}}'), (e: CniError) => e.code === 7);
  assert.throws(() => parseGalaxyArgs('{"common":{"k8s_pod_name":"x"}}'), (e: CniError) => e.code === 7);
  assert.throws(
    () => parseGalaxyArgs(JSON.stringify({ common: { big: "x".repeat(200 * 1024) } })),
    (e: CniError) => e.code === 7,
  );
  assert.equal(parseGalaxyArgs('{"common":{"ipinfos":[{"ip":"198.18.0.5/21"}]}}').length, 1);
});

// ---------------------------------------------------------------------------------------------------------
// The handler with a shell plugin: ADD makes `<held>/<cid>-<ifname>`, DEL removes it.

function wire(
  command: string,
  env: Record<string, string>,
  config: unknown = { cniVersion: "1.1.0", name: "galaxy-sdn", type: "galaxy-sdn" },
): string {
  return JSON.stringify({
    env: { CNI_COMMAND: command, CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", ...env },
    config: encodeBase64(new TextEncoder().encode(JSON.stringify(config))),
  });
}

async function listDir(path: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(path)) names.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names.sort();
}

Deno.test('socket body: a config that is not an object (1, [], null, "s") and a null body are code 6, nothing created', async () => {
  await withShellHandler([{ name: "net" }], async (ctx, dir) => {
    for (const config of [1, [], null, "s"]) {
      const reply = await handleCni(ctx, wire("ADD", { CNI_CONTAINERID: "c1" }, config));
      assert.equal(reply.status, 400, reply.body);
      assert.equal(JSON.parse(reply.body).code, 6, reply.body);
    }
    for (const body of ["null", "1", "[]", '{"env":null}', '{"env":{"CNI_COMMAND":1}}']) {
      const reply = await handleCni(ctx, body);
      assert.equal(JSON.parse(reply.body).code, 6, `${body}: ${reply.body}`);
    }
    assert.deepEqual(await listDir(`${dir}/held`), []);
    assert.deepEqual(await listDir(ctx.stateDir), []);
  });
});

Deno.test("pod names: K8S_POD_NAME '..' or a namespace with '/' is code 4 before the pod source is asked", async () => {
  const asked: string[] = [];
  const pods: PodSource = {
    getPod: (ns, name) => {
      asked.push(`${ns}/${name}`);
      return Promise.resolve({ metadata: { namespace: ns, name } });
    },
    setNetworkStatus: () => Promise.resolve(),
    notReadyReason: () => undefined,
  };
  await withShellHandler([{ name: "net" }], async (ctx) => {
    for (
      const args of [
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=..",
        "K8S_POD_NAMESPACE=a/b;K8S_POD_NAME=p",
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p/../x",
      ]
    ) {
      const reply = await handleCni(ctx, wire("ADD", { CNI_CONTAINERID: "c1", CNI_ARGS: args }));
      assert.equal(JSON.parse(reply.body).code, 4, reply.body);
    }
    assert.deepEqual(asked, []);
    const ok = await handleCni(
      ctx,
      wire("ADD", { CNI_CONTAINERID: "c1", CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p.1" }),
    );
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(asked, ["default/p.1"]);
    assert.equal((await handleCni(ctx, wire("DEL", { CNI_CONTAINERID: "c1" }))).status, 200);
  }, pods);
});

Deno.test("hijack: an ipinfos address another pod holds is refused naming that pod; nothing is created", async () => {
  const annotations: Record<string, string> = {};
  const pods: PodSource = {
    getPod: (ns, name) =>
      Promise.resolve({
        metadata: {
          namespace: ns,
          name,
          annotations:
            (annotations[name] ? { "k8s.v1.cni.galaxy.io/args": annotations[name] } : {}) as Record<
              string,
              string
            >,
        },
      }),
    setNetworkStatus: () => Promise.resolve(),
    notReadyReason: () => undefined,
  };
  // An "underlay" network of a plugin that honours ipinfos (the shell plugin stands in for it).
  await withShellHandler([{ name: "under", addr: "198.18.0.5/21" }], async (ctx, dir) => {
    const victim = await handleCni(
      ctx,
      wire("ADD", { CNI_CONTAINERID: "victim", CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=victim" }),
    );
    assert.equal(victim.status, 200, victim.body);
    annotations.attacker = '{"common":{"ipinfos":[{"ip":"198.18.0.5/21","vlan":0}]}}';
    const attack = await handleCni(
      ctx,
      wire("ADD", { CNI_CONTAINERID: "attacker", CNI_ARGS: "K8S_POD_NAMESPACE=evil;K8S_POD_NAME=attacker" }),
    );
    const err = JSON.parse(attack.body);
    assert.equal(err.code, 7, attack.body);
    assert.match(err.msg, /198\.18\.0\.5 is held by pod default\/victim/);
    assert.deepEqual(await listDir(`${dir}/held`), ["victim-eth0"]);
    assert.equal(await readState(ctx.stateDir, "attacker"), undefined);
    // Another address is fine.
    annotations.attacker = '{"common":{"ipinfos":[{"ip":"198.18.0.6/21","vlan":0}]}}';
    const fine = await handleCni(
      ctx,
      wire("ADD", { CNI_CONTAINERID: "attacker", CNI_ARGS: "K8S_POD_NAMESPACE=evil;K8S_POD_NAME=attacker" }),
    );
    assert.equal(fine.status, 200, fine.body);
  }, pods);
});

Deno.test("DEL queue: queued during an outage, run by the daemon at start, nothing left; a failing one stays", async () => {
  await withShellHandler([{ name: "net" }], async (ctx, dir) => {
    const add = await handleCni(ctx, wire("ADD", { CNI_CONTAINERID: "gone1" }));
    assert.equal(add.status, 200, add.body);
    assert.deepEqual(await listDir(`${dir}/held`), ["gone1-eth0"]);
    // What the shim writes when the socket does not answer.
    await queueDel(
      ctx.stateDir,
      "gone1",
      wire("DEL", { CNI_CONTAINERID: "gone1", CNI_NETNS: `${dir}/netns-gone` }),
    );
    await queueDel(ctx.stateDir, "bad1", "not json");
    const outcome = await runQueuedDels(ctx);
    assert.deepEqual(outcome.done.sort(), ["bad1", "gone1"]);
    assert.deepEqual(await listDir(`${dir}/held`), []);
    assert.equal(await readState(ctx.stateDir, "gone1"), undefined);
    assert.deepEqual(await listDir(`${ctx.stateDir}/del-queue`), []);
    // A DEL that fails (state file unreadable) stays queued for the next start.
    await Deno.writeTextFile(`${ctx.stateDir}/stuck1`, "{corrupt");
    await queueDel(ctx.stateDir, "stuck1", wire("DEL", { CNI_CONTAINERID: "stuck1" }));
    const again = await drainDelQueue(
      ctx.stateDir,
      async ({ body }) => (await handleCni(ctx, body)).status === 200,
    );
    assert.deepEqual(again, { done: [], kept: ["stuck1"] });
    assert.deepEqual(await listDir(`${ctx.stateDir}/del-queue`), ["stuck1"]);
  });
});

Deno.test("lost state file: DEL succeeds and a later ADD of the same ID starts clean", async () => {
  await withShellHandler([{ name: "net" }], async (ctx) => {
    await writeState(ctx.stateDir, "c2", []);
    assert.equal((await handleCni(ctx, wire("DEL", { CNI_CONTAINERID: "c2" }))).status, 200);
    assert.equal(await readState(ctx.stateDir, "c2"), undefined);
  });
});

Deno.test("server: a body over 1 MiB gets 413 and code 6 without being buffered; the daemon stays healthy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-faults-" });
  let handled = 0;
  const server = startServer({
    cni: () => {
      handled++;
      return Promise.resolve({ status: 200, body: "" });
    },
    notReadyReason: () => undefined,
  }, { socketPath: `${dir}/run/galaxy.sock`, maxConcurrent: 2, bodyTimeoutMs: 300 });
  try {
    const socket = `${dir}/run/galaxy.sock`;
    assert.equal((await Deno.stat(socket)).mode! & 0o777, 0o600);
    assert.deepEqual(await listDir(`${dir}/run`), ["galaxy.sock"], "the private bind folder is gone");
    const big = "x".repeat(1024 * 1024 + 1);
    const r = await requestDaemon(socket, "/cni", { method: "POST", body: big, timeoutMs: 10_000 });
    assert.equal(r.status, 413);
    assert.equal(JSON.parse(r.body).code, 6);
    const small = await requestDaemon(socket, "/cni", { method: "POST", body: "{}", timeoutMs: 10_000 });
    assert.equal(small.status, 200);
    assert.equal(handled, 1);
    // A body that stops half-way is answered 408 after the body deadline.
    const conn = await Deno.connect({ transport: "unix", path: socket });
    await conn.write(
      new TextEncoder().encode("POST /cni HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"),
    );
    const buf = new Uint8Array(512);
    const n = await conn.read(buf);
    assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 408/);
    conn.close();
    assert.equal((await requestDaemon(socket, "/healthz", { timeoutMs: 5000 })).status, 200);
  } finally {
    await server.shutdown(2000);
    await server.finished;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("socket mode: under umask 000 the socket never appears with a mode other than 0600", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-faults-" });
  try {
    const socket = `${dir}/galaxy.sock`;
    // A watcher in another process polls the path while the server binds under umask 000.
    const script = `${dir}/serve.ts`;
    await Deno.writeTextFile(
      script,
      `import { startServer } from "${REPO_ROOT}/daemon/server.ts";
const s = startServer({ cni: () => Promise.resolve({ status: 200, body: "" }), notReadyReason: () => undefined },
  { socketPath: ${JSON.stringify(socket)}, maxConcurrent: 1 });
console.log("up");
await s.shutdown(100);
`,
    );
    const watcher = new Deno.Command("sh", {
      args: [
        "-c",
        `end=$(($(date +%s)+20)); while [ $(date +%s) -lt $end ]; do m=$(stat -c %a ${socket} 2>/dev/null) && { echo $m; exit 0; }; done; echo none`,
      ],
      stdout: "piped",
    }).spawn();
    const r = await runCommand("sh", [
      "-c",
      `umask 000; exec '${Deno.execPath()}' run -A --quiet --config '${REPO_ROOT}/deno.json' '${script}'`,
    ]);
    assert.equal(r.stdout.trim(), "up", r.stderr);
    const seen = new TextDecoder().decode((await watcher.output()).stdout).trim();
    assert.ok(seen === "600" || seen === "none", `the socket was seen with mode ${seen}`);
    const leftovers = (await listDir(dir)).filter((n) => n.startsWith(".galaxy-sock-"));
    assert.deepEqual(leftovers, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fork bomb in process: a built-in run inside the daemon whose ipam is itself is refused (code 7)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-faults-" });
  let calls = 0;
  // A built-in that delegates its IPAM as the real ones do: through execVerb with its request's environment.
  const looping: Plugin = {
    name: "loopy",
    async add(req) {
      calls++;
      await execVerb("ADD", req.config, {
        containerId: req.containerId,
        netns: req.netns,
        ifname: req.ifname,
      }, {
        path: req.path,
        env: req.env,
        pluginType: (req.config.ipam as { type: string }).type,
      });
      return { cniVersion: "1.1.0" };
    },
    del: () => Promise.resolve(),
  };
  try {
    await Deno.writeTextFile(`${dir}/loopy`, "#!/bin/sh\necho executed >&2; exit 1\n", { mode: 0o755 });
    await configureInProcessPlugins({ loopy: () => Promise.resolve(looping) });
    const conf = { cniVersion: "1.0.0", name: "n", type: "loopy", ipam: { type: "loopy" } };
    await assert.rejects(
      execVerb("ADD", conf, { containerId: "inproc1", netns: "/proc/self/ns/net", ifname: "eth0" }, {
        path: [dir],
        env: {},
      }),
      (e: CniError) => e.code === 7 && /loopy/.test(e.message),
    );
    assert.equal(calls, 1, "the plugin ran again inside itself");
  } finally {
    await configureInProcessPlugins({});
    await Deno.remove(dir, { recursive: true });
  }
});
