/**
 * The benchmark's runtime side, started by `tests/bench/mod.ts` inside the bench's node namespace. It times, in
 * one process and one run: the reference (Debian's bridge + host-local executed directly, as a runtime would),
 * the same network through galaxy-sdn and the daemon, the daemon alone (its socket, no shim), shim cold starts,
 * 8-way concurrency and a burst. Input and output are JSON on stdin and stdout.
 * @module
 */
import { addNetworkList, delNetworkList, execPlugin, type RuntimeConf } from "../../cni/invoke.ts";
import type { NetConfList } from "../../cni/spec.ts";
import { encodeBase64, requestDaemon } from "../../cni/wire.ts";

interface Plan {
  pods: string[];
  referenceList: NetConfList;
  shimList: NetConfList;
  launcherDir: string;
  standardDir: string;
  cacheDir: string;
  socket: string;
  burst: number;
  emptyDeno: string;
}

const plan = JSON.parse(await new Response(Deno.stdin.readable).text()) as Plan;

/** Pod `i`'s attachment; beyond the number of pod namespaces, interfaces `b<i>` share them (the burst). */
function rt(i: number, prefix: string): RuntimeConf {
  return {
    containerId: `${prefix}-${i}`,
    netns: plan.pods[i % plan.pods.length],
    ifname: i < plan.pods.length ? "eth0" : `b${i}`,
    args: [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "bench"], ["K8S_POD_NAME", `pod-${i}`]],
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function sequential(list: NetConfList, path: string[], prefix: string) {
  const add: number[] = [];
  const del: number[] = [];
  const options = { path, cacheDir: plan.cacheDir };
  for (let i = 0; i < plan.pods.length; i++) {
    add.push(await timed(() => addNetworkList(list, rt(i, prefix), options)));
  }
  for (let i = 0; i < plan.pods.length; i++) {
    del.push(await timed(() => delNetworkList(list, rt(i, prefix), options)));
  }
  return { add, del };
}

async function concurrent(list: NetConfList, path: string[], prefix: string, width: number) {
  const add: number[] = [];
  const options = { path, cacheDir: plan.cacheDir };
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < plan.pods.length) {
      const i = next++;
      add.push(await timed(() => addNetworkList(list, rt(i, prefix), options)));
    }
  }));
  const wall = performance.now() - started;
  for (let i = 0; i < plan.pods.length; i++) await delNetworkList(list, rt(i, prefix), options);
  return { add, wall };
}

function daemonBody(verb: string, i: number, prefix: string): string {
  const r = rt(i, prefix);
  const env = {
    CNI_COMMAND: verb,
    CNI_CONTAINERID: r.containerId,
    CNI_NETNS: r.netns,
    CNI_IFNAME: r.ifname,
    CNI_ARGS: r.args!.map(([k, v]) => `${k}=${v}`).join(";"),
    CNI_PATH: `${plan.launcherDir}:${plan.standardDir}`,
  };
  const config = encodeBase64(new TextEncoder().encode(JSON.stringify(plan.shimList.plugins[0])));
  return JSON.stringify({ env, config });
}

async function daemonOnly(prefix: string) {
  const add: number[] = [];
  for (let i = 0; i < plan.pods.length; i++) {
    add.push(
      await timed(async () => {
        const r = await requestDaemon(plan.socket, "/cni", {
          method: "POST",
          body: daemonBody("ADD", i, prefix),
          timeoutMs: 60_000,
        });
        if (r.status !== 200) throw new Error(`daemon ADD: ${r.body}`);
      }),
    );
  }
  for (let i = 0; i < plan.pods.length; i++) {
    await requestDaemon(plan.socket, "/cni", {
      method: "POST",
      body: daemonBody("DEL", i, prefix),
      timeoutMs: 60_000,
    });
  }
  return { add };
}

async function burst(prefix: string) {
  const started = performance.now();
  const replies = await Promise.all(
    Array.from({ length: plan.burst }, (_, i) =>
      requestDaemon(plan.socket, "/cni", {
        method: "POST",
        body: daemonBody("ADD", i, prefix),
        timeoutMs: 120_000,
      })),
  );
  const wall = performance.now() - started;
  const failed = replies.filter((r) => r.status !== 200).map((r) => r.body.slice(0, 200));
  const dels = await Promise.all(
    Array.from({ length: plan.burst }, (_, i) =>
      requestDaemon(plan.socket, "/cni", {
        method: "POST",
        body: daemonBody("DEL", i, prefix),
        timeoutMs: 120_000,
      })),
  );
  return { wall, failed, delFailed: dels.filter((r) => r.status !== 200).length };
}

async function coldStarts(path: string, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    times.push(
      await timed(async () => {
        const out = await execPlugin(path, { CNI_COMMAND: "VERSION", PATH: Deno.env.get("PATH") ?? "" }, {
          stdin: "{}",
        });
        if (out.code !== 0) throw new Error(`${path} VERSION failed: ${out.stderr}`);
      }),
    );
  }
  return times;
}

const referencePath = [plan.standardDir];
const galaxyPath = [plan.launcherDir, plan.standardDir];
const report = {
  // Warm both paths once so that neither pays first-run costs (page cache, the daemon's version cache).
  warmup: [
    await sequential(plan.referenceList, referencePath, "warm-ref"),
    await sequential(plan.shimList, galaxyPath, "warm-gal"),
  ].length,
  reference: await sequential(plan.referenceList, referencePath, "ref"),
  galaxy: await sequential(plan.shimList, galaxyPath, "gal"),
  daemonOnly: await daemonOnly("dmn"),
  reference8: await concurrent(plan.referenceList, referencePath, "ref8", 8),
  galaxy8: await concurrent(plan.shimList, galaxyPath, "gal8", 8),
  coldShim: await coldStarts(`${plan.launcherDir}/galaxy-sdn`, 20),
  coldBridge: await coldStarts(`${plan.standardDir}/bridge`, 20),
  coldDeno: await coldStarts(plan.emptyDeno, 20),
  burst: await burst("burst"),
};
console.log(JSON.stringify(report));
