import assert from "node:assert/strict";
import {
  buildDelegateConf,
  DEFAULT_DATA_DIR,
  negotiateVersion,
  parseFlannelConf,
  plugin,
} from "../../cni/plugins/flannel.ts";
import { parseSaved, SAVED_KIND } from "../../cni/plugins/kit/flannel_saved.ts";
import { DEFAULT_SUBNET_FILE, parseSubnetEnv, readSubnetEnv } from "../../cni/plugins/kit/flannel_subnet.ts";
import { handle } from "../../cni/skel.ts";
import { appendResult, CniError, type CniVersion, type Result } from "../../cni/spec.ts";

const FILE = "/run/test/subnet.env";
const IPV4_ENV = [
  "FLANNEL_NETWORK=198.18.32.0/20",
  "FLANNEL_SUBNET=198.18.33.1/24",
  "FLANNEL_MTU=1450",
  "FLANNEL_IPMASQ=false",
].join("\n") + "\n";
const IPV6_PAIR = "FLANNEL_IPV6_NETWORK=fd00:198:18::/48\nFLANNEL_IPV6_SUBNET=fd00:198:18:21::1/64\n";

function build(config: Record<string, unknown>, envText = IPV4_ENV, version: CniVersion = "1.0.0") {
  return buildDelegateConf(
    parseFlannelConf({ name: "flnet", ...config }, version),
    parseSubnetEnv(envText, FILE),
  );
}

