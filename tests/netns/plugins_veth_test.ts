/**
 * galaxy-veth as a real executable inside a lab's node namespace: ADD at every CNI version with the output
 * validated against that version's schema, kernel state read back with `ip -j`, real pings both ways, CHECK
 * passing and then naming what was deleted by hand, DEL removing the attachment and the IPAM reservation, and
 * the faults (failing and exhausted IPAM, a failure half-way, leftover and foreign host veths, a vanished
 * netns, DEL twice, chaining, ipinfos, a 4-character container ID, STATUS and GC forwarding).
 * Addresses come from 198.18.0.0/15; nothing touches the host namespace.
 * @module
 */
import assert from "node:assert/strict";
import { configurePodInterface } from "../../cni/plugins/kit/pod_interface.ts";
import type { Result } from "../../cni/spec.ts";
import { shutdownNetnsWorkers } from "../../netops/netns.ts";
import { getSysctls } from "../../netops/sysctl.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import { kernelTest, type Lab, type Netns, withLab } from "../helpers/netns.ts";
import {
  assertFails,
  assertOk,
  hostLocalIpam,
  nodeLinks,
  ping,
  reservations,
  routes,
  runBuiltin,
  TEST_VERSIONS,
  withPrevResult,
} from "../helpers/plugin_harness.ts";

const PLUGIN = "galaxy-veth";
const NETWORK = "gtest-veth";
/** An address of the node namespace (on its loopback), used as routeSrc and as the pod's ping target. */
const NODE_IP = "198.19.255.1";
const GW = "169.254.1.1";

type JsonLink = { ifname: string; address: string; mtu: number; flags: string[]; link_netnsid?: number };

async function nodeWithAddress(lab: Lab): Promise<void> {
  await lab.ip(lab.node, ["addr", "add", `${NODE_IP}/32`, "dev", "lo"]);
}

function vethConf(
  version: string,
  ipam: Record<string, unknown> | undefined,
  extra: Record<string, unknown> = {},
) {
  const conf: Record<string, unknown> = { cniVersion: version, name: NETWORK, type: PLUGIN, ...extra };
  if (ipam) conf.ipam = ipam;
  return conf;
}

async function link(lab: Lab, ns: Netns, name: string): Promise<JsonLink | undefined> {
  const r = await lab.tryExec(ns, "ip", ["-j", "-d", "link", "show", "dev", name]);
  return r.code === 0 ? (JSON.parse(r.stdout) as JsonLink[])[0] : undefined;
}

/** Everything of an attachment is gone: links on both sides, the host route, the reservation. */
async function assertNothingLeft(lab: Lab, pod: Netns | undefined, ip?: string): Promise<void> {
  assert.deepEqual(await nodeLinks(lab, "v-"), [], "a v-h/v-s link is left in the node namespace");
  if (pod) assert.deepEqual(await lab.linkNames(pod), ["lo"], "the pod namespace is not back to lo only");
  if (ip) {
    assert.ok(!(await routes(lab, lab.node)).some((r) => r.dst === ip), `host route to ${ip} is left`);
  }
  assert.deepEqual(await reservations(lab, NETWORK), [], "an IPAM reservation is left");
}

// ------------------------------------------------------------------------------------------ version table

