/**
 * The benchmark's runtime side, started by `tests/bench/mod.ts` inside the bench's node namespace. It times,
 * in one process and one run, interleaved pod by pod so that the machine's noise hits every target alike:
 * - `galaxy`: Galaxy's own path, libcni-style → galaxy-sdn → the daemon → galaxy-flannel → galaxy-veth +
 *   host-local (the default network of galaxy.json);
 * - `go`: the Go Galaxy's plugin chain galaxy-flannel → galaxy-veth + host-local, executed directly (no Go
 *   shim or daemon in front: a lower bound), when its binaries were found;
 * - `bridge`: Debian's bridge + host-local, executed directly.
 * Then 8-way throughput of each, cold starts, a burst of pods through the daemon (its RSS after it and its
 * process tree's peak during it), and the processes one ADD of each starts (strace). JSON in and out.
 * @module
 */
import { addNetworkList, delNetworkList, execPlugin, type RuntimeConf } from "../../cni/invoke.ts";
import type { NetConfList } from "../../cni/spec.ts";
import { encodeBase64, requestDaemon } from "../../cni/wire.ts";
import { rssKiB, treeMemoryKiB } from "./rss.ts";

/** One target: a list and the plugin path it runs with. */
interface Target {
  list: NetConfList;
  path: string[];
}

interface Plan {
  pods: string[];
  sequentialPods: number;
  runs: number;
  targets: Record<string, Target>;
  shimDir: string;
  standardDir: string;
  cacheDir: string;
  socket: string;
  daemonPid: number;
  burst: number;
  emptyDeno: string;
  /** Where the Go chain's host-local (which ignores any dataDir: flannel 0.8.0 replaces ipam) writes. */
  goVarLib?: { from: string; onto: string; hostMountNs: string };
}

const plan = JSON.parse(await new Response(Deno.stdin.readable).text()) as Plan;

/**
 * Pod `i`'s attachment, container ID `<prefix><i>c0ffee00` (the first 9 characters name galaxy-veth's host end, so
 * prefixes are short and distinct).
 */
function rt(i: number, prefix: string, target = "galaxy"): RuntimeConf {
  const slot = Object.keys(plan.targets).indexOf(target) * plan.sequentialPods;
  return {
    containerId: `${prefix}${String(i).padStart(4, "0")}c0ffee00`, // Go's galaxy-veth needs ≥ 9 characters
    netns: plan.pods[(slot + i) % plan.pods.length],
    ifname: "eth0",
    args: [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "bench"], ["K8S_POD_NAME", `pod-${i}`]],
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

function options(t: Target) {
  return { path: t.path, cacheDir: plan.cacheDir };
}

type Times = Record<string, { add: number[]; del: number[] }>;

/** One sequential run: pod by pod, each target in turn (rotated per pod), ADD; then the same for DEL. */
async function sequential(run: number, names: string[]): Promise<Times> {
  const times: Times = Object.fromEntries(names.map((n) => [n, { add: [], del: [] }]));
  const prefix = (n: string) => `${n.slice(0, 2)}${run}`;
  for (const verb of ["add", "del"] as const) {
    for (let i = 0; i < plan.sequentialPods; i++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(i + k) % names.length];
        const t = plan.targets[name];
        const r = rt(i, prefix(name), name);
        times[name][verb].push(
          await timed(() =>
            verb === "add" ? addNetworkList(t.list, r, options(t)) : delNetworkList(t.list, r, options(t))
          ),
        );
      }
    }
  }
  return times;
}

/** `width` ADDs at a time of one target over the sequential pods; the wall time, then DEL of them all. */
async function concurrent(name: string, prefix: string, width: number) {
  const t = plan.targets[name];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < plan.sequentialPods) {
      const i = next++;
      await addNetworkList(t.list, rt(i, prefix, name), options(t));
    }
  }));
  const wall = performance.now() - started;
  for (let i = 0; i < plan.sequentialPods; i++) await delNetworkList(t.list, rt(i, prefix, name), options(t));
  return wall;
}

function daemonBody(verb: string, i: number, prefix: string): string {
  const r = rt(i, prefix);
  const env = {
    CNI_COMMAND: verb,
    CNI_CONTAINERID: r.containerId,
    CNI_NETNS: r.netns,
    CNI_IFNAME: r.ifname,
    CNI_ARGS: r.args!.map(([k, v]) => `${k}=${v}`).join(";"),
    CNI_PATH: plan.targets.galaxy.path.join(":"),
  };
  const config = encodeBase64(new TextEncoder().encode(JSON.stringify(plan.targets.galaxy.list.plugins[0])));
  return JSON.stringify({ env, config });
}

