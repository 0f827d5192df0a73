/**
 * `deno task bench`: Galaxy's speed and memory against the targets of `cni-and-peers.md` §6, with the
 * reference (Debian's bridge + host-local executed directly) measured in the same run, then the network
 * policy scale targets (tests/bench/policy.ts). Needs root; everything
 * happens in namespaces it makes and removes. `BENCH_PODS` (default 40) and `BENCH_BURST` (default 200).
 * Then the compiled executable against an empty compiled program (`./compiled.ts`); `deno task bench compiled`
 * runs only that part.
 * @module
 */
import { launcherDir, REPO_ROOT } from "../helpers/launchers.ts";
import { kernelSkipReason, withLab } from "../helpers/netns.ts";
import { startDaemon } from "../helpers/daemon.ts";
import { compiledSection, printRows } from "./compiled.ts";
import { benchPolicy, printPolicyRows } from "./policy.ts";

const PODS = Number(Deno.env.get("BENCH_PODS") ?? 40);
const BURST = Number(Deno.env.get("BENCH_BURST") ?? 200);
const STANDARD = "/usr/lib/cni";

/** The q-quantile (nearest rank) of `values`. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function stats(values: number[]): { p50: number; p99: number } {
  return { p50: quantile(values, 0.5), p99: quantile(values, 0.99) };
}

function ms(v: number): string {
  return `${v.toFixed(1)} ms`;
}

/** RSS in KiB of `pid` and all its descendants, from /proc. */
function treeRssKiB(pid: number): number {
  const children = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e.name)]);
    } catch {
      // exited meanwhile
    }
  }
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    try {
      const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${p}/status`));
      total += m ? Number(m[1]) : 0;
    } catch {
      // exited meanwhile
    }
    stack.push(...(children.get(p) ?? []));
  }
  return total;
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

async function main(): Promise<number> {
  const reason = kernelSkipReason();
  if (reason) {
    console.error(`bench: ${reason}`);
    return 1;
  }
  let failed = 0;
  await withLab("bench", async (lab) => {
    console.error(`bench: ${PODS} pods, burst of ${BURST}; preparing namespaces...`);
    const pods: string[] = [];
    for (let i = 0; i < PODS; i++) pods.push((await lab.pod(`p${i}`)).path);
    const network = (name: string, bridge: string, subnet: string) => ({
      name,
      type: "bridge",
      bridge,
      isGateway: true,
      ipam: { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[{ subnet }]] },
    });
    const daemon = await startDaemon(lab, {
      galaxyJson: {
        NetworkConf: [network("bench", "gbench0", "198.18.40.0/22")],
        DefaultNetworks: ["bench"],
      },
      flags: ["--v=0"],
    });
    try {
      const plan = {
        pods,
        referenceList: {
          cniVersion: "1.0.0",
          name: "reference",
          plugins: [network("reference", "gref0", "198.18.44.0/22")],
        },
        shimList: {
          cniVersion: "1.0.0",
          name: "galaxy-sdn",
          plugins: [{ type: "galaxy-sdn", socketPath: daemon.socket }],
        },
        launcherDir: await launcherDir(),
        standardDir: STANDARD,
        cacheDir: `${lab.dir}/cache`,
        socket: daemon.socket,
        burst: BURST,
        emptyDeno: await writeEmptyDeno(lab.dir),
      };
      let peakKiB = 0;
      const sampler = setInterval(() => peakKiB = Math.max(peakKiB, treeRssKiB(daemon.process.pid)), 20);
      const idleKiB = treeRssKiB(daemon.process.pid);
      console.error("bench: running (reference and galaxy, sequential, 8-way, cold starts, burst)...");
      const out = await lab.tryExec(lab.node, Deno.execPath(), [
        "run",
        "-A",
        "--quiet",
        `${REPO_ROOT}/tests/bench/driver.ts`,
      ], {
        stdin: JSON.stringify(plan),
      });
      clearInterval(sampler);
      if (out.code !== 0) throw new Error(`bench driver failed:\n${out.stderr}`);
      const r = JSON.parse(out.stdout);

      const ref = stats(r.reference.add);
      const gal = stats(r.galaxy.add);
      const dmn = stats(r.daemonOnly.add);
      const overhead = r.daemonOnly.add.map((v: number, i: number) => v - r.reference.add[i]);
      const ovh = { p50: dmn.p50 - ref.p50, p99: quantile(overhead, 0.99) };
      const rows: [string, string, string, string, boolean][] = [];
      const row = (what: string, reference: string, measured: string, target: string, ok: boolean) =>
        rows.push([what, reference, measured, target, ok]);
      row(
        "ADD, sequential (p50 / p99)",
        `${ms(ref.p50)} / ${ms(ref.p99)}`,
        `${ms(gal.p50)} / ${ms(gal.p99)}`,
        "≤ 25 / ≤ 60 ms",
        gal.p50 <= 25 && gal.p99 <= 60,
      );
      row(
        "daemon overhead per ADD (p50 / p99)",
        "0",
        `${ms(ovh.p50)} / ${ms(ovh.p99)}`,
        "≤ 3 / ≤ 10 ms",
        ovh.p50 <= 3 && ovh.p99 <= 10,
      );
      const ref8 = stats(r.reference8.add);
      const gal8 = stats(r.galaxy8.add);
      row(
        "ADD, 8 at once (p50 / p99)",
        `${ms(ref8.p50)} / ${ms(ref8.p99)}`,
        `${ms(gal8.p50)} / ${ms(gal8.p99)}`,
        "p99 ≤ 250 ms",
        gal8.p99 <= 250,
      );
      const refRate = PODS / (r.reference8.wall / 1000);
      const galRate = PODS / (r.galaxy8.wall / 1000);
      row(
        "throughput, 8 at once",
        `${refRate.toFixed(0)} ADD/s`,
        `${galRate.toFixed(0)} ADD/s`,
        "≥ 50 ADD/s",
        galRate >= 50,
      );
      const refDel = stats(r.reference.del);
      const galDel = stats(r.galaxy.del);
      row(
        "DEL, sequential (p50 / p99)",
        `${ms(refDel.p50)} / ${ms(refDel.p99)}`,
        `${ms(galDel.p50)} / ${ms(galDel.p99)}`,
        "p99 ≤ 100 ms",
        galDel.p99 <= 100,
      );
      const cs = stats(r.coldShim);
      const cb = stats(r.coldBridge);
      row(
        "plugin cold start, VERSION (p50 / p99)",
        `${ms(cb.p50)} / ${ms(cb.p99)} (bridge)`,
        `${ms(cs.p50)} / ${ms(cs.p99)} (galaxy-sdn)`,
        "informational",
        true,
      );
      const cd = stats(r.coldDeno);
      row(
        "floor: any Deno process, empty script",
        "-",
        `${ms(cd.p50)} / ${ms(cd.p99)}`,
        "informational",
        true,
      );
      const burstOk = r.burst.failed.length === 0 && r.burst.delFailed === 0;
      row(
        `burst of ${BURST} ADDs then DELs`,
        "-",
        `${(r.burst.wall / 1000).toFixed(1)} s, ${r.burst.failed.length} failed`,
        "all succeed",
        burstOk,
      );
      const peakMiB = peakKiB / 1024;
      row(
        "daemon RSS incl. children (idle / peak)",
        "-",
        `${(idleKiB / 1024).toFixed(0)} / ${peakMiB.toFixed(0)} MiB`,
        "peak ≤ 256 MiB",
        peakMiB <= 256,
      );

      const width = [0, 1, 2, 3].map((c) => Math.max(...rows.map((x) => String(x[c]).length), 8));
      console.log(
        `Galaxy benchmark: ${PODS} pods, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs`,
      );
      console.log(
        ["metric", "reference", "galaxy", "target"].map((h, i) => h.padEnd(width[i])).join("  ") + "  result",
      );
      for (const x of rows) {
        console.log(
          x.slice(0, 4).map((c, i) => String(c).padEnd(width[i])).join("  ") + `  ${x[4] ? "met" : "MISSED"}`,
        );
        if (!x[4]) failed++;
      }
      if (r.burst.failed.length) console.log(`burst failures: ${r.burst.failed.slice(0, 3).join(" | ")}`);
      const leftover = [];
      for await (const e of Deno.readDir(`${lab.dir}/ipam`)) {
        for await (const f of Deno.readDir(`${lab.dir}/ipam/${e.name}`)) {
          if (/^\d/.test(f.name)) leftover.push(f.name);
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