for (const version of TEST_VERSIONS) {
  const rich = !version.startsWith("0.1") && !version.startsWith("0.2");
  const canCheck = version >= "0.4.0";
  // The 1.1.0 row gets its address from ipinfos, as under Galaxy; the others from host-local.
  const viaIpinfos = version === "1.1.0";

  kernelTest(`galaxy-veth ${version}: ADD, kernel state, ping, CHECK, DEL, DEL again`, async () => {
    await withLab(`veth${version.replaceAll(".", "")}`, async (lab) => {
      const pod = await lab.pod("pod");
      await nodeWithAddress(lab);
      const containerId = `c${version.replaceAll(".", "")}f00dbeef77`;
      const host = `v-h${containerId.slice(0, 9)}`;
      const ipam = viaIpinfos ? undefined : hostLocalIpam(lab, "198.18.10.0/24");
      const conf = vethConf(version, ipam, {
        mtu: 1400,
        routeSrc: NODE_IP,
        dns: { nameservers: ["198.18.0.53"] },
      });
      const args = viaIpinfos ? { ipinfos: JSON.stringify([{ ip: "198.18.10.7/24", vlan: 0 }]) } : undefined;
      const call = { containerId, netns: pod, args };

      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      const out = add.output!;
      const ip = add.result!.ips![0].address.split("/")[0];
      assert.match(ip, /^198\.18\.10\.\d+$/);
      if (viaIpinfos) assert.equal(ip, "198.18.10.7");
      if (rich) {
        const interfaces = out.interfaces as { name: string; mac?: string; sandbox?: string }[];
        assert.deepEqual(interfaces.map((i) => [i.name, i.sandbox]), [[host, undefined], ["eth0", pod.path]]);
        const ips = out.ips as Record<string, unknown>[];
        assert.equal(ips.length, 1);
        assert.equal(ips[0].address, `${ip}/32`);
        assert.equal(ips[0].gateway, GW);
        assert.equal(ips[0].interface, 1);
        if (version < "1.0.0") assert.equal(ips[0].version, "4");
        assert.deepEqual(out.routes, [{ dst: `${GW}/32` }, { dst: "0.0.0.0/0", gw: GW }]);
      } else {
        assert.deepEqual(out.ip4, {
          ip: `${ip}/32`,
          gateway: GW,
          routes: [{ dst: `${GW}/32` }, { dst: "0.0.0.0/0", gw: GW }],
        });
      }
      assert.deepEqual(out.dns, { nameservers: ["198.18.0.53"] });

      // kernel: pod side
      const hostLink = (await link(lab, lab.node, host))!;
      assert.ok(hostLink, `${host} is missing`);
      assert.ok(hostLink.flags.includes("UP"));
      assert.equal(hostLink.mtu, 1400);
      assert.notEqual(hostLink.link_netnsid, undefined, "the host veth's peer is not in another namespace");
      const podLink = (await link(lab, pod, "eth0"))!;
      assert.equal(podLink.mtu, 1400);
      if (rich) {
        assert.equal((out.interfaces as { mac: string }[])[0].mac, hostLink.address);
        assert.equal((out.interfaces as { mac: string }[])[1].mac, podLink.address);
      }
      assert.deepEqual(await lab.addresses(pod, "eth0"), [`${ip}/32`]);
      const podRoutes = await routes(lab, pod);
      assert.ok(
        podRoutes.some((r) => r.dst === GW && r.dev === "eth0" && r.scope === "link"),
        "no link route to GW",
      );
      assert.ok(
        podRoutes.some((r) => r.dst === "default" && r.gateway === GW && r.dev === "eth0"),
        "no default",
      );
      const neigh = await lab.ipJson<{ dst: string; lladdr: string; state: string[] }[]>(pod, [
        "neigh",
        "show",
        "dev",
        "eth0",
      ]);
      assert.deepEqual(neigh.map((n) => [n.dst, n.lladdr, n.state]), [[GW, hostLink.address, ["PERMANENT"]]]);
      // kernel: node side
      const hostRoute = (await routes(lab, lab.node)).find((r) => r.dst === ip);
      assert.deepEqual(
        hostRoute && [hostRoute.dev, hostRoute.scope, hostRoute.prefsrc],
        [host, "link", NODE_IP],
      );
      if (!viaIpinfos) assert.deepEqual(await reservations(lab, NETWORK), [ip]);

      // traffic both ways
      assert.ok(await ping(lab, lab.node, ip), "node → pod ping failed");
      assert.ok(await ping(lab, pod, NODE_IP), "pod → node (through 169.254.1.1) ping failed");

      const withPrev = rich ? withPrevResult(conf, add.result!) : conf;
      if (canCheck) {
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
        await lab.ip(pod, ["route", "del", "default"]);
        const broken = await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call });
        assertFails(broken, "CHECK without the default route", {
          msg: new RegExp(`route 0\\.0\\.0\\.0/0 via ${GW.replaceAll(".", "\\.")} is missing`),
        });
        await lab.ip(lab.node, ["route", "del", `${ip}/32`]);
        const broken2 = await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call });
        assertFails(broken2, "CHECK without the host route", {
          msg: new RegExp(`host route ${ip}/32 dev ${host}`),
        });
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
  "galaxy-veth: failing IPAM (fake plugin) leaves nothing and the IPAM is asked to release",
  async () => {
    await withLab("vethipamfail", async (lab) => {
      const pod = await lab.pod("pod");
      const fakeDir = await writeFakePlugins(`${lab.dir}/fake`, ["fake-ipam"]);
      const record = `${lab.dir}/calls.jsonl`;
      const conf = vethConf("1.0.0", { type: "fake-ipam" }, {
        recordFile: record,
        fail: { code: 11, msg: "pool is busy" },
        failOn: ["ADD"],
      });
      const add = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "ipamfail1",
        netns: pod,
        extraPath: [fakeDir],
      });
      assertFails(add, "ADD", { msg: /ipam fake-ipam: pool is busy/, code: 11 });
      await assertNothingLeft(lab, pod);
      assert.deepEqual((await readCalls(record)).map((c) => c.verb), ["ADD", "DEL"]);
    });
  },
);

