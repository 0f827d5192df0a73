import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { CniError, ErrorCode } from "../../cni/spec.ts";
import { type GalaxyConfig, parseGalaxyConfig } from "../../daemon/config.ts";
import {
  findNetworkInConfDir,
  parseGalaxyArgs,
  parseNetworksAnnotation,
  type PodLike,
  resolveNetworks,
  wantsEniIp,
} from "../../daemon/networks.ts";

const NETS = "k8s.v1.cni.cncf.io/networks";
const ARGS = "k8s.v1.cni.galaxy.io/args";
const ENI = "tke.cloud.tencent.com/eni-ip";

function throwsCni(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CniError, `expected a CniError, got ${e}`);
    assert.equal(e.code, ErrorCode.InvalidNetworkConfig, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

async function rejectsCni(promise: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof CniError, `expected a CniError, got ${e}`);
    assert.equal(e.code, ErrorCode.InvalidNetworkConfig, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-networks-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, typeof value === "string" ? value : JSON.stringify(value));
}

function collector(): { warn: (m: string) => void; lines: string[] } {
  const lines: string[] = [];
  return { warn: (m: string) => lines.push(m), lines };
}

// ---------------------------------------------------------------------------------------------------------
// The networks annotation, comma form

Deno.test("annotation: the reference's test vectors", () => {
  assert.deepEqual(parseNetworksAnnotation("test-ns/galaxy-flannel@eth0, test-ns/galaxy-k8s-vlan@eth1"), [
    { name: "galaxy-flannel", namespace: "test-ns", interface: "eth0" },
    { name: "galaxy-k8s-vlan", namespace: "test-ns", interface: "eth1" },
  ]);
  assert.deepEqual(parseNetworksAnnotation("test-ns/galaxy-flannel"), [
    { name: "galaxy-flannel", namespace: "test-ns" },
  ]);
});

Deno.test("annotation: every comma-list item form, trimmed", () => {
  assert.deepEqual(parseNetworksAnnotation("  a ,ns/b,c@net1 ,  ns2/d@eth3  "), [
    { name: "a" },
    { name: "b", namespace: "ns" },
    { name: "c", interface: "net1" },
    { name: "d", namespace: "ns2", interface: "eth3" },
  ]);
  // The same network twice is two attachments.
  assert.deepEqual(parseNetworksAnnotation("a,a@eth2"), [{ name: "a" }, { name: "a", interface: "eth2" }]);
  assert.deepEqual(parseNetworksAnnotation("0"), [{ name: "0" }]);
});

Deno.test("annotation: comma-list grammar errors name the annotation and the item", () => {
  const cases: [string, RegExp][] = [
    ["a/b/c", /item "a\/b\/c": more than one '\/'/],
    ["ns/net@eth0@eth1", /item "ns\/net@eth0@eth1": more than one '@'/],
    ["a,,b", /item "": empty item/],
    ["a,", /item "": empty item/],
    ["ns/", /item "ns\/": the network name is missing/],
    ["@eth0", /item "@eth0": the network name is missing/],
    ["/net", /item "\/net": namespace "" must match/],
    ["net@", /item "net@": interface "" must match/],
    ["Net", /item "Net": network name "Net" must match/],
    ["net_1", /network name "net_1" must match/],
    ["-net", /network name "-net" must match/],
    ["net-", /network name "net-" must match/],
    ["NS/net", /namespace "NS" must match/],
    ["ns_x/net", /namespace "ns_x" must match/],
    ["net@Eth0", /interface "Eth0" must match/],
    ["net@eth.0", /interface "eth.0" must match/],
    ["net@abcdefghijklmnop", /is \d+ bytes long; Linux allows at most 15/],
    ["a b", /network name "a b" must match/],
    ["good, bad!", /item "bad!"/],
  ];
  for (const [value, pattern] of cases) {
    throwsCni(() => parseNetworksAnnotation(value), /k8s\.v1\.cni\.cncf\.io\/networks/, pattern);
  }
  throwsCni(() => parseNetworksAnnotation(""), /networks is empty/);
  throwsCni(() => parseNetworksAnnotation("   "), /networks is empty/);
});

// ---------------------------------------------------------------------------------------------------------
// The networks annotation, JSON form

Deno.test("annotation: the JSON form with every field we use", () => {
  const value = JSON.stringify([
    { name: "galaxy-flannel" },
    {
      name: "macvlan-net",
      namespace: "other",
      interface: "net1",
      ips: ["198.18.0.5/24", "2001:db8::5/64", "198.18.0.6"],
      mac: "02:00:00:aa:bb:cc",
      "cni-args": { foo: "bar", nested: { n: 1 } },
      portMappings: [{ hostPort: 1 }],
    },
  ]);
  assert.deepEqual(parseNetworksAnnotation(value), [
    { name: "galaxy-flannel" },
    {
      name: "macvlan-net",
      namespace: "other",
      interface: "net1",
      ips: ["198.18.0.5/24", "2001:db8::5/64", "198.18.0.6"],
      mac: "02:00:00:aa:bb:cc",
      cniArgs: { foo: "bar", nested: { n: 1 } },
    },
  ]);
});

