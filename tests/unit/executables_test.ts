/** The one registry of executable names: each name loads its own module, and every consumer uses the registry. */
import assert from "node:assert/strict";
import { CNI_EXECUTABLES, EXECUTABLE_NAMES, MAIN_NAME, SUBCOMMANDS } from "../../cli/executables.ts";
import { launcherScript } from "../../cli/launchers.ts";
import { usage } from "../../cli/usage.ts";
import { REPO_ROOT } from "../helpers/launchers.ts";

Deno.test("executables: every CNI name loads its own module, and each plugin module is the plugin of that name", async () => {
  const modules = new Set<string>();
  for (const [name, exe] of Object.entries(CNI_EXECUTABLES)) {
    assert.ok(!modules.has(exe.module), `${name}: ${exe.module} is already another name's module`);
    modules.add(exe.module);
    const loaded = await exe.load() as { main: unknown; plugin?: { name: string } };
    const direct = await import(`${REPO_ROOT}/${exe.module}`);
    assert.equal(loaded.main, direct.main, `${name}: load() is not ${exe.module}`);
    assert.equal(typeof loaded.main, "function", name);
    if (name === "galaxy-sdn") assert.equal(exe.module, "cni/shim.ts");
    else assert.equal(loaded.plugin?.name, name, `${name} dispatches to the plugin ${loaded.plugin?.name}`);
  }
});

Deno.test("executables: every subcommand loads its own module", async () => {
  for (const [name, exe] of Object.entries(SUBCOMMANDS)) {
    if (name === "serve") continue; // loading the daemon pulls in the npm packages; its path is checked below
    const loaded = await exe.load();
    assert.equal(loaded.main, (await import(`${REPO_ROOT}/${exe.module}`)).main, name);
  }
  assert.equal(SUBCOMMANDS.serve.module, "daemon/main.ts");
});

Deno.test("executables: the names, the launchers and usage come from the one registry", async () => {
  assert.deepEqual(EXECUTABLE_NAMES, [MAIN_NAME, ...Object.keys(CNI_EXECUTABLES)]);
  const text = usage();
  for (const name of [...Object.keys(CNI_EXECUTABLES), ...Object.keys(SUBCOMMANDS)]) {
    assert.match(text, new RegExp(`^  ${name} `, "m"), `usage does not list ${name}`);
  }
  for (const name of EXECUTABLE_NAMES) {
    assert.match(launcherScript(name, { deno: "/d", repo: "/r" }), new RegExp(`exec -a ${name} `));
  }
  // Each mode is loaded from a computed URL; the type-only list keeps all of them under deno check.
  const registry = await Deno.readTextFile(`${REPO_ROOT}/cli/executables.ts`);
  for (const exe of [...Object.values(CNI_EXECUTABLES), ...Object.values(SUBCOMMANDS)]) {
    const fromCli = exe.module.startsWith("cli/") ? `./${exe.module.slice(4)}` : `../${exe.module}`;
    assert.ok(registry.includes(`typeof import("${fromCli}")`), `ModeModules does not name ${exe.module}`);
  }
  assert.doesNotMatch(
    registry,
    /[^f] import\("/,
    "a literal import() makes deno load that mode's graph up front",
  );
  // main.ts has no table of its own: a name it dispatches is a name of the registry.
  const main = await Deno.readTextFile(`${REPO_ROOT}/main.ts`);
  assert.doesNotMatch(
    main,
    /import\("\.\/cni\//,
    "main.ts imports a mode by itself instead of through the registry",
  );
});
