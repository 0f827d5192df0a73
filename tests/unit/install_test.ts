import assert from "node:assert/strict";
import {
  CNI_CONF_NAME,
  cniConfText,
  EXAMPLE_GALAXY_JSON,
  isOldGalaxyConf,
  OLD_CNI_CONF_NAME,
} from "../../cli/install.ts";
import { parseGalaxyConfig } from "../../daemon/config.ts";
import { EXECUTABLE_NAMES, LAUNCHER_HEADER } from "../../cli/launchers.ts";
import { compiledBinary, launcherDir } from "../helpers/launchers.ts";
import { runCommand } from "../helpers/netns.ts";

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every entry under `dir`: path → "dir", "link -> target", or mode and the file's text (or digest, if large). */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(path: string): Promise<void> {
    for await (const e of Deno.readDir(path)) {
      const full = `${path}/${e.name}`;
      const rel = full.slice(dir.length + 1);
      if (e.isSymlink) out[rel] = `link -> ${await Deno.readLink(full)}`;
      else if (e.isDirectory) {
        out[rel] = "dir";
        await walk(full);
      } else {
        const st = await Deno.stat(full);
        const content = st.size > 1e6 ? `sha256 ${await sha256(full)}` : await Deno.readTextFile(full);
        out[rel] = `${st.mode! & 0o777}:${content}`;
      }
    }
  }
  await walk(dir);
  return out;
}

Deno.test("install: creates exactly the expected files and links, is idempotent, and uninstall reverses it", async () => {
  const root = await Deno.makeTempDir({ prefix: "galaxy-install-test-" });
  try {
    for (const d of ["opt/cni/bin", "opt/cni/galaxy", "etc/cni/net.d"]) {
      await Deno.mkdir(`${root}/${d}`, { recursive: true });
    }
    await Deno.writeTextFile(`${root}/etc/cni/net.d/99-other.conflist`, "{}");
    const before = await snapshot(root);
    // A switched node: the Go Galaxy's 00-galaxy.conf (its DaemonSet's bytes) would sort before the conflist.
    await Deno.writeTextFile(
      `${root}/etc/cni/net.d/${OLD_CNI_CONF_NAME}`,
      '{"name":"galaxy-sdn","type":"galaxy-sdn","capabilities":{"portMappings":true},"cniVersion":"1.2.0"}',
    );
    const flags = [
      `--bin-dir=${root}/opt/cni/galaxy/bin`,
      `--cni-bin-dir=${root}/opt/cni/bin`,
      `--cni-conf-dir=${root}/etc/cni/net.d`,
      `--config=${root}/etc/galaxy/galaxy.json`,
    ];
    const galaxy = `${await launcherDir()}/galaxy`;

    const first = await runCommand(galaxy, ["install", ...flags]);
    assert.equal(first.code, 0, first.stderr);
    const installed = await snapshot(root);
    const added = Object.keys(installed).filter((k) => !(k in before)).sort();
    assert.deepEqual(
      added,
      [
        "etc/cni/net.d/00-galaxy.conflist",
        "etc/galaxy",
        "etc/galaxy/galaxy.json",
        "opt/cni/bin/galaxy-sdn",
        "opt/cni/galaxy/bin",
        ...EXECUTABLE_NAMES.map((n) => `opt/cni/galaxy/bin/${n}`),
      ].sort(),
    );
    assert.equal(installed["opt/cni/bin/galaxy-sdn"], `link -> ${root}/opt/cni/galaxy/bin/galaxy-sdn`);
    const binary = compiledBinary();
    for (const name of EXECUTABLE_NAMES) {
      const entry = installed[`opt/cni/galaxy/bin/${name}`];
      if (binary === undefined) {
        assert.ok(entry.startsWith(`${0o755}:${LAUNCHER_HEADER}`), `${name}: ${entry}`);
      } else if (name === "galaxy") {
        assert.equal(entry, `${0o755}:sha256 ${await sha256(binary)}`, "a copy of it");
      } else assert.equal(entry, "link -> galaxy", name);
    }
    assert.equal(
      installed[`etc/cni/net.d/${CNI_CONF_NAME}`],
      `${0o644}:${cniConfText("/var/run/galaxy/galaxy.sock")}`,
    );
    const conf = JSON.parse(await Deno.readTextFile(`${root}/etc/cni/net.d/${CNI_CONF_NAME}`));
    assert.deepEqual(conf, {
      cniVersion: "1.0.0",
      cniVersions: ["1.0.0", "1.1.0"],
      name: "galaxy-sdn",
      plugins: [{ type: "galaxy-sdn", capabilities: { portMappings: true } }],
    });
    assert.ok(!(`etc/cni/net.d/${OLD_CNI_CONF_NAME}` in installed), "the old 00-galaxy.conf is removed");
    assert.match(first.stdout, /remove .*00-galaxy\.conf$/m);
    assert.equal(installed["etc/galaxy/galaxy.json"], `${0o644}:${EXAMPLE_GALAXY_JSON}`);
    assert.deepEqual(parseGalaxyConfig(EXAMPLE_GALAXY_JSON, "example").defaultNetworks, ["galaxy-flannel"]);

    const sdn = await runCommand(`${root}/opt/cni/bin/galaxy-sdn`, [], { env: { CNI_COMMAND: "VERSION" } });
    assert.equal(sdn.code, 0, sdn.stderr);
    assert.ok(JSON.parse(sdn.stdout).supportedVersions.includes("1.1.0"));

    const second = await runCommand(galaxy, ["install", ...flags]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout.trim(), "already installed");
    assert.deepEqual(await snapshot(root), installed);

    await Deno.writeTextFile(`${root}/etc/galaxy/galaxy.json`, '{"DefaultNetworks": ["mine"]}');
    const third = await runCommand(galaxy, ["install", ...flags]);
    assert.equal(
      third.stdout.trim(),
      "already installed",
      "an operator's galaxy.json must not be overwritten",
    );
    await Deno.writeTextFile(`${root}/etc/galaxy/galaxy.json`, EXAMPLE_GALAXY_JSON);

    const removed = await runCommand(galaxy, ["install", "--uninstall", ...flags]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(await snapshot(root), before);
    const again = await runCommand(galaxy, ["install", "--uninstall", ...flags]);
    assert.equal(again.stdout.trim(), "nothing to remove");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("install: unknown flags are usage errors", async () => {
  const r = await runCommand(`${await launcherDir()}/galaxy`, ["install", "--bogus"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bogus/);
});

Deno.test("install: only a 00-galaxy.conf of Galaxy's shim is removed, never someone else's file", () => {
  assert.ok(isOldGalaxyConf('{"name":"galaxy-sdn","type":"galaxy-sdn","cniVersion":"1.2.0"}'));
  assert.ok(
    isOldGalaxyConf('{"cniVersion":"1.1.0","name":"galaxy-sdn","type":"galaxy-sdn","socketPath":"/x"}'),
  );
  assert.ok(!isOldGalaxyConf('{"name":"mynet","type":"bridge"}'));
  assert.ok(!isOldGalaxyConf('{"name":"galaxy-sdn","plugins":[{"type":"galaxy-sdn"}]}'));
  assert.ok(!isOldGalaxyConf("not json"));
  assert.ok(!isOldGalaxyConf(undefined));
});
