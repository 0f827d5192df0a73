/**
 * The pure parts of cni/plugins/underlay.ts: the configuration of galaxy-k8s-vlan, the pod interface names
 * and routes (the two-address rewrite), the plans and exact `ip -batch` text of the default bridge (the §3.3
 * unit vector), of VLAN devices and bridges and of macvlan/ipvlan slaves, and their rollbacks; the VLAN
 * master lookup of galaxy-underlay-veth; and what DEL counts as this attachment's. No root, no kernel.
 * @module
 */
import assert from "node:assert/strict";
import { parseVlanConf } from "../../cni/plugins/kit/underlay_conf.ts";
import { expectedInterfaces, ownedPodInterfaces } from "../../cni/plugins/kit/underlay_del_check.ts";
import {
  defaultBridgeOps,
  defaultBridgeRollbackOps,
  findVlanMaster,
  isNoop,
  movableRoute,
  planDefaultBridge,
  planVlanBridge,
  randomMac,
  vlanRollbackOps,
  vlanSetupOps,
} from "../../cni/plugins/kit/underlay_node.ts";
import {
  addressPlans,
  podInterfaceNames,
  podRoutePlan,
  proxyArpSysctls,
  rpFilterOff,
} from "../../cni/plugins/kit/underlay_plan.ts";
import { slaveOps, slaveTempName } from "../../cni/plugins/kit/underlay_pod.ts";
import type { PluginRequest } from "../../cni/skel.ts";
import { CniError, type Result } from "../../cni/version.ts";
import { type Addr, batchText, type Link, type Route } from "../../netops/ip.ts";
import { ipv4InSubnet } from "../../netops/ip_address.ts";

const BASE = { up: true, flags: [], mtu: 1500, operstate: "UP" };

function link(name: string, extra: Partial<Link> = {}): Link {
  return { ...BASE, index: 1, name, ...extra };
}

function addr(dev: string, cidr: string): Addr {
  const [local, len] = cidr.split("/");
  return { dev, index: 2, family: 4, local, prefixlen: Number(len), cidr, scope: "global" };
}

function route(dst: string, extra: Partial<Route> = {}): Route {
  return { dst, table: "all", flags: [], ...extra };
}

// ------------------------------------------------------------------------------------------ config

Deno.test("parseVlanConf: Galaxy's defaults", () => {
  const conf = parseVlanConf({ type: "galaxy-k8s-vlan", device: "eth1" }, { plugin: "p" });
  assert.deepEqual(conf, {
    device: "eth1",
    mode: "bridge",
    ipvlanMode: "l3",
    defaultBridgeName: "docker",
    bridgeNamePrefix: "docker",
    vlanNamePrefix: "vlan",
    gratuitousArpRequest: false,
    lockDir: "/var/run/galaxy",
  });
});

Deno.test("parseVlanConf: every key read; empty switch and ipvlan_mode mean the defaults", () => {
  const conf = parseVlanConf({
    devices: ["eth1", "", "bond0"],
    switch: "ipvlan",
    ipvlan_mode: "L3S",
    disable_default_bridge: false,
    default_bridge_name: "brtest",
    bridge_name_prefix: "br",
    vlan_name_prefix: "dummy0.",
    gratuitous_arp_request: true,
    mtu: 1450,
    lockDir: "/run/galaxy/locks/",
    dns: { nameservers: ["198.18.0.53"] },
  }, { plugin: "p" });
  assert.deepEqual(conf, {
    devices: ["eth1", "bond0"],
    mode: "ipvlan",
    ipvlanMode: "l3s",
    disableDefaultBridge: false,
    defaultBridgeName: "brtest",
    bridgeNamePrefix: "br",
    vlanNamePrefix: "dummy0.",
    gratuitousArpRequest: true,
    mtu: 1450,
    lockDir: "/run/galaxy/locks",
    dns: { nameservers: ["198.18.0.53"] },
  });
  assert.equal(parseVlanConf({ switch: "", ipvlan_mode: "", mtu: 0 }, { plugin: "p" }).mode, "bridge");
});

