import assert from "node:assert/strict";
import { CriClient } from "../../daemon/cri.ts";
import { GarbageCollector, type GcOptions, MAX_DEL_ATTEMPTS } from "../../daemon/gc.ts";
import { deadVeths, vethContainerPrefix } from "../../daemon/gc_veths.ts";
import { eniVethName } from "../../cni/plugins/kit/names.ts";
import { Liveness } from "../../daemon/liveness.ts";
import { Counters } from "../../daemon/metrics.ts";
import { type StoredNetwork, writeState } from "../../daemon/state.ts";
import { type FakeCri, startFakeCri } from "../helpers/fake_cri.ts";
import { pathExists } from "../helpers/netns.ts";

// grpc-js keeps channel timers briefly after close; every client and server is closed by the tests.
const opts = { sanitizeOps: false, sanitizeResources: false };
const GRACE = 60_000;
const old = new Date(Date.now() - 2 * GRACE);

function cid(prefix: string): string {
  return prefix.padEnd(64, "0");
}

async function withRuntime(
  fn: (dir: string, cri: FakeCri, client: CriClient) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-gc-" });
  const cri = await startFakeCri(`${dir}/cri.sock`, []);
  const client = new CriClient(`unix://${dir}/cri.sock`, { timeoutMs: 3000 });
  try {
    await fn(dir, cri, client);
  } finally {
    client.close();
    await cri.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function stored(pod: string): StoredNetwork[] {
  return [{
    NetworkType: "net1",
    Args: {},
    Conf: { cniVersion: "1.1.0", name: "net1", type: "x" },
    IfName: "eth0",
    Runtime: { netns: "", args: { K8S_POD_NAMESPACE: "default", K8S_POD_NAME: pod }, path: [] },
  }];
}

function options(dir: string, extra: Partial<GcOptions>): GcOptions {
  return {
    stateDir: `${dir}/state`,
    ipDirs: [`${dir}/ipam`],
    gcDirs: [`${dir}/flannel`],
    intervalMs: 1000,
    graceMs: GRACE,
    releaseState: () => Promise.resolve(false),
    isBusy: () => false,
    busyContainers: () => [],
    withLock: (_id, fn) => fn(),
    log: { info: () => {}, warn: () => {}, v: () => {} },
    ...extra,
  };
}

async function oldFile(path: string, text: string): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, text);
  await Deno.utime(path, old, old);
}

Deno.test("gc: veth names carry the container prefix of v-h<cid9>[-suffix] only", () => {
  assert.equal(vethContainerPrefix("v-hdead00001"), "dead00001");
  assert.equal(vethContainerPrefix("v-hdead00001-l0"), "dead00001");
  assert.equal(vethContainerPrefix("v-hdead00001-u1"), "dead00001");
  assert.equal(vethContainerPrefix("v-ha-b-c"), undefined);
  assert.equal(vethContainerPrefix("veth1234"), undefined);
  assert.equal(vethContainerPrefix("v-h"), undefined);
});

Deno.test({
  name:
    "gc: a failing DEL keeps every file of the container for a retry, and after 5 tries the state is set aside",
  ...opts,
  async fn() {
    await withRuntime(async (dir, _cri, client) => {
      const id = cid("dead00001");
      await writeState(`${dir}/state`, id, stored("web"));
      await Deno.utime(`${dir}/state/${id}`, old, old);
      await oldFile(`${dir}/ipam/198.18.90.2`, `${id}\neth0`);
      await oldFile(`${dir}/flannel/${id}`, "{}");
      let attempts = 0;
      const counters = new Counters();
      const gc = new GarbageCollector(options(dir, {
        cri: client,
        counters,
        releaseState: () => {
          attempts++;
          return Promise.reject(new Error("plugin vlan: device busy"));
        },
      }));
      for (let i = 1; i < MAX_DEL_ATTEMPTS; i++) {
        const report = await gc.collectFiles();
        assert.equal(report.errors.length, 1);
        assert.match(report.errors[0], new RegExp(`DEL attempt ${i}\\).*device busy`));
        assert.ok(await pathExists(`${dir}/state/${id}`));
        assert.ok(
          await pathExists(`${dir}/ipam/198.18.90.2`),
          "the IP file went while DEL could still succeed",
        );
        assert.ok(
          await pathExists(`${dir}/flannel/${id}`),
          "flannel's file went while its DEL may still need it",
        );
      }
      const last = await gc.collectFiles();
      assert.equal(attempts, MAX_DEL_ATTEMPTS);
      assert.equal(await pathExists(`${dir}/state/${id}`), false);
      const aside = [...Deno.readDirSync(`${dir}/state`)].map((e) => e.name);
      assert.equal(aside.length, 1);
      assert.match(aside[0], new RegExp(`^\\.gc-failed-${id}-\\d+$`));
      assert.equal(await pathExists(`${dir}/ipam/198.18.90.2`), false);
      assert.equal(await pathExists(`${dir}/flannel/${id}`), false);
      assert.ok(last.removed.some((r) => r.endsWith(`/state/${id}`)));
      assert.equal(counters.get("galaxy_gc_errors_total", { kind: "state" }), MAX_DEL_ATTEMPTS);
      // The set-aside file is never read as state again.
      assert.deepEqual((await gc.collectFiles()).removed, []);
    });
  },
});