Deno.test("annotation: the JSON form is detected by '[', '{' or '\"'", () => {
  assert.deepEqual(parseNetworksAnnotation(' [ {"name":"a"} ] '), [{ name: "a" }]);
  throwsCni(() => parseNetworksAnnotation('{"name":"a"}'), /must be an array of objects/);
  throwsCni(() => parseNetworksAnnotation('"a"'), /must be an array of objects/);
  throwsCni(() => parseNetworksAnnotation("a,[b]"), /invalid JSON/);
  throwsCni(() => parseNetworksAnnotation("[]"), /JSON list is empty/);
  // JSON names are not held to the DNS grammar: only to being a non-empty string.
  assert.deepEqual(parseNetworksAnnotation('[{"name":"My_Net"}]'), [{ name: "My_Net" }]);
  // null means absent, as in Go.
  assert.deepEqual(parseNetworksAnnotation('[{"name":"a","mac":null,"ips":null,"interface":null}]'), [
    { name: "a" },
  ]);
});

Deno.test("annotation: JSON-form type and value errors name the element", () => {
  const cases: [unknown, RegExp][] = [
    [["a"], /element 0: must be an object/],
    [[null], /element 0: must be an object/],
    [[{}], /element 0: "name" must be a string/],
    [[{ name: 5 }], /element 0: "name" must be a string, got 5/],
    [[{ name: "" }], /element 0 \(name ""\): "name" may not be empty/],
    [[{ name: "a" }, { name: "b", namespace: 1 }], /element 1 \(name "b"\): "namespace" must be a string/],
    [[{ name: "a", interface: 0 }], /element 0 \(name "a"\): "interface" must be a string/],
    [[{ name: "a", interface: "" }], /"interface" "": is empty/],
    [[{ name: "a", interface: "abcdefghijklmnop" }], /is \d+ bytes long; Linux allows at most 15/],
    [[{ name: "a", interface: "." }], /"\." is not a valid name/],
    [[{ name: "a", interface: ".." }], /"\.\." is not a valid name/],
    [[{ name: "a", interface: "eth/0" }], /contains/],
    [[{ name: "a", interface: "eth:0" }], /contains/],
    [[{ name: "a", interface: "eth 0" }], /contains/],
    [[{ name: "a", ips: "198.18.0.1" }], /"ips" must be an array of strings/],
    [[{ name: "a", ips: [1] }], /"ips" must be an array of strings/],
    [[{ name: "a", ips: ["nope"] }], /"ips": "nope" is not an IP address or CIDR/],
    [[{ name: "a", ips: ["198.18.0.1/33"] }], /invalid prefix length/],
    [[{ name: "a", ips: ["198.18.0.1/"] }], /invalid prefix length/],
    [[{ name: "a", mac: 1 }], /"mac" must be a string/],
    [[{ name: "a", mac: "02:00:00:aa:bb" }], /"mac" "02:00:00:aa:bb" is not a MAC address/],
    [[{ name: "a", "cni-args": [] }], /"cni-args" must be an object/],
    [[{ name: "a", "cni-args": "x=y" }], /"cni-args" must be an object/],
  ];
  for (const [value, pattern] of cases) {
    throwsCni(
      () => parseNetworksAnnotation(JSON.stringify(value)),
      /k8s\.v1\.cni\.cncf\.io\/networks/,
      pattern,
    );
  }
  // Interface names with multi-byte characters count bytes, as the kernel does.
  throwsCni(
    () => parseNetworksAnnotation('[{"name":"a","interface":"ééééééééé"}]'),
    /is \d+ bytes long; Linux allows at most 15/,
  );
  assert.equal(parseNetworksAnnotation(`a@${"e".repeat(15)}`)[0].interface, "e".repeat(15));
  // Other MAC spellings Go's ParseMAC accepts.
  for (const mac of ["02-00-00-AA-BB-CC", "0200.00aa.bbcc", "02:00:00:00:00:00:00:01"]) {
    assert.equal(parseNetworksAnnotation(JSON.stringify([{ name: "a", mac }]))[0].mac, mac);
  }
});

// ---------------------------------------------------------------------------------------------------------
// galaxy-ipam args

Deno.test("galaxy args: each key of common with its raw JSON text", () => {
  const value = `{"request_ip_range":[["10.0.0.2~10.0.0.30"]],` +
    `"common":{"ipinfos":[{"ip":"10.0.0.3/24","vlan":0,"gateway":"10.0.0.1"}],"n":5,"s":"x","t":true,"z":null}}`;
  assert.deepEqual(parseGalaxyArgs(value), [
    ["ipinfos", `[{"ip":"10.0.0.3/24","vlan":0,"gateway":"10.0.0.1"}]`],
    ["n", "5"],
    ["s", `"x"`],
    ["t", "true"],
    ["z", "null"],
  ]);
});

