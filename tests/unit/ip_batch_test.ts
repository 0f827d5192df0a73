/**
 * The exact `ip -batch` text of every operation in netops/ip.ts, name and token validation, and the mapping
 * of ip's error output back to batch lines. Pure: no root, no kernel.
 * @module
 */
import assert from "node:assert/strict";
import {
  addrAdd,
  addrDel,
  addrReplace,
  batchFailures,
  batchText,
  customOp,
  IfNameError,
  IpArgumentError,
  IpBatchError,
  linkAddBridge,
  linkAddDummy,
  linkAddIpvlan,
  linkAddMacvlan,
  linkAddVeth,
  linkAddVlan,
  linkDel,
  linkSet,
  neighAdd,
  neighDel,
  neighReplace,
  routeAdd,
  routeDel,
  routeReplace,
  ruleAdd,
  ruleDel,
  validateIfName,
} from "../../netops/ip.ts";
import { arpingArgv } from "../../netops/arping.ts";
import { sysctlPath } from "../../netops/sysctl.ts";

function line(op: { args: readonly string[] }): string {
  return batchText([op]);
}

Deno.test("ip batch: link operations render exact lines", () => {
  assert.equal(
    line(linkAddVeth("v-h123456789", "v-s123456789")),
    "link add name v-h123456789 type veth peer name v-s123456789\n",
  );
  assert.equal(
    line(linkAddVeth("vh", "vs", { mtu: 1450, txqueuelen: 0, peerNetns: "/proc/42/ns/net" })),
    "link add name vh mtu 1450 txqueuelen 0 type veth peer name vs mtu 1450 txqueuelen 0 netns /proc/42/ns/net\n",
  );
  assert.equal(
    line(linkAddVlan("eth1.100", "eth1", { id: 100 })),
    "link add link eth1 name eth1.100 type vlan id 100\n",
  );
  assert.equal(
    line(linkAddVlan("v5", "eth1", { id: 5, mtu: 1400 })),
    "link add link eth1 name v5 mtu 1400 type vlan id 5\n",
  );
  assert.equal(line(linkAddBridge("docker")), "link add name docker type bridge\n");
  assert.equal(line(linkAddBridge("br0", { mtu: 9000 })), "link add name br0 mtu 9000 type bridge\n");
  assert.equal(
    line(linkAddMacvlan("mv-abc", "eth1")),
    "link add link eth1 name mv-abc type macvlan mode bridge\n",
  );
  assert.equal(
    line(linkAddMacvlan("mv-abc", "eth1", { mode: "vepa", mtu: 1500 })),
    "link add link eth1 name mv-abc mtu 1500 type macvlan mode vepa\n",
  );
  assert.equal(line(linkAddIpvlan("mv-abc", "eth1")), "link add link eth1 name mv-abc type ipvlan mode l3\n");
  assert.equal(
    line(linkAddIpvlan("mv-abc", "eth1", { mode: "l2" })),
    "link add link eth1 name mv-abc type ipvlan mode l2\n",
  );
  assert.equal(line(linkAddDummy("dummy0")), "link add name dummy0 type dummy\n");
  assert.equal(line(linkDel("v-h123")), "link del dev v-h123\n");
});

Deno.test("ip batch: link set puts every change on one line, up/down last", () => {
  assert.equal(line(linkSet("eth0", { up: true })), "link set dev eth0 up\n");
  assert.equal(line(linkSet("eth0", { up: false })), "link set dev eth0 down\n");
  assert.equal(
    line(linkSet("v-s1", {
      up: true,
      netns: "/var/run/netns/cni-1",
      name: "eth0",
      mtu: 1500,
      address: "02:42:C6:12:00:02",
      master: "br0",
      txqueuelen: 0,
    })),
    "link set dev v-s1 netns /var/run/netns/cni-1 name eth0 address 02:42:c6:12:00:02 mtu 1500 txqueuelen 0 master br0 up\n",
  );
  assert.equal(line(linkSet("v-h1", { master: null })), "link set dev v-h1 nomaster\n");
  assert.throws(() => linkSet("eth0", {}), IpArgumentError);
  assert.throws(() => linkSet("eth0", { address: "02:42:c6:12:00" }), /aa:bb:cc:dd:ee:ff/);
  assert.throws(() => linkSet("eth0", { mtu: 20 }), /mtu must be an integer from 68 to 65535/);
  assert.throws(() => linkSet("eth0", { netns: "cni-1" }), /not an absolute path/);
  assert.throws(() => linkSet("eth0", { netns: "/var/run/netns/a b" }), /whitespace/);
});

