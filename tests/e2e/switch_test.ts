/**
 * A node switched in place from the Go Galaxy. First the Go Galaxy's own plugins (galaxy-flannel → galaxy-veth →
 * host-local, the real binaries) add two pods exactly as the Go daemon runs them (the network of its shipped
 * galaxy.json, the conf on stdin as written, the state file `/var/lib/cni/galaxy/<id>` in its format). Then
 * `galaxy serve` starts on the same folders: new pods get fresh IPs (host-local sees the old reservations), and
 * DEL of the old pods, from their Go state files alone, releases everything: veths, IPs, flannel's saved
 * delegate config, the state file.
 *
 * `/var/lib/cni` is moved into the test's folder by tests/helpers/relocated_host_local.ts (the Go flannel gives
 * host-local no data folder), identically for both generations.
 * @module
 */
import assert from "node:assert/strict";
import { type Daemon, runtimeCall, shimList, startDaemon } from "../helpers/daemon.ts";
import { REPO_ROOT } from "../helpers/launchers.ts";
import { kernelSkipReason, type Lab, type Netns, pathExists, withLab } from "../helpers/netns.ts";
import { goGalaxyBinary } from "../helpers/shared_tools.ts";

const FLANNEL_NETWORK = "198.18.32.0/20";
const FLANNEL_SUBNET = "198.18.33.1/24";

function skipReason(): string | undefined {
  const kernel = kernelSkipReason();
  if (kernel) return kernel;
  const missing = ["galaxy-flannel", "galaxy-veth"].filter((n) => !goGalaxyBinary(n));
  if (missing.length) {
    return `the Go Galaxy's ${missing.join(", ")} not found (../shared/reference/gogalaxy-bin)`;
  }
  return undefined;
}

interface Node {
  lab: Lab;
  /** Folder with the Go plugins and the relocated host-local (the Go image's /opt/cni/galaxy/bin). */
  goBin: string;
  /** Folder with only the relocated host-local, first on the new daemon's path. */
  ipamBin: string;
  /**
   * The network as the Go Galaxy's shipped galaxy.json has it: named, no cniVersion. (Unnamed, every Go plugin
   * refuses it: their CNI 0.8 skel says "missing network name".)
   */
  network: Record<string, unknown>;
  stateDir: string;
  /** host-local's folder for the network: `/var/lib/cni/networks/galaxy-flannel`, moved into the lab. */
  reservations: string;
  flannelDir: string;
}

async function relocatedHostLocal(dir: string, root: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/host-local`,
    `#!/bin/sh\nexec '${Deno.execPath()}' run -A --quiet --config '${REPO_ROOT}/deno.json' '${REPO_ROOT}/tests/helpers/relocated_host_local.ts' '${root}'\n`,
    { mode: 0o755 },
  );
}

async function makeNode(lab: Lab): Promise<Node> {
  const goBin = `${lab.dir}/go-bin`;
  const ipamBin = `${lab.dir}/ipam-bin`;
  const root = `${lab.dir}/root`;
  await relocatedHostLocal(goBin, root);
  await relocatedHostLocal(ipamBin, root);
  for (const name of ["galaxy-flannel", "galaxy-veth"]) {
    await Deno.symlink(goGalaxyBinary(name)!, `${goBin}/${name}`);
  }
  await Deno.writeTextFile(
    `${lab.dir}/subnet.env`,
    `FLANNEL_NETWORK=${FLANNEL_NETWORK}\nFLANNEL_SUBNET=${FLANNEL_SUBNET}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`,
  );
  const flannelDir = `${root}/var/lib/cni/flannel`;
  return {
    lab,
    goBin,
    ipamBin,
    network: {
      name: "galaxy-flannel",
      type: "galaxy-flannel",
      delegate: { type: "galaxy-veth" },
      subnetFile: `${lab.dir}/subnet.env`,
      dataDir: flannelDir,
    },
    stateDir: `${root}/var/lib/cni/galaxy`,
    reservations: `${root}/var/lib/cni/networks/galaxy-flannel`,
    flannelDir,
  };
}