Deno.test("galaxy args: the raw bytes are kept exactly, odd whitespace and all", () => {
  const nested = `[ {"ip" :"10.0.0.3/24",\n\t"vlan":  0 , "deep":{ "a" : [1 ,2,{"b":"}\\"]["}] } } ,{}\r\n]`;
  const value = ` {\n "other" : {"common": "not this one"},\n  "common" :  {\n  "ipinfos" :\t${nested}  ,` +
    ` "num": -1.5e+3 , "str":"a\\u0041\\\\b" , "empty":{ } } }  `;
  const args = parseGalaxyArgs(value);
  assert.deepEqual(args, [
    ["ipinfos", nested],
    ["num", "-1.5e+3"],
    ["str", `"a\\u0041\\\\b"`],
    ["empty", "{ }"],
  ]);
  // The text is still the JSON it was.
  assert.deepEqual(JSON.parse(args[0][1]), JSON.parse(nested));
});

Deno.test("galaxy args: 'common' matches case-insensitively, last wins; duplicate keys keep the last value", () => {
  assert.deepEqual(parseGalaxyArgs(`{"Common":{"a":1}}`), [["a", "1"]]);
  assert.deepEqual(parseGalaxyArgs(`{"common":{"a":1},"COMMON":{"b":2}}`), [["b", "2"]]);
  assert.deepEqual(parseGalaxyArgs(`{"common":{"a":1,"b":2,"a":[3]}}`), [["a", "[3]"], ["b", "2"]]);
});

Deno.test("galaxy args: absent, null or without common give nothing", () => {
  assert.deepEqual(parseGalaxyArgs(undefined), []);
  assert.deepEqual(parseGalaxyArgs("null"), []);
  assert.deepEqual(parseGalaxyArgs("{}"), []);
  assert.deepEqual(parseGalaxyArgs(`{"request_ip_range":[]}`), []);
  assert.deepEqual(parseGalaxyArgs(`{"common":null}`), []);
  assert.deepEqual(parseGalaxyArgs(`{"common":{}}`), []);
});

Deno.test("galaxy args: errors name the annotation", () => {
  const cases: [string, RegExp][] = [
    ["", /invalid JSON/],
    ["{", /invalid JSON/],
    [`{"common":{"a":1,}}`, /invalid JSON/],
    ["[]", /must be a JSON object/],
    [`"x"`, /must be a JSON object/],
    [`{"common":[1]}`, /"common" must be an object/],
    [`{"common":"a=b"}`, /"common" must be an object/],
    [`{"common":{"a":"x;y"}}`, /value of "common\.a" holds ';' or '='/],
    [`{"common":{"a":"x=y"}}`, /value of "common\.a" holds ';' or '='/],
    [`{"common":{"a":{"k":"v=w"}}}`, /"common\.a"/],
    [`{"common":{"a;b":1}}`, /key "a;b"/],
    [`{"common":{"a=b":1}}`, /key "a=b"/],
    [`{"common":{"":1}}`, /key ""/],
  ];
  for (const [value, pattern] of cases) {
    throwsCni(() => parseGalaxyArgs(value), /k8s\.v1\.cni\.galaxy\.io\/args/, pattern);
  }
});

// ---------------------------------------------------------------------------------------------------------
// ENI IP

Deno.test("eni-ip: a request in a regular container counts; limits and init containers don't", () => {
  const withRes = (resources: Record<string, unknown>): PodLike => ({
    spec: { containers: [{ name: "a" }, { name: "b", resources }] },
  });
  assert.equal(wantsEniIp(withRes({ requests: { [ENI]: "1" } })), true);
  assert.equal(wantsEniIp(withRes({ requests: { [ENI]: "1", cpu: "1" }, limits: { [ENI]: "1" } })), true);
  assert.equal(wantsEniIp(withRes({ limits: { [ENI]: "1" } })), false);
  assert.equal(wantsEniIp(withRes({ requests: { cpu: "1" } })), false);
  assert.equal(wantsEniIp({}), false);
  assert.equal(wantsEniIp({ spec: {} }), false);
  const initOnly = {
    spec: {
      containers: [{ name: "a" }],
      initContainers: [{ name: "i", resources: { requests: { [ENI]: "1" } } }],
    },
  };
  assert.equal(wantsEniIp(initOnly), false);
});

Deno.test("PodLike: a client-node V1Pod fits", () => {
  const pod: V1Pod = {
    metadata: { name: "p", namespace: "ns", annotations: { a: "b" } },
    spec: { containers: [{ name: "c", resources: { requests: { [ENI]: "1" } } }] },
  };
  const like: PodLike = pod;
  assert.equal(wantsEniIp(like), true);
});