Deno.test("parseVlanConf: every problem is reported at once with code 7, naming the keys", () => {
  try {
    parseVlanConf({
      device: "a-name-that-is-too-long",
      devices: "eth1",
      switch: "vxlan",
      ipvlan_mode: "l4",
      bridge_name_prefix: "averylongprefix",
      gratuitous_arp_request: "yes",
      mtu: 20,
      lockDir: "relative",
    }, { plugin: "galaxy-k8s-vlan" });
    assert.fail("no error");
  } catch (err) {
    assert.ok(err instanceof CniError);
    assert.equal(err.code, 7);
    for (
      const key of [
        "device:",
        "devices: expected a list",
        'switch: "vxlan"',
        'ipvlan_mode: "l4"',
        "bridge_name_prefix:",
        "gratuitous_arp_request: expected true or false",
        "mtu: must be 0 or",
        "lockDir: must be an absolute path",
      ]
    ) {
      assert.ok(err.message.includes(key), `${key} not named in: ${err.message}`);
    }
    assert.match(err.message, /^galaxy-k8s-vlan: invalid config: /);
  }
});

// ------------------------------------------------------------------------------------------ names, routes

Deno.test("podInterfaceNames: CNI_IFNAME, then eth1, eth2, ... skipping CNI_IFNAME", () => {
  assert.deepEqual(podInterfaceNames("eth0", 3), ["eth0", "eth1", "eth2"]);
  assert.deepEqual(podInterfaceNames("eth1", 3), ["eth1", "eth2", "eth3"]);
  assert.deepEqual(podInterfaceNames("net0", 2), ["net0", "eth1"]);
  assert.deepEqual(podInterfaceNames("eth0", 0), []);
});

Deno.test("slaveTempName: mv- for macvlan, iv- for ipvlan (Galaxy used mv- for both)", () => {
  assert.equal(slaveTempName("0123456789abcdef", { kind: "macvlan" }), "mv-012345678");
  assert.equal(slaveTempName("abcd", { kind: "ipvlan" }), "iv-abcd");
});

Deno.test("addressPlans: IPv4 addresses of an allocation with their VLANs", () => {
  const result: Result = {
    cniVersion: "1.1.0",
    ips: [{ address: "198.18.0.5/24", gateway: "198.18.0.1" }, { address: "2001:db8::5/64" }, {
      address: "198.18.1.5/24",
    }],
  };
  assert.deepEqual(addressPlans(result, [0, 0, 7]), [
    { address: "198.18.0.5/24", gateway: "198.18.0.1", vlan: 0 },
    { address: "198.18.1.5/24", vlan: 7 },
  ]);
});

const A = { address: "198.18.0.5/24", gateway: "198.18.0.1", vlan: 0 };
const B = { address: "198.18.1.5/24", gateway: "198.18.1.1", vlan: 2 };
const C = { address: "198.18.2.5/24", gateway: "198.18.2.1", vlan: 3 };

Deno.test("podRoutePlan k8s-vlan: one address, a default route via its gateway (none without one)", () => {
  assert.deepEqual(podRoutePlan([A], { policy: "k8s-vlan" }), [[{ dst: "0.0.0.0/0", gw: "198.18.0.1" }]]);
  assert.deepEqual(podRoutePlan([{ address: A.address, vlan: 0 }], { policy: "k8s-vlan" }), [[{
    dst: "0.0.0.0/0",
  }]]);
});

Deno.test("podRoutePlan k8s-vlan: two addresses: the first's default becomes the private ranges", () => {
  assert.deepEqual(podRoutePlan([A, B], { policy: "k8s-vlan" }), [
    [
      { dst: "10.0.0.0/8", gw: "198.18.0.1" },
      { dst: "172.16.0.0/12", gw: "198.18.0.1" },
      { dst: "192.168.0.0/16", gw: "198.18.0.1" },
    ],
    [{ dst: "0.0.0.0/0", gw: "198.18.1.1" }],
  ]);
});

Deno.test("podRoutePlan k8s-vlan: three addresses keep one default route, on the first", () => {
  assert.deepEqual(podRoutePlan([A, B, C], { policy: "k8s-vlan" }), [
    [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }],
    [],
    [],
  ]);
});

Deno.test("podRoutePlan underlay: only the first address gets a default route", () => {
  assert.deepEqual(podRoutePlan([A, B], { policy: "underlay" }), [
    [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }],
    [],
  ]);
});

Deno.test("podRoutePlan with IPAM routes: all on the first interface, gateway filled in, no rewrite", () => {
  const ipamRoutes = [{ dst: "0.0.0.0/0" }, { dst: "198.18.9.0/24", gw: "198.18.0.254" }, {
    dst: "2001:db8::/64",
  }];
  assert.deepEqual(podRoutePlan([A, B], { policy: "k8s-vlan", ipamRoutes }), [
    [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }, { dst: "198.18.9.0/24", gw: "198.18.0.254" }],
    [],
  ]);
});