Deno.test("ip batch: addresses", () => {
  assert.equal(line(addrAdd("198.18.0.2/24", "eth0")), "addr add 198.18.0.2/24 dev eth0\n");
  assert.equal(
    line(addrAdd("198.18.0.2/32", "eth0", { scope: "link", noprefixroute: true })),
    "addr add 198.18.0.2/32 dev eth0 scope link noprefixroute\n",
  );
  assert.equal(line(addrReplace("198.18.0.2/32", "eth0")), "addr replace 198.18.0.2/32 dev eth0\n");
  assert.equal(line(addrDel("198.18.0.2/32", "eth0")), "addr del 198.18.0.2/32 dev eth0\n");
  assert.equal(line(addrAdd("2001:db8::2/64", "eth0")), "addr add 2001:db8::2/64 dev eth0\n");
  for (
    const bad of [
      "198.18.0.2",
      "198.18.0.256/24",
      "198.18.0.2/33",
      "198.18.0.2/24/1",
      "x/24",
      "2001:db8::2/129",
    ]
  ) {
    assert.throws(() => addrAdd(bad, "eth0"), IpArgumentError, bad);
  }
  // deno-lint-ignore no-explicit-any
  assert.throws(() => addrAdd("198.18.0.2/32", "eth0", { scope: "galaxy" as any }), /scope "galaxy"/);
});

Deno.test("ip batch: routes", () => {
  assert.equal(
    line(routeAdd({ dst: "198.18.0.2/32", dev: "v-h1", scope: "link", src: "198.18.1.1" })),
    "route add 198.18.0.2/32 dev v-h1 scope link src 198.18.1.1\n",
  );
  assert.equal(
    line(routeAdd({ dst: "default", gw: "198.18.0.1", dev: "eth0" })),
    "route add default via 198.18.0.1 dev eth0\n",
  );
  assert.equal(
    line(routeReplace({ dst: "default", gw: "198.18.0.1", dev: "eth2", onlink: true, table: 2 })),
    "route replace default via 198.18.0.1 dev eth2 onlink table 2\n",
  );
  assert.equal(
    line(routeAdd({ dst: "198.18.9.9", dev: "eth0", metric: 10, table: "main" })),
    "route add 198.18.9.9 dev eth0 metric 10 table main\n",
  );
  assert.equal(
    line(routeDel({ dst: "198.18.0.0/24", src: "198.18.0.5", scope: "link" })),
    "route del 198.18.0.0/24 scope link src 198.18.0.5\n",
  );
  assert.throws(() => routeAdd({ dst: "198.18.0.0/24", gw: "gateway" }), /not an IP address/);
  assert.throws(() => routeAdd({ dst: "198.18.0.0/24", table: 0 }), /table must be an integer from 1/);
  assert.throws(() => routeAdd({ dst: "198.18.0.0/24", table: "my table" }), IpArgumentError);
});

Deno.test("ip batch: neighbours and rules", () => {
  const n = { ip: "198.18.0.1", lladdr: "EE:EE:EE:EE:EE:EE", dev: "eth0" };
  assert.equal(line(neighAdd(n)), "neigh add 198.18.0.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent\n");
  assert.equal(
    line(neighReplace({ ...n, nud: "stale" })),
    "neigh replace 198.18.0.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud stale\n",
  );
  assert.equal(line(neighDel(n)), "neigh del 198.18.0.1 dev eth0\n");
  assert.throws(() => neighAdd({ ...n, lladdr: "ee-ee-ee-ee-ee-ee" }), /lladdr/);

  assert.equal(
    line(ruleAdd({ from: "198.18.0.2/32", table: 100, priority: 1000 })),
    "rule add from 198.18.0.2/32 priority 1000 table 100\n",
  );
  assert.equal(
    line(ruleAdd({ to: "198.18.3.0/24", iif: "eth0", oif: "eth1", table: "main", priority: 5 })),
    "rule add to 198.18.3.0/24 iif eth0 oif eth1 priority 5 table main\n",
  );
  assert.equal(
    line(ruleDel({ from: "198.18.0.2", table: 100, priority: 1000 })),
    "rule del from 198.18.0.2 priority 1000 table 100\n",
  );
  assert.throws(() => ruleAdd({ from: "all", table: 100, priority: 1 }), /not an IP address/);
  assert.throws(() => ruleAdd({ table: 100, priority: -1 }), /priority/);
});

Deno.test("ip batch: a batch is one line per op, each newline-terminated", () => {
  const ops = [
    linkSet("eth0", { up: true }),
    addrAdd("198.18.0.2/32", "eth0"),
    routeAdd({ dst: "default", dev: "eth0" }),
  ];
  assert.equal(
    batchText(ops),
    "link set dev eth0 up\naddr add 198.18.0.2/32 dev eth0\nroute add default dev eth0\n",
  );
  assert.equal(batchText([]), "");
  assert.equal(
    line(customOp(["link", "set", "dev", "eth0", "promisc", "on"])),
    "link set dev eth0 promisc on\n",
  );
  assert.throws(() => customOp(["link", "set", "dev", "eth0 up"]), /token 4/);
  assert.throws(() => customOp([]), IpArgumentError);
});

