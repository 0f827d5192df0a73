/**
 * `deno task compile [--output PATH] [--dry-run]`: builds `dist/galaxy`, the one executable.
 *
 * All steps are driven by one deno: `DENO_COMPILE_CLI` when set (the compile toolchain of
 * `../shared/tools/compile-toolchain.sh` sets it, with the matching `DENORT_BIN`), else the deno running this
 * script (the pinned one, which downloads its official denort where Deno's release server is reachable).
 * 1. Stage: the sources are copied to a temporary folder outside the checkout, with `cli/build_info.ts`
 *    rewritten (version, git commit, build time), so the checkout is never modified.
 * 2. Vendor: the npm packages of `deno.json` that the sources import, by the names they import, are bundled (`deno bundle --code-splitting --minify`) into plain
 *    ES modules, one entry per package with shared chunks, so only the code they import goes in, not their
 *    whole folders. The staged `deno.json` maps each package name to its bundle and has nothing else.
 * 3. Compile: `deno compile` of the staged `main.ts` with {@linkcode PERMISSION_FLAGS}, with neither
 *    `package.json` nor `node_modules` in sight, so nothing but the module graph (and {@linkcode INCLUDED},
 *    the modules loaded from computed URLs) is embedded.
 *
 * Galaxy's own modules stay separate modules: every `import()` of `main.ts` still loads only its mode (the shim
 * and plugins never load the Kubernetes client or the daemon), and stack frames, and with them the file:line
 * of every log line and `--vmodule`, name the source files as they do when run from source.
 *
 * `deno compile` needs Deno's `denort` runtime of its own version for this platform: it downloads one from
 * Deno's release server, or uses the file named by `DENORT_BIN`. The new executable is run once
 * (`galaxy version`) before this reports success: a denort of another version gives a file that cannot start.
 * `--dry-run` prints the commands instead.
 * @module
 */
import { parseArgs } from "node:util";
import { GALAXY_VERSION } from "../cli/build_info.ts";
import { CNI_EXECUTABLES, SUBCOMMANDS } from "../cli/executables.ts";
import { PERMISSION_FLAGS } from "../cli/permissions.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/+$/, "");
/**
 * What the executable may be made from (it embeds only what main.ts imports); tests, docs, deploy and the
 * build-time `tools/` stay out.
 */
const STAGED = ["main.ts", "mod.ts", "cli", "cni", "daemon", "netops"];
/**
 * Loaded from computed URLs, so not in `main.ts`'s module graph: the netns worker and every mode's module
 * (`cli/executables.ts` says why).
 */
export const INCLUDED: readonly string[] = [
  "netops/netns_worker.ts",
  ...new Set([...Object.values(CNI_EXECUTABLES), ...Object.values(SUBCOMMANDS)].map((e) => e.module)),
];

/** The folders one build uses. */
export interface BuildDirs {
  /** Staged copy of the sources, with its own deno.json. */
  stage: string;
  /** Entry modules of the npm packages, for the bundler. */
  vendorSrc: string;
  /** The executable written. */
  output: string;
}

/** An npm package of deno.json: its import name and the file its bundle is written to. */
export interface VendoredPackage {
  /** The bare specifier the sources import, e.g. `@kubernetes/client-node`. */
  name: string;
  /** The bundle's file name in `vendor/`, e.g. `kubernetes__client-node.js`. */
  file: string;
}

/** The npm packages named by the checkout's deno.json `imports`. */
export function vendoredPackages(denoJson: { imports?: Record<string, string> }): VendoredPackage[] {
  return Object.entries(denoJson.imports ?? {})
    .filter(([, target]) => target.startsWith("npm:"))
    .map(([name]) => ({ name, file: `${name.replace(/^@/, "").replace(/[^A-Za-z0-9.-]/g, "__")}.js` }));
}

/**
 * The names that `sources` take from the package `name` as values: `null` when one of them takes the whole
 * namespace (`import * as`, `export *`, `import()`), `[]` when none does. Type-only imports do not count:
 * they are erased.
 */
export function importedNames(sources: string[], name: string): string[] | null {
  const spec = `["']${name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}["']`;
  const whole = new RegExp(
    `import\\s+\\*\\s+as\\s+[\\w$]+\\s+from\\s+${spec}|export\\s+\\*\\s+from\\s+${spec}|(?<!typeof\\s*)import\\(\\s*${spec}\\s*\\)`,
  );
  const named = new RegExp(
    `(import|export)\\s+(type\\s+)?(?:([\\w$]+)\\s*,?\\s*)?(?:\\{([^}]*)\\})?\\s*from\\s+${spec}`,
    "g",
  );
  const names = new Set<string>();
  for (const text of sources) {
    if (whole.test(text)) return null;
    for (const m of text.matchAll(named)) {
      if (m[2]) continue;
      if (m[1] === "import" && m[3]) names.add("default");
      for (const item of (m[4] ?? "").split(",")) {
        const [imported] = item.trim().split(/\s+as\s+/);
        if (imported && !imported.startsWith("type ")) names.add(imported);
      }
    }
  }
  return [...names].sort();
}