Deno.test("ipv4InSubnet: IPv4 containment with host bits in the CIDR", () => {
  assert.ok(ipv4InSubnet("198.18.0.1", "198.18.0.5/24"));
  assert.ok(!ipv4InSubnet("198.18.1.1", "198.18.0.5/24"));
  assert.ok(ipv4InSubnet("198.19.255.255", "198.18.0.0/15"));
  assert.ok(ipv4InSubnet("198.18.0.5", "198.18.0.5/32"));
  assert.ok(ipv4InSubnet("1.2.3.4", "0.0.0.0/0"));
  assert.ok(!ipv4InSubnet("2001:db8::1", "198.18.0.0/15"));
});

Deno.test("rpFilterOff / proxyArpSysctls: /proc/sys paths, safe for dotted interface names", () => {
  assert.deepEqual(rpFilterOff("eth1"), {
    "/proc/sys/net/ipv4/conf/eth1/rp_filter": "0",
    "/proc/sys/net/ipv4/conf/all/rp_filter": "0",
  });
  assert.deepEqual(proxyArpSysctls("eth1.12"), {
    "/proc/sys/net/ipv4/conf/eth1.12/arp_ignore": "0",
    "/proc/sys/net/ipv4/conf/eth1.12/proxy_arp": "1",
  });
});

// ------------------------------------------------------------------------------------------ default bridge

const UPLINK = link("du0", { index: 2, address: "02:00:00:00:00:02", kind: "veth" });

Deno.test("default bridge: the §3.3 unit vector (an address, a link route, a default route)", () => {
  // Galaxy's vector, with 198.18 addresses: afterwards `default via .1 dev docker`, `<net> dev docker`, and
  // the kernel's own prefix route on docker (not re-added: it comes with the address)
  const plan = planDefaultBridge({
    uplink: UPLINK,
    links: [UPLINK],
    addrs: [addr("du0", "198.18.0.2/24")],
    routes: [
      route("default", { gateway: "198.18.0.1", dev: "du0" }),
      route("198.18.0.0/24", { dev: "du0", protocol: "kernel", scope: "link", prefsrc: "198.18.0.2" }),
      route("198.18.10.0/24", { dev: "du0", scope: "link" }),
    ],
  }, { bridge: "docker" });
  assert.deepEqual(plan, {
    uplink: "du0",
    bridge: "docker",
    createBridge: true,
    bridgeMac: "02:00:00:00:00:02",
    addresses: ["198.18.0.2/24"],
    routes: [{ dst: "198.18.10.0/24", scope: "link" }, { dst: "default", gw: "198.18.0.1" }],
    enslave: true,
  });
  assert.equal(
    batchText(defaultBridgeOps(plan)),
    "link add name docker type bridge\n" +
      "link set dev docker address 02:00:00:00:00:02 up\n" +
      "addr del 198.18.0.2/24 dev du0\n" +
      "addr replace 198.18.0.2/24 dev docker\n" +
      "link set dev du0 master docker\n" +
      "route replace 198.18.10.0/24 dev docker scope link\n" +
      "route replace default via 198.18.0.1 dev docker\n",
  );
  assert.equal(
    batchText(defaultBridgeRollbackOps(plan)),
    "route del default via 198.18.0.1 dev docker\n" +
      "route del 198.18.10.0/24 dev docker scope link\n" +
      "link set dev du0 nomaster\n" +
      "addr del 198.18.0.2/24 dev docker\n" +
      "addr replace 198.18.0.2/24 dev du0\n" +
      "route replace 198.18.10.0/24 dev du0 scope link\n" +
      "route replace default via 198.18.0.1 dev du0\n" +
      "link del dev docker\n",
  );
});

