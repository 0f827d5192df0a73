/**
 * tke-route-eni as a real executable inside a lab's node namespace (whose "ENI" is a veth named eth1): ADD at
 * every CNI version with the output validated against that version's schema, the veth, routes, neighbour and
 * policy rules read back with `ip -j`, pings both ways, CHECK passing and then naming what was deleted by hand,
 * DEL removing rules, route and interfaces, and the faults (failing IPAM, a failure half-way, a re-ADD over a
 * crash's leftovers, a same-named veth of an older sandbox and that sandbox's late DEL, a vanished netns, DEL
 * without a known address, a missing ENI, `routeTable: 0`, a 4-character container ID, missing pod names).
 * Addresses come from 198.18.0.0/15; nothing touches the host namespace.
 * @module
 */
import assert from "node:assert/strict";
import { eniVethName } from "../../cni/plugins/kit/names.ts";
import type { Result } from "../../cni/spec.ts";
import { writeFakePlugins } from "../helpers/fake_plugins.ts";
import { kernelTest, type Lab, type Netns, withLab } from "../helpers/netns.ts";
import {
  assertFails,
  assertOk,
  hostLocalIpam,
  nodeLinks,
  ping,
  reservations,
  routes,
  rules,
  runBuiltin,
  TEST_VERSIONS,
  withPrevResult,
} from "../helpers/plugin_harness.ts";

const PLUGIN = "tke-route-eni";
const NETWORK = "gtest-eni";
const NODE_IP = "198.19.255.1";
const GW = "169.254.1.1";
const POD_NAMESPACE = "default";
const POD_NAME = "nginx-0";
/** `eni` + sha1("default.nginx-0")[:11], the example of galaxy-behaviour.md §3.0. */
const HOST = "enic048fd9a750";

function podArgs(extra: Record<string, string> = {}, name = POD_NAME): Record<string, string> {
  return {
    IgnoreUnknown: "1",
    K8S_POD_NAMESPACE: POD_NAMESPACE,
    K8S_POD_NAME: name,
    K8S_POD_INFRA_CONTAINER_ID: "x",
    ...extra,
  };
}

function ipinfos(ip: string): Record<string, string> {
  return { ipinfos: JSON.stringify([{ ip: `${ip}/24`, vlan: 0 }]) };
}

function eniConf(
  version: string,
  ipam: Record<string, unknown> | undefined,
  extra: Record<string, unknown> = {},
) {
  const conf: Record<string, unknown> = { cniVersion: version, name: NETWORK, type: PLUGIN, ...extra };
  if (ipam) conf.ipam = ipam;
  return conf;
}

/** A node namespace with an "ENI" (a veth named eth1; this kernel may lack dummy) and an address to ping. */
async function eniNode(lab: Lab): Promise<void> {
  await lab.ip(lab.node, ["link", "add", "eth1", "type", "veth", "peer", "name", "eth1peer"]);
  await lab.ip(lab.node, ["addr", "add", `${NODE_IP}/32`, "dev", "lo"]);
}

type JsonLink = { ifname: string; address: string; flags: string[]; link_netnsid?: number };

async function link(lab: Lab, ns: Netns, name: string): Promise<JsonLink | undefined> {
  const r = await lab.tryExec(ns, "ip", ["-j", "-d", "link", "show", "dev", name]);
  return r.code === 0 ? (JSON.parse(r.stdout) as JsonLink[])[0] : undefined;
}

/** The node's rules for `ip` as `[priority, "from"|"to", table]`, sorted. */
async function rulesOf(lab: Lab, ip: string): Promise<[number, string, string][]> {
  return (await rules(lab, lab.node))
    .filter((r) => r.src === ip || r.dst === ip)
    .map((r): [number, string, string] => [r.priority, r.src === ip ? "from" : "to", String(r.table)])
    .sort((a, b) => a[0] - b[0]);
}