// ---------------------------------------------------------------------------------------------------------
// The configuration folder

const conf = (name: string, type = "bridge", extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name,
  type,
  ...extra,
});
const conflist = (name: string, types: string[]) => ({
  cniVersion: "1.0.0",
  name,
  plugins: types.map((type) => ({ type })),
});

Deno.test("conf dir: root files first, then sub-folders, all lexicographic; first match wins", async () => {
  await withDir(async (dir) => {
    await writeJson(`${dir}/b.conf`, conf("net", "root-b"));
    await writeJson(`${dir}/a.json`, conf("net", "root-a"));
    await writeJson(`${dir}/C.conf`, conf("other", "root-C"));
    await writeJson(`${dir}/aa/x.conf`, conf("sub", "aa-x"));
    await writeJson(`${dir}/a/z.conf`, conf("sub", "a-z"));
    await writeJson(`${dir}/a/y.conf`, conf("sub", "a-y"));
    await writeJson(`${dir}/0/deeper/d.conf`, conf("deep", "too-deep"));
    const { warn, lines } = collector();
    const net = await findNetworkInConfDir(dir, "net", { warn });
    assert.equal(net?.source, `${dir}/a.json`);
    assert.equal(net?.list.plugins[0].type, "root-a");
    // "a" sorts before "aa"; inside "a", y before z.
    const sub = await findNetworkInConfDir(dir, "sub", { warn });
    assert.equal(sub?.source, `${dir}/a/y.conf`);
    // Only one level below.
    assert.equal(await findNetworkInConfDir(dir, "deep", { warn }), undefined);
    assert.equal((await findNetworkInConfDir(`${dir}/`, "other", { warn }))?.source, `${dir}/C.conf`);
    // A root file beats a sub-folder even when its name sorts later.
    await writeJson(`${dir}/zz.conf`, conf("sub", "root-zz"));
    assert.equal((await findNetworkInConfDir(dir, "sub", { warn }))?.source, `${dir}/zz.conf`);
    assert.deepEqual(lines, []);
  });
});

Deno.test("conf dir: byte order, not locale order; only .conf, .json and .conflist", async () => {
  await withDir(async (dir) => {
    await writeJson(`${dir}/b.conf`, conf("n", "lower-b"));
    await writeJson(`${dir}/B.conf`, conf("n", "upper-B"));
    await writeJson(`${dir}/a.yaml`, conf("m", "yaml"));
    await writeJson(`${dir}/a.conf.bak`, conf("m", "bak"));
    await writeJson(`${dir}/z.json`, conf("m", "json"));
    assert.equal((await findNetworkInConfDir(dir, "n"))?.source, `${dir}/B.conf`);
    assert.equal((await findNetworkInConfDir(dir, "m"))?.source, `${dir}/z.json`);
  });
});

Deno.test("conf dir: a single conf becomes a one-plugin list keeping every field", async () => {
  await withDir(async (dir) => {
    const body = conf("mynet", "macvlan", {
      master: "eth0",
      ipam: { type: "host-local", subnet: "198.18.0.0/24" },
    });
    await writeJson(`${dir}/10-mynet.conf`, body);
    const found = await findNetworkInConfDir(dir, "mynet");
    assert.equal(found?.isList, false);
    assert.equal(found?.list.name, "mynet");
    assert.equal(found?.list.cniVersion, "1.0.0");
    assert.deepEqual(found?.list.plugins, [body]);
    // Without cniVersion the key stays absent (the daemon negotiates one).
    await writeJson(`${dir}/20-nov.conf`, { name: "nov", type: "bridge" });
    const nov = await findNetworkInConfDir(dir, "nov");
    assert.equal(Object.hasOwn(nov!.list, "cniVersion"), false);
    assert.equal(Object.hasOwn(nov!.list.plugins[0], "cniVersion"), false);
    assert.deepEqual(nov?.list, { name: "nov", plugins: [{ name: "nov", type: "bridge" }] });
  });
});

Deno.test("conf dir: a .conflist matches on its name and comes back whole", async () => {
  await withDir(async (dir) => {
    const list = { ...conflist("chain", ["bridge", "portmap"]), disableCheck: true, custom: { x: 1 } };
    await writeJson(`${dir}/10-chain.conflist`, list);
    // A single conf's name is not a list's name: the .conflist file is matched on the list name only.
    await writeJson(`${dir}/05-plugin.conf`, conf("bridge", "bridge"));
    const found = await findNetworkInConfDir(dir, "chain");
    assert.equal(found?.isList, true);
    assert.equal(found?.source, `${dir}/10-chain.conflist`);
    assert.deepEqual(found?.list, list);
    assert.equal(await findNetworkInConfDir(dir, "portmap"), undefined);
  });
});