Deno.test("default bridge: secondaries go first, every table but local moves, attributes are kept", () => {
  const plan = planDefaultBridge({
    uplink: UPLINK,
    links: [UPLINK, link("docker", { kind: "bridge" }), link("eth9")],
    addrs: [addr("du0", "198.18.0.2/24"), addr("du0", "198.18.0.3/24"), addr("du0", "127.0.0.9/8")],
    routes: [
      route("198.18.5.0/24", { gateway: "198.18.0.9", dev: "du0", table: "100" }),
      route("198.18.6.0/24", { gateway: "198.18.99.9", dev: "du0", metric: 7, flags: ["onlink"] }),
      route("198.18.0.2", { dev: "du0", table: "local", type: "local", scope: "host", protocol: "kernel" }),
      route("198.18.7.0/24", { dev: "eth9" }),
      route("198.18.8.0/24", { dev: "du0", scope: "link", prefsrc: "198.18.0.3" }),
    ],
  }, { bridge: "docker" });
  assert.equal(plan.createBridge, false);
  assert.equal(plan.bridgeMac, undefined, "an existing bridge keeps its MAC");
  assert.equal(
    batchText(defaultBridgeOps(plan)),
    "link set dev docker up\n" +
      "addr del 198.18.0.3/24 dev du0\n" +
      "addr del 198.18.0.2/24 dev du0\n" +
      "addr replace 198.18.0.2/24 dev docker\n" +
      "addr replace 198.18.0.3/24 dev docker\n" +
      "link set dev du0 master docker\n" +
      "route replace 198.18.8.0/24 dev docker scope link src 198.18.0.3\n" +
      "route replace 198.18.5.0/24 via 198.18.0.9 dev docker table 100\n" +
      "route replace 198.18.6.0/24 via 198.18.99.9 dev docker onlink metric 7\n",
  );
  assert.ok(
    !batchText(defaultBridgeRollbackOps(plan)).includes("link del"),
    "an existing bridge was deleted",
  );
});

Deno.test("default bridge: already moved is a no-op; a foreign master or a non-bridge is refused", () => {
  const moved = { ...UPLINK, master: "docker" };
  const noop = planDefaultBridge({
    uplink: moved,
    links: [moved, link("docker", { kind: "bridge" })],
    addrs: [],
    routes: [route("198.18.0.0/24", { dev: "docker", protocol: "kernel" })],
  }, { bridge: "docker" });
  assert.ok(isNoop(noop));
  assert.throws(
    () =>
      planDefaultBridge({ uplink: { ...UPLINK, master: "br9" }, links: [UPLINK], addrs: [], routes: [] }, {
        bridge: "docker",
      }),
    /uplink du0 is already a port of br9/,
  );
  assert.throws(
    () =>
      planDefaultBridge({
        uplink: UPLINK,
        links: [UPLINK, link("docker", { kind: "veth" })],
        addrs: [],
        routes: [],
      }, {
        bridge: "docker",
      }),
    /default bridge docker exists and is a veth/,
  );
});

Deno.test("movableRoute: what `ip -j route` shows, turned into what re-adds it elsewhere", () => {
  assert.deepEqual(movableRoute(route("default", { gateway: "198.18.0.1", dev: "u0", table: "main" })), {
    dst: "default",
    gw: "198.18.0.1",
  });
  assert.deepEqual(
    movableRoute(
      route("198.18.3.0/24", { dev: "u0", scope: "link", prefsrc: "198.18.0.2", table: "local7" }),
    ),
    { dst: "198.18.3.0/24", scope: "link", src: "198.18.0.2", table: "local7" },
  );
});

// ------------------------------------------------------------------------------------------ VLANs

Deno.test("VLAN plan: a new VLAN device and bridge (bridge mode), text and rollback", () => {
  const plan = planVlanBridge([UPLINK], {
    vlanId: 12,
    parent: "du0",
    vlanPrefix: "vlan",
    bridgePrefix: "docker",
    mtu: 1400,
    bridgeMac: "02:42:01:02:03:04",
  });
  assert.equal(
    batchText(vlanSetupOps(plan)),
    "link add link du0 name vlan12 mtu 1400 type vlan id 12\n" +
      "link set dev vlan12 up\n" +
      "link add name docker12 type bridge\n" +
      "link set dev docker12 address 02:42:01:02:03:04 up\n" +
      "link set dev vlan12 master docker12\n",
  );
  assert.equal(
    batchText(vlanRollbackOps(plan)),
    "link set dev vlan12 nomaster\nlink del dev docker12\nlink del dev vlan12\n",
  );
});

Deno.test("VLAN plan: an existing VLAN device of any name is used, set up, and its bridge reused", () => {
  const links = [
    UPLINK,
    link("du0.2", { kind: "vlan", vlanId: 2, parent: "du0", up: false, master: "br2" }),
    link("br2", { kind: "bridge" }),
    link("other.2", { kind: "vlan", vlanId: 2, parent: "eth7" }),
  ];
  const plan = planVlanBridge(links, { vlanId: 2, parent: "du0", vlanPrefix: "dummy0.", bridgePrefix: "br" });
  assert.deepEqual([plan.device, plan.createDevice, plan.bridge, plan.createBridge, plan.enslave], [
    "du0.2",
    false,
    "br2",
    false,
    false,
  ]);
  assert.equal(batchText(vlanSetupOps(plan)), "link set dev du0.2 up\nlink set dev br2 up\n");
  assert.equal(batchText(vlanRollbackOps(plan)), "", "nothing of it was ours to undo");
});

