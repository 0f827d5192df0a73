/**
 * galaxy-underlay-veth as a real executable inside a lab's node namespace, whose uplink `u0` is a veth to a
 * "net" namespace playing the underlay and its gateway: ADD at every CNI version with the output validated,
 * the routed veth with proxy ARP (host route with the master's address as source, the sysctls), real pings
 * from the node and from the underlay, CHECK, DEL and DEL again; IPAM released on DEL (Galaxy leaked it),
 * also with the netns gone; two addresses; a failure half-way; a multi-network pod; VLAN masters (the lookup
 * where the kernel has no 8021q, printing `skipped kernel part: <reason>`). Addresses come from
 * 198.18.0.0/15; nothing touches the host namespace.
 * @module
 */
import assert from "node:assert/strict";
import { findVlanMaster } from "../../cni/plugins/kit/underlay_node.ts";
import type { Link } from "../../netops/ip.ts";
import { kernelTest, type Lab, type Netns, runCommand, withLab } from "../helpers/netns.ts";
import {
  assertFails,
  assertOk,
  ping,
  reservations,
  routes,
  runBuiltin,
  TEST_VERSIONS,
  withPrevResult,
} from "../helpers/plugin_harness.ts";
import {
  ipv4Sysctl,
  learntNeighbours,
  linkTypeMissing,
  skippedKernelPart,
  underlayNet,
} from "../helpers/underlay_lab.ts";

const PLUGIN = "galaxy-underlay-veth";
const NETWORK = "gtest-underlay";

type JsonLink = { ifname: string; address: string; mtu: number; flags: string[]; master?: string };

function underlayConf(version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: version, name: NETWORK, type: PLUGIN, device: "u0", ...extra };
}

function ipinfos(...infos: { ip: string; vlan?: number; gateway?: string }[]): Record<string, string> {
  return { ipinfos: JSON.stringify(infos.map((i) => ({ vlan: 0, ...i }))) };
}

function hostLocal(lab: Lab, subnet: string): Record<string, unknown> {
  return {
    type: "host-local",
    dataDir: `${lab.dir}/ipam`,
    ranges: [[{ subnet: `${subnet}.0/24`, rangeStart: `${subnet}.100`, gateway: `${subnet}.1` }]],
    routes: [{ dst: "0.0.0.0/0" }],
  };
}

async function link(ns: Netns, name: string): Promise<JsonLink | undefined> {
  const r = await runCommand("ip", ["-j", "-d", "-n", ns.name, "link", "show", "dev", name]);
  return r.code === 0 ? (JSON.parse(r.stdout) as JsonLink[])[0] : undefined;
}

/**
 * Nothing of the attachment is left: no v-h/v-s link and no host /32 route on the node, the pod back to `lo`.
 */
async function assertAttachmentGone(lab: Lab, pod: Netns | undefined, ips: string[] = []): Promise<void> {
  const node = await lab.linkNames(lab.node);
  assert.deepEqual(node.filter((n) => n.startsWith("v-")), [], "a veth of the attachment is left");
  const nodeRoutes = await routes(lab, lab.node);
  for (const ip of ips) assert.ok(!nodeRoutes.some((r) => r.dst === ip), `host route to ${ip} is left`);
  if (pod) assert.deepEqual(await lab.linkNames(pod), ["lo"]);
}

// ------------------------------------------------------------------------------------------ version table

