/**
 * Every runtime in use against one daemon: {the Go Galaxy's galaxy-sdn, ours} × {libcni 0.8.1, 1.1.2, 1.2.3
 * (the `cnirun` driver)} × {every config version both the shim and the library speak, and `""`}. Each case:
 * ADD, CHECK where the library allows it (≥ 0.4.0), DEL and a second DEL succeed, the printed result is in the
 * config's version, and nothing is left (state file, host-local reservation, veths, libcni cache). Then the
 * conflist `galaxy install` writes, with the libraries that can read it.
 *
 * The network is a galaxy.json network without a name (galaxy-flannel → galaxy-veth → Debian's host-local): it
 * reaches its plugins unnamed, and host-local must keep its reservations in its data folder itself.
 * @module
 */
import assert from "node:assert/strict";
import { cniConfText } from "../../cli/install.ts";
import { checkResult, type CniVersion, versionAtLeast } from "../../cni/spec.ts";
import { type Daemon, startDaemon } from "../helpers/daemon.ts";
import { launcherDir } from "../helpers/launchers.ts";
import {
  kernelSkipReason,
  type Lab,
  type Netns,
  pathExists,
  type RunResult,
  withLab,
} from "../helpers/netns.ts";
import {
  cnirun,
  goGalaxyBinary,
  LIBCNI_VERSIONS,
  type LibcniVersion,
  withGalaxySocketDir,
} from "../helpers/shared_tools.ts";

/** Config versions each libcni generation can run (libcni's own supported list), with `""` (= 0.1.0). */
const LIBCNI_CONFIG_VERSIONS: Record<LibcniVersion, string[]> = {
  "0.8.1": ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"],
  "1.1.2": ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"],
  "1.2.3": ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
};
/** The Go shim's CNI 0.8 skel: 0.1.0–0.4.0 (and "" as 0.1.0). */
const GO_SHIM_VERSIONS = ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"];
const SUBNET = "198.18.30";

type Shim = "go" | "ours";

interface Case {
  shim: Shim;
  lib: LibcniVersion;
  /** The config's cniVersion as written. */
  version: string;
}

function skipReason(): string | undefined {
  const kernel = kernelSkipReason();
  if (kernel) return kernel;
  const missing = LIBCNI_VERSIONS.filter((v) => !cnirun(v));
  if (missing.length) return `cnirun for libcni ${missing.join(", ")} not found (../shared/tools/cnirun)`;
  return undefined;
}

function cases(): Case[] {
  const all: Case[] = [];
  const go = goGalaxyBinary("galaxy-sdn") !== undefined;
  if (!go) {
    console.log("skipping the Go galaxy-sdn rows: ../shared/reference/gogalaxy-bin/galaxy-sdn not found");
  }
  for (const lib of LIBCNI_VERSIONS) {
    for (const version of LIBCNI_CONFIG_VERSIONS[lib]) {
      all.push({ shim: "ours", lib, version });
      if (go && GO_SHIM_VERSIONS.includes(version)) all.push({ shim: "go", lib, version });
    }
  }
  return all;
}

interface Bench {
  lab: Lab;
  daemon: Daemon;
  pod: Netns;
  /** CNI_PATH folders per shim. */
  paths: Record<Shim, string>;
}

async function cnirunCall(
  b: Bench,
  c: { shim: Shim; lib: LibcniVersion },
  verb: string,
  confPath: string,
  containerId: string,
): Promise<RunResult> {
  const argv = [cnirun(c.lib)!, verb, confPath, b.pod.path, containerId, "eth0"];
  const env = {
    CNI_PATH: b.paths[c.shim],
    CNI_CACHE_DIR: `${b.lab.dir}/cache`,
    CNI_ARGS_KV: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1",
    PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
  };
  // The Go shim always dials /var/run/galaxy/galaxy.sock: give it the daemon's socket folder there.
  const full = c.shim === "go" ? withGalaxySocketDir(`${b.lab.dir}/run`, argv) : argv;
  return await b.lab.tryExec(b.lab.node, "env", [
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    ...full,
  ]);
}

/** What a version's result looks like after a pass through a shim: the version it carries and its address. */
function expectedVersion(version: string): CniVersion {
  return (version === "" ? "0.1.0" : version) as CniVersion;
}

function addressOf(result: Record<string, unknown>, version: CniVersion): string | undefined {
  if (version === "0.1.0" || version === "0.2.0") return (result.ip4 as { ip?: string } | undefined)?.ip;
  return (result.ips as { address: string }[] | undefined)?.[0]?.address;
}

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) found.push(e.name);
  } catch {
    // no folder: nothing in it
  }
  return found;
}