Deno.test("VLAN plan: e2e names (prefix dummy0. and br): dummy0.2 on dummy0 with bridge br2", () => {
  const plan = planVlanBridge([link("dummy0")], {
    vlanId: 2,
    parent: "dummy0",
    vlanPrefix: "dummy0.",
    bridgePrefix: "br",
    bridgeMac: "02:42:00:00:00:01",
  });
  assert.equal(
    batchText(vlanSetupOps(plan)),
    "link add link dummy0 name dummy0.2 type vlan id 2\nlink set dev dummy0.2 up\n" +
      "link add name br2 type bridge\nlink set dev br2 address 02:42:00:00:00:01 up\n" +
      "link set dev dummy0.2 master br2\n",
  );
});

Deno.test("VLAN plan: macvlan/ipvlan want the device only; an unbridged VLAN device gets a bridge", () => {
  const plan = planVlanBridge([UPLINK], { vlanId: 5, parent: "du0", vlanPrefix: "vlan" });
  assert.equal(
    batchText(vlanSetupOps(plan)),
    "link add link du0 name vlan5 type vlan id 5\nlink set dev vlan5 up\n",
  );
  const existing = planVlanBridge([UPLINK, link("vlan5", { kind: "vlan", vlanId: 5, parent: "du0" })], {
    vlanId: 5,
    parent: "du0",
    vlanPrefix: "vlan",
    bridgePrefix: "docker",
    bridgeMac: "02:42:00:00:00:05",
  });
  assert.equal(
    batchText(vlanSetupOps(existing)),
    "link set dev vlan5 up\nlink add name docker5 type bridge\n" +
      "link set dev docker5 address 02:42:00:00:00:05 up\n" +
      "link set dev vlan5 master docker5\n",
  );
  assert.equal(batchText(vlanRollbackOps(existing)), "link set dev vlan5 nomaster\nlink del dev docker5\n");
});

Deno.test("VLAN plan: names taken by something else, and a master that is not a bridge, are refused", () => {
  const opts = { vlanId: 5, parent: "du0", vlanPrefix: "vlan", bridgePrefix: "docker" };
  assert.throws(
    () => planVlanBridge([UPLINK, link("vlan5", { kind: "veth" })], opts),
    /vlan5 exists and is a veth/,
  );
  assert.throws(
    () => planVlanBridge([UPLINK, link("vlan5", { kind: "vlan", vlanId: 6, parent: "du0" })], opts),
    /vlan5 exists and is VLAN 6 on du0, not VLAN 5 on du0/,
  );
  assert.throws(
    () => planVlanBridge([UPLINK, link("docker5", { kind: "veth" })], opts),
    /docker5 exists and is a veth, not a bridge/,
  );
  assert.throws(
    () =>
      planVlanBridge([
        UPLINK,
        link("vlan5", { kind: "vlan", vlanId: 5, parent: "du0", master: "bond0" }),
        link("bond0", { kind: "bond" }),
      ], opts),
    /vlan5 is a port of bond0, which is not a bridge/,
  );
  assert.throws(() => planVlanBridge([UPLINK], { ...opts, vlanId: 4095 }), /not in 1–4094/);
});

Deno.test("randomMac: Galaxy's 02:42 prefix and four random bytes", () => {
  assert.match(randomMac(), /^02:42(:[0-9a-f]{2}){4}$/);
  assert.notEqual(randomMac(), randomMac());
});

Deno.test("slaveOps: macvlan (mode bridge) or ipvlan created on the parent, then moved into the pod", () => {
  assert.equal(
    batchText(slaveOps("mv-abc", { kind: "macvlan", parent: "vlan5", netns: "/var/run/netns/p", mtu: 1400 })),
    "link add link vlan5 name mv-abc mtu 1400 type macvlan mode bridge\n" +
      "link set dev mv-abc netns /var/run/netns/p\n",
  );
  assert.equal(
    batchText(slaveOps("iv-abc", { kind: "ipvlan", parent: "eth1", netns: "/proc/7/ns/net" })),
    "link add link eth1 name iv-abc type ipvlan mode l3\nlink set dev iv-abc netns /proc/7/ns/net\n",
  );
});

