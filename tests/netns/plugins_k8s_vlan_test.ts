/**
 * galaxy-k8s-vlan as a real executable inside a lab's node namespace, whose uplink `u0` is a veth to a "net"
 * namespace playing the underlay and its gateway: ADD at every CNI version with the output validated, the
 * default bridge taking over the uplink's addresses and routes (the §3.3 vector, read with `ip -j route`),
 * real pings, CHECK, DEL and DEL again; concurrent first ADDs serialized by the lock; the rollback of the
 * default bridge (a route refused after the uplink was enslaved; an uplink that cannot be a port); pure,
 * macvlan and ipvlan modes; VLANs; two addresses with the route rewrite and per-address gratuitous ARP; a
 * multi-network pod; DEL with the netns or interface gone; IPAM release; chaining; bad configs.
 * Where this kernel lacks a link type (8021q, ipvlan) the test checks the generated batch text instead and
 * prints `skipped kernel part: <reason>`. Addresses come from 198.18.0.0/15; nothing touches the host
 * namespace.
 * @module
 */
import assert from "node:assert/strict";
import { planVlanBridge, vlanSetupOps } from "../../cni/plugins/kit/underlay_node.ts";
import { slaveOps } from "../../cni/plugins/kit/underlay_pod.ts";
import type { Result } from "../../cni/spec.ts";
import { batchText } from "../../netops/ip.ts";
import { kernelTest, type Lab, type Netns, runCommand, withLab } from "../helpers/netns.ts";
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
import {
  ipv4Sysctl,
  learntNeighbours,
  linkTypeMissing,
  skippedKernelPart,
  underlayNet,
} from "../helpers/underlay_lab.ts";

const PLUGIN = "galaxy-k8s-vlan";
const NETWORK = "gtest-vlan";

type JsonLink = {
  ifname: string;
  address: string;
  mtu: number;
  flags: string[];
  master?: string;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
};

function vlanConf(lab: Lab, version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: version,
    name: NETWORK,
    type: PLUGIN,
    device: "u0",
    lockDir: `${lab.dir}/lock`,
    ...extra,
  };
}

function ipinfos(...infos: { ip: string; vlan?: number; gateway?: string }[]): Record<string, string> {
  return { ipinfos: JSON.stringify(infos.map((i) => ({ vlan: 0, ...i }))) };
}

async function link(ns: Netns, name: string): Promise<JsonLink | undefined> {
  const r = await runCommand("ip", ["-j", "-d", "-n", ns.name, "link", "show", "dev", name]);
  return r.code === 0 ? (JSON.parse(r.stdout) as JsonLink[])[0] : undefined;
}

/**
 * The routes of a table as `dst [via gw] dev d [proto] [scope] [src]` lines, sorted; none for a missing
 * table.
 */
async function routeLines(ns: Netns, table = "main"): Promise<string[]> {
  const r = await runCommand("ip", ["-j", "-n", ns.name, "route", "show", "table", table]);
  if (r.code !== 0 && /table does not exist/.test(r.stderr)) return [];
  assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout.trim() || "[]") as {
    dst: string;
    gateway?: string;
    dev?: string;
    protocol?: string;
    scope?: string;
    prefsrc?: string;
  }[];
  return list.map((r) =>
    [
      r.dst,
      r.gateway ? `via ${r.gateway}` : "",
      `dev ${r.dev}`,
      r.protocol ? `proto ${r.protocol}` : "",
      r.scope ? `scope ${r.scope}` : "",
      r.prefsrc ? `src ${r.prefsrc}` : "",
    ].filter(Boolean).join(" ")
  ).sort();
}

/**
 * The §3.3 vector after the default bridge took over `u0` (`<s>.2/24`, `<s+1>.0/24 dev u0`, default via
 * `<s>.1`).
 */
function movedVector(subnet: string, bridge = "docker"): string[] {
  const [a, b, c] = subnet.split(".").map(Number);
  return [
    `${a}.${b}.${c + 1}.0/24 dev ${bridge} scope link`,
    `${subnet}.0/24 dev ${bridge} proto kernel scope link src ${subnet}.2`,
    `default via ${subnet}.1 dev ${bridge}`,
  ].sort();
}

/**
 * Nothing of the attachment is left: no v-h/v-s/mv-/iv- link on the node, the pod back to `lo` (+ `keep`).
 */
async function assertAttachmentGone(lab: Lab, pod: Netns | undefined, keep: string[] = []): Promise<void> {
  const node = await lab.linkNames(lab.node);
  assert.deepEqual(node.filter((n) => /^(v-[hs]|mv-|iv-)/.test(n)), [], "a link of the attachment is left");
  if (pod) assert.deepEqual((await lab.linkNames(pod)).sort(), ["lo", ...keep].sort());
}

// ------------------------------------------------------------------------------------------ version table