for (const version of TEST_VERSIONS) {
  const rich = !version.startsWith("0.1") && !version.startsWith("0.2");
  const canCheck = version >= "0.4.0";
  // The 1.1.0 row takes its address from ipinfos, as under Galaxy; the others from host-local
  const viaIpinfos = version === "1.1.0";

  kernelTest(
    `galaxy-underlay-veth ${version}: routed veth, proxy ARP, ping, CHECK, DEL, DEL again`,
    async () => {
      await withLab(`uveth${version.replaceAll(".", "")}`, async (lab) => {
        const u = await underlayNet(lab, { subnet: "198.18.110", routes: true, forwarding: true });
        const pod = await lab.pod("pod");
        const containerId = `u${version.replaceAll(".", "")}beef0000`;
        const host = `v-h${containerId.slice(0, 9)}-u0`;
        const conf = underlayConf(version, {
          mtu: 1400,
          dns: { nameservers: ["198.18.0.53"] },
          ...(viaIpinfos ? {} : { ipam: hostLocal(lab, "198.18.110") }),
        });
        const call = {
          containerId,
          netns: pod,
          args: viaIpinfos ? ipinfos({ ip: "198.18.110.100/24", gateway: "198.18.110.1" }) : undefined,
        };
        const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
        assertOk(add, "ADD");
        const out = add.output!;
        const ip = "198.18.110.100";
        if (rich) {
          const interfaces = out.interfaces as { name: string; sandbox?: string; mac?: string }[];
          assert.deepEqual(interfaces.map((i) => [i.name, i.sandbox]), [[host, undefined], [
            "eth0",
            pod.path,
          ]]);
          assert.equal(interfaces[1].mac, "02:42:c6:12:6e:64");
          const ips = out.ips as Record<string, unknown>[];
          assert.deepEqual(ips.map((x) => [x.address, x.gateway, x.interface]), [[
            `${ip}/24`,
            "198.18.110.1",
            1,
          ]]);
          assert.deepEqual(out.routes, [{ dst: "0.0.0.0/0", gw: "198.18.110.1" }]);
        } else {
          assert.deepEqual(out.ip4, {
            ip: `${ip}/24`,
            gateway: "198.18.110.1",
            routes: [{ dst: "0.0.0.0/0", gw: "198.18.110.1" }],
          });
        }
        assert.deepEqual(out.dns, { nameservers: ["198.18.0.53"] });
        if (!viaIpinfos) assert.deepEqual(await reservations(lab, NETWORK), [ip]);

        // node: the routed host end (proxy ARP, /32 with the master's address as source), the master readied
        const hostLink = (await link(lab.node, host))!;
        assert.deepEqual([hostLink.master, hostLink.mtu, hostLink.flags.includes("UP")], [
          undefined,
          1400,
          true,
        ]);
        const hostRoute = (await routes(lab, lab.node)).find((r) => r.dst === ip);
        assert.deepEqual(hostRoute && [hostRoute.dev, hostRoute.scope, hostRoute.prefsrc], [
          host,
          "link",
          "198.18.110.2",
        ]);
        assert.equal(await ipv4Sysctl(lab, lab.node, `conf/${host}/proxy_arp`), "1");
        assert.equal(await ipv4Sysctl(lab, lab.node, "conf/u0/proxy_arp"), "1");
        assert.equal(await ipv4Sysctl(lab, lab.node, "conf/u0/arp_ignore"), "0");
        assert.equal(await ipv4Sysctl(lab, lab.node, "conf/all/arp_ignore"), "0");
        assert.equal(await ipv4Sysctl(lab, lab.node, "ip_nonlocal_bind"), "1");
        assert.deepEqual(await lab.addresses(lab.node, "u0"), [u.nodeCidr], "the master keeps its address");
        // pod: real prefix, default via the real gateway, MAC from IP, rp_filter 0
        const eth0 = (await link(pod, "eth0"))!;
        assert.deepEqual([eth0.address, eth0.mtu], ["02:42:c6:12:6e:64", 1400]);
        assert.deepEqual(await lab.addresses(pod, "eth0"), [`${ip}/24`]);
        assert.ok((await routes(lab, pod)).some((r) => r.dst === "default" && r.gateway === "198.18.110.1"));
        assert.equal(await ipv4Sysctl(lab, pod, "conf/eth0/rp_filter"), "0");
        // the underlay learnt the pod from the node's gratuitous ARP: u0's MAC answers for it
        const learnt = await learntNeighbours(lab, u.net, { dev: "u1", addresses: [ip] });
        assert.equal(learnt[ip], (await link(lab.node, "u0"))!.address);
        assert.ok(await ping(lab, lab.node, ip), "node → pod");
        assert.ok(await ping(lab, u.net, ip), "net → pod (proxy ARP on u0)");
        assert.ok(await ping(lab, pod, "198.18.110.1"), "pod → gateway (proxy ARP on the host veth)");

        const withPrev = rich ? withPrevResult(conf, add.result!) : conf;
        if (canCheck) {
          assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
          await lab.ip(lab.node, ["route", "del", `${ip}/32`]);
          assertFails(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK", {
            msg: new RegExp(`host route ${ip.replaceAll(".", "\\.")}/32 dev ${host} is missing`),
          });
          await lab.ip(pod, ["addr", "del", `${ip}/24`, "dev", "eth0"]);
          assertFails(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK", {
            msg: /address 198\.18\.110\.100\/24 is missing on eth0/,
          });
        }
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
        await assertAttachmentGone(lab, pod, [ip]);
        assert.deepEqual(await reservations(lab, NETWORK), [], "IPAM was not released");
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "second DEL");
        await assertAttachmentGone(lab, pod, [ip]);
      });
    },
  );
}