kernelTest("galaxy-veth: exhausted host-local range fails ADD and leaves nothing of it", async () => {
  await withLab("vethexhaust", async (lab) => {
    const first = await lab.pod("first");
    const second = await lab.pod("second");
    const ipam = hostLocalIpam(lab, "198.18.11.0/24", { rangeEnd: "198.18.11.2" }); // one address: .2
    const conf = vethConf("0.4.0", ipam);
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "exhaust01", netns: first }),
      "ADD 1",
    );
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "exhaust02", netns: second });
    assertFails(add, "ADD 2", { msg: /ipam host-local: .*no IP addresses available/ });
    assert.deepEqual(await nodeLinks(lab, "v-"), ["v-hexhaust01"]);
    assert.deepEqual(await lab.linkNames(second), ["lo"]);
    assert.deepEqual(await reservations(lab, NETWORK), ["198.18.11.2"]);
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "exhaust01", netns: first }),
      "DEL",
    );
    await assertNothingLeft(lab, first, "198.18.11.2");
  });
});

kernelTest(
  "galaxy-veth: a failure half-way (pod already has a default route) rolls everything back",
  async () => {
    await withLab("vethrollback", async (lab) => {
      const pod = await lab.pod("pod");
      await lab.ip(pod, ["route", "add", "blackhole", "default"]);
      const conf = vethConf("1.0.0", hostLocalIpam(lab, "198.18.12.0/24"));
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "rollback1", netns: pod });
      assertFails(add, "ADD", {
        msg: /configure eth0 .*route add default via 169\.254\.1\.1 dev eth0.*File exists/,
      });
      await assertNothingLeft(lab, pod, "198.18.12.2");
    });
  },
);

kernelTest("galaxy-veth: a stale host veth of the same name is replaced; a live one is refused", async () => {
  await withLab("vethhostname", async (lab) => {
    const pod = await lab.pod("pod");
    const other = await lab.pod("other");
    const conf = vethConf("1.0.0", hostLocalIpam(lab, "198.18.13.0/24"));
    // stale: both ends in the node namespace, as a crashed create-then-move would leave them
    await lab.ip(lab.node, ["link", "add", "v-hstale0001", "type", "veth", "peer", "name", "gt-stalepeer"]);
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "stale0001x", netns: pod });
    assertOk(add, "ADD over a stale host veth");
    assert.deepEqual(await nodeLinks(lab, "gt-"), [], "the stale peer survived");
    assert.notEqual((await link(lab, lab.node, "v-hstale0001"))?.link_netnsid, undefined);
    assertOk(
      await runBuiltin(lab, PLUGIN, {
        verb: "DEL",
        conf: withPrevResult(conf, add.result!),
        containerId: "stale0001x",
        netns: pod,
      }),
      "DEL",
    );

    // live: the name's peer is in another pod (a container sharing the first 9 ID characters)
    await lab.ip(lab.node, [
      "link",
      "add",
      "v-hlive00001",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      other.name,
    ]);
    const refused = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf,
      containerId: "live00001b",
      netns: pod,
    });
    assertFails(refused, "ADD over a live host veth", {
      msg: /v-hlive00001 already exists .*another live network namespace/,
    });
    assert.ok(await link(lab, lab.node, "v-hlive00001"), "the other pod's host veth was deleted");
    assert.ok(await link(lab, other, "eth0"), "the other pod's interface was deleted");
    assert.deepEqual(await lab.linkNames(pod), ["lo"]);
    assert.deepEqual(await reservations(lab, NETWORK), [], "IPAM was used although ADD was refused up front");
  });
});