async function leftovers(b: Bench, containerId: string): Promise<string[]> {
  const left: string[] = [];
  try {
    await Deno.lstat(`${b.daemon.stateDir}/${containerId}`);
    left.push("state file");
  } catch {
    // gone
  }
  for (const name of await names(`${b.lab.dir}/ipam`)) {
    if (name.startsWith(SUBNET)) left.push(`host-local reservation ${name}`);
  }
  for (const name of await names(`${b.lab.dir}/cache/results`)) left.push(`libcni cache ${name}`);
  for (const name of await names(`${b.lab.dir}/flannel`)) left.push(`flannel file ${name}`);
  for (const name of await b.lab.linkNames(b.lab.node)) if (name.startsWith("v-h")) left.push(`veth ${name}`);
  for (const name of await b.lab.linkNames(b.pod)) if (name !== "lo") left.push(`pod link ${name}`);
  return left;
}

async function runCase(b: Bench, c: Case, index: number): Promise<void> {
  const label = `${c.shim} galaxy-sdn, libcni ${c.lib}, cniVersion ${JSON.stringify(c.version)}`;
  const id = `m${String(index).padStart(2, "0")}${c.shim}${c.lib.replaceAll(".", "")}x`;
  const conf = `${b.lab.dir}/case-${index}.conf`;
  await Deno.writeTextFile(
    conf,
    JSON.stringify({
      cniVersion: c.version,
      name: "galaxy-sdn",
      type: "galaxy-sdn",
      socketPath: b.daemon.socket,
    }),
  );
  const want = expectedVersion(c.version);
  const add = await cnirunCall(b, c, "add", conf, id);
  assert.equal(add.code, 0, `${label}: ADD failed: ${add.stdout}${add.stderr}`);
  const result = JSON.parse(add.stdout);
  assert.equal(result.cniVersion, want, `${label}: result version`);
  checkResult(result, want);
  const address = addressOf(result, want);
  const legacy = want === "0.1.0" || want === "0.2.0";
  if (c.shim === "go" && legacy) {
    // The Go shim decodes every reply into a 0.4.0 struct, which has no ip4: a legacy result loses its address
    // whatever the daemon sends (galaxy-behaviour.md §1.5). The pod is wired; the runtime cannot be told.
    assert.equal(address, undefined, `${label}: the Go shim was expected to drop the legacy address`);
  } else {
    assert.match(
      address ?? "",
      new RegExp(`^${SUBNET.replaceAll(".", "\\.")}\\.\\d+/32$`),
      `${label}: ${add.stdout}`,
    );
  }
  const pod = await b.lab.addresses(b.pod, "eth0");
  assert.equal(pod.length, 1, `${label}: pod eth0 addresses ${pod}`);
  // Unnamed all the way down: host-local reserved the pod's IP in its data folder itself.
  const reserved = `${b.lab.dir}/ipam/${pod[0].split("/")[0]}`;
  assert.ok(await pathExists(reserved), `${label}: no reservation ${reserved}`);
  if (versionAtLeast(want, "0.4.0")) {
    const check = await cnirunCall(b, c, "check", conf, id);
    assert.equal(check.code, 0, `${label}: CHECK failed: ${check.stdout}${check.stderr}`);
  }
  let delConf = conf;
  if (c.lib === "0.8.1" && c.version === "") {
    // libcni 0.8.1 itself cannot DEL such a config: it compares the empty version before any plugin runs.
    const del = await cnirunCall(b, c, "del", conf, id);
    assert.equal(del.code, 1, `${label}: libcni 0.8.1 was expected to refuse this DEL itself`);
    assert.match(del.stderr, /invalid version "": the version is empty/);
    delConf = `${b.lab.dir}/case-${index}-del.conf`;
    await Deno.writeTextFile(
      delConf,
      JSON.stringify({
        cniVersion: "0.1.0",
        name: "galaxy-sdn",
        type: "galaxy-sdn",
        socketPath: b.daemon.socket,
      }),
    );
  }
  for (const round of ["DEL", "second DEL"]) {
    const del = await cnirunCall(b, c, "del", delConf, id);
    assert.equal(del.code, 0, `${label}: ${round} failed: ${del.stdout}${del.stderr}`);
  }
  assert.deepEqual(await leftovers(b, id), [], `${label}: left behind`);
}

/**
 * galaxy.json of the bench: galaxy-flannel → galaxy-veth → host-local, without a name: it reaches every plugin
 * unnamed, and host-local keeps its reservations in its data folder itself.
 */
const BENCH_NETWORKS = (lab: Lab) => ({
  NetworkConf: [{
    type: "galaxy-flannel",
    delegate: { type: "galaxy-veth" },
    subnetFile: `${lab.dir}/subnet.env`,
    dataDir: `${lab.dir}/flannel`,
    ipam: { dataDir: `${lab.dir}/ipam` },
  }],
  DefaultNetworks: ["galaxy-flannel"],
});

