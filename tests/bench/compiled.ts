/**
 * The compiled executable's section of `deno task bench` (alone: `deno task bench compiled`): builds
 * `galaxy` with `tools/compile.ts` and an empty program with `deno compile`, both by the same toolchain in this
 * run, and compares `galaxy-sdn` answering VERSION (what every pod pays) with the empty program: wall time and
 * peak memory, each ≤ 1.3× (issue 15). The executable's size is checked against its 120 MB bound too.
 *
 * The toolchain: `DENO_COMPILE_CLI` (+ `DENORT_BIN`) when set, else `../shared/tools/compile-toolchain.sh`
 * beside the checkout, else the deno running the bench (which downloads its denort). Peak memory is the
 * process's maximum RSS as GNU time (`/usr/bin/time`, Debian package `time`) reports it.
 * @module
 */
import { PERMISSION_FLAGS } from "../../cli/permissions.ts";
import { REPO_ROOT } from "../helpers/launchers.ts";
import { runCommand } from "../helpers/netns.ts";

const RUNS = Number(Deno.env.get("BENCH_COMPILED_RUNS") ?? 30);
const GNU_TIME = "/usr/bin/time";

/** One compared measure. */
export interface CompiledRow {
  /** What was measured. */
  what: string;
  /** The empty program's figure. */
  reference: string;
  /** galaxy's figure. */
  measured: string;
  /** The bound. */
  target: string;
  /** Whether the bound holds. */
  ok: boolean;
}

