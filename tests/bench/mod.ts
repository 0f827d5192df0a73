/**
 * `deno task bench`: Galaxy's own pod path against the Go Galaxy's plugin chain (issue 14) and Debian's bridge
 * + host-local, interleaved in one run (`tests/bench/driver.ts`), each target of the issue printed met or
 * missed; then the network policy scale targets (`tests/bench/policy.ts`) and the compiled executable
 * against an empty compiled program (`./compiled.ts`; `deno task bench compiled` runs only that part).
 * Needs root; everything happens in namespaces it makes and removes, and every file is under the bench's
 * temp folder. `BENCH_PODS` (default 40 sequential pods), `BENCH_RUNS` (default 3; figures are the median
 * of the runs' p50/p99), `BENCH_BURST` (default 200), `BENCH_GO_BIN` (the Go binaries, default
 * `/work/shared/reference/gogalaxy-bin`; the Go target is skipped with a note where they are absent).
 * @module
 */
import { launcherDir, REPO_ROOT } from "../helpers/launchers.ts";
import { kernelSkipReason, withLab } from "../helpers/netns.ts";
import { startDaemon } from "../helpers/daemon.ts";
import { compiledSection, printRows } from "./compiled.ts";
import { benchPolicy, printPolicyRows } from "./policy.ts";
import { rssKiB } from "./rss.ts";

const PODS = Number(Deno.env.get("BENCH_PODS") ?? 40);
const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 3);
const BURST = Number(Deno.env.get("BENCH_BURST") ?? 200);
const GO_BIN = Deno.env.get("BENCH_GO_BIN") ?? "/work/shared/reference/gogalaxy-bin";
const STANDARD = "/usr/lib/cni";

/** The q-quantile (nearest rank) of `values`. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function median(values: number[]): number {
  return quantile(values, 0.5);
}

function ms(v: number): string {
  return `${v.toFixed(1)} ms`;
}

/** A launcher like galaxy-sdn's that runs an empty script: what any Deno process costs here. */
async function writeEmptyDeno(dir: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/empty.ts`, "");
  const path = `${dir}/empty-deno`;
  await Deno.writeTextFile(
    path,
    `#!/bin/bash\nexec '${Deno.execPath()}' run --quiet --no-npm '${dir}/empty.ts'\n`,
    {
      mode: 0o755,
    },
  );
  return path;
}

/** A plugin folder for the Go chain: its galaxy-flannel and galaxy-veth, and Debian's host-local. */
async function goPluginDir(dir: string): Promise<string | undefined> {
  try {
    for (const name of ["galaxy-flannel", "galaxy-veth"]) Deno.statSync(`${GO_BIN}/${name}`);
  } catch {
    return undefined;
  }
  await Deno.mkdir(dir, { recursive: true });
  for (const name of ["galaxy-flannel", "galaxy-veth"]) {
    await Deno.symlink(`${GO_BIN}/${name}`, `${dir}/${name}`);
  }
  await Deno.symlink(`${STANDARD}/host-local`, `${dir}/host-local`);
  return dir;
}

function subnetEnv(subnet: string): string {
  return `FLANNEL_NETWORK=198.18.96.0/20\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`;
}