async function assertNothingLeft(lab: Lab, pod: Netns | undefined, ip: string): Promise<void> {
  assert.deepEqual(await nodeLinks(lab, "eni"), [], "an eni veth is left in the node namespace");
  assert.deepEqual(await nodeLinks(lab, "v-"), [], "a temporary veth is left in the node namespace");
  if (pod) assert.deepEqual(await lab.linkNames(pod), ["lo"], "the pod namespace is not back to lo only");
  assert.ok(!(await routes(lab, lab.node)).some((r) => r.dst === ip), `host route to ${ip} is left`);
  assert.deepEqual(await rulesOf(lab, ip), [], `rules for ${ip} are left`);
  assert.deepEqual(await reservations(lab, NETWORK), [], "an IPAM reservation is left");
}

// ------------------------------------------------------------------------------------------ version table

for (const version of TEST_VERSIONS) {
  const rich = !version.startsWith("0.1") && !version.startsWith("0.2");
  const canCheck = version >= "0.4.0";
  const viaIpinfos = version === "1.1.0"; // one row takes ipinfos, as under Galaxy; the rest host-local

  kernelTest(`tke-route-eni ${version}: ADD, veth, routes, rules, ping, CHECK, DEL, DEL again`, async () => {
    await withLab(`eni${version.replaceAll(".", "")}`, async (lab) => {
      const pod = await lab.pod("pod");
      await eniNode(lab);
      const ipam = viaIpinfos ? undefined : hostLocalIpam(lab, "198.18.30.0/24");
      const conf = eniConf(version, ipam, { eni: "eth1", dns: { search: ["default.svc"] } });
      const args = podArgs(viaIpinfos ? ipinfos("198.18.30.9") : {});
      const call = { containerId: `e${version.replaceAll(".", "")}c0ffee0042`, netns: pod, args };

      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      const out = add.output!;
      const ip = add.result!.ips![0].address.split("/")[0];
      if (viaIpinfos) assert.equal(ip, "198.18.30.9");
      if (rich) {
        const interfaces = out.interfaces as { name: string; sandbox?: string }[];
        assert.deepEqual(interfaces.map((i) => [i.name, i.sandbox]), [[HOST, undefined], ["eth0", pod.path]]);
        assert.deepEqual(
          (out.ips as Record<string, unknown>[]).map((i) => [i.address, i.gateway, i.interface]),
          [[`${ip}/32`, GW, 1]],
        );
        assert.deepEqual(out.routes, [{ dst: `${GW}/32` }, { dst: "0.0.0.0/0", gw: GW }]);
      } else {
        assert.equal((out.ip4 as Record<string, unknown>).ip, `${ip}/32`);
      }
      assert.deepEqual(out.dns, { search: ["default.svc"] });

      const hostLink = (await link(lab, lab.node, HOST))!;
      assert.ok(hostLink?.flags.includes("UP"), `${HOST} is missing or down`);
      assert.notEqual(hostLink.link_netnsid, undefined);
      assert.deepEqual(await lab.addresses(pod, "eth0"), [`${ip}/32`]);
      const podRoutes = await routes(lab, pod);
      assert.ok(podRoutes.some((r) => r.dst === GW && r.scope === "link" && r.dev === "eth0"));
      const dflt = podRoutes.find((r) => r.dst === "default");
      assert.deepEqual(dflt && [dflt.gateway, dflt.dev, dflt.prefsrc], [GW, "eth0", ip]);
      const neigh = await lab.ipJson<{ dst: string; lladdr: string; state: string[] }[]>(pod, [
        "neigh",
        "show",
        "dev",
        "eth0",
      ]);
      assert.deepEqual(neigh.map((n) => [n.dst, n.lladdr, n.state]), [[GW, hostLink.address, ["PERMANENT"]]]);
      const hostRoute = (await routes(lab, lab.node)).find((r) => r.dst === ip);
      assert.deepEqual(hostRoute && [hostRoute.dev, hostRoute.scope], [HOST, "link"]);
      assert.deepEqual(await rulesOf(lab, ip), [[512, "to", "main"], [1536, "from", "1"]]);
      if (!viaIpinfos) assert.deepEqual(await reservations(lab, NETWORK), [ip]);

      assert.ok(await ping(lab, lab.node, ip), "node → pod ping failed");
      assert.ok(await ping(lab, pod, NODE_IP), "pod → node ping failed");

      const withPrev = rich ? withPrevResult(conf, add.result!) : conf;
      if (canCheck) {
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
        await lab.ip(lab.node, ["route", "del", `${ip}/32`, "dev", HOST]);
        await lab.ip(lab.node, ["rule", "del", "from", ip, "priority", "1536"]);
        const broken = await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call });
        const err = assertFails(broken, "CHECK after deleting by hand", {
          msg: new RegExp(`host route ${ip}/32 dev ${HOST} is missing`),
        });
        assert.match(err.msg, new RegExp(`host rule "from ${ip}/32 lookup 1 priority 1536" is missing`));
        assert.doesNotMatch(err.msg, /to .* priority 512/, "CHECK complains about a rule that is there");
      }

      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
      await assertNothingLeft(lab, pod, ip);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "second DEL");
      await assertNothingLeft(lab, pod, ip);
    });
  });
}

