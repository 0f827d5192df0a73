import assert from "node:assert/strict";
import { parseGalaxyConfig } from "../../daemon/config.ts";
import { GarbageCollector, type GcOptions } from "../../daemon/gc.ts";
import { type HandlerContext, releaseFromState } from "../../daemon/handler.ts";
import { Counters } from "../../daemon/metrics.ts";
import { CriClient } from "../../daemon/cri.ts";
import { type StoredNetwork, writeState } from "../../daemon/state.ts";
import { startFakeCri } from "../helpers/fake_cri.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import { kernelSkipReason, type Lab, pathExists, runCommand, withLab } from "../helpers/netns.ts";

const GRACE = 60_000;

function cid(prefix: string): string {
  return prefix.padEnd(64, "0");
}

const DEAD = cid("dead00001");
const LIVE = cid("a11e00001");
const FRESH = cid("f5e500001");
const BUSY = cid("b05e00001");

interface Scene {
  lab: Lab;
  stateDir: string;
  ipDir: string;
  flannelDir: string;
  portDir: string;
  record: string;
  ctx: HandlerContext;
}

async function scene(lab: Lab): Promise<Scene> {
  const s: Scene = {
    lab,
    stateDir: `${lab.dir}/state`,
    ipDir: `${lab.dir}/ipam/net1`,
    flannelDir: `${lab.dir}/flannel`,
    portDir: `${lab.dir}/state/port`,
    record: `${lab.dir}/calls.jsonl`,
    ctx: undefined as unknown as HandlerContext,
  };
  for (const d of [s.stateDir, s.ipDir, s.flannelDir, s.portDir]) await Deno.mkdir(d, { recursive: true });
  const fakes = await writeFakePlugins(`${lab.dir}/plugins`, ["recorder"]);
  s.ctx = {
    config: parseGalaxyConfig('{"NetworkConf":[],"DefaultNetworks":[]}', "galaxy.json"),
    confDir: `${lab.dir}/net.d`,
    cniPaths: [fakes],
    stateDir: s.stateDir,
    log: { info: () => {}, warn: () => {}, v: () => {} },
    pluginEnv: Deno.env.toObject(),
  };
  return s;
}

const old = new Date(Date.now() - 2 * GRACE);

/** Gives a container every kind of leftover: state file, host-local IP file, flannel file, port file, veth. */
async function leftovers(
  s: Scene,
  id: string,
  ip: string,
  options: { fresh?: boolean; pod?: string; netns?: string } = {},
): Promise<void> {
  const stored: StoredNetwork[] = [{
    NetworkType: "net1",
    Args: { IgnoreUnknown: "1" },
    Conf: { cniVersion: "1.1.0", name: "net1", type: "recorder", recordFile: s.record },
    IfName: "eth0",
    Result: { cniVersion: "1.1.0", ips: [{ address: `${ip}/24` }] },
    Runtime: {
      netns: options.netns ?? `/var/run/netns/${s.lab.prefix}-gone-${id.slice(0, 4)}`,
      args: {
        K8S_POD_NAMESPACE: "default",
        K8S_POD_NAME: options.pod ?? `pod-${id.slice(0, 4)}`,
        K8S_POD_UID: "u1",
      },
      path: s.ctx.cniPaths,
    },
  }];
  await writeState(s.stateDir, id, stored);
  await Deno.writeTextFile(`${s.ipDir}/${ip}`, `${id}\neth0`);
  await Deno.writeTextFile(`${s.flannelDir}/${id}`, "{}");
  await Deno.writeTextFile(`${s.portDir}/${id}`, "[]");
  if (!options.fresh) {
    for (
      const p of [`${s.stateDir}/${id}`, `${s.ipDir}/${ip}`, `${s.flannelDir}/${id}`, `${s.portDir}/${id}`]
    ) {
      await Deno.utime(p, old, old);
    }
  }
  await s.lab.ip(s.lab.node, [
    "link",
    "add",
    `v-h${id.slice(0, 9)}`,
    "type",
    "veth",
    "peer",
    "name",
    `p-${id.slice(0, 9)}`,
  ]);
}

function gcOptions(s: Scene, extra: Partial<GcOptions>): GcOptions {
  return {
    stateDir: s.stateDir,
    ipDirs: [s.ipDir],
    gcDirs: [s.flannelDir, s.stateDir, s.portDir],
    intervalMs: 1000,
    graceMs: GRACE,
    releaseState: (id) => releaseFromState(s.ctx, id),
    isBusy: () => false,
    busyContainers: () => [],
    withLock: (_id, fn) => fn(),
    log: { info: () => {}, warn: () => {}, v: () => {} },
    hostNetns: s.lab.node.path,
    ...extra,
  };
}

async function has(s: Scene, id: string, ip: string) {
  return {
    state: await pathExists(`${s.stateDir}/${id}`),
    ip: await pathExists(`${s.ipDir}/${ip}`),
    flannel: await pathExists(`${s.flannelDir}/${id}`),
    port: await pathExists(`${s.portDir}/${id}`),
    veth: (await s.lab.linkNames(s.lab.node)).includes(`v-h${id.slice(0, 9)}`),
  };
}