Deno.test({
  name: "gc: a port release that fails keeps the port file; host-local's lock and last_reserved_ip stay",
  ...opts,
  async fn() {
    await withRuntime(async (dir, _cri, client) => {
      const id = cid("dead00002");
      await oldFile(`${dir}/flannel/${id}`, "{}");
      await oldFile(`${dir}/ipam/198.18.90.3`, `${id}\r\neth0`);
      await oldFile(`${dir}/ipam/last_reserved_ip.0`, "198.18.90.3");
      await oldFile(`${dir}/ipam/lock`, "");
      const gc = new GarbageCollector(options(dir, {
        cri: client,
        releasePorts: () => Promise.reject(new Error("iptables-restore: exit 4")),
      }));
      const report = await gc.collectFiles();
      assert.equal(report.errors.length, 1);
      assert.match(report.errors[0], /port mappings not released.*iptables-restore/);
      assert.ok(await pathExists(`${dir}/flannel/${id}`));
      assert.equal(await pathExists(`${dir}/ipam/198.18.90.3`), false, "a \\r\\n file names its owner too");
      assert.ok(await pathExists(`${dir}/ipam/last_reserved_ip.0`));
      assert.ok(await pathExists(`${dir}/ipam/lock`));
    });
  },
});

Deno.test({
  name: "liveness: READY lives, unlisted is dead, NOTREADY is dead only once its pod is gone; prefixes match",
  ...opts,
  async fn() {
    await withRuntime(async (_dir, cri, client) => {
      cri.set([
        { id: cid("aaaa00001"), pod: { namespace: "default", name: "web", uid: "u1" } },
        { id: cid("bbbb00001"), pod: { namespace: "default", name: "stopped", uid: "u2" }, ready: false },
        { id: cid("cccc00001"), pod: { namespace: "default", name: "old", uid: "u3" }, ready: false },
      ]);
      const pods = { nodePodUids: () => new Map([["default/stopped", { uid: "u2" }]]) };
      const live = await Liveness.take(client, pods);
      assert.equal(live.source, "runtime");
      assert.equal((await live.judge({ id: cid("aaaa00001") })).dead, false);
      assert.equal((await live.judge({ id: "aaaa00001" })).dead, false, "a veth's 9-character prefix");
      assert.deepEqual(await live.judge({ id: cid("dddd00001") }), {
        dead: true,
        reason: "the runtime no longer lists its sandbox",
      });
      assert.equal((await live.judge({ id: cid("bbbb00001") })).dead, false, "NOTREADY, pod still there");
      assert.deepEqual(await live.judge({ id: cid("cccc00001") }), {
        dead: true,
        reason: "sandbox not ready and its pod is gone",
      });
      // A container whose ADD named no pod (a runtime outside Kubernetes) is never the CRI's to judge.
      assert.equal((await live.judge({ id: cid("dddd00001"), notAPod: true })).dead, false);
      // Without a pod cache a NOTREADY sandbox cannot be decided: alive.
      const noPods = await Liveness.take(client, undefined);
      assert.equal((await noPods.judge({ id: cid("cccc00001") })).dead, false);
    });
  },
});

Deno.test({
  name:
    "gc: an eni veth goes once no live pod owns it for a grace period; a young state protects its v-h veth",
  ...opts,
  async fn() {
    await withRuntime(async (_dir, cri, client) => {
      cri.set([{ id: cid("aaaa00001"), pod: { namespace: "default", name: "web" } }]);
      const live = await Liveness.take(client, undefined);
      const owned = await eniVethName("default", "web");
      const orphan = await eniVethName("default", "gone");
      const veth = (name: string) => ({
        index: 1,
        name,
        up: true,
        flags: [],
        mtu: 1500,
        operstate: "UP",
        kind: "veth",
      });
      const links = [veth(owned), veth(orphan), veth("v-hbbbb00001"), veth("v-hcccc00001"), {
        ...veth("v-hdddd00001"),
        kind: "bridge",
      }];
      const now = Date.now();
      const states = new Map([[cid("cccc00001"), stored("setting-up")]]);
      const times = new Map([[cid("cccc00001"), now]]);
      const deadSince = new Map<string, number>();
      const input = { live, states, times, deadSince, now, graceMs: GRACE };
      assert.deepEqual(await deadVeths(links, input), [], "nothing is dead the first time it is seen");
      const later = await deadVeths(links, { ...input, now: now + GRACE });
      assert.deepEqual(
        later.map((d) => [d.name, d.reason]).sort(),
        [
          [orphan, "no live pod of this node has this veth"],
          ["v-hbbbb00001", "the runtime no longer lists its sandbox"],
        ].sort(),
      );
    });
  },
});