kernelTest("galaxy-veth: DEL with a vanished or empty netns succeeds and still releases IPAM", async () => {
  await withLab("vethvanish", async (lab) => {
    const conf = vethConf("0.4.0", hostLocalIpam(lab, "198.18.14.0/24"));
    for (const [cid, how] of [["vanish001", "vanished"], ["vanish002", "empty"]] as const) {
      const pod = await lab.pod(cid);
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: cid, netns: pod });
      assertOk(add, "ADD");
      assert.equal((await reservations(lab, NETWORK)).length, 1);
      await lab.removeNetns(pod);
      const del = await runBuiltin(lab, PLUGIN, {
        verb: "DEL",
        conf: withPrevResult(conf, add.result!),
        containerId: cid,
        netns: how === "vanished" ? pod.path : "",
      });
      assertOk(del, `DEL with a ${how} netns`);
      await assertNothingLeft(lab, undefined, add.result!.ips![0].address.split("/")[0]);
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: cid, netns: pod.path }),
        "DEL again",
      );
    }
  });
});

kernelTest(
  "galaxy-veth: DEL with the interface already gone releases IPAM; DEL leaves others' interfaces",
  async () => {
    await withLab("vethgone", async (lab) => {
      const pod = await lab.pod("pod");
      const conf = vethConf("0.3.1", hostLocalIpam(lab, "198.18.15.0/24"));
      const call = { containerId: "ifgone001", netns: pod };
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call }), "ADD");
      // another network's interface in the same pod must survive our DEL
      await lab.ip(pod, ["link", "add", "net1", "type", "veth", "peer", "name", "net1peer"]);
      await lab.ip(pod, ["link", "del", "eth0"]);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...call }), "DEL");
      assert.deepEqual((await lab.linkNames(pod)).sort(), ["lo", "net1", "net1peer"]);
      assert.deepEqual(await reservations(lab, NETWORK), []);
      assert.deepEqual(await nodeLinks(lab, "v-"), []);
    });
  },
);

kernelTest("galaxy-veth: chained prevResult is passed through with our entries appended", async () => {
  await withLab("vethchain", async (lab) => {
    const pod = await lab.pod("pod");
    const prev: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "net9", sandbox: pod.path }],
      ips: [{ address: "198.18.99.9/24", interface: 0 }],
      routes: [{ dst: "198.18.98.0/24", gw: "198.18.99.1" }],
      dns: { nameservers: ["198.18.0.10"] },
    };
    for (const version of ["0.4.0", "1.0.0"]) {
      const conf = withPrevResult(vethConf(version, hostLocalIpam(lab, "198.18.16.0/24")), prev);
      const call = {
        containerId: `chain${version.replaceAll(".", "")}`,
        netns: pod,
        ifname: `eth${version[0]}`,
      };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, `ADD ${version}`);
      const r = add.result!;
      assert.deepEqual(r.interfaces!.map((i) => i.name), [
        "net9",
        `v-h${call.containerId.slice(0, 9)}`,
        call.ifname,
      ]);
      assert.equal(r.ips!.length, 2);
      assert.deepEqual(r.ips![0], { address: "198.18.99.9/24", interface: 0 });
      assert.equal(r.ips![1].interface, 2);
      assert.deepEqual(r.routes, [
        { dst: "198.18.98.0/24", gw: "198.18.99.1" },
        { dst: `${GW}/32` },
        { dst: "0.0.0.0/0", gw: GW },
      ]);
      assert.deepEqual(r.dns, { nameservers: ["198.18.0.10"] });
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrevResult(conf, r), ...call }),
        "CHECK",
      );
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrevResult(conf, r), ...call }), "DEL");
    }
  });
});