const ALL = { state: true, ip: true, flannel: true, port: true, veth: true };
const NONE = { state: false, ip: false, flannel: false, port: false, veth: false };

function gcTest(name: string, fn: () => Promise<void>): void {
  const reason = kernelSkipReason();
  if (reason) console.log(`skipping "${name}": ${reason}`);
  // grpc-js keeps channel timers briefly after close; everything opened is closed by the test.
  Deno.test({ name, ignore: reason !== undefined, sanitizeOps: false, sanitizeResources: false, fn });
}

gcTest(
  "gc: what the runtime no longer lists goes after the grace period; live, fresh and busy stay",
  async () => {
    await withLab("gccri", async (lab) => {
      const s = await scene(lab);
      const cri = await startFakeCri(`${lab.dir}/cri.sock`, [
        { id: LIVE, pod: { namespace: "default", name: "live", uid: "u1" } },
      ]);
      const client = new CriClient(`unix://${lab.dir}/cri.sock`, { timeoutMs: 3000 });
      try {
        await leftovers(s, DEAD, "198.18.30.2");
        await leftovers(s, LIVE, "198.18.30.3");
        await leftovers(s, FRESH, "198.18.30.4", { fresh: true });
        await leftovers(s, BUSY, "198.18.30.5");
        const released: { id: string; file: string; existed: boolean }[] = [];
        const counters = new Counters();
        let now = Date.now();
        const gc = new GarbageCollector(gcOptions(s, {
          cri: client,
          counters,
          now: () => now,
          isBusy: (id) => id === BUSY,
          busyContainers: () => [BUSY],
          releasePorts: async (id, file) => {
            released.push({ id, file, existed: await pathExists(file) });
          },
        }));

        const files = await gc.collectFiles();
        assert.equal(files.source, "runtime");
        assert.deepEqual(files.errors, []);
        assert.deepEqual(files.busy, [BUSY]);
        // The dead container's network went through its plugins' DEL, with the runtime arguments of its ADD.
        const calls = await readCalls(s.record);
        assert.deepEqual(calls.map((c) => `${c.verb} ${c.env.CNI_CONTAINERID}`), [`DEL ${DEAD}`]);
        assert.match(calls[0].env.CNI_ARGS, /K8S_POD_NAME=pod-dead/);
        assert.equal(calls[0].env.CNI_NETNS ?? "", "", "a namespace that is gone is not passed");
        // Port mappings were released before their files went (the hook saw each file still there).
        assert.deepEqual(
          released.map((r) => [r.id, r.file.slice(lab.dir.length), r.existed]),
          [[DEAD, `/flannel/${DEAD}`, true], [DEAD, `/state/port/${DEAD}`, true]],
        );
        assert.deepEqual(await has(s, DEAD, "198.18.30.2"), { ...NONE, veth: true }, "files of the dead one");
        assert.deepEqual(await has(s, LIVE, "198.18.30.3"), ALL);
        assert.deepEqual(await has(s, FRESH, "198.18.30.4"), ALL);
        assert.deepEqual(await has(s, BUSY, "198.18.30.5"), ALL);

        // A veth has no age: the first pass that sees it dead only notes the time.
        const first = await gc.collectVeths();
        assert.deepEqual(first.removed, []);
        now += GRACE + 1000;
        // FRESH is still being set up at the later time: its state file was just rewritten.
        await Deno.utime(`${s.stateDir}/${FRESH}`, new Date(now), new Date(now));
        const second = await gc.collectVeths();
        assert.deepEqual(second.errors, []);
        assert.deepEqual(second.removed, [`v-h${DEAD.slice(0, 9)}`]);
        assert.equal((await has(s, FRESH, "198.18.30.4")).veth, true, "a fresh container keeps its veth");
        assert.deepEqual(await has(s, DEAD, "198.18.30.2"), NONE, "the dead one's veth");
        assert.equal((await has(s, LIVE, "198.18.30.3")).veth, true);
        assert.equal((await has(s, BUSY, "198.18.30.5")).veth, true, "a busy container keeps its veth");

        assert.equal(cri.listCalls(), 3, "one ListPodSandbox per pass");
        assert.equal(
          counters.get("galaxy_gc_removed_total", {
            kind: "ip-file",
            reason: "the runtime no longer lists its sandbox",
          }),
          1,
        );
        assert.equal(
          counters.get("galaxy_gc_removed_total", {
            kind: "veth",
            reason: "the runtime no longer lists its sandbox",
          }),
          1,
        );
        assert.equal(counters.get("galaxy_gc_skipped_total", { why: "busy" }), 1);
        assert.match(
          counters.render(),
          /galaxy_gc_removed_total\{kind="state",reason="the runtime no longer lists its sandbox"\} 1/,
        );
      } finally {
        client.close();
        await cri.stop();
      }
    });
  },
);