Deno.test("findVlanMaster: the one VLAN device with the ID on the parent; none or several fail", () => {
  const links = [
    UPLINK,
    link("du0.7", { kind: "vlan", vlanId: 7, parent: "du0" }),
    link("eth2.7", { kind: "vlan", vlanId: 7, parent: "eth2" }),
    link("du0.8", { kind: "vlan", vlanId: 8, parent: "du0" }),
  ];
  assert.equal(findVlanMaster(links, { vlanId: 7, parent: "du0" }).name, "du0.7");
  assert.equal(findVlanMaster(links, { vlanId: 8 }).name, "du0.8");
  assert.throws(
    () => findVlanMaster(links, { vlanId: 7 }),
    /several VLAN devices with ID 7: du0\.7, eth2\.7/,
  );
  assert.throws(() => findVlanMaster(links, { vlanId: 9, parent: "du0" }), /no VLAN device with ID 9 on du0/);
});

// ------------------------------------------------------------------------------------------ DEL

Deno.test("ownedPodInterfaces: CNI_IFNAME by name and kind; eth<k> only with its proven MAC", () => {
  const links = [
    link("eth0", { kind: "veth", address: "02:42:c6:12:00:05" }),
    link("eth1", { kind: "veth", address: "aa:bb:cc:dd:ee:ff" }), // another network's
    link("eth2", { kind: "veth", address: "02:42:c6:12:00:07" }),
    link("eth3", { kind: "macvlan", address: "02:42:c6:12:00:08" }),
  ];
  const expected = [
    { name: "eth0" },
    { name: "eth1", ip: "198.18.0.6" },
    { name: "eth2", ip: "198.18.0.7" },
    { name: "eth3", ip: "198.18.0.8" },
    { name: "eth4", ip: "198.18.0.9" },
  ];
  assert.deepEqual(ownedPodInterfaces(links, { expected, kinds: ["veth"] }), ["eth0", "eth2"]);
  assert.deepEqual(ownedPodInterfaces(links, { expected: [{ name: "eth0" }], kinds: ["macvlan"] }), []);
  assert.deepEqual(
    ownedPodInterfaces(links, {
      expected: [{ name: "eth0" }, { name: "eth1", mac: "AA:BB:CC:DD:EE:FF" }],
      kinds: ["veth"],
    }),
    ["eth0", "eth1"],
  );
});

function request(extra: Partial<PluginRequest>): PluginRequest {
  return {
    command: "DEL",
    containerId: "c1",
    netns: "/var/run/netns/p",
    ifname: "eth0",
    args: [],
    path: [],
    config: { type: "galaxy-k8s-vlan" },
    cniVersion: "1.0.0",
    env: {},
    stdin: new Uint8Array(),
    ...extra,
  };
}

Deno.test("expectedInterfaces: from prevResult, else ipinfos, else CNI_IFNAME alone", () => {
  const prevResult: Result = {
    cniVersion: "1.1.0",
    interfaces: [
      { name: "net9", sandbox: "/var/run/netns/p" },
      { name: "v-hc1-l0", mac: "02:00:00:00:00:01" },
      { name: "eth0", mac: "02:42:c6:12:00:05", sandbox: "/var/run/netns/p" },
      { name: "v-hc1-l1" },
      { name: "eth1", mac: "02:42:c6:12:00:06", sandbox: "/var/run/netns/p" },
    ],
    ips: [{ address: "198.18.0.5/24", interface: 2 }, { address: "198.18.0.6/24", interface: 4 }],
  };
  assert.deepEqual(expectedInterfaces(request({ prevResult })), [
    { name: "eth0", mac: "02:42:c6:12:00:05", ip: "198.18.0.5" },
    { name: "eth1", mac: "02:42:c6:12:00:06", ip: "198.18.0.6" },
  ]);
  // DEL may come without a netns: prevResult's sandbox is then not compared
  assert.equal(expectedInterfaces(request({ prevResult, netns: "" })).length, 2);
  const args: [string, string][] = [[
    "ipinfos",
    JSON.stringify([{ ip: "198.18.0.5/24" }, { ip: "198.18.0.6/24" }]),
  ]];
  assert.deepEqual(expectedInterfaces(request({ args, ifname: "net0" })), [
    { name: "net0", ip: "198.18.0.5" },
    { name: "eth1", ip: "198.18.0.6" },
  ]);
  assert.deepEqual(expectedInterfaces(request({ args: [["ipinfos", "not json"]] })), [{ name: "eth0" }]);
});