// ------------------------------------------------------------------------------------------ faults

kernelTest(
  "tke-route-eni: failing IPAM leaves nothing; a failure half-way rolls back veth, route and IPAM",
  async () => {
    await withLab("enifail", async (lab) => {
      const pod = await lab.pod("pod");
      await eniNode(lab);
      const fakeDir = await writeFakePlugins(`${lab.dir}/fake`, ["fake-ipam"]);
      const failing = eniConf("1.0.0", { type: "fake-ipam" }, {
        fail: { code: 11, msg: "no addresses now" },
      });
      const add = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf: failing,
        containerId: "enifail01",
        netns: pod,
        args: podArgs(),
        extraPath: [fakeDir],
      });
      assertFails(add, "ADD with failing IPAM", { msg: /no addresses now/, code: 11 });
      assert.deepEqual(await nodeLinks(lab, "eni"), []);
      assert.deepEqual(await lab.linkNames(pod), ["lo"]);

      await lab.ip(pod, ["route", "add", "blackhole", "default"]);
      const conf = eniConf("1.0.0", hostLocalIpam(lab, "198.18.31.0/24"));
      const half = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "enifail02",
        netns: pod,
        args: podArgs(),
      });
      assertFails(half, "ADD into a pod with a default route", {
        msg: /route add default via 169\.254\.1\.1/,
      });
      await lab.ip(pod, ["route", "del", "blackhole", "default"]);
      await assertNothingLeft(lab, pod, "198.18.31.2");
    });
  },
);

kernelTest("tke-route-eni: re-ADD after a crash takes over leftover rules, route and veth", async () => {
  await withLab("enireadd", async (lab) => {
    const pod = await lab.pod("pod");
    await eniNode(lab);
    const ip = "198.18.32.4";
    const containerId = "readd0001";
    // what a crash half-way through an earlier ADD of this attachment leaves: a veth whose pod end still has
    // its temporary name, the host route, both rules (one in a stale table)
    await lab.ip(lab.node, [
      "link",
      "add",
      HOST,
      "type",
      "veth",
      "peer",
      "name",
      `v-s${containerId}`,
      "netns",
      pod.name,
    ]);
    await lab.ip(lab.node, ["link", "set", HOST, "up"]);
    await lab.ip(lab.node, ["route", "add", `${ip}/32`, "dev", HOST, "scope", "link"]);
    await lab.ip(lab.node, ["rule", "add", "to", ip, "priority", "512", "table", "main"]);
    await lab.ip(lab.node, ["rule", "add", "from", ip, "priority", "1536", "table", "7"]);
    const conf = eniConf("1.0.0", undefined);
    const call = { containerId, netns: pod, args: podArgs(ipinfos(ip)) };
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
    assertOk(add, "re-ADD");
    assert.deepEqual(await lab.linkNames(pod), ["lo", "eth0"]);
    assert.deepEqual(await nodeLinks(lab, "eni"), [HOST]);
    assert.deepEqual(await rulesOf(lab, ip), [[512, "to", "main"], [1536, "from", "1"]]);
    assert.ok(await ping(lab, lab.node, ip));
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrevResult(conf, add.result!), ...call }),
      "DEL",
    );
    await assertNothingLeft(lab, pod, ip);
  });
});