/** `burst` ADDs at once straight to the daemon (its tree sampled meanwhile), its RSS after, then the DELs. */
async function burst(prefix: string) {
  let peakKiB = 0;
  let peakRssKiB = 0;
  const sampler = setInterval(() => {
    const m = treeMemoryKiB(plan.daemonPid);
    peakKiB = Math.max(peakKiB, m.pss);
    peakRssKiB = Math.max(peakRssKiB, m.rss);
  }, 20);
  const started = performance.now();
  const replies = await Promise.all(
    Array.from({ length: plan.burst }, (_, i) =>
      requestDaemon(plan.socket, "/cni", {
        method: "POST",
        body: daemonBody("ADD", i, prefix),
        timeoutMs: 180_000,
      })),
  );
  const wall = performance.now() - started;
  clearInterval(sampler);
  const daemonKiB = rssKiB(plan.daemonPid);
  const failed = replies.filter((r) => r.status !== 200).map((r) => r.body.slice(0, 200));
  const dels = await Promise.all(
    Array.from({ length: plan.burst }, (_, i) =>
      requestDaemon(plan.socket, "/cni", {
        method: "POST",
        body: daemonBody("DEL", i, prefix),
        timeoutMs: 180_000,
      })),
  );
  return {
    wall,
    failed,
    delFailed: dels.filter((r) => r.status !== 200).length,
    peakKiB,
    peakRssKiB,
    daemonKiB,
  };
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

/**
 * The processes one ADD of `name` starts: strace follows this process and the daemon while the ADD runs;
 * each process that executes something counts once, by the basename of what it first executed.
 */
async function processesPerAdd(name: string, prefix: string): Promise<Record<string, number>> {
  const t = plan.targets[name];
  const out = `${plan.cacheDir}/strace-${name}`;
  const strace = new Deno.Command("strace", {
    args: [
      "-f",
      "-z",
      "-qq",
      "-e",
      "trace=execve",
      "-o",
      out,
      "-p",
      String(Deno.pid),
      "-p",
      String(plan.daemonPid),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 1500)); // attaching to every thread of two Deno processes
  try {
    await addNetworkList(t.list, rt(0, prefix, name), options(t));
  } finally {
    strace.kill("SIGINT");
    await strace.status;
  }
  await delNetworkList(t.list, rt(0, prefix, name), options(t));
  const byPid = new Map<string, string>();
  for (const line of (await Deno.readTextFile(out)).split("\n")) {
    const m = /^(\d+)\s+execve\("([^"]+)"/.exec(line);
    // The first program a process runs names it (galaxy-sdn's launcher, before it becomes deno).
    if (m && !byPid.has(m[1])) byPid.set(m[1], m[2].slice(m[2].lastIndexOf("/") + 1));
  }
  const counts: Record<string, number> = {};
  for (const exe of byPid.values()) counts[exe] = (counts[exe] ?? 0) + 1;
  return counts;
}

/**
 * The Go chain's host-local writes to /var/lib/cni/networks whatever the configuration says. `ip netns exec`
 * gave this process a mount namespace of its own whose mounts do not propagate to the host's: a bind mount
 * of a lab folder there keeps those files in the lab. Refused (the Go target dropped) when this process
 * shares the bench's mount namespace or its root mount propagates.
 */
async function isolateGoState(): Promise<string | undefined> {
  if (!plan.goVarLib) return undefined;
  if (Deno.readLinkSync("/proc/self/ns/mnt") === plan.goVarLib.hostMountNs) {
    return "the driver shares the bench's mount namespace";
  }
  const root = Deno.readTextFileSync("/proc/self/mountinfo").split("\n").find((l) => l.split(" ")[4] === "/");
  if (!root || / shared:\d+/.test(root)) return "the driver's root mount propagates to the host";
  const { from, onto } = plan.goVarLib;
  const out = await new Deno.Command("mount", { args: ["--bind", from, onto], stderr: "piped" }).output();
  return out.success ? undefined : `mount --bind ${from} ${onto}: ${new TextDecoder().decode(out.stderr)}`;
}

const goSkipped = await isolateGoState();
if (goSkipped) delete plan.targets.go;
const names = Object.keys(plan.targets);
// Warm every path once so that none pays first-run costs (page cache, the daemon's first requests).
await sequential(9, names);
const runs: Times[] = [];
for (let run = 0; run < plan.runs; run++) runs.push(await sequential(run, names));
const eightWay: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
for (let run = 0; run < plan.runs; run++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(run + k) % names.length];
    eightWay[name].push(await concurrent(name, `${name.slice(0, 2)}8${run}`, 8));
  }
}
const processes: Record<string, Record<string, number>> = {};
for (const name of names) processes[name] = await processesPerAdd(name, `${name.slice(0, 2)}px`);
const report = {
  goSkipped,
  names,
  runs,
  eightWay,
  processes,
  coldShim: await coldStarts(`${plan.shimDir}/galaxy-sdn`, 20),
  coldBridge: await coldStarts(`${plan.standardDir}/bridge`, 20),
  coldDeno: await coldStarts(plan.emptyDeno, 20),
  burst: await burst("bu"),
};
console.log(JSON.stringify(report));