kernelTest("galaxy-veth: ipinfos in CNI_ARGS are used instead of IPAM, which is never called", async () => {
  await withLab("vethipinfos", async (lab) => {
    const pod = await lab.pod("pod");
    const fakeDir = await writeFakePlugins(`${lab.dir}/fake`, ["fake-ipam"]);
    const record = `${lab.dir}/calls.jsonl`;
    const conf = vethConf("1.0.0", { type: "fake-ipam" }, { recordFile: record });
    const args = {
      IgnoreUnknown: "1",
      ipinfos: JSON.stringify([{ ip: "198.18.17.5/24", vlan: 0, gateway: "198.18.17.1" }]),
    };
    const call = { containerId: "ipinfos01", netns: pod, args, extraPath: [fakeDir] };
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
    assertOk(add, "ADD");
    assert.equal(add.result!.ips![0].address, "198.18.17.5/32");
    assert.deepEqual(await lab.addresses(pod, "eth0"), ["198.18.17.5/32"]);
    const withPrev = withPrevResult(conf, add.result!);
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
    assert.deepEqual(await readCalls(record), [], "the IPAM plugin was called although ipinfos were given");
    await assertNothingLeft(lab, pod, "198.18.17.5");
  });
});

kernelTest("galaxy-veth: a 4-character container ID names the host veth v-h<id>", async () => {
  await withLab("vethshortid", async (lab) => {
    const pod = await lab.pod("pod");
    await nodeWithAddress(lab);
    const conf = vethConf("1.0.0", hostLocalIpam(lab, "198.18.18.0/24"));
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "abcd", netns: pod });
    assertOk(add, "ADD");
    assert.equal(add.result!.interfaces![0].name, "v-habcd");
    assert.deepEqual(await nodeLinks(lab, "v-"), ["v-habcd"]);
    assert.ok(await ping(lab, lab.node, "198.18.18.2"));
    const withPrev = withPrevResult(conf, add.result!);
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, containerId: "abcd", netns: pod }),
      "DEL",
    );
    await assertNothingLeft(lab, pod, "198.18.18.2");
  });
});

kernelTest("galaxy-veth: routeSrc that is not a node address falls back to a route without src", async () => {
  await withLab("vethroutesrc", async (lab) => {
    const pod = await lab.pod("pod");
    const conf = vethConf("1.0.0", hostLocalIpam(lab, "198.18.19.0/24"), { routeSrc: "198.19.255.99" });
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "routesrc1", netns: pod });
    assertOk(add, "ADD");
    assert.match(add.stderr, /src 198\.19\.255\.99 refused .*retrying without src/);
    const route = (await routes(lab, lab.node)).find((r) => r.dst === "198.18.19.2");
    assert.deepEqual(route && [route.dev, route.prefsrc], ["v-hroutesrc1", undefined]);
    const withPrev = withPrevResult(conf, add.result!);
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, containerId: "routesrc1", netns: pod }),
      "DEL",
    );
  });
});

kernelTest("galaxy-veth: bad config and an existing interface are refused with the right codes", async () => {
  await withLab("vethbad", async (lab) => {
    const pod = await lab.pod("pod");
    const ipam = hostLocalIpam(lab, "198.18.20.0/24");
    const bad = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: vethConf("1.0.0", ipam, { routeSrc: "not-an-ip", mtu: 20 }),
      containerId: "badconf01",
      netns: pod,
    });
    assertFails(bad, "ADD with bad config", {
      msg: /mtu: expected an integer 68–65535 or 0, got 20/,
      code: 7,
    });
    await lab.ip(pod, ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"]);
    const exists = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: vethConf("1.0.0", ipam),
      containerId: "exists001",
      netns: pod,
    });
    assertFails(exists, "ADD of an existing interface", { msg: /interface eth0 already exists/ });
    const gone = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: vethConf("1.0.0", ipam),
      containerId: "nonetns01",
      netns: `${pod.path}-missing`,
    });
    assertFails(gone, "ADD into a missing netns", { msg: /does not exist/, code: 3 });
    assert.deepEqual(await reservations(lab, NETWORK), []);
    assert.deepEqual(await nodeLinks(lab, "v-"), []);
  });
});