async function main(): Promise<number> {
  const reason = kernelSkipReason();
  if (reason) {
    console.error(`bench: ${reason}`);
    return 1;
  }
  let failed = 0;
  await withLab("bench", async (lab) => {
    // Each target has its own pod namespaces (two plugins' eth0 and default route would collide in one).
    const nsCount = Math.max(PODS * 3, BURST);
    console.error(
      `bench: ${PODS} pods × ${RUNS} runs, burst of ${BURST}; preparing ${nsCount} namespaces...`,
    );
    const pods: string[] = [];
    for (let i = 0; i < nsCount; i++) pods.push((await lab.pod(`p${i}`)).path);
    // The pods reach the node through 169.254.1.1 on their veth; the node needs nothing more for ADD/DEL.
    await Deno.writeTextFile(`${lab.dir}/subnet-galaxy.env`, subnetEnv("198.18.97.1/24"));
    await Deno.writeTextFile(`${lab.dir}/subnet-go.env`, subnetEnv("198.18.98.1/24"));
    const galaxyNet = {
      name: "galaxy-flannel",
      type: "galaxy-flannel",
      delegate: { type: "galaxy-veth" },
      subnetFile: `${lab.dir}/subnet-galaxy.env`,
      dataDir: `${lab.dir}/flannel`,
      ipam: { dataDir: `${lab.dir}/ipam` },
    };
    const daemon = await startDaemon(lab, {
      galaxyJson: { NetworkConf: [galaxyNet], DefaultNetworks: ["galaxy-flannel"] },
      flags: ["--v=0"],
    });
    try {
      const shimDir = await launcherDir();
      const goDir = await goPluginDir(`${lab.dir}/gobin`);
      await Deno.mkdir(`${lab.dir}/govarlib`, { recursive: true });
      const targets: Record<string, { list: unknown; path: string[] }> = {
        galaxy: {
          list: {
            cniVersion: "1.0.0",
            name: "galaxy-sdn",
            plugins: [{ type: "galaxy-sdn", socketPath: daemon.socket }],
          },
          path: [shimDir, STANDARD],
        },
      };
      if (goDir) {
        targets.go = {
          list: {
            cniVersion: "0.3.1",
            name: "gobench",
            plugins: [{
              type: "galaxy-flannel",
              delegate: { type: "galaxy-veth" },
              subnetFile: `${lab.dir}/subnet-go.env`,
              dataDir: `${lab.dir}/goflannel`,
            }],
          },
          path: [goDir],
        };
      }
      targets.bridge = {
        list: {
          cniVersion: "1.0.0",
          name: "reference",
          plugins: [{
            name: "reference",
            type: "bridge",
            bridge: "gref0",
            isGateway: true,
            ipam: {
              type: "host-local",
              dataDir: `${lab.dir}/ipam`,
              ranges: [[{ subnet: "198.18.44.0/22" }]],
            },
          }],
        },
        path: [STANDARD],
      };
      const plan = {
        pods,
        sequentialPods: PODS,
        runs: RUNS,
        targets,
        shimDir,
        standardDir: STANDARD,
        cacheDir: `${lab.dir}/cache`,
        socket: daemon.socket,
        daemonPid: daemon.process.pid,
        burst: BURST,
        emptyDeno: await writeEmptyDeno(lab.dir),
        goVarLib: goDir
          ? {
            from: `${lab.dir}/govarlib`,
            onto: "/var/lib",
            hostMountNs: Deno.readLinkSync("/proc/self/ns/mnt"),
          }
          : undefined,
      };
      const idleKiB = rssKiB(daemon.process.pid);
      console.error(
        `bench: running (${Object.keys(targets).join(", ")}; sequential, 8-way, cold starts, burst)...`,
      );
      const out = await lab.tryExec(lab.node, Deno.execPath(), [
        "run",
        "-A",
        "--quiet",
        `${REPO_ROOT}/tests/bench/driver.ts`,
      ], { stdin: JSON.stringify(plan) });
      if (out.code !== 0) throw new Error(`bench driver failed:\n${out.stderr}`);
      const r = JSON.parse(out.stdout);
      failed = report(r, idleKiB, goDir === undefined ? `no Go binaries in ${GO_BIN}` : r.goSkipped);
      const leftover = [];
      for (const dir of [`${lab.dir}/ipam`, `${lab.dir}/govarlib/cni/networks`]) {
        try {
          for await (const e of Deno.readDir(dir)) {
            for await (const f of Deno.readDir(`${dir}/${e.name}`)) {
              if (/^\d/.test(f.name)) leftover.push(f.name);
            }
          }
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
      console.log(`addresses still reserved after all DELs: ${leftover.length}`);
      if (leftover.length) failed++;
    } finally {
      await daemon.process.stop("SIGTERM");
    }
  });
  // Network policy at scale (tests/bench/policy.ts): compile + apply, and single pod events.
  failed += printPolicyRows(await benchPolicy());
  return failed ? 1 : 0;
}

type Times = Record<string, { add: number[]; del: number[] }>;

// Prints the table; returns the number of targets missed.
function report(
  r: {
    names: string[];
    runs: Times[];
    eightWay: Record<string, number[]>;
    processes: Record<string, Record<string, number>>;
    coldShim: number[];
    coldDeno: number[];
    coldBridge: number[];
    burst: {
      wall: number;
      failed: string[];
      delFailed: number;
      peakKiB: number;
      peakRssKiB: number;
      daemonKiB: number;
    };
  },
  idleKiB: number,
  goNote: string | undefined,
): number {
  const has = (n: string) => r.names.includes(n);
  // The median over the runs of each run's quantile.
  const fig = (n: string, verb: "add" | "del", q: number) =>
    has(n) ? median(r.runs.map((run) => quantile(run[n][verb], q))) : NaN;
  const rate = (n: string) => has(n) ? PODS / (median(r.eightWay[n]) / 1000) : NaN;
  const cell = (n: string, f: (n: string) => string) => has(n) ? f(n) : "–";
  const lat = (verb: "add" | "del") => (n: string) => `${ms(fig(n, verb, 0.5))} / ${ms(fig(n, verb, 0.99))}`;
  const procs = (n: string) => {
    const c = r.processes[n];
    const total = Object.values(c).reduce((a, b) => a + b, 0);
    return `${total}: ${Object.entries(c).map(([k, v]) => `${k}×${v}`).join(" ")}`;
  };
  const rows: [string, string, string, string, string, boolean | undefined][] = [];
  const row = (what: string, f: (n: string) => string, target: string, ok: boolean | undefined) =>
    rows.push([what, cell("bridge", f), cell("go", f), cell("galaxy", f), target, ok]);
  const vsGo = (mine: number, go: number, ok: (ratio: number) => boolean) =>
    has("go") ? ok(mine / go) : undefined;
  const addRatio = fig("galaxy", "add", 0.5) / fig("go", "add", 0.5);
  const delRatio = fig("galaxy", "del", 0.5) / fig("go", "del", 0.5);
  const rateRatio = rate("galaxy") / rate("go");
  row(
    "ADD, sequential (p50 / p99)",
    lat("add"),
    `p50 ≤ 1.2× Go (${addRatio.toFixed(2)}×)`,
    vsGo(fig("galaxy", "add", 0.5), fig("go", "add", 0.5), (x) => x <= 1.2),
  );
  row(
    "DEL, sequential (p50 / p99)",
    lat("del"),
    `p50 ≤ 1.2× Go (${delRatio.toFixed(2)}×)`,
    vsGo(fig("galaxy", "del", 0.5), fig("go", "del", 0.5), (x) => x <= 1.2),
  );
  row(
    "throughput, 8 at once",
    (n) => `${rate(n).toFixed(0)} ADD/s`,
    `≥ 1.0× Go (${rateRatio.toFixed(2)}×)`,
    vsGo(rate("galaxy"), rate("go"), (x) => x >= 1.0),
  );
  const galaxyProcs = r.processes.galaxy;
  const onlyShimAndIpam = Object.keys(galaxyProcs).every((k) => k === "galaxy-sdn" || k === "host-local") &&
    galaxyProcs["galaxy-sdn"] === 1 && galaxyProcs["host-local"] === 1;
  row("processes started per ADD", procs, "galaxy-sdn and host-local only", onlyShimAndIpam);
  const cs = median(r.coldShim);
  const cd = median(r.coldDeno);
  row(
    "cold start, VERSION (p50)",
    (n) =>
      n === "bridge"
        ? `${ms(median(r.coldBridge))}`
        : n === "galaxy"
        ? `${ms(cs)} (empty Deno ${ms(cd)})`
        : "–",
    `shim ≤ 1.1× empty Deno (${(cs / cd).toFixed(2)}×)`,
    cs <= 1.1 * cd,
  );
  const b = r.burst;
  const burstOk = b.failed.length === 0 && b.delFailed === 0;
  row(
    `burst of ${BURST} ADDs, then DELs`,
    (n) => n === "galaxy" ? `${(b.wall / 1000).toFixed(1)} s, ${b.failed.length + b.delFailed} failed` : "–",
    "all succeed",
    burstOk,
  );
  const mib = (kib: number) => kib / 1024;
  row(
    `daemon RSS (idle / after ${BURST} pods)`,
    (n) => n === "galaxy" ? `${mib(idleKiB).toFixed(0)} / ${mib(b.daemonKiB).toFixed(0)} MiB` : "–",
    "≤ 150 MB after",
    b.daemonKiB * 1024 <= 150e6,
  );
  row(
    `process tree peak during the burst (PSS; RSS summed)`,
    (n) => n === "galaxy" ? `${mib(b.peakKiB).toFixed(0)} MiB; ${mib(b.peakRssKiB).toFixed(0)} MiB` : "–",
    "PSS ≤ 300 MB",
    b.peakKiB * 1024 <= 300e6,
  );
  const header = ["metric", "bridge + host-local", "Go Galaxy plugins", "Galaxy (shim → daemon)", "target"];
  const width = header.map((h, c) => Math.max(h.length, ...rows.map((x) => String(x[c]).length)));
  const load = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  console.log(
    `Galaxy benchmark: ${PODS} pods × ${RUNS} runs (medians of the runs), Deno ${Deno.version.deno}, ` +
      `${navigator.hardwareConcurrency} CPUs, load average ${load}`,
  );
  if (goNote) console.log(`Go Galaxy target skipped: ${goNote}`);
  console.log(header.map((h, i) => h.padEnd(width[i])).join("  ") + "  result");
  let missed = 0;
  for (const x of rows) {
    const verdict = x[5] === undefined ? "n/a" : x[5] ? "met" : "MISSED";
    console.log(x.slice(0, 5).map((c, i) => String(c).padEnd(width[i])).join("  ") + `  ${verdict}`);
    if (x[5] === false) missed++;
  }
  if (b.failed.length) console.log(`burst failures: ${b.failed.slice(0, 3).join(" | ")}`);
  return missed;
}

async function compiled(): Promise<number> {
  const { rows, note } = await compiledSection();
  console.log(`\nGalaxy compiled executable: ${note}`);
  return printRows(rows);
}

if (import.meta.main) {
  const only = Deno.args[0];
  if (only !== undefined && only !== "compiled") {
    console.error(`usage: deno task bench [compiled]   (unknown: ${only})`);
    Deno.exit(2);
  }
  const missed = (only === "compiled" ? 0 : await main()) + await compiled();
  Deno.exit(missed ? 1 : 0);
}