/**
 * The entry module for one package's bundle: the names the sources import (`wanted`), or all of them when
 * `wanted` is null. An ES module package is re-exported by name, so the bundler carries only what those names
 * need; a CommonJS one (its namespace has `module.exports`) has no static names for the bundler to carry, so
 * they are listed.
 */
export function vendorEntry(name: string, exportNames: string[], wanted: string[] | null = null): string {
  const spec = JSON.stringify(name);
  if (!exportNames.includes("module.exports")) {
    if (wanted) return `export { ${wanted.join(", ")} } from ${spec};\n`;
    return `export * from ${spec};\n` +
      (exportNames.includes("default") ? `export { default } from ${spec};\n` : "");
  }
  const names = exportNames.filter((n) =>
    n !== "default" && /^[A-Za-z_$][\w$]*$/.test(n) && (!wanted || wanted.includes(n))
  );
  return `import * as m from ${spec};\nexport const { ${
    names.join(", ")
  } } = m;\nexport default m.default;\n`;
}

/** The `deno bundle` arguments: one entry per npm package, shared code in chunks, minified. */
export function bundleArgs(dirs: BuildDirs, packages: VendoredPackage[]): string[] {
  return [
    "bundle",
    "--quiet",
    "--frozen",
    "--config",
    `${REPO}/deno.json`,
    "--platform",
    "deno",
    "--code-splitting",
    "--minify",
    // Class names survive (error names in logs, libraries that check constructor names).
    "--keep-names",
    "--outdir",
    `${dirs.stage}/vendor`,
    ...packages.map((p) => `${dirs.vendorSrc}/${p.file.replace(/\.js$/, ".ts")}`),
  ];
}

