import assert from "node:assert/strict";
import { ALL_VERSIONS } from "../../cni/spec.ts";
import { EXECUTABLE_NAMES, launcherScript } from "../../cli/launchers.ts";
import { PERMISSION_FLAGS } from "../../cli/permissions.ts";
import { launcherDir, REPO_ROOT } from "../helpers/launchers.ts";
import { runCommand } from "../helpers/netns.ts";

const PLUGIN_NAMES = EXECUTABLE_NAMES.filter((n) => n !== "galaxy");

function cni(name: string, env: Record<string, string>, stdin: string) {
  return launcherDir().then((dir) => runCommand(`${dir}/${name}`, [], { env, stdin }));
}

Deno.test("entry: every built-in name answers VERSION with all seven versions", async () => {
  for (const name of PLUGIN_NAMES) {
    const r = await cni(name, { CNI_COMMAND: "VERSION" }, "");
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.deepEqual(
      JSON.parse(r.stdout),
      { cniVersion: "1.1.0", supportedVersions: [...ALL_VERSIONS] },
      name,
    );
  }
});

Deno.test("entry: galaxy --version and galaxy version print the version line", async () => {
  const dir = await launcherDir();
  for (const args of [["--version"], ["version"]]) {
    const r = await runCommand(`${dir}/galaxy`, args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout.trim(),
      /^galaxy \d+\.\d+\.\d+ \(commit ([0-9a-f]{7,40}|unknown), built (\S+|unknown), deno \d+\.\d+\.\d+\)$/,
    );
    assert.ok(r.stdout.includes(`deno ${Deno.version.deno}`));
  }
});

Deno.test("entry: unknown subcommands and flags print usage on stderr and exit 2", async () => {
  const dir = await launcherDir();
  for (const args of [["bogus"], ["--bogus"], [], ["version", "extra"]]) {
    const r = await runCommand(`${dir}/galaxy`, args);
    assert.equal(r.code, 2, `galaxy ${args.join(" ")}`);
    assert.equal(r.stdout, "");
    assert.ok(r.stderr.length > 0);
  }
  const help = await runCommand(`${dir}/galaxy`, ["help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: galaxy <subcommand>/);
});

Deno.test("entry: CNI_COMMAND under an unknown executable name runs the shim", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-entry-test-" });
  try {
    const path = `${dir}/renamed-plugin`;
    await Deno.writeTextFile(
      path,
      launcherScript("renamed-plugin", { deno: Deno.execPath(), repo: REPO_ROOT }),
      {
        mode: 0o755,
      },
    );
    const r = await runCommand(path, [], { env: { CNI_COMMAND: "VERSION" }, stdin: "" });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).supportedVersions, [...ALL_VERSIONS]);
    const plain = await runCommand(path, []);
    assert.equal(plain.code, 2, "without CNI_COMMAND an unknown name is a usage error");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("entry: plugin-side errors through a real executable carry the spec's codes", async () => {
  const add = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "c1",
    CNI_NETNS: "/proc/self/ns/net",
    CNI_IFNAME: "eth0",
  };
  const conf = (v: string) => JSON.stringify({ cniVersion: v, name: "n", type: "galaxy-veth" });
  const cases: [Record<string, string>, string, number, RegExp][] = [
    [add, "{not json", 6, /decode/],
    [{ ...add, CNI_CONTAINERID: "" }, conf("1.0.0"), 4, /CNI_CONTAINERID/],
    [add, conf("0.9.0"), 1, /incompatible CNI versions.*0\.9\.0/],
    [{ ...add, CNI_IFNAME: "a23456789012345x" }, conf("1.0.0"), 4, /CNI_IFNAME/],
  ];
  for (const [env, stdin, code, msg] of cases) {
    const r = await cni("galaxy-veth", env, stdin);
    assert.equal(r.code, 1, `expected exit 1 for ${stdin}`);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 1, "stdout must carry exactly the error object");
    const err = JSON.parse(lines[0]);
    assert.equal(err.code, code, err.msg);
    assert.match(err.msg, msg);
  }
});

Deno.test("entry: launchers run main.ts with exactly the shared permission flags", async () => {
  const dir = await launcherDir();
  for (const name of EXECUTABLE_NAMES) {
    const script = await Deno.readTextFile(`${dir}/${name}`);
    const execLine = script.split("\n").find((l) => l.startsWith("exec -a "))!;
    assert.ok(execLine.startsWith(`exec -a ${name} `), name);
    const flags = [...execLine.matchAll(/'(--allow-[a-z]+)'/g)].map((m) => m[1]);
    assert.deepEqual(flags, [...PERMISSION_FLAGS]);
    assert.ok(execLine.includes(`'${REPO_ROOT}/main.ts'`));
    assert.equal((await Deno.stat(`${dir}/${name}`)).mode! & 0o111, 0o111);
  }
});

Deno.test("entry: the shim's module graph holds neither zod nor the Kubernetes client (pod start-up cost)", async () => {
  const r = await runCommand(Deno.execPath(), [
    "info",
    "--json",
    "--config",
    `${REPO_ROOT}/deno.json`,
    `${REPO_ROOT}/cni/shim.ts`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const graph = JSON.parse(r.stdout) as { modules: { specifier: string }[] };
  const specifiers = graph.modules.map((m) => m.specifier);
  assert.ok(specifiers.some((s) => s.endsWith("/cni/shim.ts")));
  // npm modules of the graph appear as npm: specifiers (npmPackages is the whole lockfile, not the graph).
  const heavy = specifiers.filter((s) => /zod|client-node/.test(s));
  assert.deepEqual(heavy, []);
});