for (const version of TEST_VERSIONS) {
  const rich = !version.startsWith("0.1") && !version.startsWith("0.2");
  const canCheck = version >= "0.4.0";

  kernelTest(
    `galaxy-k8s-vlan ${version}: bridge mode, VLAN 0: default bridge, ping, CHECK, DEL, DEL again`,
    async () => {
      await withLab(`kvlan${version.replaceAll(".", "")}`, async (lab) => {
        const u = await underlayNet(lab, { subnet: "198.18.70", routes: true });
        const pod = await lab.pod("pod");
        const uplinkMac = (await link(lab.node, "u0"))!.address;
        const containerId = `k${version.replaceAll(".", "")}cafe0000`;
        const host = `v-h${containerId.slice(0, 9)}-l0`;
        const conf = vlanConf(lab, version, { dns: { nameservers: ["198.18.0.53"] } });
        const call = {
          containerId,
          netns: pod,
          args: ipinfos({ ip: "198.18.70.5/24", gateway: "198.18.70.1" }),
        };

        const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
        assertOk(add, "ADD");
        const out = add.output!;
        if (rich) {
          const interfaces = out.interfaces as { name: string; sandbox?: string; mac?: string }[];
          assert.deepEqual(interfaces.map((i) => [i.name, i.sandbox]), [[host, undefined], [
            "eth0",
            pod.path,
          ]]);
          assert.equal(interfaces[1].mac, "02:42:c6:12:46:05");
          const ips = out.ips as Record<string, unknown>[];
          assert.deepEqual(
            ips.map((ip) => [ip.address, ip.gateway, ip.interface]),
            [["198.18.70.5/24", "198.18.70.1", 1]],
          );
          assert.deepEqual(out.routes, [{ dst: "0.0.0.0/0", gw: "198.18.70.1" }]);
        } else {
          assert.deepEqual(out.ip4, {
            ip: "198.18.70.5/24",
            gateway: "198.18.70.1",
            routes: [{ dst: "0.0.0.0/0", gw: "198.18.70.1" }],
          });
        }
        assert.deepEqual(out.dns, { nameservers: ["198.18.0.53"] });

        // the default bridge took the uplink's address, MAC and routes; the uplink is its port
        assert.deepEqual(await routeLines(lab.node), movedVector("198.18.70"));
        assert.deepEqual(await lab.addresses(lab.node, "docker"), ["198.18.70.2/24"]);
        assert.deepEqual(await lab.addresses(lab.node, "u0"), []);
        const docker = (await link(lab.node, "docker"))!;
        assert.equal(docker.linkinfo?.info_kind, "bridge");
        assert.equal(docker.address, uplinkMac);
        assert.equal((await link(lab.node, "u0"))!.master, "docker");
        const hostLink = (await link(lab.node, host))!;
        assert.equal(hostLink.master, "docker");
        assert.ok(hostLink.flags.includes("UP"));
        assert.equal(hostLink.mtu, 1500);
        // the pod: MAC from IP, its address with the original prefix, default route, rp_filter 0
        const eth0 = (await link(pod, "eth0"))!;
        assert.equal(eth0.address, "02:42:c6:12:46:05");
        assert.deepEqual(await lab.addresses(pod, "eth0"), ["198.18.70.5/24"]);
        assert.ok((await routes(lab, pod)).some((r) => r.dst === "default" && r.gateway === "198.18.70.1"));
        assert.equal(await ipv4Sysctl(lab, pod, "conf/eth0/rp_filter"), "0");
        assert.equal(await ipv4Sysctl(lab, pod, "conf/all/rp_filter"), "0");
        // traffic: the underlay's gateway and the node reach the pod
        assert.ok(await ping(lab, u.net, "198.18.70.5"), "net → pod ping failed");
        assert.ok(await ping(lab, lab.node, "198.18.70.5"), "node → pod ping failed");
        assert.ok(await ping(lab, pod, "198.18.70.1"), "pod → gateway ping failed");

        const withPrev = rich ? withPrevResult(conf, add.result!) : conf;
        if (canCheck) {
          assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
          await lab.ip(pod, ["route", "del", "default"]);
          assertFails(
            await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }),
            "CHECK without the default route",
            { msg: /route 0\.0\.0\.0\/0 via 198\.18\.70\.1 is missing/ },
          );
          await lab.ip(lab.node, ["link", "set", host, "nomaster"]);
          assertFails(
            await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }),
            "CHECK with the host veth out of the bridge",
            { msg: new RegExp(`host veth ${host} is not a bridge port`) },
          );
        }
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
        await assertAttachmentGone(lab, pod);
        // the default bridge is node state shared by every pod: it stays
        assert.deepEqual(await lab.addresses(lab.node, "docker"), ["198.18.70.2/24"]);
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "second DEL");
        await assertAttachmentGone(lab, pod);
      });
    },
  );
}

// ------------------------------------------------------------------------------------------ default bridge