// ------------------------------------------------------------------------------------------ DEL, faults

kernelTest(
  "galaxy-underlay-veth: DEL with the netns or interface gone succeeds and releases IPAM",
  async () => {
    await withLab("uvethgone", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.112" });
      const conf = underlayConf("1.0.0", { ipam: hostLocal(lab, "198.18.112") });
      for (const [i, how] of (["vanished netns", "empty netns", "interface gone"] as const).entries()) {
        const pod = await lab.pod(`gone${i}`);
        const call = { containerId: `gone${i}00000`, netns: pod };
        const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
        assertOk(add, `ADD (${how})`);
        const ip = add.result!.ips![0].address.split("/")[0];
        assert.deepEqual(await reservations(lab, NETWORK), [ip]);
        let netns: Netns | string = pod;
        if (how === "interface gone") await lab.ip(pod, ["link", "del", "eth0"]);
        else {
          await lab.removeNetns(pod);
          netns = how === "empty netns" ? "" : pod.path;
        }
        const withPrev = withPrevResult(conf, add.result!);
        assertOk(
          await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call, netns }),
          `DEL (${how})`,
        );
        assert.deepEqual(await reservations(lab, NETWORK), [], `IPAM not released (${how})`);
        await assertAttachmentGone(lab, undefined, [ip]);
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...call, netns }), `second DEL (${how})`);
      }
    });
  },
);

kernelTest(
  "galaxy-underlay-veth: two addresses give eth0 and eth1; only eth0 has the default route",
  async () => {
    await withLab("uvethtwo", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.114", forwarding: true });
      const pod = await lab.pod("pod");
      const conf = underlayConf("0.4.0");
      const args = ipinfos({ ip: "198.18.114.5/24", gateway: "198.18.114.1" }, {
        ip: "198.18.114.6/24",
        gateway: "198.18.114.1",
      });
      const call = { containerId: "twoips0001", netns: pod, args };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      const r = add.result!;
      assert.deepEqual(r.interfaces!.map((i) => i.name), [
        "v-htwoips000-u0",
        "eth0",
        "v-htwoips000-u1",
        "eth1",
      ]);
      assert.deepEqual(r.routes, [{ dst: "0.0.0.0/0", gw: "198.18.114.1" }]);
      const podRoutes = await routes(lab, pod);
      assert.deepEqual(podRoutes.filter((x) => x.dst === "default").map((x) => x.dev), ["eth0"]);
      assert.equal((await link(pod, "eth1"))!.address, "02:42:c6:12:72:06");
      const nodeRoutes = await routes(lab, lab.node);
      for (const [ip, dev] of [["198.18.114.5", "v-htwoips000-u0"], ["198.18.114.6", "v-htwoips000-u1"]]) {
        const route = nodeRoutes.find((x) => x.dst === ip);
        assert.deepEqual(route && [route.dev, route.prefsrc], [dev, "198.18.114.2"]);
        assert.ok(await ping(lab, u.net, ip), `net → ${ip}`);
      }
      const withPrev = withPrevResult(conf, r);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
      // DEL with neither prevResult nor the netns's help: ipinfos name both interfaces
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...call }), "DEL");
      await assertAttachmentGone(lab, pod, ["198.18.114.5", "198.18.114.6"]);
    });
  },
);

