import assert from "node:assert/strict";
import { kernelTest, type Lab, pathExists, runCommand, withLab } from "../helpers/netns.ts";
import { REPO_ROOT } from "../helpers/launchers.ts";

const STANDARD_PLUGINS = "/usr/lib/cni";
const CNITOOL = `${REPO_ROOT}/tests/helpers/cnitool.ts`;

function bridgeList(lab: Lab, subnet: string) {
  return {
    cniVersion: "1.0.0",
    name: "gtest-bridge",
    plugins: [{
      type: "bridge",
      bridge: "gtbr0",
      isGateway: true,
      ipam: { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[{ subnet }]] },
    }],
  };
}

async function cnitool(lab: Lab, verb: string, request: Record<string, unknown>) {
  const stdin = JSON.stringify({ path: [STANDARD_PLUGINS], cacheDir: `${lab.dir}/cache`, ...request });
  return await lab.tryExec(lab.node, Deno.execPath(), ["run", "-A", "--quiet", CNITOOL, verb], { stdin });
}

kernelTest("invoke: standard bridge + host-local conflist, ADD / CHECK / DEL in namespaces", async () => {
  if (!(await pathExists(`${STANDARD_PLUGINS}/bridge`))) {
    throw new Error(`${STANDARD_PLUGINS}/bridge is missing: install Debian's containernetworking-plugins`);
  }
  await withLab("bridge", async (lab) => {
    const pod = await lab.pod("pod1");
    const list = bridgeList(lab, "198.18.5.0/24");
    const rt = { containerId: "ctr-bridge-1", netns: pod.path, ifname: "eth0" };
    const cacheFile = `${lab.dir}/cache/results/gtest-bridge-ctr-bridge-1-eth0`;

    const add = await cnitool(lab, "add", { list, rt });
    assert.equal(add.code, 0, `ADD failed: ${add.stdout} ${add.stderr}`);
    const result = JSON.parse(add.stdout);
    assert.equal(result.cniVersion, "1.0.0", "libcni returns the result in the list's version");
    const podIp = result.ips[0].address as string;
    assert.match(podIp, /^198\.18\.5\.\d+\/24$/);
    const podIface = result.interfaces[result.ips[0].interface];
    assert.equal(podIface.name, "eth0");
    assert.equal(podIface.sandbox, pod.path);

    assert.deepEqual(await lab.addresses(pod, "eth0"), [podIp]);
    assert.deepEqual(await lab.addresses(lab.node, "gtbr0"), ["198.18.5.1/24"]);
    const reservation = `${lab.dir}/ipam/gtest-bridge/${podIp.split("/")[0]}`;
    assert.equal((await Deno.readTextFile(reservation)).split(/\s/)[0], "ctr-bridge-1");
    const cache = JSON.parse(await Deno.readTextFile(cacheFile));
    assert.equal(cache.kind, "cniCacheV1");
    assert.equal(cache.networkName, "gtest-bridge");
    assert.equal(cache.result.cniVersion, "1.0.0");
    assert.equal(cache.result.ips[0].address, podIp);
    assert.equal((await Deno.stat(cacheFile)).mode! & 0o777, 0o600);

    const ping = await runCommand("ip", [
      "netns",
      "exec",
      lab.node.name,
      "ping",
      "-c",
      "1",
      "-W",
      "2",
      podIp.split("/")[0],
    ]);
    assert.equal(ping.code, 0, `node → pod ping failed: ${ping.stdout}`);

    const check = await cnitool(lab, "check", { list, rt });
    assert.equal(check.code, 0, `CHECK failed: ${check.stdout}`);

    const del = await cnitool(lab, "del", { list, rt });
    assert.equal(del.code, 0, `DEL failed: ${del.stdout}`);
    assert.ok(!(await lab.linkNames(pod)).includes("eth0"), "eth0 is still in the pod after DEL");
    assert.ok(!(await pathExists(reservation)), "host-local reservation left after DEL");
    assert.ok(!(await pathExists(cacheFile)), "cache file left after DEL");

    const again = await cnitool(lab, "del", { list, rt });
    assert.equal(again.code, 0, `second DEL failed: ${again.stdout}`);

    const checkAfterDel = await cnitool(lab, "check", { list, rt });
    assert.equal(checkAfterDel.code, 1);
    assert.equal(JSON.parse(checkAfterDel.stdout).code, 3);
  });
});

kernelTest("invoke: GC deletes cached attachments that are no longer valid", async () => {
  await withLab("gc", async (lab) => {
    const keep = await lab.pod("keep");
    const stale = await lab.pod("stale");
    const list = bridgeList(lab, "198.18.6.0/24");
    const keepRt = { containerId: "ctr-keep", netns: keep.path, ifname: "eth0" };
    const staleRt = { containerId: "ctr-stale", netns: stale.path, ifname: "eth0" };
    for (const rt of [keepRt, staleRt]) {
      const add = await cnitool(lab, "add", { list, rt });
      assert.equal(add.code, 0, add.stdout);
    }
    const gc = await cnitool(lab, "gc", { list, valid: [{ containerID: "ctr-keep", ifname: "eth0" }] });
    assert.equal(gc.code, 0, gc.stdout);

    assert.ok((await lab.linkNames(keep)).includes("eth0"));
    assert.ok(!(await lab.linkNames(stale)).includes("eth0"), "stale attachment survived GC");
    assert.ok(await pathExists(`${lab.dir}/cache/results/gtest-bridge-ctr-keep-eth0`));
    assert.ok(!(await pathExists(`${lab.dir}/cache/results/gtest-bridge-ctr-stale-eth0`)));
    const reserved = [];
    for await (const e of Deno.readDir(`${lab.dir}/ipam/gtest-bridge`)) {
      if (e.name.startsWith("198.")) reserved.push(e.name);
    }
    assert.equal(reserved.length, 1, `expected one reservation left, found ${reserved}`);

    const del = await cnitool(lab, "del", { list, rt: keepRt });
    assert.equal(del.code, 0, del.stdout);
  });
});