/** ADD as the Go daemon does it: the conf as-is on stdin, the Go plugins, then its state file. */
async function goAdd(node: Node, id: string, pod: Netns, name: string): Promise<string> {
  const args =
    `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${id}`;
  const env = [
    "CNI_COMMAND=ADD",
    `CNI_CONTAINERID=${id}`,
    `CNI_NETNS=${pod.path}`,
    "CNI_IFNAME=eth0",
    `CNI_ARGS=${args}`,
    `CNI_PATH=${node.goBin}`,
    `PATH=${Deno.env.get("PATH")}`,
  ];
  const state = [{ NetworkType: "galaxy-flannel", Args: {}, Conf: node.network, IfName: "eth0" }];
  await Deno.mkdir(node.stateDir, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(`${node.stateDir}/${id}`, JSON.stringify(state), { mode: 0o600 });
  const out = await node.lab.tryExec(node.lab.node, "env", [...env, `${node.goBin}/galaxy-flannel`], {
    stdin: JSON.stringify(node.network),
  });
  assert.equal(out.code, 0, `Go galaxy-flannel ADD ${id}: ${out.stdout}${out.stderr}`);
  // The Go daemon returned this 0.2.0 result (no cniVersion in the conf) as is.
  const result = JSON.parse(out.stdout);
  assert.equal(result.cniVersion, "0.2.0", out.stdout);
  return result.ip4.ip.split("/")[0];
}

async function reservedIps(node: Node): Promise<string[]> {
  const ips: string[] = [];
  try {
    for await (const e of Deno.readDir(node.reservations)) {
      if (/^\d+\.\d+\.\d+\.\d+$/.test(e.name)) ips.push(e.name);
    }
  } catch {
    // no folder: none
  }
  return ips.sort();
}

async function hostVeths(lab: Lab): Promise<string[]> {
  return (await lab.linkNames(lab.node)).filter((n) => n.startsWith("v-h")).sort();
}

const reason = skipReason();
if (reason) console.log(`skipping the switched-node test: ${reason}`);

Deno.test({
  name:
    "switch: pods the Go Galaxy added keep their IPs, new pods get fresh ones, and DEL of the old releases all",
  ignore: reason !== undefined,
  async fn() {
    await withLab("switch", async (lab) => {
      const node = await makeNode(lab);
      // The Go Galaxy's node: two pods.
      const oldPods = [
        { id: "aaaa1111old", name: "old-1", ns: await lab.pod("old1") },
        { id: "bbbb2222old", name: "old-2", ns: await lab.pod("old2") },
      ];
      const oldIps: string[] = [];
      for (const p of oldPods) oldIps.push(await goAdd(node, p.id, p.ns, p.name));
      assert.deepEqual(
        await reservedIps(node),
        [...oldIps].sort(),
        "host-local keeps /var/lib/cni/networks/galaxy-flannel",
      );
      assert.deepEqual(await hostVeths(lab), ["v-haaaa1111o", "v-hbbbb2222o"]);
      assert.ok(
        await pathExists(`${node.flannelDir}/${oldPods[0].id}`),
        "Go flannel saved its delegate config",
      );

      // The switch: galaxy serve on the same galaxy.json and folders.
      let daemon: Daemon | undefined = await startDaemon(lab, {
        galaxyJson: { NetworkConf: [node.network], DefaultNetworks: ["galaxy-flannel"] },
        stateDir: node.stateDir,
      });
      try {
        const list = shimList(daemon.socket, "1.0.0");
        const path = [node.ipamBin];
        const newPods = [
          {
            containerId: "cccc3333new",
            pod: await lab.pod("new1"),
            k8s: { namespace: "default", name: "new-1" },
          },
          {
            containerId: "dddd4444new",
            pod: await lab.pod("new2"),
            k8s: { namespace: "default", name: "new-2" },
          },
        ];
        const newIps: string[] = [];
        for (const p of newPods) {
          const add = await runtimeCall(lab, "add", { ...p, list, path });
          assert.equal(add.code, 0, `ADD ${p.containerId}: ${add.stdout}${add.stderr}`);
          newIps.push(JSON.parse(add.stdout).ips[0].address.split("/")[0]);
        }
        for (const ip of newIps) assert.ok(!oldIps.includes(ip), `new pod got ${ip}, which an old pod holds`);
        assert.notEqual(newIps[0], newIps[1]);
        assert.deepEqual(await reservedIps(node), [...oldIps, ...newIps].sort(), "one reservation folder");

        // DEL of the Go-added pods: from their state files alone.
        for (const p of oldPods) {
          for (let round = 0; round < 2; round++) {
            const del = await runtimeCall(lab, "del", {
              containerId: p.id,
              pod: p.ns,
              k8s: { namespace: "default", name: p.name },
              list,
              path,
            });
            assert.equal(del.code, 0, `DEL ${p.id}: ${del.stdout}${del.stderr}`);
          }
          assert.ok(!(await pathExists(`${node.stateDir}/${p.id}`)), `state file of ${p.id} left`);
          assert.ok(!(await pathExists(`${node.flannelDir}/${p.id}`)), `flannel file of ${p.id} left`);
          assert.deepEqual(await lab.linkNames(p.ns), ["lo"], `pod ${p.name} still has links`);
        }
        assert.deepEqual(await reservedIps(node), [...newIps].sort(), "the old pods' IPs are released");
        assert.deepEqual(await hostVeths(lab), ["v-hcccc3333n", "v-hdddd4444n"]);

        for (const p of newPods) {
          const del = await runtimeCall(lab, "del", { ...p, list, path });
          assert.equal(del.code, 0, `DEL ${p.containerId}: ${del.stdout}${del.stderr}`);
        }
        assert.deepEqual(await reservedIps(node), []);
        assert.deepEqual(await hostVeths(lab), []);
        const out = await daemon.process.stop("SIGTERM");
        daemon = undefined;
        assert.equal(out.code, 0, out.stderr);
      } finally {
        if (daemon) console.log((await daemon.process.stop("SIGKILL")).stderr);
      }
    });
  },
});