kernelTest(
  "galaxy-k8s-vlan: concurrent first ADDs are serialized by the lock; the addresses move once",
  async () => {
    await withLab("kvlanconcurrent", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.72", routes: true });
      const pods: Netns[] = [];
      for (let i = 0; i < 4; i++) pods.push(await lab.pod(`p${i}`));
      const conf = vlanConf(lab, "1.0.0");
      const calls = pods.map((pod, i) => ({
        containerId: `conc${i}00000`,
        netns: pod,
        args: ipinfos({ ip: `198.18.72.${10 + i}/24`, gateway: "198.18.72.1" }),
      }));
      const adds = await Promise.all(
        calls.map((call) => runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call })),
      );
      adds.forEach((add, i) => assertOk(add, `ADD ${i}`));
      const movers = adds.filter((a) => /default bridge docker: took 198\.18\.72\.2\/24/.test(a.stderr));
      assert.equal(movers.length, 1, "not exactly one ADD moved the uplink's address");
      assert.deepEqual(await routeLines(lab.node), movedVector("198.18.72"));
      assert.deepEqual(await lab.addresses(lab.node, "docker"), ["198.18.72.2/24"]);
      assert.deepEqual(await lab.addresses(lab.node, "u0"), []);
      assert.ok((await Deno.stat(`${lab.dir}/lock/galaxy-k8s-vlan.lock`)).isFile, "no lock file");
      for (let i = 0; i < 4; i++) assert.ok(await ping(lab, u.net, `198.18.72.${10 + i}`), `net → pod ${i}`);
      for (const [i, call] of calls.entries()) {
        assertOk(
          await runBuiltin(lab, PLUGIN, {
            verb: "DEL",
            conf: withPrevResult(conf, adds[i].result!),
            ...call,
          }),
          `DEL ${i}`,
        );
      }
      await assertAttachmentGone(lab, undefined);
    });
  },
);

/** The directory of the real `ip`, to put a test double in front of it. */
function realIp(): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/ip`).isFile) return `${dir}/ip`;
    } catch {
      // not here
    }
  }
  throw new Error("no ip in PATH");
}

/**
 * A test double for `ip` in front of the real one: the first `ip -batch` whose text enslaves u0 to docker
 * gets, right after that line, a route through the bridge whose gateway is unreachable, which the kernel
 * refuses. Everything else (and every later call) goes to the real ip unchanged. Returns its folder.
 */
async function ipRefusingARouteAfterEnslave(lab: Lab): Promise<string> {
  const dir = `${lab.dir}/fake-ip`;
  await Deno.mkdir(dir);
  const script = `#!/bin/bash
if [ "$1" = "-batch" ] && [ ! -e ${dir}/injected ]; then
  text=$(cat "$2")
  extra='route add 198.18.78.0/24 via 198.18.79.1 dev docker'
  if grep -q '^link set dev u0 master docker$' <<<"$text"; then
    touch ${dir}/injected
    text=$(sed "/^link set dev u0 master docker$/a $extra" <<<"$text")
  fi
  printf '%s\\n' "$text" | ${realIp()} -batch -
  exit $?
