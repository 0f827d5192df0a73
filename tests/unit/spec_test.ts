import assert from "node:assert/strict";
import {
  ALL_VERSIONS,
  CniError,
  type CniVersion,
  compareVersions,
  convertResult,
  NetConfListSchema,
  NetConfSchema,
  parseResult,
  resultSchemaFor,
  selectVersion,
} from "../../cni/spec.ts";

type Json = Record<string, unknown>;

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function throwsCni(fn: () => unknown, code: number, text?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CniError, `expected a CniError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (text) assert.match(e.message, text);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Source results, one per version. Frozen, so a conversion that mutated its input would throw.

const SRC_010 = deepFreeze({
  cniVersion: "0.1.0",
  ip4: {
    ip: "10.1.0.5/16",
    gateway: "10.1.0.1",
    routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "10.96.0.0/12" }],
  },
  ip6: { ip: "fd00:1::5/64", gateway: "fd00:1::1", routes: [{ dst: "::/0", gw: "fd00:1::1" }] },
  dns: { nameservers: ["10.96.0.10"], search: ["cluster.local"] },
  "x-custom": { owner: "legacy-0.1" },
});

const SRC_020 = deepFreeze({
  cniVersion: "0.2.0",
  ip4: { ip: "192.168.10.7/24", gateway: "192.168.10.1" },
  ip6: { ip: "2001:db8:10::7/64", routes: [{ dst: "2001:db8::/32", gw: "2001:db8:10::1" }] },
  dns: { domain: "lan.test" },
  "x-custom": "legacy-0.2",
});

const SRC_030 = deepFreeze({
  cniVersion: "0.3.0",
  ips: [
    { version: "4", address: "10.30.0.9/24", gateway: "10.30.0.1" },
    { version: "4", address: "10.30.1.9/24" },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.30.0.1" }],
  dns: { nameservers: ["10.30.0.2"] },
  "x-custom": "delegated",
});

const SRC_031 = deepFreeze({
  cniVersion: "0.3.1",
  interfaces: [{ name: "eth0", mac: "0a:58:0a:1f:00:04", sandbox: "/var/run/netns/cni-31" }],
  ips: [
    { version: "6", address: "fd00:31::4/64", gateway: "fd00:31::1", interface: 0 },
    { version: "4", address: "10.31.0.4/24", gateway: "10.31.0.1", interface: 0 },
  ],
  routes: [{ dst: "::/0", gw: "fd00:31::1" }, { dst: "0.0.0.0/0", gw: "10.31.0.1" }],
  dns: { nameservers: ["10.31.0.2"], options: ["ndots:3"] },
  "x-custom": [1, 2, 3],
});

const SRC_040 = deepFreeze({
  cniVersion: "0.4.0",
  interfaces: [
    { name: "veth1a2b3c", mac: "a2:11:22:33:44:55" },
    { name: "eth0", mac: "0a:58:0a:28:00:0c", sandbox: "/var/run/netns/cni-40" },
  ],
  ips: [
    { version: "6", address: "fd00:40::c/64", gateway: "fd00:40::1", interface: 1 },
    { version: "4", address: "10.40.0.12/24", gateway: "10.40.0.1", interface: 1 },
    { version: "6", address: "fd00:40:1::c/64", interface: 1 },
    { version: "4", address: "10.40.1.12/24", gateway: "10.40.1.1", interface: 1 },
  ],
  routes: [
    { dst: "0.0.0.0/0", gw: "10.40.0.1" },
    { dst: "10.40.128.0/17" },
    { dst: "fd00:40:ffff::/48", gw: "fd00:40::1" },
  ],
  dns: {
    nameservers: ["10.40.0.2", "fd00:40::2"],
    domain: "example.test",
    search: ["example.test"],
    options: ["ndots:2", "timeout:1"],
  },
  "x-custom": { nested: { keep: true } },
});

const SRC_100 = deepFreeze({
  cniVersion: "1.0.0",
  interfaces: [
    { name: "eth0", mac: "0a:58:0a:64:00:07", sandbox: "/var/run/netns/cni-100" },
    { name: "net1", sandbox: "/var/run/netns/cni-100" },
  ],
  ips: [
    { address: "10.100.0.7/24", gateway: "10.100.0.1", interface: 0 },
    { address: "172.20.0.7/16", interface: 1 },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.100.0.1" }, { dst: "fd00:100::/64", gw: "fd00:100::1" }],
  dns: { nameservers: ["10.100.0.2"], domain: "cluster.local" },
  "x-custom": 42,
});

const SRC_110 = deepFreeze({
  cniVersion: "1.1.0",
  interfaces: [
    {
      name: "eth0",
      mac: "0a:58:0a:f4:01:05",
      sandbox: "/var/run/netns/cni-110",
      mtu: 1450,
      socketPath: "/run/vhost-user/eth0.sock",
      pciID: "0000:00:1f.6",
    },
    { name: "net1", mac: "0a:58:c0:a8:01:0a", sandbox: "/var/run/netns/cni-110" },
  ],
  ips: [
    { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 0 },
    { address: "192.168.1.10/24", gateway: "192.168.1.1", interface: 1 },
    { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 0 },
  ],
  routes: [
    { dst: "0.0.0.0/0", gw: "10.244.1.1" },
    { dst: "172.16.0.0/12", gw: "192.168.1.1", mtu: 1400, advmss: 1360, priority: 100, table: 200, scope: 0 },
    { dst: "::/0", gw: "fd00:10:244:1::1" },
  ],
  dns: {
    nameservers: ["10.96.0.10"],
    domain: "cluster.local",
    search: ["default.svc.cluster.local", "svc.cluster.local"],
    options: ["ndots:5"],
  },
  "x-custom": { owner: "galaxy" },
});

// ---------------------------------------------------------------------------------------------------------
// Expected bodies (everything but cniVersion), written by hand for each source and target shape.

const FROM_010 = {
  legacy: {
    ip4: {
      ip: "10.1.0.5/16",
      gateway: "10.1.0.1",
      routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "10.96.0.0/12" }],
    },
    ip6: { ip: "fd00:1::5/64", gateway: "fd00:1::1", routes: [{ dst: "::/0", gw: "fd00:1::1" }] },
    dns: { nameservers: ["10.96.0.10"], search: ["cluster.local"] },
    "x-custom": { owner: "legacy-0.1" },
  },
  rich: {
    ips: [
      { version: "4", address: "10.1.0.5/16", gateway: "10.1.0.1" },
      { version: "6", address: "fd00:1::5/64", gateway: "fd00:1::1" },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "10.96.0.0/12" }, { dst: "::/0", gw: "fd00:1::1" }],
    dns: { nameservers: ["10.96.0.10"], search: ["cluster.local"] },
    "x-custom": { owner: "legacy-0.1" },
  },
  current: {
    ips: [
      { address: "10.1.0.5/16", gateway: "10.1.0.1" },
      { address: "fd00:1::5/64", gateway: "fd00:1::1" },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "10.96.0.0/12" }, { dst: "::/0", gw: "fd00:1::1" }],
    dns: { nameservers: ["10.96.0.10"], search: ["cluster.local"] },
    "x-custom": { owner: "legacy-0.1" },
  },
};

const FROM_020 = {
  legacy: {
    ip4: { ip: "192.168.10.7/24", gateway: "192.168.10.1" },
    ip6: { ip: "2001:db8:10::7/64", routes: [{ dst: "2001:db8::/32", gw: "2001:db8:10::1" }] },
    dns: { domain: "lan.test" },
    "x-custom": "legacy-0.2",
  },
  rich: {
    ips: [
      { version: "4", address: "192.168.10.7/24", gateway: "192.168.10.1" },
      { version: "6", address: "2001:db8:10::7/64" },
    ],
    routes: [{ dst: "2001:db8::/32", gw: "2001:db8:10::1" }],
    dns: { domain: "lan.test" },
    "x-custom": "legacy-0.2",
  },
  current: {
    ips: [{ address: "192.168.10.7/24", gateway: "192.168.10.1" }, { address: "2001:db8:10::7/64" }],
    routes: [{ dst: "2001:db8::/32", gw: "2001:db8:10::1" }],
    dns: { domain: "lan.test" },
    "x-custom": "legacy-0.2",
  },
};

const FROM_030 = {
  legacy: {
    ip4: { ip: "10.30.0.9/24", gateway: "10.30.0.1", routes: [{ dst: "0.0.0.0/0", gw: "10.30.0.1" }] },
    dns: { nameservers: ["10.30.0.2"] },
    "x-custom": "delegated",
  },
  rich: {
    ips: [
      { version: "4", address: "10.30.0.9/24", gateway: "10.30.0.1" },
      { version: "4", address: "10.30.1.9/24" },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.30.0.1" }],
    dns: { nameservers: ["10.30.0.2"] },
    "x-custom": "delegated",
  },
  current: {
    ips: [{ address: "10.30.0.9/24", gateway: "10.30.0.1" }, { address: "10.30.1.9/24" }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.30.0.1" }],
    dns: { nameservers: ["10.30.0.2"] },
    "x-custom": "delegated",
  },
};

const FROM_031 = {
  legacy: {
    ip4: { ip: "10.31.0.4/24", gateway: "10.31.0.1", routes: [{ dst: "0.0.0.0/0", gw: "10.31.0.1" }] },
    ip6: { ip: "fd00:31::4/64", gateway: "fd00:31::1", routes: [{ dst: "::/0", gw: "fd00:31::1" }] },
    dns: { nameservers: ["10.31.0.2"], options: ["ndots:3"] },
    "x-custom": [1, 2, 3],
  },
  rich: {
    interfaces: [{ name: "eth0", mac: "0a:58:0a:1f:00:04", sandbox: "/var/run/netns/cni-31" }],
    ips: [
      { version: "6", address: "fd00:31::4/64", gateway: "fd00:31::1", interface: 0 },
      { version: "4", address: "10.31.0.4/24", gateway: "10.31.0.1", interface: 0 },
    ],
    routes: [{ dst: "::/0", gw: "fd00:31::1" }, { dst: "0.0.0.0/0", gw: "10.31.0.1" }],
    dns: { nameservers: ["10.31.0.2"], options: ["ndots:3"] },
    "x-custom": [1, 2, 3],
  },
  current: {
    interfaces: [{ name: "eth0", mac: "0a:58:0a:1f:00:04", sandbox: "/var/run/netns/cni-31" }],
    ips: [
      { address: "fd00:31::4/64", gateway: "fd00:31::1", interface: 0 },
      { address: "10.31.0.4/24", gateway: "10.31.0.1", interface: 0 },
    ],
    routes: [{ dst: "::/0", gw: "fd00:31::1" }, { dst: "0.0.0.0/0", gw: "10.31.0.1" }],
    dns: { nameservers: ["10.31.0.2"], options: ["ndots:3"] },
    "x-custom": [1, 2, 3],
  },
};

const DNS_040 = {
  nameservers: ["10.40.0.2", "fd00:40::2"],
  domain: "example.test",
  search: ["example.test"],
  options: ["ndots:2", "timeout:1"],
};

const FROM_040 = {
  legacy: {
    ip4: {
      ip: "10.40.0.12/24",
      gateway: "10.40.0.1",
      routes: [{ dst: "0.0.0.0/0", gw: "10.40.0.1" }, { dst: "10.40.128.0/17" }],
    },
    ip6: {
      ip: "fd00:40::c/64",
      gateway: "fd00:40::1",
      routes: [{ dst: "fd00:40:ffff::/48", gw: "fd00:40::1" }],
    },
    dns: DNS_040,
    "x-custom": { nested: { keep: true } },
  },
  rich: {
    interfaces: [
      { name: "veth1a2b3c", mac: "a2:11:22:33:44:55" },
      { name: "eth0", mac: "0a:58:0a:28:00:0c", sandbox: "/var/run/netns/cni-40" },
    ],
    ips: [
      { version: "6", address: "fd00:40::c/64", gateway: "fd00:40::1", interface: 1 },
      { version: "4", address: "10.40.0.12/24", gateway: "10.40.0.1", interface: 1 },
      { version: "6", address: "fd00:40:1::c/64", interface: 1 },
      { version: "4", address: "10.40.1.12/24", gateway: "10.40.1.1", interface: 1 },
    ],
    routes: [
      { dst: "0.0.0.0/0", gw: "10.40.0.1" },
      { dst: "10.40.128.0/17" },
      { dst: "fd00:40:ffff::/48", gw: "fd00:40::1" },
    ],
    dns: DNS_040,
    "x-custom": { nested: { keep: true } },
  },
  current: {
    interfaces: [
      { name: "veth1a2b3c", mac: "a2:11:22:33:44:55" },
      { name: "eth0", mac: "0a:58:0a:28:00:0c", sandbox: "/var/run/netns/cni-40" },
    ],
    ips: [
      { address: "fd00:40::c/64", gateway: "fd00:40::1", interface: 1 },
      { address: "10.40.0.12/24", gateway: "10.40.0.1", interface: 1 },
      { address: "fd00:40:1::c/64", interface: 1 },
      { address: "10.40.1.12/24", gateway: "10.40.1.1", interface: 1 },
    ],
    routes: [
      { dst: "0.0.0.0/0", gw: "10.40.0.1" },
      { dst: "10.40.128.0/17" },
      { dst: "fd00:40:ffff::/48", gw: "fd00:40::1" },
    ],
    dns: DNS_040,
    "x-custom": { nested: { keep: true } },
  },
};

const FROM_100 = {
  legacy: {
    ip4: { ip: "10.100.0.7/24", gateway: "10.100.0.1", routes: [{ dst: "0.0.0.0/0", gw: "10.100.0.1" }] },
    dns: { nameservers: ["10.100.0.2"], domain: "cluster.local" },
    "x-custom": 42,
  },
  rich: {
    interfaces: [
      { name: "eth0", mac: "0a:58:0a:64:00:07", sandbox: "/var/run/netns/cni-100" },
      { name: "net1", sandbox: "/var/run/netns/cni-100" },
    ],
    ips: [
      { version: "4", address: "10.100.0.7/24", gateway: "10.100.0.1", interface: 0 },
      { version: "4", address: "172.20.0.7/16", interface: 1 },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.100.0.1" }, { dst: "fd00:100::/64", gw: "fd00:100::1" }],
    dns: { nameservers: ["10.100.0.2"], domain: "cluster.local" },
    "x-custom": 42,
  },
  current: {
    interfaces: [
      { name: "eth0", mac: "0a:58:0a:64:00:07", sandbox: "/var/run/netns/cni-100" },
      { name: "net1", sandbox: "/var/run/netns/cni-100" },
    ],
    ips: [
      { address: "10.100.0.7/24", gateway: "10.100.0.1", interface: 0 },
      { address: "172.20.0.7/16", interface: 1 },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.100.0.1" }, { dst: "fd00:100::/64", gw: "fd00:100::1" }],
    dns: { nameservers: ["10.100.0.2"], domain: "cluster.local" },
    "x-custom": 42,
  },
};

const DNS_110 = {
  nameservers: ["10.96.0.10"],
  domain: "cluster.local",
  search: ["default.svc.cluster.local", "svc.cluster.local"],
  options: ["ndots:5"],
};

const FROM_110 = {
  legacy: {
    ip4: {
      ip: "10.244.1.5/24",
      gateway: "10.244.1.1",
      routes: [{ dst: "0.0.0.0/0", gw: "10.244.1.1" }, { dst: "172.16.0.0/12", gw: "192.168.1.1" }],
    },
    ip6: {
      ip: "fd00:10:244:1::5/64",
      gateway: "fd00:10:244:1::1",
      routes: [{ dst: "::/0", gw: "fd00:10:244:1::1" }],
    },
    dns: DNS_110,
    "x-custom": { owner: "galaxy" },
  },
  rich: {
    interfaces: [
      { name: "eth0", mac: "0a:58:0a:f4:01:05", sandbox: "/var/run/netns/cni-110" },
      { name: "net1", mac: "0a:58:c0:a8:01:0a", sandbox: "/var/run/netns/cni-110" },
    ],
    ips: [
      { version: "4", address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 0 },
      { version: "4", address: "192.168.1.10/24", gateway: "192.168.1.1", interface: 1 },
      { version: "6", address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 0 },
    ],
    routes: [
      { dst: "0.0.0.0/0", gw: "10.244.1.1" },
      { dst: "172.16.0.0/12", gw: "192.168.1.1" },
      { dst: "::/0", gw: "fd00:10:244:1::1" },
    ],
    dns: DNS_110,
    "x-custom": { owner: "galaxy" },
  },
  v100: {
    interfaces: [
      { name: "eth0", mac: "0a:58:0a:f4:01:05", sandbox: "/var/run/netns/cni-110" },
      { name: "net1", mac: "0a:58:c0:a8:01:0a", sandbox: "/var/run/netns/cni-110" },
    ],
    ips: [
      { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 0 },
      { address: "192.168.1.10/24", gateway: "192.168.1.1", interface: 1 },
      { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 0 },
    ],
    routes: [
      { dst: "0.0.0.0/0", gw: "10.244.1.1" },
      { dst: "172.16.0.0/12", gw: "192.168.1.1" },
      { dst: "::/0", gw: "fd00:10:244:1::1" },
    ],
    dns: DNS_110,
    "x-custom": { owner: "galaxy" },
  },
  v110: {
    interfaces: [
      {
        name: "eth0",
        mac: "0a:58:0a:f4:01:05",
        sandbox: "/var/run/netns/cni-110",
        mtu: 1450,
        socketPath: "/run/vhost-user/eth0.sock",
        pciID: "0000:00:1f.6",
      },
      { name: "net1", mac: "0a:58:c0:a8:01:0a", sandbox: "/var/run/netns/cni-110" },
    ],
    ips: [
      { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 0 },
      { address: "192.168.1.10/24", gateway: "192.168.1.1", interface: 1 },
      { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 0 },
    ],
    routes: [
      { dst: "0.0.0.0/0", gw: "10.244.1.1" },
      {
        dst: "172.16.0.0/12",
        gw: "192.168.1.1",
        mtu: 1400,
        advmss: 1360,
        priority: 100,
        table: 200,
        scope: 0,
      },
      { dst: "::/0", gw: "fd00:10:244:1::1" },
    ],
    dns: DNS_110,
    "x-custom": { owner: "galaxy" },
  },
};

type Expected = Record<CniVersion, Json>;

const CONVERSIONS: [Json, Expected][] = [
  [SRC_010, {
    "0.1.0": { cniVersion: "0.1.0", ...FROM_010.legacy },
    "0.2.0": { cniVersion: "0.2.0", ...FROM_010.legacy },
    "0.3.0": { cniVersion: "0.3.0", ...FROM_010.rich },
    "0.3.1": { cniVersion: "0.3.1", ...FROM_010.rich },
    "0.4.0": { cniVersion: "0.4.0", ...FROM_010.rich },
    "1.0.0": { cniVersion: "1.0.0", ...FROM_010.current },
    "1.1.0": { cniVersion: "1.1.0", ...FROM_010.current },
  }],
  [SRC_020, {
    "0.1.0": { cniVersion: "0.1.0", ...FROM_020.legacy },
    "0.2.0": { cniVersion: "0.2.0", ...FROM_020.legacy },
    "0.3.0": { cniVersion: "0.3.0", ...FROM_020.rich },
    "0.3.1": { cniVersion: "0.3.1", ...FROM_020.rich },
    "0.4.0": { cniVersion: "0.4.0", ...FROM_020.rich },
    "1.0.0": { cniVersion: "1.0.0", ...FROM_020.current },
    "1.1.0": { cniVersion: "1.1.0", ...FROM_020.current },
  }],
  [SRC_030, {
    "0.1.0": { cniVersion: "0.1.0", ...FROM_030.legacy },
    "0.2.0": { cniVersion: "0.2.0", ...FROM_030.legacy },
    "0.3.0": { cniVersion: "0.3.0", ...FROM_030.rich },
    "0.3.1": { cniVersion: "0.3.1", ...FROM_030.rich },
    "0.4.0": { cniVersion: "0.4.0", ...FROM_030.rich },
    "1.0.0": { cniVersion: "1.0.0", ...FROM_030.current },
    "1.1.0": { cniVersion: "1.1.0", ...FROM_030.current },
  }],
  [SRC_031, {
    "0.1.0": { cniVersion: "0.1.0", ...FROM_031.legacy },
    "0.2.0": { cniVersion: "0.2.0", ...FROM_031.legacy },
    "0.3.0": { cniVersion: "0.3.0", ...FROM_031.rich },
    "0.3.1": { cniVersion: "0.3.1", ...FROM_031.rich },
    "0.4.0": { cniVersion: "0.4.0", ...FROM_031.rich },
    "1.0.0": { cniVersion: "1.0.0", ...FROM_031.current },
    "1.1.0": { cniVersion: "1.1.0", ...FROM_031.current },
  }],
  [SRC_040, {
    "0.1.0": { cniVersion: "0.1.0", ...FROM_040.legacy },
    "0.2.0": { cniVersion: "0.2.0", ...FROM_040.legacy },
    "0.3.0": { cniVersion: "0.3.0", ...FROM_040.rich },
    "0.3.1": { cniVersion: "0.3.1", ...FROM_040.rich },
    "0.4.0": { cniVersion: "0.4.0", ...FROM_040.rich },
    "1.0.0": { cniVersion: "1.0.0", ...FROM_040.current },
    "1.1.0": { cniVersion: "1.1.0", ...FROM_040.current },
  }],
  [SRC_100, {
    "0.1.0": { cniVersion: "0.1.0", ...FROM_100.legacy },
    "0.2.0": { cniVersion: "0.2.0", ...FROM_100.legacy },
    "0.3.0": { cniVersion: "0.3.0", ...FROM_100.rich },
    "0.3.1": { cniVersion: "0.3.1", ...FROM_100.rich },
    "0.4.0": { cniVersion: "0.4.0", ...FROM_100.rich },
    "1.0.0": { cniVersion: "1.0.0", ...FROM_100.current },
    "1.1.0": { cniVersion: "1.1.0", ...FROM_100.current },
  }],
  [SRC_110, {
    "0.1.0": { cniVersion: "0.1.0", ...FROM_110.legacy },
    "0.2.0": { cniVersion: "0.2.0", ...FROM_110.legacy },
    "0.3.0": { cniVersion: "0.3.0", ...FROM_110.rich },
    "0.3.1": { cniVersion: "0.3.1", ...FROM_110.rich },
    "0.4.0": { cniVersion: "0.4.0", ...FROM_110.rich },
    "1.0.0": { cniVersion: "1.0.0", ...FROM_110.v100 },
    "1.1.0": { cniVersion: "1.1.0", ...FROM_110.v110 },
  }],
];

for (const [source, expected] of CONVERSIONS) {
  Deno.test(`convertResult from ${source.cniVersion} to every version`, async (t) => {
    assert.deepEqual(Object.keys(expected), [...ALL_VERSIONS]);
    for (const target of ALL_VERSIONS) {
      await t.step(`to ${target}`, () => {
        const converted = convertResult(source, target);
        assert.deepStrictEqual(converted, expected[target]);
        assert.ok(resultSchemaFor(target).safeParse(converted).success, `invalid ${target} result`);
      });
    }
  });
}

Deno.test("convertResult: a result without an IP address cannot go to 0.1.0 or 0.2.0", async (t) => {
  const noIps = deepFreeze({
    cniVersion: "1.1.0",
    interfaces: [{ name: "eth0", mac: "0a:58:0a:00:00:01", sandbox: "/var/run/netns/x", mtu: 9000 }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
    dns: { nameservers: ["10.0.0.2"] },
  });
  const noIps040 = deepFreeze({ cniVersion: "0.4.0", interfaces: [{ name: "eth0" }], dns: {} });
  for (const target of ["0.1.0", "0.2.0"] as const) {
    await t.step(
      `1.1.0 to ${target}`,
      () => throwsCni(() => convertResult(noIps, target), 1, /no IP address/),
    );
    await t.step(`0.4.0 to ${target}`, () => throwsCni(() => convertResult(noIps040, target), 1));
  }
  await t.step("the other versions accept it", () => {
    assert.deepStrictEqual(convertResult(noIps, "0.4.0"), {
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0", mac: "0a:58:0a:00:00:01", sandbox: "/var/run/netns/x" }],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
      dns: { nameservers: ["10.0.0.2"] },
    });
  });
});

Deno.test("convertResult returns a copy that shares nothing with its input", () => {
  const source = {
    cniVersion: "1.1.0",
    ips: [{ address: "10.0.0.4/24" }],
    dns: { nameservers: ["10.0.0.2"] },
  };
  const converted = convertResult(source, "1.1.0") as typeof source;
  converted.ips[0].address = "10.9.9.9/24";
  converted.dns.nameservers.push("10.0.0.3");
  assert.deepStrictEqual(source, {
    cniVersion: "1.1.0",
    ips: [{ address: "10.0.0.4/24" }],
    dns: { nameservers: ["10.0.0.2"] },
  });
});

Deno.test("convertResult rejects a result of an unknown version with code 1", () => {
  throwsCni(() => convertResult({ cniVersion: "1.2.0", ips: [] }, "1.1.0"), 1, /1\.2\.0/);
  throwsCni(() => convertResult({ ips: [] }, "1.1.0"), 1);
});

Deno.test("convertResult: a legacy result without routes or addresses gains no empty arrays", () => {
  assert.deepStrictEqual(
    convertResult({ cniVersion: "0.2.0", ip4: { ip: "10.0.0.3/24" } }, "1.1.0"),
    { cniVersion: "1.1.0", ips: [{ address: "10.0.0.3/24" }] },
  );
  assert.deepStrictEqual(
    convertResult({ cniVersion: "0.2.0", ip4: { ip: "10.0.0.3/24" } }, "0.4.0"),
    { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.3/24" }] },
  );
  assert.deepStrictEqual(
    convertResult({ cniVersion: "0.2.0", dns: { nameservers: ["10.0.0.2"] } }, "1.0.0"),
    { cniVersion: "1.0.0", dns: { nameservers: ["10.0.0.2"] } },
  );
});

Deno.test("convertResult omits empty arrays of a rich or current source", () => {
  assert.deepStrictEqual(
    convertResult(
      { cniVersion: "1.1.0", interfaces: [], ips: [{ address: "10.0.0.2/24" }], routes: [] },
      "0.4.0",
    ),
    { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.2/24" }] },
  );
});

// ---------------------------------------------------------------------------------------------------------

Deno.test("parseResult returns the 1.1.0 shape", () => {
  assert.deepStrictEqual(parseResult(SRC_040), { cniVersion: "1.1.0", ...FROM_040.current });
  assert.deepStrictEqual(parseResult(SRC_020), { cniVersion: "1.1.0", ...FROM_020.current });
  assert.deepStrictEqual(parseResult(SRC_110), { cniVersion: "1.1.0", ...FROM_110.v110 });
});

Deno.test("parseResult takes expectedVersion when cniVersion is missing", () => {
  const raw = {
    interfaces: [{ name: "eth0" }],
    ips: [{ version: "4", address: "10.0.0.5/24", interface: 0 }],
  };
  assert.deepStrictEqual(parseResult(raw, "0.4.0"), {
    cniVersion: "1.1.0",
    interfaces: [{ name: "eth0" }],
    ips: [{ address: "10.0.0.5/24", interface: 0 }],
  });
  assert.deepStrictEqual(parseResult({ ip4: { ip: "10.0.0.6/24", gateway: "10.0.0.1" } }, "0.2.0"), {
    cniVersion: "1.1.0",
    ips: [{ address: "10.0.0.6/24", gateway: "10.0.0.1" }],
  });
  throwsCni(() => parseResult({ ips: [{ address: "10.0.0.5/24" }] }, "0.4.0"), 6, /version/);
  throwsCni(() => parseResult({ ips: [{ address: "10.0.0.5/24" }] }), 1);
});

Deno.test("parseResult prefers the result's own cniVersion over expectedVersion", () => {
  assert.deepStrictEqual(parseResult({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.5/24" }] }, "0.4.0"), {
    cniVersion: "1.1.0",
    ips: [{ address: "10.0.0.5/24" }],
  });
});

Deno.test("parseResult rejects an invalid address with code 6 naming the field", () => {
  throwsCni(
    () => parseResult({ cniVersion: "1.0.0", ips: [{ address: "not-an-ip" }] }),
    6,
    /ips.*0.*address/,
  );
  throwsCni(
    () =>
      parseResult({ cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.1/24", gateway: "gw!" }] }),
    6,
    /ips.*0.*gateway/,
  );
  throwsCni(() => parseResult({ cniVersion: "0.2.0", ip4: { ip: "10.0.0.1" } }), 6, /ip4.*ip/);
  throwsCni(() => parseResult({ cniVersion: "1.1.0", routes: [{ dst: "default" }] }), 6, /routes.*0.*dst/);
});

Deno.test("parseResult rejects a non-object with code 6", () => {
  for (const raw of [null, undefined, 42, "result", [], [{ cniVersion: "1.0.0" }], true]) {
    throwsCni(() => parseResult(raw, "1.1.0"), 6);
  }
});

Deno.test("parseResult rejects an unknown version with code 1", () => {
  throwsCni(() => parseResult({ cniVersion: "0.9.9" }), 1, /0\.9\.9/);
  throwsCni(() => parseResult({ cniVersion: "1.2.0", ips: [] }, "1.1.0"), 1, /1\.2\.0/);
  throwsCni(() => parseResult({ cniVersion: 1 }), 1);
});

// ---------------------------------------------------------------------------------------------------------

Deno.test("selectVersion picks the highest supported of cniVersion and cniVersions", () => {
  assert.equal(selectVersion({ cniVersion: "0.4.0" }), "0.4.0");
  assert.equal(selectVersion({ cniVersion: "0.4.0", cniVersions: ["1.0.0", "0.3.1"] }), "1.0.0");
  assert.equal(selectVersion({ cniVersion: "1.1.0", cniVersions: ["0.3.1", "1.0.0"] }), "1.1.0");
  assert.equal(selectVersion({ cniVersions: ["0.3.1", "1.1.0", "0.4.0"] }), "1.1.0");
  assert.equal(selectVersion({ cniVersion: "0.1.0", cniVersions: ["0.2.0"] }), "0.2.0");
});

Deno.test("selectVersion ignores unknown and higher versions", () => {
  assert.equal(selectVersion({ cniVersion: "1.0.0", cniVersions: ["1.2.0", "2.0.0"] }), "1.0.0");
  assert.equal(selectVersion({ cniVersion: "2.0.0", cniVersions: ["1.2.0", "0.4.0", "bogus"] }), "0.4.0");
  assert.equal(selectVersion({ cniVersion: "1.2.0", cniVersions: "1.1.0" }), undefined);
  assert.equal(selectVersion({ cniVersion: "1.2.0", cniVersions: ["2.0.0", 1, null] }), undefined);
  // No version, or libcni's empty one, is 0.1.0.
  assert.equal(selectVersion({}), "0.1.0");
  assert.equal(selectVersion({ cniVersion: "" }), "0.1.0");
  assert.equal(selectVersion({ cniVersion: "", cniVersions: ["1.0.0"] }), "1.0.0");
});

Deno.test("selectVersion honours a restricted supported list", () => {
  const supported = ["0.4.0", "1.0.0"];
  assert.equal(selectVersion({ cniVersion: "1.1.0", cniVersions: ["1.0.0", "0.4.0"] }, supported), "1.0.0");
  assert.equal(selectVersion({ cniVersion: "1.1.0", cniVersions: ["0.3.1"] }, supported), undefined);
});

Deno.test("compareVersions compares numerically", () => {
  assert.equal(compareVersions("1.0.0", "1.0.0"), 0);
  assert.ok(compareVersions("0.3.1", "0.4.0") < 0);
  assert.ok(compareVersions("0.4.0", "0.3.1") > 0);
  assert.ok(compareVersions("1.1.0", "1.0.0") > 0);
  assert.ok(compareVersions("0.3.0", "0.3.1") < 0);
  assert.ok(compareVersions("1.10.0", "1.9.0") > 0);
  assert.ok(compareVersions("0.2.0", "0.10.0") < 0);
  assert.equal(compareVersions("1.0", "1.0.0"), 0);
  assert.ok(compareVersions("1.1", "1.0.5") > 0);
});

Deno.test("resultSchemaFor accepts a result of its version", () => {
  const valid: Record<CniVersion, Json> = {
    "0.1.0": SRC_010,
    "0.2.0": SRC_020,
    "0.3.0": SRC_030,
    "0.3.1": SRC_031,
    "0.4.0": SRC_040,
    "1.0.0": SRC_100,
    "1.1.0": SRC_110,
  };
  for (const v of ALL_VERSIONS) {
    const parsed = resultSchemaFor(v).safeParse(valid[v]);
    assert.ok(parsed.success, `${v}: ${parsed.error?.message}`);
    assert.deepStrictEqual(parsed.data, valid[v]);
  }
});

Deno.test("resultSchemaFor rejects a result of the wrong family", () => {
  assert.equal(resultSchemaFor("0.4.0").safeParse({ ...SRC_100, cniVersion: "0.4.0" }).success, false);
  assert.equal(
    resultSchemaFor("0.2.0").safeParse({ cniVersion: "0.2.0", ip4: { address: "10.0.0.1/24" } }).success,
    false,
  );
  assert.equal(resultSchemaFor("0.2.0").safeParse(SRC_040).success, false);
  assert.equal(resultSchemaFor("0.4.0").safeParse(SRC_020).success, false);
  assert.equal(resultSchemaFor("1.0.0").safeParse(SRC_110).success, false);
  assert.equal(resultSchemaFor("1.1.0").safeParse(SRC_100).success, false);
  assert.equal(
    resultSchemaFor("1.1.0").safeParse({ cniVersion: "1.1.0", interfaces: [{ mac: "x" }] }).success,
    false,
  );
});

// ---------------------------------------------------------------------------------------------------------

Deno.test("NetConfSchema keeps unknown fields untouched", () => {
  const conf = {
    cniVersion: "1.0.0",
    name: "galaxy-k8s_v1.2",
    type: "galaxy-sdn",
    ipam: { type: "host-local", ranges: [[{ subnet: "10.0.0.0/24", gateway: "10.0.0.1" }]], dataDir: "/x" },
    dns: { nameservers: ["10.0.0.2"], "x-dns": true },
    capabilities: { portMappings: true },
    "cni.dev/valid-attachments": [{ containerID: "c1", ifname: "eth0" }],
    delegate: { type: "bridge", bridge: "cni0", isDefaultGateway: true },
    mtu: 1450,
  };
  const parsed = NetConfSchema.safeParse(structuredClone(conf));
  assert.ok(parsed.success, parsed.error?.message);
  assert.deepStrictEqual(parsed.data, conf);
});

Deno.test("NetConfSchema rejects a bad name and a missing type", () => {
  for (const name of ["-net", ".net", "my net", "net/1", "net:1", "", "né"]) {
    assert.equal(NetConfSchema.safeParse({ name, type: "bridge" }).success, false, name);
  }
  assert.equal(NetConfSchema.safeParse({ name: "net" }).success, false);
  assert.equal(NetConfSchema.safeParse({ name: "net", type: "" }).success, false);
  assert.ok(NetConfSchema.safeParse({ name: "0net_a.b-c", type: "bridge" }).success);
});

Deno.test("NetConfListSchema keeps unknown fields of the list and its plugins", () => {
  const list = {
    cniVersion: "1.1.0",
    cniVersions: ["1.0.0", "1.1.0"],
    name: "galaxy",
    disableCheck: true,
    "x-list": { a: [1, 2] },
    plugins: [
      { type: "galaxy-sdn", "x-plugin": "kept", delegate: { type: "bridge" } },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  };
  const parsed = NetConfListSchema.safeParse(structuredClone(list));
  assert.ok(parsed.success, parsed.error?.message);
  assert.deepStrictEqual(parsed.data, list);
});

Deno.test("NetConfListSchema rejects a bad or missing name and an empty plugin list", () => {
  const plugins = [{ type: "bridge" }];
  assert.equal(NetConfListSchema.safeParse({ name: "bad name", plugins }).success, false);
  assert.equal(NetConfListSchema.safeParse({ name: "_net", plugins }).success, false);
  assert.equal(NetConfListSchema.safeParse({ plugins }).success, false);
  assert.equal(NetConfListSchema.safeParse({ name: "net", plugins: [] }).success, false);
  assert.equal(NetConfListSchema.safeParse({ name: "net", plugins: [{ name: "x" }] }).success, false);
  assert.ok(NetConfListSchema.safeParse({ name: "net", plugins }).success);
});