gcTest("gc: with the runtime unreachable, the apiserver's pods and the pod's netns decide", async () => {
  await withLab("gcapi", async (lab) => {
    const s = await scene(lab);
    const alive = await lab.pod("alive");
    const GONE = cid("90e000001");
    const STAYS = cid("57a900001");
    const NETNS = cid("4e7000001");
    await leftovers(s, GONE, "198.18.31.2", { pod: "gone" });
    await leftovers(s, STAYS, "198.18.31.3", { pod: "stays" });
    await leftovers(s, NETNS, "198.18.31.4", { pod: "netns", netns: alive.path });
    const client = new CriClient(`unix://${lab.dir}/absent.sock`, { timeoutMs: 2000 });
    try {
      const pods = { nodePodUids: () => new Map([["default/stays", { uid: "u1" }]]) };
      const gc = new GarbageCollector(gcOptions(s, { cri: client, pods }));
      const report = await gc.collectFiles();
      assert.equal(report.source, "apiserver");
      assert.deepEqual(report.errors, []);
      assert.deepEqual(await has(s, GONE, "198.18.31.2"), { ...NONE, veth: true }, "pod gone, netns gone");
      assert.deepEqual(await has(s, STAYS, "198.18.31.3"), ALL, "pod still on the node");
      assert.deepEqual(await has(s, NETNS, "198.18.31.4"), ALL, "pod gone but its netns still exists");
      // Not synced yet: nothing is decided.
      await leftovers(s, cid("77770001"), "198.18.31.5", { pod: "other" });
      const unsynced = new GarbageCollector(
        gcOptions(s, { cri: client, pods: { nodePodUids: () => undefined } }),
      );
      const none = await unsynced.collectFiles();
      assert.equal(none.source, "none");
      assert.deepEqual(none.removed, []);
    } finally {
      client.close();
    }
  });
});

gcTest(
  "gc: host-local's lock is held while its files are removed; a racing host-local ADD keeps its IP",
  async () => {
    await withLab("gclock", async (lab) => {
      const s = await scene(lab);
      // Every address of a tiny range held by dead containers.
      const ips = ["198.18.32.1", "198.18.32.2", "198.18.32.3", "198.18.32.4", "198.18.32.5", "198.18.32.6"];
      for (const [i, ip] of ips.entries()) {
        await Deno.writeTextFile(`${s.ipDir}/${ip}`, `${cid(`dead0000${i}`)}\neth0`);
        await Deno.utime(`${s.ipDir}/${ip}`, old, old);
      }
      await Deno.writeTextFile(`${s.ipDir}/lock`, "");
      const cri = await startFakeCri(`${lab.dir}/cri.sock`, []);
      const client = new CriClient(`unix://${lab.dir}/cri.sock`, { timeoutMs: 3000 });
      try {
        // util-linux flock(1) holds the same flock(2) host-local takes: the GC must wait for it.
        const holder = new Deno.Command("flock", {
          args: [`${s.ipDir}/lock`, "-c", "sleep 1.5"],
          stdout: "null",
          stderr: "null",
        }).spawn();
        await new Promise((r) => setTimeout(r, 200));
        const gc = new GarbageCollector(gcOptions(s, { cri: client }));
        const started = Date.now();
        const pass = gc.collectFiles();
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(
          await pathExists(`${s.ipDir}/${ips[0]}`),
          true,
          "removed while another process held the lock",
        );
        const report = await pass;
        await holder.status;
        assert.ok(
          Date.now() - started >= 1000,
          `the pass did not wait for the lock (${Date.now() - started} ms)`,
        );
        assert.equal(report.removed.length, ips.length);

        // Now race a real host-local ADD against a pass over the same full range.
        for (const [i, ip] of ips.entries()) {
          await Deno.writeTextFile(`${s.ipDir}/${ip}`, `${cid(`dead1000${i}`)}\neth0`);
          await Deno.utime(`${s.ipDir}/${ip}`, old, old);
        }
        const conf = {
          cniVersion: "1.0.0",
          name: "net1",
          type: "host-local",
          ipam: { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[{ subnet: "198.18.32.0/29" }]] },
        };
        const NEW = cid("c0ffee001");
        const results = await Promise.all([
          gc.collectFiles(),
          (async () => {
            for (let i = 0; i < 40; i++) {
              const r = await runCommand("/usr/lib/cni/host-local", [], {
                stdin: JSON.stringify(conf),
                env: {
                  CNI_COMMAND: "ADD",
                  CNI_CONTAINERID: NEW,
                  CNI_NETNS: "/x",
                  CNI_IFNAME: "eth0",
                  CNI_PATH: "/usr/lib/cni",
                },
              });
              if (r.code === 0) return JSON.parse(r.stdout).ips[0].address.split("/")[0] as string;
              await new Promise((res) => setTimeout(res, 10));
            }
            return undefined;
          })(),
        ]);
        const got = results[1];
        assert.ok(got, "host-local never got an address while the GC freed the range");
        assert.equal(
          (await Deno.readTextFile(`${s.ipDir}/${got}`)).split("\n")[0].trim(),
          NEW,
          "the GC took a new IP",
        );
      } finally {
        client.close();
        await cri.stop();
      }
    });
  },
);