Deno.test("conf dir: unusable files are skipped with a warning", async () => {
  await withDir(async (dir) => {
    await writeJson(`${dir}/01-broken.conf`, "{not json");
    await writeJson(`${dir}/02-notype.conf`, { name: "net" });
    await writeJson(`${dir}/03-list-as-conf.conf`, conflist("net", ["bridge"]));
    await writeJson(`${dir}/04-noplugins.conflist`, { name: "net" });
    await writeJson(`${dir}/05-badname.conflist`, { plugins: [{ type: "x" }] });
    await writeJson(`${dir}/06-empty.json`, "");
    await writeJson(`${dir}/07-good.conf`, conf("net", "good"));
    const { warn, lines } = collector();
    const found = await findNetworkInConfDir(dir, "net", { warn });
    assert.equal(found?.source, `${dir}/07-good.conf`);
    assert.equal(lines.length, 6, lines.join("\n"));
    assert.match(lines[0], /01-broken\.conf/);
    assert.match(lines[1], /02-notype\.conf: type/);
    assert.match(lines[2], /03-list-as-conf\.conf.*name it \.conflist/);
    assert.match(lines[3], /04-noplugins\.conflist: plugins/);
    assert.match(lines[4], /05-badname\.conflist: name/);
    assert.match(lines[5], /06-empty\.json/);
  });
});

Deno.test("conf dir: galaxy-sdn is never selected; the empty name never matches", async () => {
  await withDir(async (dir) => {
    await writeJson(`${dir}/00-galaxy.conf`, conf("galaxy", "galaxy-sdn"));
    await writeJson(`${dir}/01-galaxy-list.conflist`, conflist("galaxy", ["galaxy-sdn", "portmap"]));
    await writeJson(`${dir}/02-sdn.conflist`, conflist("galaxy-sdn", ["portmap", "galaxy-sdn"]));
    await writeJson(`${dir}/99-real.conf`, conf("galaxy", "bridge"));
    const { warn, lines } = collector();
    assert.equal((await findNetworkInConfDir(dir, "galaxy", { warn }))?.source, `${dir}/99-real.conf`);
    assert.equal(lines.length, 2);
    assert.match(lines[0], /00-galaxy\.conf.*galaxy-sdn/);
    assert.equal(await findNetworkInConfDir(dir, "galaxy-sdn", { warn }), undefined);
    assert.equal(await findNetworkInConfDir(dir, "", { warn }), undefined);
  });
});

Deno.test("conf dir: rescanned on every call; a missing folder gives undefined", async () => {
  await withDir(async (dir) => {
    assert.equal(await findNetworkInConfDir(dir, "late"), undefined);
    await writeJson(`${dir}/sub/late.conf`, conf("late", "first"));
    assert.equal((await findNetworkInConfDir(dir, "late"))?.list.plugins[0].type, "first");
    await writeJson(`${dir}/sub/late.conf`, conf("late", "second"));
    assert.equal((await findNetworkInConfDir(dir, "late"))?.list.plugins[0].type, "second");
    assert.equal(await findNetworkInConfDir(`${dir}/nowhere`, "late"), undefined);
  });
});

