/**
 * `deno task compile [--dry-run]`: builds `dist/galaxy`, the one executable, with `deno compile`, the
 * permissions of {@linkcode PERMISSION_FLAGS} and the version, git commit and build time stamped in.
 *
 * The sources are staged in `dist/.stage` with `cli/build_info.ts` rewritten, so the checkout is never
 * modified. `deno compile` needs Deno's `denort` runtime for this platform: it downloads one from Deno's release
 * server, or uses the file named by `DENORT_BIN`. `--dry-run` prints the command instead of running it.
 * @module
 */
import { GALAXY_VERSION } from "../cli/build_info.ts";
import { PERMISSION_FLAGS } from "./permissions.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/+$/, "");
const STAGED = [
  "main.ts",
  "mod.ts",
  "deno.json",
  "deno.lock",
  "package.json",
  "cli",
  "cni",
  "daemon",
  "netops",
  "tools",
];

/** The `deno compile` arguments for sources staged in `stage`, writing `output`. */
export function compileArgs(stage: string, output: string): string[] {
  return [
    "compile",
    "--quiet",
    "--frozen",
    ...PERMISSION_FLAGS,
    // Loaded by path at run time (node:worker_threads), so the module graph does not show it.
    "--include",
    `${stage}/netops/netns_worker.ts`,
    "--output",
    output,
    `${stage}/main.ts`,
  ];
}

function gitCommit(): string | null {
  try {
    const out = new Deno.Command("git", {
      args: ["-C", REPO, "rev-parse", "--short=12", "HEAD"],
      stderr: "null",
    })
      .outputSync();
    return out.success ? new TextDecoder().decode(out.stdout).trim() || null : null;
  } catch {
    return null;
  }
}

async function copyTree(from: string, to: string): Promise<void> {
  const st = await Deno.stat(from);
  if (st.isFile) {
    await Deno.copyFile(from, to);
    return;
  }
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) await copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
}

async function stage(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  for (const entry of STAGED) await copyTree(`${REPO}/${entry}`, `${dir}/${entry}`);
  await Deno.symlink(`${REPO}/node_modules`, `${dir}/node_modules`);
  const commit = gitCommit();
  await Deno.writeTextFile(
    `${dir}/cli/build_info.ts`,
    `/** Stamped by deno task compile. */\nexport const GALAXY_VERSION = ${
      JSON.stringify(GALAXY_VERSION)
    };\n` +
      `/** The git commit the executable was built from. */\n` +
      `export const BUILD_COMMIT: string | null = ${JSON.stringify(commit)};\n` +
      `/** When the executable was built. */\n` +
      `export const BUILD_TIME: string | null = ${JSON.stringify(new Date().toISOString())};\n`,
  );
}

if (import.meta.main) {
  const dryRun = Deno.args.includes("--dry-run");
  const unknown = Deno.args.filter((a) => a !== "--dry-run");
  if (unknown.length) {
    console.error(`usage: deno task compile [--dry-run]   (unknown: ${unknown.join(" ")})`);
    Deno.exit(2);
  }
  const stageDir = `${REPO}/dist/.stage`;
  const output = `${REPO}/dist/galaxy`;
  const args = compileArgs(stageDir, output);
  if (dryRun) {
    console.log([Deno.execPath(), ...args].join(" "));
    Deno.exit(0);
  }
  await stage(stageDir);
  const result = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "piped" })
    .output();
  await Deno.remove(stageDir, { recursive: true }).catch(() => {});
  if (!result.success) {
    console.error(new TextDecoder().decode(result.stderr).trim());
    console.error(
      `deno compile failed. It needs Deno's denort runtime (${Deno.version.deno}) for this platform, which it ` +
        "downloads from Deno's release server; where that is unreachable, set DENORT_BIN to the path of a denort " +
        `binary of Deno ${Deno.version.deno}.`,
    );
    Deno.exit(1);
  }
  console.log(output);
}