kernelTest(
  "galaxy-underlay-veth: a failure at the second address rolls back the first and releases IPAM",
  async () => {
    await withLab("uvethhalfway", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.116" });
      const pod = await lab.pod("pod");
      // something that is not ours holds the second host veth's name
      await lab.ip(lab.node, ["link", "add", "v-hhalfway00-u1", "type", "bridge"]);
      const range = (
        subnet: string,
      ) => [{ subnet: `${subnet}.0/24`, rangeStart: `${subnet}.100`, rangeEnd: `${subnet}.100` }];
      const conf = underlayConf("1.0.0", {
        ipam: {
          type: "host-local",
          dataDir: `${lab.dir}/ipam`,
          ranges: [range("198.18.116"), range("198.18.117")],
        },
      });
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "halfway001", netns: pod });
      assertFails(add, "ADD", { msg: /v-hhalfway00-u1 exists and is a bridge/ });
      assert.deepEqual(await lab.linkNames(pod), ["lo"]);
      assert.deepEqual((await lab.linkNames(lab.node)).filter((n) => n.startsWith("v-")), [
        "v-hhalfway00-u1",
      ]);
      assert.ok(!(await routes(lab, lab.node)).some((r) => r.dst === "198.18.116.100"), "host route left");
      assert.deepEqual(await reservations(lab, NETWORK), [], "IPAM was not released");
    });
  },
);

kernelTest(
  "galaxy-underlay-veth: in a multi-network pod, ADD and DEL leave the other networks alone",
  async () => {
    await withLab("uvethmulti", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.118" });
      const pod = await lab.pod("pod");
      // another network's interfaces: net1, and an eth1 (the name a second address would get)
      for (const [host, name] of [["gt-other1", "net1"], ["gt-other2", "eth1"]]) {
        await lab.ip(lab.node, [
          "link",
          "add",
          host,
          "type",
          "veth",
          "peer",
          "name",
          name,
          "netns",
          pod.name,
        ]);
      }
      const others = ["eth1", "lo", "net1"];
      const conf = underlayConf("1.0.0", { ipam: hostLocal(lab, "198.18.118") });
      const two = ipinfos({ ip: "198.18.118.5/24", gateway: "198.18.118.1" }, { ip: "198.18.118.6/24" });
      const failed = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "multi00001",
        netns: pod,
        args: two,
      });
      assertFails(failed, "ADD", { msg: /interface eth1 already exists/ });
      assert.deepEqual((await lab.linkNames(pod)).sort(), others);
      assertOk(
        await runBuiltin(lab, PLUGIN, {
          verb: "DEL",
          conf,
          containerId: "multi00001",
          netns: pod,
          args: two,
        }),
        "DEL after the failed ADD",
      );
      assert.deepEqual((await lab.linkNames(pod)).sort(), others);
      // a working attachment from IPAM next to them; its DEL keeps them and releases the address
      const call = { containerId: "multi00002", netns: pod };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      assert.deepEqual(await reservations(lab, NETWORK), ["198.18.118.100"]);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...call }), "DEL");
      assert.deepEqual((await lab.linkNames(pod)).sort(), others);
      assert.deepEqual(await reservations(lab, NETWORK), []);
      assert.deepEqual((await lab.linkNames(lab.node)).filter((n) => n.startsWith("gt-other")).sort(), [
        "gt-other1",
        "gt-other2",
      ]);
    });
  },
);