function throwsCni(fn: () => unknown, code: number, text: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CniError, `expected a CniError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, text);
    return true;
  });
}

Deno.test("flannel: the default delegate is bridge with host-local over the node's subnet", () => {
  assert.deepEqual(build({ type: "galaxy-flannel" }), {
    cniVersion: "1.0.0",
    name: "flnet",
    type: "bridge",
    ipMasq: true,
    mtu: 1450,
    isGateway: true,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: "198.18.33.0/24" }]],
      routes: [{ dst: "198.18.32.0/20" }],
    },
  });
  const conf = parseFlannelConf({ name: "flnet" }, "0.3.1");
  assert.equal(conf.subnetFile, DEFAULT_SUBNET_FILE);
  assert.equal(conf.dataDir, DEFAULT_DATA_DIR);
  assert.equal(DEFAULT_SUBNET_FILE, "/run/flannel/subnet.env");
  assert.equal(DEFAULT_DATA_DIR, "/var/lib/cni/flannel");
});

Deno.test("flannel: ipMasq is the inverse of FLANNEL_IPMASQ unless the delegate sets it", () => {
  assert.equal(build({}).ipMasq, true);
  assert.equal(build({}, IPV4_ENV.replace("FLANNEL_IPMASQ=false", "FLANNEL_IPMASQ=true")).ipMasq, false);
  assert.equal(build({ delegate: { ipMasq: false } }).ipMasq, false);
  assert.equal(
    build({ delegate: { ipMasq: true } }, IPV4_ENV.replace("FLANNEL_IPMASQ=false", "FLANNEL_IPMASQ=true"))
      .ipMasq,
    true,
  );
});

Deno.test("flannel: mtu comes from FLANNEL_MTU unless the delegate sets it", () => {
  assert.equal(build({}, IPV4_ENV.replace("1450", "8951")).mtu, 8951);
  assert.equal(build({ delegate: { mtu: 1400 } }).mtu, 1400);
});

Deno.test("flannel: isGateway defaults to true for bridge only; other delegate keys pass through", () => {
  assert.equal(build({ delegate: { type: "bridge" } }).isGateway, true);
  assert.equal(build({ delegate: { isGateway: false } }).isGateway, false);
  const veth = build({ delegate: { type: "galaxy-veth", routeSrc: "198.18.33.1" } });
  assert.equal(veth.type, "galaxy-veth");
  assert.equal(Object.hasOwn(veth, "isGateway"), false);
  assert.equal(veth.routeSrc, "198.18.33.1");
  assert.equal(build({ delegate: { type: "ptp", bridge: "x" } }).bridge, "x");
});

Deno.test("flannel: name and cniVersion come from the outer configuration; runtimeConfig is passed on", () => {
  const d = build(
    {
      cniVersion: "9.9.9",
      delegate: { cniVersion: "0.1.0", prevResult: { cniVersion: "1.0.0" } },
      runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, protocol: "tcp" }] },
    },
    IPV4_ENV,
    "0.4.0",
  );
  assert.equal(d.cniVersion, "0.4.0");
  assert.equal(d.name, "flnet");
  assert.equal(Object.hasOwn(d, "prevResult"), false);
  assert.deepEqual(d.runtimeConfig, { portMappings: [{ hostPort: 80, containerPort: 80, protocol: "tcp" }] });
  assert.equal(Object.hasOwn(build({}), "runtimeConfig"), false);
});

Deno.test("flannel: an ipam object is merged in (dataDir, extra routes first, another type)", () => {
  const d = build({
    ipam: {
      dataDir: "/var/lib/test/ipam",
      routes: [{ dst: "0.0.0.0/0", gw: "198.18.33.254" }, { dst: "198.18.32.0/20" }],
      resolvConf: "/etc/resolv.conf",
    },
  });
  assert.deepEqual(d.ipam, {
    type: "host-local",
    dataDir: "/var/lib/test/ipam",
    routes: [{ dst: "0.0.0.0/0", gw: "198.18.33.254" }, { dst: "198.18.32.0/20" }],
    resolvConf: "/etc/resolv.conf",
    ranges: [[{ subnet: "198.18.33.0/24" }]],
  });
  assert.equal((build({ ipam: { type: "whereabouts" } }).ipam as { type: string }).type, "whereabouts");
});

Deno.test("flannel: the IPv6 pair adds a range and a route; IPv6-only works too", () => {
  const dual = build({}, IPV4_ENV + IPV6_PAIR);
  assert.deepEqual((dual.ipam as Record<string, unknown>).ranges, [
    [{ subnet: "198.18.33.0/24" }],
    [{ subnet: "fd00:198:18:21::/64" }],
  ]);
  assert.deepEqual((dual.ipam as Record<string, unknown>).routes, [
    { dst: "198.18.32.0/20" },
    { dst: "fd00:198:18::/48" },
  ]);
  const v6 = parseSubnetEnv(IPV6_PAIR + "FLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n", FILE);
  assert.deepEqual(v6, {
    networks: [],
    ipv6Networks: ["fd00:198:18::/48"],
    ipv6Subnet: "fd00:198:18:21::/64",
    mtu: 1430,
    ipMasq: true,
  });
});

Deno.test("flannel: subnet.env parsing tolerates comments, CRLF, unknown keys and repeated networks", () => {
  const env = parseSubnetEnv(
    "# written by flanneld\r\n\r\nFLANNEL_NETWORK= 198.18.32.0/20,198.18.64.0/20,198.18.32.0/20 \r\n" +
      "FLANNEL_SUBNET=198.18.65.1/24\r\nFLANNEL_MTU=1450\r\nFLANNEL_IPMASQ=true\r\nFLANNEL_FUTURE=x\r\n",
    FILE,
  );
  assert.deepEqual(env, {
    networks: ["198.18.32.0/20", "198.18.64.0/20"],
    subnet: "198.18.65.0/24",
    ipv6Networks: [],
    mtu: 1450,
    ipMasq: true,
  });
});

Deno.test("flannel: bad subnet.env content gives code 7 naming the file and the key", () => {
  const cases: [string, RegExp][] = [
    [IPV4_ENV.replace("FLANNEL_MTU=1450\n", ""), /FLANNEL_MTU is missing/],
    [IPV4_ENV.replace("1450", "big"), /FLANNEL_MTU: "big"/],
    [IPV4_ENV.replace("1450", "20"), /FLANNEL_MTU: "20"/],
    [IPV4_ENV.replace("FLANNEL_IPMASQ=false\n", ""), /FLANNEL_IPMASQ is missing/],
    [IPV4_ENV.replace("=false", "=yes"), /FLANNEL_IPMASQ: "yes" is neither true nor false/],
    [IPV4_ENV.replace("FLANNEL_SUBNET=198.18.33.1/24\n", ""), /FLANNEL_SUBNET is missing/],
    [IPV4_ENV.replace("FLANNEL_NETWORK=198.18.32.0/20\n", ""), /FLANNEL_NETWORK is missing/],
    ["FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n", /FLANNEL_NETWORK and FLANNEL_SUBNET/],
    [IPV4_ENV.replace("198.18.33.1/24", "198.18.99.1/24"), /FLANNEL_SUBNET 198\.18\.99\.1\/24 is not inside/],
    [
      IPV4_ENV.replace("198.18.33.1/24", "198.18.33.1"),
      /FLANNEL_SUBNET: "198\.18\.33\.1" is not an IPv4 CIDR/,
    ],
    [IPV4_ENV.replace("198.18.32.0/20", "fd00::/48"), /FLANNEL_NETWORK: "fd00::\/48" is not an IPv4 CIDR/],
    [IPV4_ENV.replace("198.18.32.0/20", "198.18.32.0/20,300.1.1.0/8"), /FLANNEL_NETWORK: "300\.1\.1\.0\/8"/],
    [IPV4_ENV + "FLANNEL_MTU=1400\n", /FLANNEL_MTU is set more than once/],
    [IPV4_ENV + "FLANNEL_IPV6_NETWORK=fd00::/48\n", /FLANNEL_IPV6_NETWORK is set but FLANNEL_IPV6_SUBNET/],
    [IPV4_ENV + "FLANNEL_IPV6_SUBNET=fd00::1/64\n", /FLANNEL_IPV6_SUBNET is set but FLANNEL_IPV6_NETWORK/],
    [IPV4_ENV + IPV6_PAIR.replace("fd00:198:18:21::1/64", "198.18.33.1/24"), /FLANNEL_IPV6_SUBNET: .* IPv6/],
    [IPV4_ENV.replace("198.18.33.1/24", ""), /FLANNEL_SUBNET is empty/],
    [IPV4_ENV + "garbage\n", /line 5: expected KEY=VALUE/],
  ];
  for (const [text, expected] of cases) {
    throwsCni(() => parseSubnetEnv(text, FILE), 7, expected);
    throwsCni(() => parseSubnetEnv(text, FILE), 7, /subnet file \/run\/test\/subnet\.env: /);
  }
});

Deno.test("flannel: an unreadable subnet file gives code 5 naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gtest-flannel-unit-" });
  try {
    await assert.rejects(readSubnetEnv(`${dir}/missing.env`), (e: unknown) => {
      assert.ok(e instanceof CniError);
      assert.equal(e.code, 5);
      assert.match(e.message, new RegExp(`${dir}/missing\\.env`));
      return true;
    });
    await Deno.writeTextFile(`${dir}/subnet.env`, IPV4_ENV);
    assert.equal((await readSubnetEnv(`${dir}/subnet.env`)).subnet, "198.18.33.0/24");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flannel: bad galaxy-flannel keys give code 7 naming the key", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ delegate: { name: "x" } }, /delegate\.name may not be set/],
    [{ delegate: { ipam: {} } }, /delegate\.ipam may not be set/],
    [{ delegate: { type: 3 } }, /delegate\.type must be a non-empty string/],
    [{ delegate: "bridge" }, /delegate must be an object/],
    [{ ipam: { ranges: [] } }, /ipam\.ranges may not be set/],
    [{ ipam: { subnet: "198.18.0.0/24" } }, /ipam\.subnet may not be set/],
    [{ ipam: { routes: {} } }, /ipam\.routes must be a list/],
    [{ ipam: { routes: [{ dst: "default" }] } }, /ipam\.routes\[0\]\.dst must be a CIDR, got "default"/],
    [{ ipam: { routes: [{ dst: "0.0.0.0/0", gw: "x" }] } }, /ipam\.routes\[0\]\.gw/],
    [{ ipam: [] }, /ipam must be an object/],
    [{ subnetFile: "" }, /subnetFile must be a non-empty string/],
    [{ dataDir: 7 }, /dataDir must be a non-empty string/],
    [{ runtimeConfig: "x" }, /runtimeConfig must be an object/],
  ];
  for (const [extra, expected] of cases) {
    throwsCni(() => parseFlannelConf({ name: "flnet", ...extra }, "1.0.0"), 7, expected);
  }
});

Deno.test("flannel: the delegate runs at the highest version both sides support", () => {
  const debian = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];
  assert.equal(negotiateVersion("1.1.0", debian, "bridge"), "1.0.0");
  assert.equal(negotiateVersion("1.0.0", debian, "bridge"), "1.0.0");
  assert.equal(negotiateVersion("0.3.1", debian, "bridge"), "0.3.1");
  assert.equal(negotiateVersion("0.4.0", ["0.3.1", "1.1.0", "7.0.0"], "x"), "0.3.1");
  throwsCni(
    () => negotiateVersion("0.3.1", ["1.0.0", "1.1.0"], "new"),
    1,
    /delegate new supports 1\.0\.0, 1\.1\.0/,
  );
});

Deno.test("appendResult (flannel): a chained ADD appends the delegate's result to prevResult", () => {
  const prev: Result = {
    cniVersion: "1.1.0",
    interfaces: [{ name: "lo0" }],
    ips: [{ address: "198.18.1.2/32", interface: 0 }],
    dns: { nameservers: ["198.18.0.53"] },
  };
  const own: Result = {
    cniVersion: "1.1.0",
    interfaces: [{ name: "cni0" }, { name: "veth1" }, { name: "eth0", sandbox: "/ns" }],
    ips: [{ address: "198.18.33.2/24", gateway: "198.18.33.1", interface: 2 }],
    routes: [{ dst: "198.18.32.0/20" }],
  };
  assert.deepEqual(appendResult(prev, own), {
    cniVersion: "1.1.0",
    interfaces: [{ name: "lo0" }, { name: "cni0" }, { name: "veth1" }, { name: "eth0", sandbox: "/ns" }],
    ips: [
      { address: "198.18.1.2/32", interface: 0 },
      { address: "198.18.33.2/24", gateway: "198.18.33.1", interface: 3 },
    ],
    routes: [{ dst: "198.18.32.0/20" }],
    dns: { nameservers: ["198.18.0.53"] },
  });
  assert.equal(appendResult(undefined, own), own);
});

Deno.test("flannel: saved files are read as records, upstream bare configurations, or unusable", () => {
  const delegate = { cniVersion: "1.0.0", name: "flnet", type: "bridge" };
  const record = {
    kind: SAVED_KIND,
    containerID: "c1",
    ifname: "eth0",
    netns: "/ns",
    network: "flnet",
    delegate,
  };
  assert.deepEqual(parseSaved(JSON.stringify(record)), {
    state: "found",
    ifname: "eth0",
    netns: "/ns",
    network: "flnet",
    delegate,
  });
  assert.deepEqual(parseSaved(JSON.stringify(delegate)), { state: "found", network: "flnet", delegate });
  assert.equal(parseSaved("{trunc").state, "corrupt");
  assert.equal(parseSaved(JSON.stringify({ kind: SAVED_KIND, delegate })).state, "corrupt");
  assert.equal(parseSaved(JSON.stringify({ type: "../evil" })).state, "corrupt");
});

Deno.test("flannel: GC without cni.dev/valid-attachments is code 7 and removes nothing (it read 'none valid')", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "galaxy-flannel-unit-" });
  try {
    const saved = `${dataDir}/c1`;
    const delegate = { cniVersion: "1.1.0", name: "flnet", type: "bridge" };
    const record = {
      kind: SAVED_KIND,
      containerID: "c1",
      ifname: "eth0",
      netns: "",
      network: "flnet",
      delegate,
    };
    await Deno.writeTextFile(saved, JSON.stringify(record));
    const config = { cniVersion: "1.1.0", name: "flnet", type: "galaxy-flannel", dataDir };
    const out = await handle(
      plugin,
      { CNI_COMMAND: "GC", CNI_PATH: "/nonexistent" },
      new TextEncoder().encode(JSON.stringify(config)),
    );
    assert.equal(out.exitCode, 1);
    const err = JSON.parse(out.stdout);
    assert.equal(err.code, 7, err.msg);
    assert.match(err.msg, /cni\.dev\/valid-attachments/);
    assert.equal(await Deno.readTextFile(saved), JSON.stringify(record), "GC touched a saved attachment");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