kernelTest(
  "galaxy-veth: STATUS and GC are forwarded to a 1.1.0 IPAM and skipped for host-local",
  async () => {
    await withLab("vethstatus", async (lab) => {
      const fakeDir = await writeFakePlugins(`${lab.dir}/fake`, ["fake-ipam"]);
      const record = `${lab.dir}/calls.jsonl`;
      // host-local (≤ 1.0.0) knows neither verb: nothing to forward, and that is said on stderr
      const plain = vethConf("1.1.0", hostLocalIpam(lab, "198.18.21.0/24"));
      const ok = await runBuiltin(lab, PLUGIN, { verb: "STATUS", conf: plain });
      assertOk(ok, "STATUS with host-local");
      assert.match(ok.stderr, /does not support CNI 1\.1\.0, so STATUS is not forwarded/);
      // a 1.1.0 IPAM gets both; its STATUS error is ours
      const conf = vethConf("1.1.0", { type: "fake-ipam" }, { recordFile: record });
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "STATUS", conf, extraPath: [fakeDir] }), "STATUS");
      const gcConf = { ...conf, "cni.dev/valid-attachments": [] };
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "GC", conf: gcConf, extraPath: [fakeDir] }), "GC");
      assert.deepEqual((await readCalls(record)).map((c) => c.verb), ["STATUS", "GC"]);
      const failing = { ...conf, fail: { code: 50, msg: "pool offline" }, failOn: ["STATUS"] };
      const down = await runBuiltin(lab, PLUGIN, { verb: "STATUS", conf: failing, extraPath: [fakeDir] });
      assertFails(down, "STATUS with IPAM down", { msg: /pool offline/, code: 50 });
    });
  },
);

kernelTest(
  "link.ts: configurePodInterface renames, sets MAC, addresses, routes, neighbours and sysctls",
  async () => {
    await withLab("linkconfigure", async (lab) => {
      const pod = await lab.pod("pod");
      await lab.ip(pod, ["link", "add", "gt-tmp0", "type", "veth", "peer", "name", "gt-peer0"]);
      await lab.ip(pod, ["link", "set", "gt-peer0", "up"]);
      try {
        const link = await configurePodInterface(pod.path, {
          current: "gt-tmp0",
          ifname: "net1",
          mac: "02:42:c6:12:16:05",
          addresses: ["198.18.22.5/24"],
          routes: [{ dst: "198.18.23.0/24", gw: "198.18.22.1" }],
          neighbours: [{ ip: "198.18.22.1", lladdr: "02:42:c6:12:16:01" }],
          sysctls: {
            "/proc/sys/net/ipv4/conf/net1/rp_filter": "0",
            "/proc/sys/net/ipv4/conf/net1/arp_ignore": "1",
          },
        });
        assert.equal(link.name, "net1");
        assert.equal(link.address, "02:42:c6:12:16:05");
        assert.deepEqual(await lab.addresses(pod, "net1"), ["198.18.22.5/24"]);
        assert.ok(
          (await routes(lab, pod)).some((r) => r.dst === "198.18.23.0/24" && r.gateway === "198.18.22.1"),
        );
        const sysctls = await getSysctls(pod.path, [
          "net/ipv4/conf/net1/rp_filter",
          "net/ipv4/conf/net1/arp_ignore",
        ]);
        assert.deepEqual(Object.values(sysctls), ["0", "1"]);
        const neigh = await lab.ipJson<{ dst: string; lladdr: string; state: string[] }[]>(pod, [
          "neigh",
          "show",
          "dev",
          "net1",
        ]);
        assert.deepEqual(neigh.map((n) => [n.dst, n.lladdr, n.state]), [["198.18.22.1", "02:42:c6:12:16:01", [
          "PERMANENT",
        ]]]);
      } finally {
        await shutdownNetnsWorkers();
      }
    });
  },
);