kernelTest(
  "galaxy-underlay-veth: VLAN masters (the lookup only, where the kernel has no 8021q)",
  async () => {
    await withLab("uvethvlan", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.122", forwarding: true });
      const pod = await lab.pod("pod");
      const conf = underlayConf("1.0.0");
      const call = {
        containerId: "vlan700001",
        netns: pod,
        args: ipinfos({ ip: "198.18.123.5/24", vlan: 7, gateway: "198.18.123.1" }),
      };
      const missing = await linkTypeMissing(lab, "vlan");
      if (missing) {
        skippedKernelPart(missing);
        const base = { up: true, flags: [], mtu: 1500, operstate: "UP" };
        const links: Link[] = [
          { ...base, index: 2, name: "u0" },
          { ...base, index: 3, name: "u0.7", kind: "vlan", vlanId: 7, parent: "u0" },
          { ...base, index: 4, name: "bond0.7", kind: "vlan", vlanId: 7, parent: "bond0" },
        ];
        assert.equal(findVlanMaster(links, { vlanId: 7, parent: "u0" }).name, "u0.7");
        assert.throws(
          () => findVlanMaster(links, { vlanId: 7 }),
          /several VLAN devices with ID 7: u0\.7, bond0\.7/,
        );
        assert.throws(
          () => findVlanMaster(links, { vlanId: 8, parent: "u0" }),
          /no VLAN device with ID 8 on u0/,
        );
        // for real: without a VLAN device the ADD fails up front and leaves nothing
        const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
        assertFails(add, "ADD on a missing VLAN device", { msg: /no VLAN device with ID 7 on u0/ });
        await assertAttachmentGone(lab, pod, ["198.18.123.5"]);
        return;
      }
      // a kernel with 8021q: the admin's VLAN device u0.7 (down, with an address), and VLAN 7 on the net side
      await lab.ip(lab.node, ["link", "add", "link", "u0", "name", "u0.7", "type", "vlan", "id", "7"]);
      await lab.ip(lab.node, ["addr", "add", "198.18.123.2/24", "dev", "u0.7"]);
      await lab.ip(u.net, ["link", "add", "link", "u1", "name", "u1.7", "type", "vlan", "id", "7"]);
      await lab.ip(u.net, ["addr", "add", "198.18.123.1/24", "dev", "u1.7"]);
      await lab.ip(u.net, ["link", "set", "u1.7", "up"]);
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD on VLAN 7");
      assert.ok((await link(lab.node, "u0.7"))!.flags.includes("UP"), "the VLAN master was not set up");
      assert.equal(await ipv4Sysctl(lab, lab.node, "conf/u0.7/proxy_arp"), "1");
      const route = (await routes(lab, lab.node)).find((r) => r.dst === "198.18.123.5");
      assert.deepEqual(route && [route.dev, route.prefsrc], ["v-hvlan70000-u0", "198.18.123.2"]);
      assert.ok(await ping(lab, u.net, "198.18.123.5"), "net → pod over VLAN 7");
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrevResult(conf, add.result!), ...call }),
        "DEL",
      );
      await assertAttachmentGone(lab, pod, ["198.18.123.5"]);
    });
  },
);

kernelTest("galaxy-underlay-veth: a missing device is refused; STATUS says 50 then", async () => {
  await withLab("uvethbad", async (lab) => {
    const pod = await lab.pod("pod");
    const args = ipinfos({ ip: "198.18.120.5/24", gateway: "198.18.120.1" });
    const add = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: underlayConf("1.0.0", { device: "gt-none0" }),
      containerId: "nodevice01",
      netns: pod,
      args,
    });
    assertFails(add, "ADD", { msg: /"device": interface "gt-none0" does not exist/, code: 7 });
    const noDevice = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: { ...underlayConf("1.0.0"), device: undefined },
      containerId: "nodevice02",
      netns: pod,
      args,
    });
    assertFails(noDevice, "ADD without a device", { msg: /a device is needed/, code: 7 });
    const status = await runBuiltin(lab, PLUGIN, {
      verb: "STATUS",
      conf: underlayConf("1.1.0", { device: "gt-none0" }),
    });
    assertFails(status, "STATUS", { msg: /gt-none0/, code: 50 });
    await assertAttachmentGone(lab, pod);
  });
});