/** The `deno compile` arguments: the staged main.ts with the one set of permission flags. */
export function compileArgs(dirs: BuildDirs): string[] {
  return [
    "compile",
    "--quiet",
    "--no-lock",
    // `deno task check` type-checks the sources; the vendored bundles carry no types.
    "--no-check",
    "--config",
    `${dirs.stage}/deno.json`,
    ...PERMISSION_FLAGS,
    ...INCLUDED.flatMap((m) => ["--include", `${dirs.stage}/${m}`]),
    "--output",
    dirs.output,
    `${dirs.stage}/main.ts`,
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

/** The text of `cli/build_info.ts` in the staged copy. */
export function buildInfoText(commit: string | null, time: Date): string {
  return `/** Stamped by deno task compile. */\nexport const GALAXY_VERSION = ${
    JSON.stringify(GALAXY_VERSION)
  };\n` +
    `/** The git commit the executable was built from. */\n` +
    `export const BUILD_COMMIT: string | null = ${JSON.stringify(commit)};\n` +
    `/** When the executable was built. */\n` +
    `export const BUILD_TIME: string | null = ${JSON.stringify(time.toISOString())};\n`;
}

/** The names a package exports, as the deno of this build sees them. */
async function exportNamesOf(name: string): Promise<string[]> {
  const code = `console.log(JSON.stringify(Object.keys(await import(${JSON.stringify(name)}))))`;
  const r = await new Deno.Command(compilerDeno(), {
    args: ["eval", "--quiet", "--frozen", "--config", `${REPO}/deno.json`, code],
    env: { NO_COLOR: "1", DENO_TLS_CA_STORE: caStore() },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`cannot load ${name}: ${new TextDecoder().decode(r.stderr).trim()}`);
  return JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").pop()!);
}

async function sourcesUnder(path: string): Promise<string[]> {
  if ((await Deno.stat(path)).isFile) return path.endsWith(".ts") ? [await Deno.readTextFile(path)] : [];
  const texts: string[] = [];
  for await (const e of Deno.readDir(path)) texts.push(...await sourcesUnder(`${path}/${e.name}`));
  return texts;
}

/** Stages the sources and the vendor entries; returns the packages the sources import, which are bundled. */
async function stage(dirs: BuildDirs, packages: VendoredPackage[]): Promise<VendoredPackage[]> {
  await Deno.mkdir(dirs.stage, { recursive: true });
  for (const entry of STAGED) await copyTree(`${REPO}/${entry}`, `${dirs.stage}/${entry}`);
  await Deno.writeTextFile(`${dirs.stage}/cli/build_info.ts`, buildInfoText(gitCommit(), new Date()));
  await Deno.mkdir(dirs.vendorSrc, { recursive: true });
  const sources = (await Promise.all(STAGED.map((e) => sourcesUnder(`${dirs.stage}/${e}`)))).flat();
  const used: VendoredPackage[] = [];
  for (const p of packages) {
    const wanted = importedNames(sources, p.name);
    if (wanted?.length === 0) continue; // only tests import it
    await Deno.writeTextFile(
      `${dirs.vendorSrc}/${p.file.replace(/\.js$/, ".ts")}`,
      vendorEntry(p.name, await exportNamesOf(p.name), wanted),
    );
    used.push(p);
  }
  const imports = Object.fromEntries(used.map((p) => [p.name, `./vendor/${p.file}`]));
  await Deno.writeTextFile(`${dirs.stage}/deno.json`, JSON.stringify({ imports }, null, 2) + "\n");
  return used;
}

/** What esbuild's require helper throws when a bundled CommonJS module requires something and `require` is not defined. */
const REQUIRE_HELPER_MARK = 'Dynamic require of "';
/** A `require` for that helper: the one Deno gives CommonJS code (Node's built-ins). */
const REQUIRE_PRELUDE =
  'import{createRequire as __galaxyCreateRequire}from"node:module";const require=__galaxyCreateRequire(import.meta.url);\n';

/**
 * Gives the bundled CommonJS code its `require`. Unminified, `deno bundle` replaces esbuild's helper with
 * `createRequire(import.meta.url)`; with `--minify` (deno 2.7 and 2.9) it leaves the helper that throws, so the
 * chunk holding the helper gets a module-level `require` instead. Returns the files changed.
 */
export async function provideRequire(vendorDir: string): Promise<string[]> {
  const changed: string[] = [];
  for await (const e of Deno.readDir(vendorDir)) {
    if (!e.isFile || !e.name.endsWith(".js")) continue;
    const path = `${vendorDir}/${e.name}`;
    const text = await Deno.readTextFile(path);
    if (!text.includes(REQUIRE_HELPER_MARK)) continue;
    if (/\b(?:var|let|const|function)\s+require\b/.test(text)) {
      throw new Error(`${e.name} both declares require and uses esbuild's require helper`);
    }
    await Deno.writeTextFile(path, REQUIRE_PRELUDE + text);
    changed.push(e.name);
  }
  return changed;
}

/** deno bundle fetches its esbuild from the npm registry: trust the machine's CA store too, as npm does. */
function caStore(): string {
  return Deno.env.get("DENO_TLS_CA_STORE") ?? "mozilla,system";
}

/** The deno that bundles and compiles. */
export function compilerDeno(): string {
  return Deno.env.get("DENO_COMPILE_CLI") || Deno.execPath();
}

async function run(args: string[], env: Record<string, string> = {}): Promise<void> {
  const r = await new Deno.Command(compilerDeno(), { args, env, stdout: "inherit", stderr: "piped" })
    .output();
  if (!r.success) {
    throw new Error(`deno ${args[0]} failed:\n${new TextDecoder().decode(r.stderr).trim()}`);
  }
}

/** Runs `galaxy version` from the new executable; a denort of another deno version fails here. */
async function smokeTest(output: string): Promise<void> {
  const r = await new Deno.Command(output, {
    args: ["version"],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(r.stdout).trim();
  if (!r.success || !text.startsWith("galaxy ")) {
    await Deno.remove(output).catch(() => {});
    throw new Error(
      `the new executable does not start (${new TextDecoder().decode(r.stderr).trim().split("\n")[0]}); ` +
        `is DENORT_BIN (${Deno.env.get("DENORT_BIN") ?? "unset"}) the denort of ${compilerDeno()}'s version?`,
    );
  }
}

/** Stages, bundles and compiles into `output`; returns its size in bytes. */
export async function build(output: string): Promise<number> {
  const tmp = await Deno.makeTempDir({ prefix: "galaxy-compile-" });
  const dirs: BuildDirs = { stage: `${tmp}/src`, vendorSrc: `${tmp}/vendor-src`, output };
  try {
    const packages = vendoredPackages(JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`)));
    const bundled = await stage(dirs, packages);
    await run(bundleArgs(dirs, bundled), { DENO_TLS_CA_STORE: caStore() });
    await provideRequire(`${dirs.stage}/vendor`);
    await Deno.mkdir(output.slice(0, output.lastIndexOf("/")) || "/", { recursive: true });
    try {
      await run(compileArgs(dirs));
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\ndeno compile needs Deno's denort runtime of its own version for this ` +
          "platform, which it downloads from Deno's release server; where that is unreachable, set DENORT_BIN " +
          `to the path of a denort binary of that version (see README, "Building the executable").`,
      );
    }
    await smokeTest(output);
    return (await Deno.stat(output)).size;
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        output: { type: "string", default: `${REPO}/dist/galaxy` },
        "dry-run": { type: "boolean", default: false },
      },
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\nusage: deno task compile [--output PATH] [--dry-run]`);
    Deno.exit(2);
  }
  const output = values.output.startsWith("/") ? values.output : `${Deno.cwd()}/${values.output}`;
  if (values["dry-run"]) {
    const dirs = { stage: "$STAGE", vendorSrc: "$VENDOR_SRC", output };
    const packages = vendoredPackages(JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`)));
    console.log([compilerDeno(), ...bundleArgs(dirs, packages)].join(" "));
    console.log([compilerDeno(), ...compileArgs(dirs)].join(" "));
    Deno.exit(0);
  }
  try {
    const size = await build(output);
    console.log(`${output} (${(size / 1e6).toFixed(1)} MB, built by ${compilerDeno()})`);
  } catch (e) {
    console.error(`deno task compile: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