async function withBench(
  fn: (b: Bench) => Promise<void>,
  galaxyJson: (lab: Lab) => unknown = BENCH_NETWORKS,
): Promise<void> {
  await withLab("runtimes", async (lab) => {
    const goBin = `${lab.dir}/go-bin`;
    await Deno.mkdir(goBin);
    const goShim = goGalaxyBinary("galaxy-sdn");
    if (goShim) await Deno.symlink(goShim, `${goBin}/galaxy-sdn`);
    await Deno.writeTextFile(
      `${lab.dir}/subnet.env`,
      `FLANNEL_NETWORK=${SUBNET}.0/24\nFLANNEL_SUBNET=${SUBNET}.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`,
    );
    const daemon = await startDaemon(lab, { galaxyJson: galaxyJson(lab) });
    try {
      const pod = await lab.pod("p1");
      await fn({ lab, daemon, pod, paths: { go: goBin, ours: await launcherDir() } });
    } finally {
      const out = await daemon.process.stop("SIGTERM");
      if (out.code !== 0) console.log(`daemon stderr:\n${out.stderr}`);
    }
  });
}

const reason = skipReason();
if (reason) console.log(`skipping the runtime matrix: ${reason}`);

Deno.test({
  name: "runtimes: {Go, our galaxy-sdn} × {libcni 0.8.1, 1.1.2, 1.2.3} × config versions: ADD/CHECK/DEL/DEL",
  ignore: reason !== undefined,
  async fn() {
    await withBench(async (b) => {
      const all = cases();
      for (const [i, c] of all.entries()) await runCase(b, c, i);
      console.log(`runtime matrix: ${all.length} cases passed`);
    });
  },
});

Deno.test({
  name:
    "runtimes: galaxy install's conflist (1.0.0 + cniVersions) runs at 1.0.0 on libcni 1.1.2, 1.1.0 on 1.2.3",
  ignore: reason !== undefined,
  async fn() {
    await withBench(async (b) => {
      const conf = `${b.lab.dir}/00-galaxy.conflist`;
      await Deno.writeTextFile(conf, cniConfText(b.daemon.socket));
      for (const [lib, want] of [["1.1.2", "1.0.0"], ["1.2.3", "1.1.0"]] as const) {
        const c = { shim: "ours" as const, lib };
        const id = `install${lib.replaceAll(".", "")}`;
        const add = await cnirunCall(b, c, "add", conf, id);
        assert.equal(add.code, 0, `libcni ${lib}: ADD failed: ${add.stdout}${add.stderr}`);
        const result = JSON.parse(add.stdout);
        assert.equal(result.cniVersion, want, `libcni ${lib}`);
        checkResult(result, want);
        const check = await cnirunCall(b, c, "check", conf, id);
        assert.equal(check.code, 0, `libcni ${lib}: CHECK failed: ${check.stdout}${check.stderr}`);
        for (let round = 0; round < 2; round++) {
          const del = await cnirunCall(b, c, "del", conf, id);
          assert.equal(del.code, 0, `libcni ${lib}: DEL failed: ${del.stdout}${del.stderr}`);
        }
        assert.deepEqual(await leftovers(b, id), [], `libcni ${lib}: left behind`);
      }
    });
  },
});

Deno.test({
  name:
    "runtimes: an error keeps its code with our shim; the Go shim (code 999) carries it inside its message",
  ignore: kernelSkipReason() !== undefined,
  async fn() {
    await withBench(async (b) => {
      const env = {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: "errcase1",
        CNI_NETNS: b.pod.path,
        CNI_IFNAME: "eth0",
        CNI_PATH: "/nonexistent",
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      };
      const conf = JSON.stringify({
        cniVersion: "0.4.0",
        name: "galaxy-sdn",
        type: "galaxy-sdn",
        socketPath: b.daemon.socket,
      });
      const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
      const ours = await b.lab.tryExec(b.lab.node, "env", [...envArgs, `${b.paths.ours}/galaxy-sdn`], {
        stdin: conf,
      });
      assert.equal(ours.code, 1);
      const err = JSON.parse(ours.stdout);
      assert.deepEqual([err.cniVersion, err.code], ["0.4.0", 7], ours.stdout);
      assert.match(err.msg, /network "missing"/);
      if (!goGalaxyBinary("galaxy-sdn")) {
        console.log("skipped the Go shim part: ../shared/reference/gogalaxy-bin/galaxy-sdn not found");
        return;
      }
      const argv = withGalaxySocketDir(`${b.lab.dir}/run`, ["env", ...envArgs, `${b.paths.go}/galaxy-sdn`]);
      const go = await b.lab.tryExec(b.lab.node, argv[0], argv.slice(1), { stdin: conf });
      assert.equal(go.code, 1);
      // Its CNI 0.8 skel turns any error of its own into 999; the daemon's error object is the message.
      const goErr = JSON.parse(go.stdout);
      assert.equal(goErr.code, 999, go.stdout);
      assert.ok(goErr.msg.startsWith("galaxy returns: "), goErr.msg);
      const inner = JSON.parse(goErr.msg.slice("galaxy returns: ".length));
      assert.deepEqual([inner.cniVersion, inner.code], ["0.4.0", 7]);
      assert.equal(inner.msg, err.msg);
    }, (lab) => ({ ...BENCH_NETWORKS(lab), DefaultNetworks: ["missing"] }));
  },
});
