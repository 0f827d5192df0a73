import assert from "node:assert/strict";
import {
  goField,
  goKeyFold,
  loadGalaxyConfig,
  parseGalaxyConfig,
  unnamedNetworkWarnings,
} from "../../daemon/config.ts";

const SRC = "/etc/galaxy/galaxy.json";

function throwsNaming(text: string, ...patterns: RegExp[]): void {
  assert.throws(() => parseGalaxyConfig(text, SRC), (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.ok(e.message.startsWith(`${SRC}: `), e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

// The example shipped with Galaxy (yaml/galaxy.yaml).
const SHIPPED = `{
  "NetworkConf":[
    {"name":"tke-route-eni","type":"tke-route-eni","eni":"eth1","routeTable":1},
    {"name":"galaxy-flannel","type":"galaxy-flannel", "delegate":{"type":"galaxy-veth"},"subnetFile":"/run/flannel/subnet.env"},
    {"name":"galaxy-k8s-vlan","type":"galaxy-underlay-veth", "device":"eth0"}
  ],
  "DefaultNetworks": ["galaxy-flannel"],
  "ENIIPNetwork": "galaxy-k8s-vlan"
}`;

Deno.test("config: the shipped example parses, in file order, fields untouched", () => {
  const cfg = parseGalaxyConfig(SHIPPED, SRC);
  assert.deepEqual([...cfg.networks.keys()], ["tke-route-eni", "galaxy-flannel", "galaxy-k8s-vlan"]);
  assert.deepEqual(cfg.networks.get("galaxy-flannel"), {
    name: "galaxy-flannel",
    type: "galaxy-flannel",
    delegate: { type: "galaxy-veth" },
    subnetFile: "/run/flannel/subnet.env",
  });
  assert.deepEqual(cfg.networks.get("galaxy-k8s-vlan"), {
    name: "galaxy-k8s-vlan",
    type: "galaxy-underlay-veth",
    device: "eth0",
  });
  assert.deepEqual(cfg.defaultNetworks, ["galaxy-flannel"]);
  assert.equal(cfg.eniIpNetwork, "galaxy-k8s-vlan");
});

Deno.test("config: a network without a name is known by its type and stays unnamed", () => {
  const cfg = parseGalaxyConfig(`{"NetworkConf":[{"type":"galaxy-veth","mtu":1400}]}`, SRC);
  // As the Go daemon passed it: its plugins get no name.
  assert.deepEqual(cfg.networks.get("galaxy-veth"), { type: "galaxy-veth", mtu: 1400 });
  const [warning, ...more] = unnamedNetworkWarnings(cfg);
  assert.match(warning, /network "galaxy-veth" has no name/);
  assert.deepEqual(more, []);
  assert.deepEqual(
    unnamedNetworkWarnings(parseGalaxyConfig(`{"NetworkConf":[{"name":"a","type":"x"}]}`, SRC)),
    [],
  );
});

Deno.test("config: top-level keys match case-insensitively, as Go does; unknown keys are ignored", () => {
  const cfg = parseGalaxyConfig(
    `{"networkConf":[{"type":"a"}],"defaultnetworks":["a"],"eniipnetwork":"a","Unknown":{"x":1},"extra":5}`,
    SRC,
  );
  assert.deepEqual([...cfg.networks.keys()], ["a"]);
  assert.deepEqual(cfg.defaultNetworks, ["a"]);
  assert.equal(cfg.eniIpNetwork, "a");
  const upper = parseGalaxyConfig(`{"NETWORKCONF":[{"type":"b"}],"DEFAULTNETWORKS":["b"]}`, SRC);
  assert.deepEqual(upper.defaultNetworks, ["b"]);
  assert.ok(upper.networks.has("b"));
  // Unicode simple folding: the Kelvin sign is a k, the long s an s (Go's bytes.EqualFold).
  const odd = parseGalaxyConfig(`{"Networ\u212AConf":[{"type":"c"}],"DefaultNetwork\u017f":["c"]}`, SRC);
  assert.ok(odd.networks.has("c"));
  assert.deepEqual(odd.defaultNetworks, ["c"]);
});

Deno.test("config: of several keys that fold alike, the last wins (Go overwrites)", () => {
  const cfg = parseGalaxyConfig(`{"DefaultNetworks":["first"],"defaultNetworks":["second"]}`, SRC);
  assert.deepEqual(cfg.defaultNetworks, ["second"]);
  assert.equal(goField({ common: 1, COMMON: 2, Common: 3 }, "common"), 3);
  assert.equal(goField({ other: 1 }, "common"), undefined);
  assert.equal(goKeyFold("ENIIPNetwork"), "eniipnetwork");
});

Deno.test("config: missing or null sections give empty defaults", () => {
  for (const text of [`{}`, `{"NetworkConf":null,"DefaultNetworks":null,"ENIIPNetwork":null}`]) {
    const cfg = parseGalaxyConfig(text, SRC);
    assert.equal(cfg.networks.size, 0);
    assert.deepEqual(cfg.defaultNetworks, []);
    assert.equal(cfg.eniIpNetwork, "");
  }
});

Deno.test("config: a duplicate name is an error naming both entries", () => {
  throwsNaming(
    `{"NetworkConf":[{"type":"x","name":"n"},{"type":"y"},{"type":"z","name":"n"}]}`,
    /NetworkConf\[2\] \(name "n"\)/,
    /duplicate network name "n"/,
    /NetworkConf\[0\]/,
  );
  // A name defaulted from the type clashes too.
  throwsNaming(
    `{"NetworkConf":[{"type":"galaxy-veth"},{"type":"other","name":"galaxy-veth"}]}`,
    /NetworkConf\[1\] \(name "galaxy-veth"\)/,
    /duplicate network name "galaxy-veth" \(also NetworkConf\[0\]\)/,
  );
  throwsNaming(
    `{"NetworkConf":[{"type":"galaxy-veth"},{"type":"galaxy-veth"}]}`,
    /NetworkConf\[1\] \(type "galaxy-veth"\)/,
    /named after its type/,
  );
});

Deno.test("config: a missing or non-string type is an error naming the entry", () => {
  throwsNaming(
    `{"NetworkConf":[{"type":"a"},{"name":"net1"}]}`,
    /NetworkConf\[1\] \(name "net1"\)/,
    /"type" is missing/,
  );
  throwsNaming(
    `{"NetworkConf":[{"name":"net2","type":5}]}`,
    /NetworkConf\[0\] \(name "net2"\)/,
    /"type" must be/,
    /5/,
  );
  throwsNaming(`{"NetworkConf":[{"type":null}]}`, /NetworkConf\[0\]/, /"type" must be a non-empty string/);
  throwsNaming(`{"NetworkConf":[{"type":""}]}`, /NetworkConf\[0\]/, /"type" must be a non-empty string/);
  throwsNaming(`{"NetworkConf":[{}]}`, /NetworkConf\[0\]/, /"type" is missing/);
});

Deno.test("config: a non-string or empty name is an error naming the entry", () => {
  throwsNaming(`{"NetworkConf":[{"type":"a","name":7}]}`, /NetworkConf\[0\] \(name 7\)/, /"name" must be/);
  throwsNaming(`{"NetworkConf":[{"type":"a","name":["x"]}]}`, /NetworkConf\[0\]/, /"name" must be/);
  throwsNaming(`{"NetworkConf":[{"type":"a","name":""}]}`, /NetworkConf\[0\]/, /"name" must be a non-empty/);
});

Deno.test("config: a galaxy-sdn network is refused (it would call the daemon from itself)", () => {
  throwsNaming(
    `{"NetworkConf":[{"type":"galaxy-sdn","name":"loop"}]}`,
    /NetworkConf\[0\] \(name "loop"\)/,
    /galaxy-sdn/,
  );
});

Deno.test("config: wrong shapes are errors naming the section", () => {
  throwsNaming(`{"NetworkConf":{"type":"a"}}`, /NetworkConf must be an array/);
  throwsNaming(`{"NetworkConf":["a"]}`, /NetworkConf\[0\]: must be an object/);
  throwsNaming(`{"NetworkConf":[null]}`, /NetworkConf\[0\]: must be an object/);
  throwsNaming(`{"DefaultNetworks":"a"}`, /DefaultNetworks must be an array/);
  throwsNaming(`{"DefaultNetworks":["a",3]}`, /DefaultNetworks\[1\] must be a string/);
  throwsNaming(`{"ENIIPNetwork":["a"]}`, /ENIIPNetwork must be a string/);
  throwsNaming(`[]`, /must hold a JSON object/);
  throwsNaming(`null`, /must hold a JSON object/);
  throwsNaming(`{"NetworkConf":[`, /invalid JSON/);
  throwsNaming(``, /invalid JSON/);
});

Deno.test("config: entries are frozen, so a request cannot change them", () => {
  const cfg = parseGalaxyConfig(
    `{"NetworkConf":[{"type":"a","ipam":{"type":"host-local","ranges":[[]]}}]}`,
    SRC,
  );
  const net = cfg.networks.get("a")!;
  assert.throws(() => {
    net.prevResult = {};
  }, TypeError);
  assert.throws(() => {
    (net.ipam as Record<string, unknown>).type = "dhcp";
  }, TypeError);
  const copy = structuredClone(net);
  copy.prevResult = { ok: true };
  assert.equal(net.prevResult, undefined);
});

Deno.test("config: loadGalaxyConfig reads the file and names it in errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-config-test-" });
  try {
    const good = `${dir}/galaxy.json`;
    await Deno.writeTextFile(good, SHIPPED);
    const cfg = await loadGalaxyConfig(good);
    assert.equal(cfg.networks.size, 3);
    const bad = `${dir}/bad.json`;
    await Deno.writeTextFile(bad, `{"NetworkConf":[{"name":"x"}]}`);
    await assert.rejects(loadGalaxyConfig(bad), (e: Error) => {
      assert.ok(e.message.startsWith(`${bad}: `), e.message);
      assert.match(e.message, /NetworkConf\[0\] \(name "x"\)/);
      return true;
    });
    await assert.rejects(loadGalaxyConfig(`${dir}/missing.json`), /missing\.json: cannot read galaxy config/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
