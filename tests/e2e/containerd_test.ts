/**
 * containerd 1.6 (Debian 12's, with its CRI plugin and libcni 1.1) as the runtime, galaxy serve in the node
 * namespace: with our galaxy-sdn and the `00-galaxy.conflist` that `galaxy install` writes (1.0.0 for this
 * libcni), and mid-upgrade with the Go Galaxy's galaxy-sdn and a 0.4.0 config. RunPodSandbox wires the pod
 * (containerd reads the IP from the result; the node pings it), StopPodSandbox releases everything,
 * RemovePodSandbox forgets it. Skipped with the reason where containerd cannot start.
 * @module
 */
import assert from "node:assert/strict";
import { cniConfText } from "../../cli/install.ts";
import {
  type Containerd,
  containerdSkipReason,
  ContainerdUnavailable,
  startContainerd,
} from "../helpers/containerd.ts";
import { type Daemon, startDaemon } from "../helpers/daemon.ts";
import { launcherDir } from "../helpers/launchers.ts";
import { kernelSkipReason, type Lab, pathExists, withLab } from "../helpers/netns.ts";
import { goGalaxyBinary, withGalaxySocketDir } from "../helpers/shared_tools.ts";

const SUBNET = "198.18.34";
const NODE_ADDR = `${SUBNET}.254`;

const reason = kernelSkipReason() ?? containerdSkipReason();
if (reason) console.log(`skipping the containerd test: ${reason}`);

async function reservations(dir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.name.startsWith(SUBNET)) found.push(e.name);
  } catch {
    // no folder: none
  }
  return found;
}

function shellQuote(words: string[]): string {
  return words.map((w) => `'${w.replaceAll("'", "'\\''")}'`).join(" ");
}

/** RunPodSandbox / StopPodSandbox / RemovePodSandbox with the runtime config in `conf` and the shim in `shimDir`. */
async function roundTrip(
  label: string,
  conf: { file: string; text: (socket: string) => string },
  shimDir: (lab: Lab) => Promise<string>,
) {
  await withLab(label, async (lab) => {
    // The node's own address: the source for reaching pods behind galaxy-veth's /32 routes.
    await lab.ip(lab.node, ["addr", "add", `${NODE_ADDR}/32`, "dev", "lo"]);
    const ipam = `${lab.dir}/ipam`;
    let daemon: Daemon | undefined = await startDaemon(lab, {
      netOnly: true,
      galaxyJson: {
        NetworkConf: [{
          name: "pod-net",
          type: "galaxy-veth",
          routeSrc: NODE_ADDR,
          ipam: { type: "host-local", subnet: `${SUBNET}.0/24`, dataDir: ipam },
        }],
        DefaultNetworks: ["pod-net"],
      },
    });
    const confDir = `${lab.dir}/runtime-net.d`;
    await Deno.mkdir(confDir);
    await Deno.writeTextFile(`${confDir}/${conf.file}`, conf.text(daemon.socket));
    let ctrd: Containerd | undefined;
    try {
      try {
        ctrd = await startContainerd(lab, { confDir, binDirs: [await shimDir(lab), "/usr/lib/cni"] });
      } catch (e) {
        if (!(e instanceof ContainerdUnavailable)) throw e;
        console.log(`skipped ${label}: containerd cannot start here: ${e.message}`);
        return;
      }
      const runp = await ctrd.cri(["runp", "--name", "p1", "--namespace", "default", "--uid", "uid-p1"]);
      assert.equal(runp.code, 0, `RunPodSandbox: ${runp.stderr}\n${(await ctrd.log()).slice(-3000)}`);
      const id = JSON.parse(runp.stdout).pod_sandbox_id as string;
      const inspect = await ctrd.cri(["inspectp", id]);
      assert.equal(inspect.code, 0, inspect.stderr);
      const status = JSON.parse(inspect.stdout).status;
      assert.equal(status.state, "SANDBOX_READY");
      const ip = status.network.ip as string;
      assert.match(
        ip,
        new RegExp(`^${SUBNET.replaceAll(".", "\\.")}\\.\\d+$`),
        inspect.stdout.slice(0, 2000),
      );
      assert.deepEqual(await reservations(`${ipam}/pod-net`), [ip]);
      assert.ok(await pathExists(`${daemon.stateDir}/${id}`), "the daemon keeps a state file per sandbox");
      const ping = await lab.tryExec(lab.node, "ping", ["-c", "1", "-W", "2", ip]);
      assert.equal(ping.code, 0, `node -> pod ${ip}: ${ping.stdout}${ping.stderr}`);

      const stopp = await ctrd.cri(["stopp", id]);
      assert.equal(stopp.code, 0, `StopPodSandbox: ${stopp.stderr}`);
      assert.deepEqual(await reservations(`${ipam}/pod-net`), [], "StopPodSandbox released the IP");
      assert.ok(!(await pathExists(`${daemon.stateDir}/${id}`)), "state file left after StopPodSandbox");
      const veths = (await lab.linkNames(lab.node)).filter((n) => n.startsWith("v-h"));
      assert.deepEqual(veths, [], "host veth left after StopPodSandbox");
      const rmp = await ctrd.cri(["rmp", id]);
      assert.equal(rmp.code, 0, `RemovePodSandbox: ${rmp.stderr}`);
      const pods = await ctrd.cri(["pods"]);
      assert.deepEqual(JSON.parse(pods.stdout).items ?? [], []);
    } finally {
      await ctrd?.stop();
      const out = await daemon.process.stop("SIGTERM");
      daemon = undefined;
      if (out.code !== 0) console.log(`daemon stderr:\n${out.stderr}`);
    }
  });
}

Deno.test({
  name:
    "containerd 1.6 CRI + our galaxy-sdn + 00-galaxy.conflist: RunPodSandbox / StopPodSandbox / RemovePodSandbox",
  ignore: reason !== undefined,
  async fn() {
    await roundTrip("ctrd", { file: "00-galaxy.conflist", text: cniConfText }, () => launcherDir());
  },
});

const goShim = goGalaxyBinary("galaxy-sdn");
if (!reason && !goShim) {
  console.log(
    "skipping the containerd + Go shim test: ../shared/reference/gogalaxy-bin/galaxy-sdn not found",
  );
}

Deno.test({
  name: "containerd 1.6 CRI + the Go Galaxy's galaxy-sdn (a 0.4.0 conf, mid-upgrade): the same round trip",
  ignore: reason !== undefined || !goShim,
  async fn() {
    const conf = (_socket: string) =>
      JSON.stringify({
        cniVersion: "0.4.0",
        name: "galaxy-sdn",
        type: "galaxy-sdn",
        capabilities: { portMappings: true },
      });
    await roundTrip("ctrdgo", { file: "00-galaxy.conf", text: conf }, async (lab) => {
      // The Go shim dials /var/run/galaxy/galaxy.sock: containerd execs it through a private mount namespace
      // where that is the daemon's socket folder.
      const dir = `${lab.dir}/go-shim-bin`;
      await Deno.mkdir(dir);
      const argv = withGalaxySocketDir(`${lab.dir}/run`, [goShim!]);
      await Deno.writeTextFile(`${dir}/galaxy-sdn`, `#!/bin/sh\nexec ${shellQuote(argv)}\n`, { mode: 0o755 });
      return dir;
    });
  },
});