Deno.test("interface names: 15 bytes accepted, 16 rejected, forbidden characters rejected", () => {
  assert.equal(validateIfName("v-h123456789-l0"), "v-h123456789-l0"); // Galaxy's longest name, exactly 15
  assert.equal(validateIfName("a".repeat(15)), "a".repeat(15));
  assert.throws(() => validateIfName("v-h123456789-l10"), (err: unknown) => {
    assert.ok(err instanceof IfNameError);
    assert.equal(err.ifName, "v-h123456789-l10");
    assert.match(err.message, /"v-h123456789-l10" is 16 bytes long; Linux allows at most 15/);
    return true;
  });
  assert.throws(() => validateIfName("ééééééééé"), /18 bytes long/); // bytes, not characters
  for (
    const bad of ["", ".", "..", "eth 0", "eth\t0", 'eth"0', "eth'0", "a/b", "a:b", "eth%d", "a#b", "a\\b"]
  ) {
    assert.throws(() => validateIfName(bad), IfNameError, JSON.stringify(bad));
  }
  // every builder validates the names it is given
  assert.throws(() => linkAddVeth("v-h123456789-l0", "v-s123456789-l10"), IfNameError);
  assert.throws(() => linkSet("eth0", { name: "a".repeat(16) }), IfNameError);
  assert.throws(() => routeAdd({ dst: "default", dev: "a b" }), IfNameError);
  assert.throws(() => linkAddVlan("eth1.100", "eth1", { id: 4095 }), /vlan id/);
});

Deno.test("ip batch: stderr of a failed batch maps back to its lines", () => {
  const ops = [
    linkSet("eth0", { up: true }),
    addrAdd("198.18.0.2/32", "eth0"),
    routeAdd({ dst: "default", dev: "eth0" }),
  ];
  const stderr =
    "Error: ipv4: Address already assigned.\nCommand failed -:2\nRTNETLINK answers: File exists\nCommand failed -:3\n";
  assert.deepEqual(batchFailures(stderr, ops), [
    {
      line: 2,
      command: "addr add 198.18.0.2/32 dev eth0",
      message: "Error: ipv4: Address already assigned.",
    },
    { line: 3, command: "route add default dev eth0", message: "RTNETLINK answers: File exists" },
  ]);
  // from a worker the batch is a temp file, and ip names it in the message
  assert.deepEqual(
    batchFailures("RTNETLINK answers: No such device\nCommand failed /tmp/galaxy-netns-stdin-3f2a:1\n", ops),
    [{ line: 1, command: "link set dev eth0 up", message: "RTNETLINK answers: No such device" }],
  );
  const err = new IpBatchError("/var/run/netns/x", { failures: batchFailures(stderr, ops), stderr, code: 1 });
  assert.equal(
    err.message,
    'ip batch in /var/run/netns/x failed at line 2 "addr add 198.18.0.2/32 dev eth0": ' +
      "Error: ipv4: Address already assigned. (and 1 more)",
  );
});

Deno.test("arping argv is Galaxy's", () => {
  assert.deepEqual(arpingArgv("eth0", "198.18.0.2"), ["arping", "-c", "2", "-A", "-I", "eth0", "198.18.0.2"]);
  assert.deepEqual(arpingArgv("eth0", "198.18.0.2", { useRequest: true, netns: "/proc/1/ns/net" }), [
    "nsenter",
    "--net=/proc/1/ns/net",
    "arping",
    "-c",
    "2",
    "-U",
    "-I",
    "eth0",
    "198.18.0.2",
  ]);
  assert.throws(() => arpingArgv("eth0", "2001:db8::1"), /IPv4/);
});

Deno.test("sysctl keys map to /proc/sys paths like sysctl(8)", () => {
  assert.equal(sysctlPath("net.ipv4.conf.eth0.rp_filter"), "/proc/sys/net/ipv4/conf/eth0/rp_filter");
  assert.equal(sysctlPath("net.ipv4.conf.eth0/100.rp_filter"), "/proc/sys/net/ipv4/conf/eth0.100/rp_filter");
  assert.equal(sysctlPath("net/ipv4/conf/eth0.100/rp_filter"), "/proc/sys/net/ipv4/conf/eth0.100/rp_filter");
  assert.equal(sysctlPath("/proc/sys/net/ipv4/ip_forward"), "/proc/sys/net/ipv4/ip_forward");
  for (const bad of ["", "net..ipv4", "/proc/sys/../../etc/passwd", "net.ipv4 .x"]) {
    assert.throws(() => sysctlPath(bad), /not a valid sysctl key/, bad);
  }
});