fi
exec ${realIp()} "$@"
`;
  await Deno.writeTextFile(`${dir}/ip`, script, { mode: 0o755 });
  return dir;
}

async function withPathFirst<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const saved = Deno.env.get("PATH") ?? "";
  Deno.env.set("PATH", `${dir}:${saved}`);
  try {
    return await fn();
  } finally {
    Deno.env.set("PATH", saved);
  }
}

/**
 * What must come back after a rolled-back default bridge: u0's addresses, routes (main, table 100), master.
 */
async function uplinkState(lab: Lab) {
  const u0 = (await link(lab.node, "u0"))!;
  return {
    addresses: await lab.addresses(lab.node, "u0"),
    main: await routeLines(lab.node),
    table100: await routeLines(lab.node, "100"),
    master: u0.master,
    bridge: await link(lab.node, "docker"),
  };
}

kernelTest(
  "galaxy-k8s-vlan: a default bridge failing after the uplink was enslaved is rolled back fully",
  async () => {
    await withLab("kvlanrollback", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.74", routes: true });
      // more that must survive: a secondary address, an onlink route with a metric, a route in table 100
      await lab.ip(lab.node, ["addr", "add", "198.18.74.3/24", "dev", "u0"]);
      await lab.ip(lab.node, [
        "route",
        "add",
        "198.18.76.0/24",
        "via",
        "198.18.74.254",
        "dev",
        "u0",
        "table",
        "100",
      ]);
      await lab.ip(lab.node, [
        ...["route", "add", "198.18.77.0/24", "via", "198.18.99.9", "dev", "u0", "onlink", "metric", "7"],
      ]);
      const before = await uplinkState(lab);
      assert.equal(before.bridge, undefined);
      const pod = await lab.pod("pod");
      const fake = await ipRefusingARouteAfterEnslave(lab);
      const conf = vlanConf(lab, "1.0.0", { ipam: hostLocalIpam(lab, "198.18.73.0/24") });
      const call = { containerId: "rollback01", netns: pod };
      const add = await withPathFirst(fake, () => runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call }));
      assertFails(add, "ADD", {
        msg: /failed to set up bridge docker on u0 \(rolled back\).*invalid gateway/,
      });
      assert.ok((await Deno.stat(`${fake}/injected`)).isFile, "the fault was never injected");
      assert.deepEqual(await uplinkState(lab), before, "u0 is not back as it was");
      await assertAttachmentGone(lab, pod);
      assert.deepEqual(await reservations(lab, NETWORK), [], "the IPAM reservation was not released");

      // the node is usable: the next ADD moves everything, the table 100 and onlink routes too
      const again = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(again, "ADD after the rollback");
      assert.deepEqual(await lab.addresses(lab.node, "docker"), ["198.18.74.2/24", "198.18.74.3/24"]);
      assert.deepEqual(await routeLines(lab.node, "100"), [
        "198.18.76.0/24 via 198.18.74.254 dev docker",
      ]);
      const onlink = (await lab.ipJson<{ dst: string; dev: string; metric?: number; flags: string[] }[]>(
        lab.node,
        ["route", "show", "198.18.77.0/24"],
      ))[0];
      assert.deepEqual([onlink.dev, onlink.metric, onlink.flags], ["docker", 7, ["onlink"]]);
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrevResult(conf, again.result!), ...call }),
        "DEL",
      );
      assert.deepEqual(await reservations(lab, NETWORK), []);
    });
  },
);

kernelTest(
  "galaxy-k8s-vlan: an uplink that cannot be a bridge port (it carries a macvlan) leaves the node as it was",
  async () => {
    await withLab("kvlanbusy", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.80", routes: true });
      await lab.ip(lab.node, [
        "link",
        "add",
        "link",
        "u0",
        "name",
        "gt-mv0",
        "type",
        "macvlan",
        "mode",
        "bridge",
      ]);
      const before = await uplinkState(lab);
      const pod = await lab.pod("pod");
      const add = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf: vlanConf(lab, "0.3.1"),
        containerId: "busyuplink",
        netns: pod,
        args: ipinfos({ ip: "198.18.80.5/24", gateway: "198.18.80.1" }),
      });
      assertFails(add, "ADD", { msg: /link set dev u0 master docker.*Device or resource busy/ });
      assert.deepEqual(await uplinkState(lab), before, "u0 is not back as it was");
      await assertAttachmentGone(lab, pod);
    });
  },
);

// ------------------------------------------------------------------------------------------ modes

kernelTest(
  "galaxy-k8s-vlan: pure mode routes a VLAN 0 pod through a proxy-ARP veth; the uplink keeps its address",
  async () => {
    await withLab("kvlanpure", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.82", routes: true, forwarding: true });
      const pod = await lab.pod("pod");
      const routesBefore = await routeLines(lab.node);
      const conf = vlanConf(lab, "0.4.0", { switch: "pure" });
      const call = {
        containerId: "pure000001",
        netns: pod,
        args: ipinfos({ ip: "198.18.82.5/24", gateway: "198.18.82.1" }),
      };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      const host = "v-hpure00000-l0";
      assert.equal(await link(lab.node, "docker"), undefined, "pure mode made a bridge");
      assert.deepEqual(await lab.addresses(lab.node, "u0"), [u.nodeCidr]);
      assert.deepEqual(
        await routeLines(lab.node),
        [...routesBefore, `198.18.82.5 dev ${host} scope link`].sort(),
      );
      assert.equal((await link(lab.node, host))!.master, undefined);
      assert.equal(await ipv4Sysctl(lab, lab.node, `conf/${host}/proxy_arp`), "1");
      assert.equal(await ipv4Sysctl(lab, lab.node, "conf/u0/proxy_arp"), "1");
      assert.equal(await ipv4Sysctl(lab, lab.node, "conf/u0/arp_ignore"), "0");
      assert.equal(await ipv4Sysctl(lab, lab.node, "conf/all/arp_ignore"), "0");
      assert.equal(await ipv4Sysctl(lab, lab.node, "ip_nonlocal_bind"), "1");
      assert.equal((await link(pod, "eth0"))!.address, "02:42:c6:12:52:05");
      assert.ok(await ping(lab, lab.node, "198.18.82.5"), "node → pod");
      assert.ok(await ping(lab, u.net, "198.18.82.5"), "net → pod (proxy ARP on u0, forwarding)");
      assert.ok(await ping(lab, pod, "198.18.82.1"), "pod → gateway (proxy ARP on the host veth)");
      const withPrev = withPrevResult(conf, add.result!);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
      await lab.ip(lab.node, ["route", "del", "198.18.82.5/32"]);
      assertFails(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK", {
        msg: new RegExp(`host route 198\\.18\\.82\\.5/32 dev ${host} is missing`),
      });
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
      await assertAttachmentGone(lab, pod);
      assert.deepEqual(await routeLines(lab.node), routesBefore);
    });
  },
);

kernelTest(
  "galaxy-k8s-vlan: macvlan mode puts a macvlan of the uplink (MAC from IP) into the pod",
  async () => {
    await withLab("kvlanmacvlan", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.84" });
      const pod = await lab.pod("pod");
      const conf = vlanConf(lab, "1.1.0", { switch: "macvlan", mtu: 1400 });
      const call = {
        containerId: "macvlan001",
        netns: pod,
        args: ipinfos({ ip: "198.18.84.5/24", gateway: "198.18.84.1" }, { ip: "198.18.84.6/24" }),
      };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      assert.match(add.stderr, /macvlan mode uses the first address only/);
      const r = add.result!;
      assert.deepEqual(r.interfaces, [{ name: "eth0", mac: "02:42:c6:12:54:05", sandbox: pod.path }]);
      assert.deepEqual(r.ips, [{ address: "198.18.84.5/24", gateway: "198.18.84.1", interface: 0 }]);
      assert.deepEqual(r.routes, [{ dst: "0.0.0.0/0", gw: "198.18.84.1" }]);
      const eth0 = (await link(pod, "eth0"))!;
      assert.deepEqual(
        [eth0.linkinfo?.info_kind, eth0.linkinfo?.info_data?.mode, eth0.mtu, eth0.address],
        ["macvlan", "bridge", 1400, "02:42:c6:12:54:05"],
      );
      assert.notEqual(eth0.link_netnsid, undefined, "the macvlan's parent is not in the node namespace");
      assert.equal(await link(lab.node, "docker"), undefined);
      assert.ok(await ping(lab, u.net, "198.18.84.5"), "net → pod");
      assert.ok(await ping(lab, pod, "198.18.84.1"), "pod → gateway");
      const withPrev = withPrevResult(conf, r);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
      await assertAttachmentGone(lab, pod);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "second DEL");
    });
  },
);

kernelTest("galaxy-k8s-vlan: ipvlan mode (batch text where the kernel has no ipvlan)", async () => {
  await withLab("kvlanipvlan", async (lab) => {
    const u = await underlayNet(lab, { subnet: "198.18.86" });
    const pod = await lab.pod("pod");
    const missing = await linkTypeMissing(lab, "ipvlan");
    const conf = vlanConf(lab, "1.0.0", { switch: "ipvlan", ipvlan_mode: "l2" });
    const call = {
      containerId: "ipvlan0001",
      netns: pod,
      args: ipinfos({ ip: "198.18.86.5/24", gateway: "198.18.86.1" }),
    };
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
    if (missing) {
      skippedKernelPart(missing);
      assert.equal(
        batchText(
          slaveOps("iv-ipvlan000", {
            kind: "ipvlan",
            parent: "u0",
            netns: pod.path,
            mtu: 1500,
            ipvlanMode: "l2",
          }),
        ),
        "link add link u0 name iv-ipvlan000 mtu 1500 type ipvlan mode l2\n" +
          `link set dev iv-ipvlan000 netns ${pod.path}\n`,
      );
      assert.equal(
        batchText(
          slaveOps("iv-ipvlan000", { kind: "ipvlan", parent: "vlan5", netns: pod.path, ipvlanMode: "l3s" }),
        ),
        "link add link vlan5 name iv-ipvlan000 type ipvlan mode l3s\n" +
          `link set dev iv-ipvlan000 netns ${pod.path}\n`,
      );
      // the real ADD fails on this kernel, and cleanly
      assertFails(add, "ADD without ipvlan", {
        msg: /create ipvlan iv-ipvlan000 on u0.*Unknown device type/,
      });
      await assertAttachmentGone(lab, pod);
      return;
    }
    assertOk(add, "ADD");
    const eth0 = (await link(pod, "eth0"))!;
    assert.deepEqual([eth0.linkinfo?.info_kind, eth0.linkinfo?.info_data?.mode], ["ipvlan", "l2"]);
    assert.equal(
      eth0.address,
      (await link(lab.node, "u0"))!.address,
      "an ipvlan keeps its parent's MAC",
    );
    assert.ok(await ping(lab, u.net, "198.18.86.5"), "net → pod");
    const withPrev = withPrevResult(conf, add.result!);
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
    await assertAttachmentGone(lab, pod);
  });
});

kernelTest(
  "galaxy-k8s-vlan: VLAN device and bridge (batch text and a full rollback where the kernel has no 8021q)",
  async () => {
    await withLab("kvlanvlan", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.88", routes: true });
      const pod = await lab.pod("pod");
      const missing = await linkTypeMissing(lab, "vlan");
      const conf = vlanConf(lab, "1.0.0");
      if (missing) {
        skippedKernelPart(missing);
        const uplink = {
          index: 2,
          name: "u0",
          up: true,
          flags: [],
          mtu: 1500,
          operstate: "UP",
          kind: "veth",
        };
        const plan = planVlanBridge([uplink], {
          vlanId: 5,
          parent: "u0",
          vlanPrefix: "vlan",
          bridgePrefix: "docker",
          bridgeMac: "02:42:0a:0b:0c:0d",
        });
        assert.equal(
          batchText(vlanSetupOps(plan)),
          "link add link u0 name vlan5 type vlan id 5\n" +
            "link set dev vlan5 up\n" +
            "link add name docker5 type bridge\n" +
            "link set dev docker5 address 02:42:0a:0b:0c:0d up\n" +
            "link set dev vlan5 master docker5\n",
        );
        // for real: VLAN 0 and VLAN 5 in one ADD; the default bridge is set up, then VLAN 5 fails in the same
        // locked step, so the default bridge is rolled back too (addresses, routes, and u0 released)
        const before = await uplinkState(lab);
        const add = await runBuiltin(lab, PLUGIN, {
          verb: "ADD",
          conf,
          containerId: "vlanmix001",
          netns: pod,
          args: ipinfos(
            { ip: "198.18.88.5/24", gateway: "198.18.88.1" },
            { ip: "198.18.89.5/24", vlan: 5, gateway: "198.18.89.1" },
          ),
        });
        assertFails(add, "ADD with a VLAN on a kernel without 8021q", {
          msg: /VLAN 5 on u0.*Unknown device type/,
        });
        assert.match(
          add.stderr,
          /default bridge docker: took 198\.18\.88\.2\/24/,
          "the default bridge was never set up",
        );
        assert.deepEqual(await uplinkState(lab), before, "u0 is not back as it was");
        assert.deepEqual(await nodeLinks(lab, "vlan"), []);
        await assertAttachmentGone(lab, pod);
        return;
      }
      // a kernel with 8021q: VLAN 5 on u0 with its bridge, and the same VLAN on the net side
      await lab.ip(u.net, ["link", "add", "link", "u1", "name", "u1.5", "type", "vlan", "id", "5"]);
      await lab.ip(u.net, ["addr", "add", "198.18.89.1/24", "dev", "u1.5"]);
      await lab.ip(u.net, ["link", "set", "u1.5", "up"]);
      const call = {
        containerId: "vlan500001",
        netns: pod,
        args: ipinfos({ ip: "198.18.89.5/24", vlan: 5, gateway: "198.18.89.1" }),
      };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD on VLAN 5");
      const vlan5 =
        (await lab.ipJson<{ master?: string; flags: string[]; linkinfo: { info_data: { id: number } } }[]>(
          lab.node,
          ["-d", "link", "show", "dev", "vlan5"],
        ))[0];
      assert.deepEqual([vlan5.linkinfo.info_data.id, vlan5.master, vlan5.flags.includes("UP")], [
        5,
        "docker5",
        true,
      ]);
      assert.equal((await link(lab.node, "v-hvlan50000-l0"))!.master, "docker5");
      assert.equal(
        await link(lab.node, "docker"),
        undefined,
        "no default bridge without a VLAN 0 address",
      );
      assert.ok(await ping(lab, u.net, "198.18.89.5"), "net → pod over VLAN 5");
      const withPrev = withPrevResult(conf, add.result!);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
      await assertAttachmentGone(lab, pod);
      assert.ok(await link(lab.node, "docker5"), "the VLAN bridge is node state and stays");
    });
  },
);

// ----------------------------------------------------------------------------------------- several addresses

kernelTest(
  "galaxy-k8s-vlan: two addresses give eth0 and eth1, the route rewrite, and a gratuitous ARP of each own IP",
  async () => {
    await withLab("kvlantwo", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.92" });
      const pod = await lab.pod("pod");
      const conf = vlanConf(lab, "1.0.0");
      const call = {
        containerId: "twoips0001",
        netns: pod,
        args: ipinfos({ ip: "198.18.92.5/24", gateway: "198.18.92.1" }, {
          ip: "198.18.92.6/24",
          gateway: "198.18.92.1",
        }),
      };
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      // learnt by the net side from the gratuitous ARP alone (arp_accept on u1), before any traffic
      const learnt = await learntNeighbours(lab, u.net, {
        dev: "u1",
        addresses: ["198.18.92.5", "198.18.92.6"],
      });
      assert.deepEqual(learnt, {
        "198.18.92.5": "02:42:c6:12:5c:05",
        "198.18.92.6": "02:42:c6:12:5c:06",
      });
      const r = add.result!;
      assert.deepEqual(r.interfaces!.map((i) => i.name), [
        "v-htwoips000-l0",
        "eth0",
        "v-htwoips000-l1",
        "eth1",
      ]);
      assert.deepEqual(r.ips!.map((ip) => [ip.address, ip.interface]), [["198.18.92.5/24", 1], [
        "198.18.92.6/24",
        3,
      ]]);
      assert.deepEqual(r.routes, [
        { dst: "10.0.0.0/8", gw: "198.18.92.1" },
        { dst: "172.16.0.0/12", gw: "198.18.92.1" },
        { dst: "192.168.0.0/16", gw: "198.18.92.1" },
        { dst: "0.0.0.0/0", gw: "198.18.92.1" },
      ]);
      assert.deepEqual(
        (await routeLines(pod)).filter((l) => !l.includes("proto kernel")),
        [
          "10.0.0.0/8 via 198.18.92.1 dev eth0",
          "172.16.0.0/12 via 198.18.92.1 dev eth0",
          "192.168.0.0/16 via 198.18.92.1 dev eth0",
          "default via 198.18.92.1 dev eth1",
        ],
      );
      assert.equal((await link(pod, "eth1"))!.address, "02:42:c6:12:5c:06");
      assert.ok(await ping(lab, u.net, "198.18.92.5"), "net → eth0");
      assert.ok(await ping(lab, u.net, "198.18.92.6"), "net → eth1");
      const withPrev = withPrevResult(conf, r);
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
      await lab.ip(pod, ["route", "del", "default"]);
      assertFails(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK", {
        msg: /route 0\.0\.0\.0\/0 via 198\.18\.92\.1 is missing/,
      });
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
      await assertAttachmentGone(lab, pod);
    });
  },
);

kernelTest("galaxy-k8s-vlan: three addresses install and report one default route", async () => {
  await withLab("kvlanthree", async (lab) => {
    await underlayNet(lab, { subnet: "198.18.94" });
    const pod = await lab.pod("pod");
    const conf = vlanConf(lab, "0.3.1");
    const args = ipinfos(
      { ip: "198.18.94.5/24", gateway: "198.18.94.1" },
      { ip: "198.18.94.6/24", gateway: "198.18.94.1" },
      { ip: "198.18.94.7/24", gateway: "198.18.94.1" },
    );
    const add = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf,
      containerId: "threeips01",
      netns: pod,
      args,
    });
    assertOk(add, "ADD");
    assert.deepEqual(add.result!.routes, [{ dst: "0.0.0.0/0", gw: "198.18.94.1" }]);
    assert.deepEqual((await lab.linkNames(pod)).sort(), ["eth0", "eth1", "eth2", "lo"]);
    // DEL without prevResult: ipinfos say which interfaces are ours
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "threeips01", netns: pod, args }),
      "DEL",
    );
    await assertAttachmentGone(lab, pod);
  });
});

// ------------------------------------------------------------------------------------------ DEL, faults

kernelTest(
  "galaxy-k8s-vlan: in a multi-network pod, DEL removes only this attachment's interfaces",
  async () => {
    await withLab("kvlanmulti", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.96" });
      const pod = await lab.pod("pod");
      // another network's veths, as another plugin would leave them: net1, and an eth1 (the name our second
      // address would get) with that network's own MAC
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
        await lab.ip(pod, ["link", "set", name, "up"]);
      }
      const conf = vlanConf(lab, "0.4.0");
      // an ADD with two addresses fails on the other network's eth1, and cleans up only its own eth0
      const two = ipinfos({ ip: "198.18.96.5/24", gateway: "198.18.96.1" }, {
        ip: "198.18.96.6/24",
        gateway: "198.18.96.1",
      });
      const failed = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "multi00001",
        netns: pod,
        args: two,
      });
      assertFails(failed, "ADD", { msg: /interface eth1 already exists/ });
      await assertAttachmentGone(lab, pod, ["net1", "eth1"]);
      // the runtime's DEL after a failed ADD, with the same ipinfos: eth1 is not ours (not our MAC), it stays
      assertOk(
        await runBuiltin(lab, PLUGIN, {
          verb: "DEL",
          conf,
          containerId: "multi00001",
          netns: pod,
          args: two,
        }),
        "DEL",
      );
      await assertAttachmentGone(lab, pod, ["net1", "eth1"]);
      // a working attachment next to them, then its DEL without prevResult
      const one = ipinfos({ ip: "198.18.96.7/24", gateway: "198.18.96.1" });
      assertOk(
        await runBuiltin(lab, PLUGIN, {
          verb: "ADD",
          conf,
          containerId: "multi00002",
          netns: pod,
          args: one,
        }),
        "ADD",
      );
      assert.deepEqual((await lab.linkNames(pod)).sort(), ["eth0", "eth1", "lo", "net1"]);
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "multi00002", netns: pod }),
        "DEL",
      );
      await assertAttachmentGone(lab, pod, ["net1", "eth1"]);
      assert.deepEqual(await nodeLinks(lab, "gt-other"), ["gt-other1", "gt-other2"]);
    });
  },
);

kernelTest(
  "galaxy-k8s-vlan: DEL with the netns or interface gone, or twice, succeeds and releases IPAM",
  async () => {
    await withLab("kvlangone", async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.98" });
      const ipam = {
        type: "host-local",
        dataDir: `${lab.dir}/ipam`,
        ranges: [[{
          subnet: "198.18.98.0/24",
          rangeStart: "198.18.98.100",
          rangeEnd: "198.18.98.110",
          gateway: "198.18.98.1",
        }]],
        routes: [{ dst: "0.0.0.0/0" }],
      };
      const conf = vlanConf(lab, "0.4.0", { ipam });
      for (const [i, how] of (["vanished netns", "empty netns", "interface gone"] as const).entries()) {
        const pod = await lab.pod(`gone${i}`);
        const call = { containerId: `gone${i}00000`, netns: pod };
        const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
        assertOk(add, `ADD (${how})`);
        const ip = add.result!.ips![0].address.split("/")[0];
        assert.deepEqual(await reservations(lab, NETWORK), [ip]);
        // the IPAM's default route got its gateway
        assert.ok((await routes(lab, pod)).some((r) => r.dst === "default" && r.gateway === "198.18.98.1"));
        assert.ok(await ping(lab, u.net, ip), `net → pod (${how})`);
        const withPrev = withPrevResult(conf, add.result!);
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
        let netns: Netns | string = pod;
        if (how === "interface gone") await lab.ip(pod, ["link", "del", "eth0"]);
        else {
          await lab.removeNetns(pod);
          netns = how === "empty netns" ? "" : pod.path;
        }
        assertOk(
          await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call, netns }),
          `DEL (${how})`,
        );
        assert.deepEqual(await reservations(lab, NETWORK), [], `IPAM not released (${how})`);
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...call, netns }), `second DEL (${how})`);
        await assertAttachmentGone(lab, undefined);
      }
    });
  },
);

kernelTest(
  "galaxy-k8s-vlan: a failure in the pod half-way rolls back the attachment and releases IPAM",
  async () => {
    await withLab("kvlanpodfail", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.100" });
      const pod = await lab.pod("pod");
      await lab.ip(pod, ["route", "add", "blackhole", "default"]);
      const ipam = {
        type: "host-local",
        dataDir: `${lab.dir}/ipam`,
        ranges: [[{ subnet: "198.18.100.0/24", rangeStart: "198.18.100.100", gateway: "198.18.100.1" }]],
        routes: [{ dst: "0.0.0.0/0" }],
      };
      const add = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf: vlanConf(lab, "1.0.0", { ipam }),
        containerId: "podfail001",
        netns: pod,
      });
      assertFails(add, "ADD", {
        msg: /configure eth0 .*route add 0\.0\.0\.0\/0 via 198\.18\.100\.1 dev eth0.*File exists/,
      });
      await assertAttachmentGone(lab, pod);
      assert.deepEqual(await reservations(lab, NETWORK), []);
    });
  },
);

kernelTest("galaxy-k8s-vlan: chained prevResult is passed through with our entries appended", async () => {
  await withLab("kvlanchain", async (lab) => {
    await underlayNet(lab, { subnet: "198.18.102" });
    const pod = await lab.pod("pod");
    const prev: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "net9", sandbox: pod.path }],
      ips: [{ address: "198.18.103.9/24", interface: 0 }],
      routes: [{ dst: "198.18.104.0/24", gw: "198.18.103.1" }],
      dns: { nameservers: ["198.18.0.10"] },
    };
    const conf = withPrevResult(vlanConf(lab, "1.0.0"), prev);
    const call = {
      containerId: "chain00001",
      netns: pod,
      args: ipinfos({ ip: "198.18.102.5/24", gateway: "198.18.102.1" }),
    };
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
    assertOk(add, "ADD");
    const r = add.result!;
    assert.deepEqual(r.interfaces!.map((i) => i.name), ["net9", "v-hchain0000-l0", "eth0"]);
    assert.deepEqual(r.ips, [
      { address: "198.18.103.9/24", interface: 0 },
      { address: "198.18.102.5/24", gateway: "198.18.102.1", interface: 2 },
    ]);
    assert.deepEqual(r.routes, [
      { dst: "198.18.104.0/24", gw: "198.18.103.1" },
      { dst: "0.0.0.0/0", gw: "198.18.102.1" },
    ]);
    assert.deepEqual(r.dns, { nameservers: ["198.18.0.10"] });
    const withPrev = withPrevResult(conf, r);
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "DEL");
    await assertAttachmentGone(lab, pod);
  });
});

kernelTest(
  "galaxy-k8s-vlan: bad config, a missing uplink and an existing interface are refused; STATUS",
  async () => {
    await withLab("kvlanbad", async (lab) => {
      await underlayNet(lab, { subnet: "198.18.106" });
      const pod = await lab.pod("pod");
      const args = ipinfos({ ip: "198.18.106.5/24", gateway: "198.18.106.1" });
      const call = { containerId: "badconf001", netns: pod, args };
      const bad = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf: vlanConf(lab, "1.0.0", { switch: "vxlan", mtu: 20, vlan_name_prefix: "averylongprefix" }),
        ...call,
      });
      assertFails(bad, "ADD with bad config", {
        msg: /switch: "vxlan" is not one of.*vlan_name_prefix: .*no room for a VLAN ID.*mtu: must be 0 or/,
        code: 7,
      });
      const noDevice = { ...vlanConf(lab, "1.0.0"), device: undefined };
      assertFails(
        await runBuiltin(lab, PLUGIN, { verb: "ADD", conf: noDevice, ...call }),
        "ADD without device",
        {
          msg: /a device is needed/,
          code: 7,
        },
      );
      const devices = vlanConf(lab, "1.0.0", { device: undefined, devices: ["gt-none0", "gt-none1"] });
      assertFails(
        await runBuiltin(lab, PLUGIN, { verb: "ADD", conf: devices, ...call }),
        "ADD, no device there",
        {
          msg: /"devices": none of gt-none0, gt-none1 exists/,
          code: 7,
        },
      );
      await lab.ip(pod, ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"]);
      assertFails(
        await runBuiltin(lab, PLUGIN, { verb: "ADD", conf: vlanConf(lab, "1.0.0"), ...call }),
        "ADD of an existing interface",
        { msg: /interface eth0 already exists/ },
      );
      assert.equal(await link(lab.node, "docker"), undefined, "the node was touched for a refused ADD");
      assertFails(
        await runBuiltin(lab, PLUGIN, {
          verb: "ADD",
          conf: vlanConf(lab, "1.0.0"),
          ...call,
          netns: `${pod.path}-gone`,
        }),
        "ADD into a missing netns",
        { msg: /does not exist/, code: 3 },
      );
      const status = await runBuiltin(lab, PLUGIN, {
        verb: "STATUS",
        conf: vlanConf(lab, "1.1.0", { device: "gt-none0" }),
      });
      assertFails(status, "STATUS without the uplink", { msg: /gt-none0" does not exist/, code: 50 });
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "STATUS", conf: vlanConf(lab, "1.1.0") }), "STATUS");
      await assertAttachmentGone(lab, undefined);
    });
  },
);
