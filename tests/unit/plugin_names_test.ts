/**
 * The pure parts of cni/plugins/link.ts: interface names (v-h/v-s with suffixes, short container IDs, the
 * 15-character limit, the SHA-1 ENI name), MAC-from-IP, and the result helpers (merging with prevResult,
 * finding an attachment's interface and address).
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cid9, eniVethName, hostVethName, macFromIp, tempPeerName } from "../../cni/plugins/kit/names.ts";
import { gatewayRoutes } from "../../cni/plugins/kit/pod_interface.ts";
import { firstIpv4, interfaceIndex, ipv4Of } from "../../cni/plugins/kit/results.ts";
import { appendResult, type Result } from "../../cni/spec.ts";
import { IfNameError, IpArgumentError } from "../../netops/ip.ts";

const CID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

Deno.test("cid9: the first 9 characters, or the whole ID when shorter", () => {
  assert.equal(cid9(CID), "012345678");
  assert.equal(cid9("abcd"), "abcd");
  assert.equal(cid9("123456789"), "123456789");
});

Deno.test("hostVethName / tempPeerName: v-h and v-s with the 9-character prefix and a suffix", () => {
  assert.equal(hostVethName(CID), "v-h012345678");
  assert.equal(tempPeerName(CID), "v-s012345678");
  assert.equal(hostVethName(CID, { suffix: "-l0" }), "v-h012345678-l0");
  assert.equal(hostVethName(CID, { suffix: "-l0" }).length, 15);
  assert.equal(tempPeerName(CID, { suffix: "-u9" }), "v-s012345678-u9");
});

Deno.test("hostVethName: a 4-character container ID is used whole (Galaxy panicked)", () => {
  assert.equal(hostVethName("abcd"), "v-habcd");
  assert.equal(tempPeerName("abcd", { suffix: "-l1" }), "v-sabcd-l1");
});

Deno.test("hostVethName: a name over 15 characters is refused, not truncated", () => {
  assert.throws(() => hostVethName(CID, { suffix: "-l10" }), (e) => {
    assert.ok(e instanceof IfNameError);
    assert.match(e.message, /v-h012345678-l10.*16 bytes.*at most 15/);
    return true;
  });
});

Deno.test("eniVethName: eni + 11 hex digits of sha1(namespace.pod)", async () => {
  assert.equal(await eniVethName("default", "nginx-0"), "enic048fd9a750"); // galaxy-behaviour.md §3.0
  const digest = createHash("sha1").update("kube-system.coredns-7d89d9b6b8-x2x4q").digest("hex");
  assert.equal(await eniVethName("kube-system", "coredns-7d89d9b6b8-x2x4q"), `eni${digest.slice(0, 11)}`);
  assert.equal((await eniVethName("a", "b")).length, 14);
  assert.notEqual(await eniVethName("default", "web-0"), await eniVethName("default", "web-1"));
  assert.notEqual(await eniVethName("a.b", "c"), await eniVethName("a", "b.c.x"));
});

Deno.test("macFromIp: 02:42 and the four octets as two hex digits each", () => {
  assert.equal(macFromIp("198.18.0.2"), "02:42:c6:12:00:02");
  assert.equal(macFromIp("10.0.0.1"), "02:42:0a:00:00:01");
  assert.equal(macFromIp("255.255.255.255"), "02:42:ff:ff:ff:ff");
  assert.throws(() => macFromIp("fd00::1"), IpArgumentError);
  assert.throws(() => macFromIp("198.18.0.2/24"), IpArgumentError);
});

const OURS: Result = {
  cniVersion: "1.1.0",
  interfaces: [{ name: "v-habcd", mac: "0a:00:00:00:00:01" }, {
    name: "eth0",
    mac: "0a:00:00:00:00:02",
    sandbox: "/var/run/netns/p",
  }],
  ips: [{ address: "198.18.0.5/32", gateway: "169.254.1.1", interface: 1 }],
  routes: gatewayRoutes(),
};

Deno.test("appendResult: without prevResult the result is ours", () => {
  assert.deepEqual(appendResult(undefined, OURS), OURS);
});

Deno.test("appendResult: prevResult first, our interface indexes shifted, dns and extra keys kept", () => {
  const prev = {
    cniVersion: "1.1.0",
    interfaces: [{ name: "net1", sandbox: "/var/run/netns/p" }],
    ips: [{ address: "198.18.9.9/24", interface: 0 }],
    routes: [{ dst: "198.18.8.0/24", gw: "198.18.9.1" }],
    dns: { nameservers: ["198.18.0.10"] },
    "x-extra": 1,
  } as Result;
  const merged = appendResult(prev, OURS);
  assert.deepEqual(merged.interfaces!.map((i) => i.name), ["net1", "v-habcd", "eth0"]);
  assert.deepEqual(merged.ips, [
    { address: "198.18.9.9/24", interface: 0 },
    { address: "198.18.0.5/32", gateway: "169.254.1.1", interface: 2 },
  ]);
  assert.deepEqual(merged.routes, [{ dst: "198.18.8.0/24", gw: "198.18.9.1" }, ...gatewayRoutes()]);
  assert.deepEqual(merged.dns, { nameservers: ["198.18.0.10"] });
  assert.equal((merged as Record<string, unknown>)["x-extra"], 1);
  assert.deepEqual(appendResult(prev, { ...OURS, dns: { domain: "x" } }).dns, { domain: "x" });
  assert.equal(prev.interfaces!.length, 1, "prevResult was modified");
});

Deno.test("appendResult: routes appear once (Galaxy's aliasing bug duplicated the default route)", () => {
  const merged = appendResult({ cniVersion: "1.1.0" }, OURS);
  assert.deepEqual(merged.routes, [{ dst: "169.254.1.1/32" }, { dst: "0.0.0.0/0", gw: "169.254.1.1" }]);
});

Deno.test("interfaceIndex / ipv4Of / firstIpv4 find this attachment's interface and address", () => {
  assert.equal(interfaceIndex(OURS, "eth0", { sandbox: "/var/run/netns/p" }), 1);
  assert.equal(interfaceIndex(OURS, "eth0", { sandbox: "/var/run/netns/other" }), -1);
  assert.equal(interfaceIndex(OURS, "v-habcd"), 0);
  assert.equal(interfaceIndex(undefined, "eth0"), -1);
  assert.equal(ipv4Of(OURS, { ifname: "eth0", netns: "/var/run/netns/p" }), "198.18.0.5");
  assert.equal(ipv4Of(OURS, { ifname: "eth0", netns: "/var/run/netns/other" }), undefined);
  assert.equal(ipv4Of(OURS, { ifname: "eth0", netns: "" }), "198.18.0.5", "DEL may come without CNI_NETNS");
  assert.equal(ipv4Of(OURS, { ifname: "eth1" }), undefined);
  assert.deepEqual(
    firstIpv4({ cniVersion: "1.1.0", ips: [{ address: "fd00::5/64" }, { address: "198.18.1.2/24" }] }),
    {
      ip: "198.18.1.2",
      cidr: "198.18.1.2/24",
    },
  );
  assert.equal(firstIpv4({ cniVersion: "1.1.0", ips: [{ address: "fd00::5/64" }] }), undefined);
});