Deno.test("conf dir: a symlinked file counts, a symlinked folder is not entered (as Go's ReadDir)", async () => {
  await withDir(async (dir) => {
    await writeJson(`${dir}/real/x.conf`, conf("linked", "real"));
    await writeJson(`${dir}/elsewhere/y.conf`, conf("dirlink", "hidden"));
    await Deno.mkdir(`${dir}/confs`);
    await Deno.symlink(`${dir}/real/x.conf`, `${dir}/confs/a.conf`);
    await Deno.symlink(`${dir}/elsewhere`, `${dir}/confs/linkdir`);
    assert.equal((await findNetworkInConfDir(`${dir}/confs`, "linked"))?.source, `${dir}/confs/a.conf`);
    assert.equal(await findNetworkInConfDir(`${dir}/confs`, "dirlink"), undefined);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Resolution

const GALAXY_JSON = JSON.stringify({
  NetworkConf: [
    { type: "tke-route-eni", eni: "eth1", routeTable: 1 },
    { name: "galaxy-flannel", type: "galaxy-flannel", delegate: { type: "galaxy-veth" }, subnetFile: "/x" },
    { name: "galaxy-k8s-vlan", type: "galaxy-underlay-veth", device: "eth0" },
  ],
  DefaultNetworks: ["galaxy-flannel"],
  ENIIPNetwork: "galaxy-k8s-vlan",
});

function pod(annotations: Record<string, string> = {}, requests?: Record<string, string>): PodLike {
  return {
    metadata: { name: "web-0", namespace: "prod", annotations },
    spec: { containers: [{ name: "app", resources: requests ? { requests } : {} }] },
  };
}

async function withConfig(fn: (cfg: GalaxyConfig, confDir: string) => Promise<void>): Promise<void> {
  await withDir(async (dir) => {
    await fn(parseGalaxyConfig(GALAXY_JSON, "galaxy.json"), dir);
  });
}

Deno.test("resolve: no annotation → DefaultNetworks, network i gets eth<i>", async () => {
  await withDir(async (dir) => {
    const cfg = parseGalaxyConfig(
      JSON.stringify({
        NetworkConf: [{ type: "a" }, { type: "b" }, { type: "c" }],
        DefaultNetworks: ["a", "b", "c"],
      }),
      "galaxy.json",
    );
    const nets = await resolveNetworks(pod(), "eth0", cfg, { confDir: dir });
    assert.deepEqual(nets.map((n) => [n.name, n.ifname]), [["a", "eth0"], ["b", "eth1"], ["c", "eth2"]]);
    assert.deepEqual(nets[0], {
      name: "a",
      ifname: "eth0",
      list: { name: "", plugins: [{ type: "a" }] },
      isList: false,
      source: `galaxy.json NetworkConf "a"`,
      args: [["IgnoreUnknown", "1"]],
      capabilityArgs: {},
    });
    // The runtime's ifname goes to network 0 whatever it is.
    const other = await resolveNetworks(pod(), "net9", cfg, { confDir: dir });
    assert.deepEqual(other.map((n) => n.ifname), ["net9", "eth1", "eth2"]);
  });
});

Deno.test("resolve: the shipped config; names kept as written (none stays none), cniVersion left absent", async () => {
  await withConfig(async (cfg, confDir) => {
    const [net] = await resolveNetworks(pod(), "eth0", cfg, { confDir });
    assert.equal(net.name, "galaxy-flannel");
    assert.deepEqual(net.list, {
      name: "galaxy-flannel",
      plugins: [{
        name: "galaxy-flannel",
        type: "galaxy-flannel",
        delegate: { type: "galaxy-veth" },
        subnetFile: "/x",
      }],
    });
    assert.equal(Object.hasOwn(net.list, "cniVersion"), false);
    assert.equal(Object.hasOwn(net.list.plugins[0], "cniVersion"), false);
    // An entry without a name is reachable by its type and reaches its plugin unnamed, as in the Go Galaxy
    // (the list name "" stands for that).
    const [eni] = await resolveNetworks(pod({ [NETS]: "tke-route-eni" }), "eth0", cfg, { confDir });
    assert.equal(eni.name, "tke-route-eni");
    assert.equal(eni.list.name, "");
    assert.equal(Object.hasOwn(eni.list.plugins[0], "name"), false);
  });
});

Deno.test("resolve: ENI IP requested → ENIIPNetwork; limits alone → defaults; annotation beats both", async () => {
  await withConfig(async (cfg, confDir) => {
    const eni = await resolveNetworks(pod({}, { [ENI]: "1" }), "eth0", cfg, { confDir });
    assert.deepEqual(eni.map((n) => [n.name, n.ifname]), [["galaxy-k8s-vlan", "eth0"]]);
    assert.equal(eni[0].list.plugins[0].type, "galaxy-underlay-veth");
    const limitsOnly: PodLike = {
      metadata: { name: "p", namespace: "ns" },
      spec: { containers: [{ name: "c", resources: { limits: { [ENI]: "1" } } as Record<string, unknown> }] },
    };
    assert.deepEqual((await resolveNetworks(limitsOnly, "eth0", cfg, { confDir })).map((n) => n.name), [
      "galaxy-flannel",
    ]);
    const annotated = pod({ [NETS]: "tke-route-eni" }, { [ENI]: "1" });
    assert.deepEqual((await resolveNetworks(annotated, "eth0", cfg, { confDir })).map((n) => n.name), [
      "tke-route-eni",
    ]);
    // An empty annotation means "not set".
    const empty = pod({ [NETS]: "  " }, { [ENI]: "1" });
    assert.deepEqual((await resolveNetworks(empty, "eth0", cfg, { confDir })).map((n) => n.name), [
      "galaxy-k8s-vlan",
    ]);
    // Without ENIIPNetwork an ENI request falls back to the defaults.
    const noEni = { ...cfg, eniIpNetwork: "" };
    assert.deepEqual(
      (await resolveNetworks(pod({}, { [ENI]: "1" }), "eth0", noEni, { confDir })).map((n) => n.name),
      [
        "galaxy-flannel",
      ],
    );
  });
});

Deno.test("resolve: no annotation and empty DefaultNetworks → 'no networks'", async () => {
  await withDir(async (confDir) => {
    const cfg = parseGalaxyConfig(`{"NetworkConf":[{"type":"a"}]}`, "galaxy.json");
    await rejectsCni(resolveNetworks(pod(), "eth0", cfg, { confDir }), /^no networks: /, /prod\/web-0/);
  });
});

Deno.test("resolve: annotation ifnames — first gets CNI_IFNAME, then requested or eth<i>", async () => {
  await withConfig(async (cfg, confDir) => {
    const p = pod({ [NETS]: "ns/galaxy-flannel@eth7, galaxy-k8s-vlan, tke-route-eni@net2" });
    const nets = await resolveNetworks(p, "eth0", cfg, { confDir });
    assert.deepEqual(nets.map((n) => [n.name, n.ifname]), [
      ["galaxy-flannel", "eth0"],
      ["galaxy-k8s-vlan", "eth1"],
      ["tke-route-eni", "net2"],
    ]);
  });
});

Deno.test("resolve: two networks on one interface is an error naming both, before any lookup", async () => {
  await withConfig(async (cfg, confDir) => {
    await rejectsCni(
      resolveNetworks(pod({ [NETS]: "galaxy-flannel, tke-route-eni@eth0" }), "eth0", cfg, { confDir }),
      /"galaxy-flannel" \(#0\) and "tke-route-eni" \(#1\) both use interface "eth0"/,
    );
    await rejectsCni(
      resolveNetworks(pod({ [NETS]: "galaxy-flannel, unknown-a@eth5, unknown-b@eth5" }), "eth0", cfg, {
        confDir,
      }),
      /"unknown-a" \(#1\) and "unknown-b" \(#2\) both use interface "eth5"/,
    );
    // eth<i> defaults collide with an explicit request too.
    await rejectsCni(
      resolveNetworks(pod({ [NETS]: "galaxy-flannel, tke-route-eni@eth2, galaxy-k8s-vlan" }), "eth0", cfg, {
        confDir,
      }),
      /"tke-route-eni" \(#1\) and "galaxy-k8s-vlan" \(#2\) both use interface "eth2"/,
    );
    const cfg2 = { ...cfg, defaultNetworks: ["galaxy-flannel", "galaxy-k8s-vlan"] };
    await rejectsCni(resolveNetworks(pod(), "eth1", cfg2, { confDir }), /both use interface "eth1"/);
  });
});

Deno.test("resolve: galaxy.json first, then the conf dir; unknown names the places searched", async () => {
  await withConfig(async (cfg, confDir) => {
    await writeJson(`${confDir}/10-flannel.conf`, conf("galaxy-flannel", "from-dir"));
    await writeJson(`${confDir}/20-macvlan.conflist`, conflist("macvlan-net", ["macvlan", "tuning"]));
    const nets = await resolveNetworks(pod({ [NETS]: "galaxy-flannel,macvlan-net" }), "eth0", cfg, {
      confDir,
    });
    assert.equal(nets[0].list.plugins[0].type, "galaxy-flannel");
    assert.equal(nets[0].source, `galaxy.json NetworkConf "galaxy-flannel"`);
    assert.deepEqual(nets[1].list, conflist("macvlan-net", ["macvlan", "tuning"]));
    assert.equal(nets[1].isList, true);
    assert.equal(nets[1].source, `${confDir}/20-macvlan.conflist`);
    await rejectsCni(
      resolveNetworks(pod({ [NETS]: "galaxy-flannel,nope" }), "eth0", cfg, { confDir }),
      /network "nope"/,
      /annotation k8s\.v1\.cni\.cncf\.io\/networks/,
      /galaxy\.json NetworkConf/,
      new RegExp(confDir.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")),
    );
    const missingDefault = { ...cfg, defaultNetworks: ["gone"] };
    await rejectsCni(
      resolveNetworks(pod(), "eth0", missingDefault, { confDir }),
      /"gone" \(from galaxy\.json Default/,
    );
  });
});

Deno.test("resolve: bad annotations are CniErrors before anything else", async () => {
  await withConfig(async (cfg, confDir) => {
    await rejectsCni(
      resolveNetworks(pod({ [NETS]: "a/b/c" }), "eth0", cfg, { confDir }),
      /more than one '\/'/,
    );
    await rejectsCni(
      resolveNetworks(pod({ [ARGS]: "{bad" }), "eth0", cfg, { confDir }),
      /k8s\.v1\.cni\.galaxy\.io\/args: invalid JSON/,
    );
  });
});

Deno.test("resolve: JSON selections give capability args and args.cni", async () => {
  await withConfig(async (cfg, confDir) => {
    await writeJson(
      `${confDir}/20-macvlan.conflist`,
      {
        ...conflist("macvlan-net", ["macvlan", "tuning"]),
        plugins: [{ type: "macvlan", args: { cni: { keep: 1 } } }],
      },
    );
    const value = JSON.stringify([
      { name: "galaxy-flannel" },
      {
        name: "macvlan-net",
        interface: "net1",
        ips: ["198.18.0.5/24"],
        mac: "02:00:00:00:00:01",
        "cni-args": { a: 1 },
      },
    ]);
    const nets = await resolveNetworks(pod({ [NETS]: value }), "eth0", cfg, { confDir });
    assert.deepEqual(nets[0].capabilityArgs, {});
    assert.equal(nets[0].list.plugins[0].args, undefined);
    assert.equal(nets[1].ifname, "net1");
    assert.deepEqual(nets[1].capabilityArgs, { ips: ["198.18.0.5/24"], mac: "02:00:00:00:00:01" });
    assert.deepEqual(nets[1].list.plugins[0].args, { cni: { keep: 1, a: 1 } });
    assert.deepEqual((nets[1].list as Record<string, unknown>).args, { cni: { a: 1 } });
  });
});

Deno.test("resolve: galaxy args go to every network after IgnoreUnknown=1, bytes intact", async () => {
  await withConfig(async (cfg, confDir) => {
    const ipinfos = `[{"ip":"10.0.0.3/24", "vlan":0,"gateway" : "10.0.0.1"}]`;
    const p = pod({
      [NETS]: "galaxy-flannel,galaxy-k8s-vlan",
      [ARGS]: `{"common":{"ipinfos":${ipinfos},"x":"y"}}`,
    });
    const nets = await resolveNetworks(p, "eth0", cfg, { confDir });
    for (const net of nets) {
      assert.deepEqual(net.args, [["IgnoreUnknown", "1"], ["ipinfos", ipinfos], ["x", `"y"`]]);
    }
    nets[0].args.push(["mutated", "1"]);
    assert.equal(nets[1].args.length, 3);
  });
});

Deno.test("resolve: every resolution is a fresh deep copy", async () => {
  await withConfig(async (cfg, confDir) => {
    await writeJson(`${confDir}/20-macvlan.conflist`, conflist("macvlan-net", ["macvlan"]));
    const p = pod({ [NETS]: "galaxy-flannel,macvlan-net,galaxy-flannel@eth5,macvlan-net@eth6" });
    const first = await resolveNetworks(p, "eth0", cfg, { confDir });
    // Mutate everything a plugin run might touch.
    for (const net of first) {
      const plugin = net.list.plugins[0] as Record<string, unknown>;
      plugin.prevResult = { cniVersion: "1.1.0", stale: true };
      plugin.type = "mutated";
      ((plugin.delegate ?? {}) as Record<string, unknown>).type = "mutated";
      net.list.name = "mutated";
    }
    // The same network twice is two independent copies.
    assert.notEqual(first[0].list, first[2].list);
    assert.notEqual(first[1].list, first[3].list);
    const second = await resolveNetworks(p, "eth0", cfg, { confDir });
    assert.deepEqual(second.map((n) => [n.list.name, n.list.plugins[0].type]), [
      ["galaxy-flannel", "galaxy-flannel"],
      ["macvlan-net", "macvlan"],
      ["galaxy-flannel", "galaxy-flannel"],
      ["macvlan-net", "macvlan"],
    ]);
    assert.equal(second[0].list.plugins[0].prevResult, undefined);
    assert.deepEqual(second[0].list.plugins[0].delegate, { type: "galaxy-veth" });
    // The config itself is untouched.
    assert.deepEqual(cfg.networks.get("galaxy-flannel"), {
      name: "galaxy-flannel",
      type: "galaxy-flannel",
      delegate: { type: "galaxy-veth" },
      subnetFile: "/x",
    });
  });
});

Deno.test("resolve: conf-dir warnings go to the warn callback", async () => {
  await withConfig(async (cfg, confDir) => {
    await writeJson(`${confDir}/00-broken.conf`, "{");
    await writeJson(`${confDir}/10-net.conf`, conf("dir-net"));
    const { warn, lines } = collector();
    const nets = await resolveNetworks(pod({ [NETS]: "dir-net" }), "eth0", cfg, { confDir, warn });
    assert.equal(nets[0].source, `${confDir}/10-net.conf`);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /00-broken\.conf/);
  });
});

Deno.test("resolve: the same network twice with different cni-args keeps them apart", async () => {
  await withConfig(async (cfg, confDir) => {
    await writeJson(`${confDir}/20-macvlan.conflist`, conflist("macvlan-net", ["macvlan"]));
    const value = JSON.stringify([
      { name: "galaxy-flannel", "cni-args": { first: true } },
      { name: "macvlan-net", "cni-args": { second: true } },
      { name: "galaxy-flannel", interface: "net2" },
      { name: "macvlan-net", interface: "net3", "cni-args": { fourth: true } },
    ]);
    const nets = await resolveNetworks(pod({ [NETS]: value }), "eth0", cfg, { confDir });
    assert.deepEqual(nets.map((n) => n.list.plugins[0].args), [
      { cni: { first: true } },
      { cni: { second: true } },
      undefined,
      { cni: { fourth: true } },
    ]);
    assert.equal(cfg.networks.get("galaxy-flannel")!.args, undefined);
  });
});