kernelTest(
  "tke-route-eni: an older sandbox's same-named veth is replaced, and its late DEL spares the new one",
  async () => {
    await withLab("enisandbox", async (lab) => {
      const oldPod = await lab.pod("old");
      const newPod = await lab.pod("new");
      await eniNode(lab);
      const ip = "198.18.33.6"; // a StatefulSet pod keeps its address
      const conf = eniConf("1.0.0", undefined);
      const oldCall = { containerId: "oldsandbox1", netns: oldPod, args: podArgs(ipinfos(ip)) };
      const newCall = { containerId: "newsandbox1", netns: newPod, args: podArgs(ipinfos(ip)) };
      const oldAdd = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...oldCall });
      assertOk(oldAdd, "old ADD");
      const newAdd = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...newCall });
      assertOk(newAdd, "new ADD over the old sandbox's veth");
      assert.match(
        newAdd.stderr,
        /deleting host veth enic048fd9a750 whose peer is in another network namespace/,
      );
      assert.deepEqual(await lab.linkNames(oldPod), ["lo"], "the old sandbox's interface survived");
      // the old sandbox is torn down late, with its own prevResult: the new one must keep working
      const oldDel = await runBuiltin(lab, PLUGIN, {
        verb: "DEL",
        conf: withPrevResult(conf, oldAdd.result!),
        ...oldCall,
      });
      assertOk(oldDel, "old DEL");
      assert.deepEqual(await nodeLinks(lab, "eni"), [HOST]);
      assert.deepEqual(await rulesOf(lab, ip), [[512, "to", "main"], [1536, "from", "1"]]);
      assert.ok(await ping(lab, lab.node, ip), "the new sandbox lost its connectivity to the old one's DEL");
      const newPrev = withPrevResult(conf, newAdd.result!);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: newPrev, ...newCall }), "new CHECK");
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: newPrev, ...newCall }), "new DEL");
      await assertNothingLeft(lab, newPod, ip);
    });
  },
);

kernelTest(
  "tke-route-eni: DEL with a vanished or empty netns removes rules and releases IPAM; DEL twice",
  async () => {
    await withLab("enivanish", async (lab) => {
      await eniNode(lab);
      const conf = eniConf("0.4.0", hostLocalIpam(lab, "198.18.34.0/24"));
      for (const [cid, how] of [["vanish001", "vanished"], ["vanish002", "empty"]] as const) {
        const pod = await lab.pod(cid);
        const call = { containerId: cid, args: podArgs() };
        const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, netns: pod, ...call });
        assertOk(add, "ADD");
        const ip = add.result!.ips![0].address.split("/")[0];
        await lab.removeNetns(pod);
        const withPrev = withPrevResult(conf, add.result!);
        const netns = how === "vanished" ? pod.path : "";
        assertOk(
          await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, netns, ...call }),
          `DEL (${how})`,
        );
        await assertNothingLeft(lab, undefined, ip);
        assertOk(
          await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, netns, ...call }),
          `DEL 2 (${how})`,
        );
      }
    });
  },
);