async function toolchain(): Promise<{ deno: string; env: Record<string, string>; label: string }> {
  const deno = Deno.env.get("DENO_COMPILE_CLI");
  if (deno) {
    const env: Record<string, string> = { DENO_COMPILE_CLI: deno };
    const denort = Deno.env.get("DENORT_BIN");
    if (denort) env.DENORT_BIN = denort;
    return { deno, env, label: `DENO_COMPILE_CLI=${deno}` };
  }
  const script = `${REPO_ROOT}/../shared/tools/compile-toolchain.sh`;
  try {
    await Deno.stat(script);
  } catch {
    return { deno: Deno.execPath(), env: {}, label: `${Deno.execPath()} (its own denort)` };
  }
  const out = await runCommand("bash", [script]);
  if (out.code !== 0) throw new Error(`${script} failed: ${out.stderr}`);
  const vars = Object.fromEntries(
    out.stdout.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  return {
    deno: vars.DENO_COMPILE_CLI,
    env: { DENO_COMPILE_CLI: vars.DENO_COMPILE_CLI, DENORT_BIN: vars.DENORT_BIN },
    label: "../shared/tools/compile-toolchain.sh",
  };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function wallMs(path: string, env: Record<string, string>): Promise<number> {
  const start = performance.now();
  const r = await new Deno.Command(path, { env, stdin: "null", stdout: "null", stderr: "piped" }).output();
  const ms = performance.now() - start;
  if (!r.success) throw new Error(`${path}: ${new TextDecoder().decode(r.stderr)}`);
  return ms;
}

async function peakKiB(path: string, env: Record<string, string>, dir: string): Promise<number> {
  const out = `${dir}/time.out`;
  const r = await new Deno.Command(GNU_TIME, {
    args: ["-f", "%M", "-o", out, path],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`${path}: ${new TextDecoder().decode(r.stderr)}`);
  return Number((await Deno.readTextFile(out)).trim().split("\n").pop());
}

/** Builds both programs and measures them; the rows for the bench's table. */
export async function compiledSection(): Promise<{ rows: CompiledRow[]; note: string }> {
  const tc = await toolchain();
  const dir = await Deno.makeTempDir({ prefix: "galaxy-bench-compiled-" });
  try {
    console.error(`bench: compiling galaxy and an empty program with ${tc.label}...`);
    const galaxy = `${dir}/galaxy`;
    const built = await runCommand(tc.deno, [
      "run",
      "-A",
      `${REPO_ROOT}/tools/compile.ts`,
      `--output=${galaxy}`,
    ], {
      env: tc.env,
    });
    if (built.code !== 0) throw new Error(`tools/compile.ts failed:\n${built.stderr}`);
    await Deno.writeTextFile(`${dir}/empty.js`, "");
    const empty = `${dir}/empty`;
    const compiled = await runCommand(tc.deno, [
      "compile",
      "--quiet",
      "--no-config",
      ...PERMISSION_FLAGS,
      "--output",
      empty,
      `${dir}/empty.js`,
    ], { env: tc.env });
    if (compiled.code !== 0) throw new Error(`deno compile of the empty program failed:\n${compiled.stderr}`);
    const sdn = `${dir}/galaxy-sdn`;
    await Deno.symlink(galaxy, sdn);
    const env = { CNI_COMMAND: "VERSION", PATH: Deno.env.get("PATH") ?? "" };

    console.error(`bench: ${RUNS} interleaved cold starts of each...`);
    const wall = { sdn: [] as number[], empty: [] as number[] };
    // One warm-up each: page cache, and the code cache a compiled program writes on its first run.
    await wallMs(sdn, env);
    await wallMs(empty, env);
    for (let i = 0; i < RUNS; i++) {
      wall.sdn.push(await wallMs(sdn, env));
      wall.empty.push(await wallMs(empty, env));
    }
    const rows: CompiledRow[] = [];
    const [ws, we] = [median(wall.sdn), median(wall.empty)];
    rows.push({
      what: "compiled galaxy-sdn VERSION, wall (p50)",
      reference: `${we.toFixed(1)} ms (empty program)`,
      measured: `${ws.toFixed(1)} ms (${(ws / we).toFixed(2)}×)`,
      target: "≤ 1.3×",
      ok: ws <= 1.3 * we,
    });
    let haveTime = true;
    try {
      await Deno.stat(GNU_TIME);
    } catch {
      haveTime = false;
    }
    if (haveTime) {
      const mem = { sdn: [] as number[], empty: [] as number[] };
      for (let i = 0; i < Math.min(RUNS, 10); i++) {
        mem.sdn.push(await peakKiB(sdn, env, dir));
        mem.empty.push(await peakKiB(empty, env, dir));
      }
      const [ms, me] = [median(mem.sdn) / 1024, median(mem.empty) / 1024];
      rows.push({
        what: "compiled galaxy-sdn VERSION, peak RSS (p50)",
        reference: `${me.toFixed(1)} MiB (empty program)`,
        measured: `${ms.toFixed(1)} MiB (${(ms / me).toFixed(2)}×)`,
        target: "≤ 1.3×",
        ok: ms <= 1.3 * me,
      });
    } else {
      rows.push({
        what: "compiled galaxy-sdn VERSION, peak RSS",
        reference: "-",
        measured: `not measured: ${GNU_TIME} is missing (apt-get install time)`,
        target: "≤ 1.3×",
        ok: false,
      });
    }
    const size = (await Deno.stat(galaxy)).size;
    rows.push({
      what: "compiled executable size",
      reference: `${((await Deno.stat(empty)).size / 1e6).toFixed(1)} MB (empty program)`,
      measured: `${(size / 1e6).toFixed(1)} MB`,
      target: "≤ 120 MB",
      ok: size <= 120e6,
    });
    const version = await runCommand(galaxy, ["--version"]);
    return { rows, note: version.stdout.trim() };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Prints the rows as the bench's table does; returns how many missed. */
export function printRows(rows: CompiledRow[]): number {
  const cells = rows.map((r) => [r.what, r.reference, r.measured, r.target]);
  const width = [0, 1, 2, 3].map((c) => Math.max(...cells.map((x) => x[c].length), 8));
  console.log(
    ["metric", "reference", "galaxy", "target"].map((h, i) => h.padEnd(width[i])).join("  ") + "  result",
  );
  for (const [i, x] of cells.entries()) {
    console.log(x.map((c, j) => c.padEnd(width[j])).join("  ") + `  ${rows[i].ok ? "met" : "MISSED"}`);
  }
  return rows.filter((r) => !r.ok).length;
}

if (import.meta.main) {
  const { rows, note } = await compiledSection();
  console.log(`Galaxy compiled executable: ${note}`);
  Deno.exit(printRows(rows) ? 1 : 0);
}