kernelTest(
  "tke-route-eni: DEL without prevResult or ipinfos reads the address off the pod interface",
  async () => {
    await withLab("enidelnoip", async (lab) => {
      const pod = await lab.pod("pod");
      await eniNode(lab);
      const conf = eniConf("0.3.1", hostLocalIpam(lab, "198.18.35.0/24")); // 0.3.1: DEL gets no prevResult
      const call = { containerId: "noip00001", netns: pod, args: podArgs() };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      const ip = add.result!.ips![0].address.split("/")[0];
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...call }), "DEL");
      await assertNothingLeft(lab, pod, ip);

      // no netns either: the interface died with it, the rules stay, and stderr says so
      const pod2 = await lab.pod("pod2");
      const call2 = { containerId: "noip00002", netns: pod2, args: podArgs() };
      const add2 = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call2 });
      assertOk(add2, "ADD 2");
      const ip2 = add2.result!.ips![0].address.split("/")[0];
      await lab.removeNetns(pod2);
      const del2 = await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...call2 });
      assertOk(del2, "DEL without any address source");
      assert.match(del2.stderr, /the address is unknown .*removed the interface only/);
      assert.deepEqual(await rulesOf(lab, ip2), [[512, "to", "main"], [1536, "from", "1"]]);
      assert.deepEqual(await reservations(lab, NETWORK), [], "IPAM was not released");
    });
  },
);

kernelTest(
  "tke-route-eni: a missing ENI and missing pod names are clear errors; STATUS says 50",
  async () => {
    await withLab("enimissing", async (lab) => {
      const pod = await lab.pod("pod");
      const conf = eniConf("1.1.0", hostLocalIpam(lab, "198.18.36.0/24"));
      const add = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "noeni0001",
        netns: pod,
        args: podArgs(),
      });
      assertFails(add, "ADD without eth1", { msg: /config "eni": interface "eth1" does not exist/, code: 7 });
      const status = await runBuiltin(lab, PLUGIN, { verb: "STATUS", conf });
      assertFails(status, "STATUS without eth1", { msg: /"eth1" does not exist/, code: 50 });
      await eniNode(lab);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "STATUS", conf }), "STATUS with eth1");
      const noNames = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf: eniConf("1.0.0", hostLocalIpam(lab, "198.18.36.0/24")),
        containerId: "nonames01",
        netns: pod,
        args: { IgnoreUnknown: "1" },
      });
      assertFails(noNames, "ADD without pod names", { msg: /K8S_POD_NAMESPACE and K8S_POD_NAME/, code: 4 });
      assert.deepEqual(await reservations(lab, NETWORK), []);
      assert.deepEqual(await nodeLinks(lab, "eni"), []);
    });
  },
);

kernelTest("tke-route-eni: routeTable 0 adds no from-rule; a 4-character container ID works", async () => {
  await withLab("enitable0", async (lab) => {
    const pod = await lab.pod("pod");
    await eniNode(lab);
    const conf = eniConf("1.0.0", hostLocalIpam(lab, "198.18.37.0/24"), { routeTable: 0 });
    const call = { containerId: "abcd", netns: pod, args: podArgs({}, "web-1") };
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
    assertOk(add, "ADD");
    const ip = add.result!.ips![0].address.split("/")[0];
    const host = await eniVethName(POD_NAMESPACE, "web-1");
    assert.equal(add.result!.interfaces![0].name, host);
    assert.deepEqual(await rulesOf(lab, ip), [[512, "to", "main"]]);
    assert.ok(await ping(lab, lab.node, ip));
    const withPrev = withPrevResult(conf, add.result!);
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
    await assertNothingLeft(lab, pod, ip);
  });
});

kernelTest("tke-route-eni: chained prevResult is kept and our entries appended", async () => {
  await withLab("enichain", async (lab) => {
    const pod = await lab.pod("pod");
    await eniNode(lab);
    const prev: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "lo", sandbox: pod.path }],
      ips: [{ address: "198.18.38.200/32", interface: 0 }],
    };
    const conf = withPrevResult(eniConf("1.0.0", undefined), prev);
    const call = { containerId: "chain0001", netns: pod, args: podArgs(ipinfos("198.18.38.5")) };
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
    assertOk(add, "ADD");
    assert.deepEqual(add.result!.interfaces!.map((i) => i.name), ["lo", HOST, "eth0"]);
    assert.deepEqual(add.result!.ips!.map((i) => [i.address, i.interface]), [
      ["198.18.38.200/32", 0],
      ["198.18.38.5/32", 2],
    ]);
    const withPrev = withPrevResult(conf, add.result!);
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
    await assertNothingLeft(lab, pod, "198.18.38.5");
  });
});
