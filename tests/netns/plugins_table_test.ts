/**
 * The one plugin table of issue 4: every built-in plugin mode × every CNI version, each row in a lab of a node
 * namespace and two pod namespaces. A row ADDs pod A and pod B through the plugin's launcher run inside the
 * node namespace (the output validated against the requested version's schema), reads each pod's address
 * back with `ip -j` and compares it with the result, pings node ↔ pod and pod A ↔ pod B, runs CHECK (0.4.0
 * and later), DELs both and proves nothing of the attachments is left: the pods back to `lo`, the node's
 * links (and, once the mode's node state exists, its routes and rules) exactly as before the ADD, no route or
 * rule for a pod address, no host-local reservation and no flannel saved file. One lab serves all versions
 * of a case, so each row also proves the previous row's DEL left the lab clean enough to start again.
 * Every row runs twice (issue 14): through the plugin's executable, then called in process the daemon's way
 * (`tests/helpers/in_process_runner.ts`: setns workers, built-ins and a built-in's delegate as functions);
 * both must pass the row and print the same ADD results, MACs and the pod address's last number aside.
 * Addresses come from 198.18.0.0/15; nothing touches the host namespace.
 * @module
 */
import assert from "node:assert/strict";
import type { CniVersion } from "../../cni/spec.ts";
import { versionAtLeast } from "../../cni/version.ts";
import { kernelTest, type Lab, type Netns, withLab } from "../helpers/netns.ts";
import {
  assertOk,
  hostLocalIpam,
  ping,
  PLUGIN_VIAS,
  type PluginRun,
  type PluginVia,
  reservations,
  runBuiltin,
  TEST_VERSIONS,
} from "../helpers/plugin_harness.ts";
import { linkTypeMissing, underlayNet } from "../helpers/underlay_lab.ts";

// Issue 4 names 0.2.0 to 1.1.0; 0.1.0 has 0.2.0's shape and the per-plugin tables run it.
const VERSIONS = TEST_VERSIONS.filter((v) => v !== "0.1.0");

// What a case's topology gives its rows.
interface Site {
  // The node address the pods ping (and that answers the node's pings).
  nodeIp: string;
  // The underlay's gateway namespace and address, which the pods must reach too (underlay modes).
  gateway?: { ns: Netns; ip: string };
  // Why the kernel cannot run this case (the rows are then ignored with this reason printed).
  skip?: string;
}

type PodKey = "a" | "b";

interface TableCase {
  // The name in the test table.
  name: string;
  // The executable under test.
  plugin: string;
  // The network name (host-local keeps its reservations under `<lab>/ipam/<network>`).
  network: string;
  // Every pod address starts with this.
  prefix: string;
  // The node reaches the pod through a host /32 route (routed modes).
  routed: boolean;
  // The node has policy rules for the pod's address.
  rules: boolean;
  // The addresses come from host-local, whose reservation files must come and go.
  hostLocal: boolean;
  // Node links the mode makes on the first ADD and keeps for every pod (the default bridge).
  nodeState: string[];
  // Where the plugin keeps one saved file per attachment (flannel).
  savedDir?: (lab: Lab) => string;
  setup(lab: Lab): Promise<Site>;
  conf(lab: Lab, version: CniVersion): Record<string, unknown>;
  args?(pod: PodKey, containerId: string): Record<string, string>;
}

// A node address on the node's loopback, for the pods (behind 169.254.1.1) to ping. Pod A ↔ pod B goes
// through the node in these routed modes, so it forwards, as any Kubernetes node does.
async function nodeAddress(lab: Lab, ip: string): Promise<Site> {
  await lab.ip(lab.node, ["addr", "add", `${ip}/32`, "dev", "lo"]);
  await lab.exec(lab.node, "sh", ["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
  return { nodeIp: ip };
}

function ipinfos(ip: string, gateway: string): Record<string, string> {
  return { ipinfos: JSON.stringify([{ ip, vlan: 0, gateway }]) };
}

function vlanConf(lab: Lab, plugin: string, network: string, version: CniVersion, extra = {}) {
  return {
    cniVersion: version,
    name: network,
    type: plugin,
    device: "u0",
    lockDir: `${lab.dir}/lock`,
    ...extra,
  };
}

const FLANNEL_ENV = [
  "FLANNEL_NETWORK=198.18.96.0/20",
  "FLANNEL_SUBNET=198.18.97.1/24",
  "FLANNEL_MTU=1450",
  "FLANNEL_IPMASQ=true",
].join("\n") + "\n";

const CASES: TableCase[] = [
  {
    name: "galaxy-veth",
    plugin: "galaxy-veth",
    network: "gtable-veth",
    prefix: "198.18.40.",
    routed: true,
    rules: false,
    hostLocal: true,
    nodeState: [],
    setup: (lab) => nodeAddress(lab, "198.19.240.1"),
    conf: (lab, version) => ({
      cniVersion: version,
      name: "gtable-veth",
      type: "galaxy-veth",
      routeSrc: "198.19.240.1",
      ipam: hostLocalIpam(lab, "198.18.40.0/24"),
    }),
  },
  {
    name: "galaxy-flannel (subnet.env, galaxy-veth delegate, host-local)",
    plugin: "galaxy-flannel",
    network: "gtable-flannel",
    prefix: "198.18.97.",
    routed: true,
    rules: false,
    hostLocal: true,
    nodeState: [],
    savedDir: (lab) => `${lab.dir}/flannel`,
    setup: async (lab) => {
      await Deno.mkdir(`${lab.dir}/run/flannel`, { recursive: true });
      await Deno.writeTextFile(`${lab.dir}/run/flannel/subnet.env`, FLANNEL_ENV);
      return await nodeAddress(lab, "198.19.241.1");
    },
    // The delegate (galaxy-veth) finds host-local in /usr/lib/cni, the last folder of CNI_PATH.
    conf: (lab, version) => ({
      cniVersion: version,
      name: "gtable-flannel",
      type: "galaxy-flannel",
      subnetFile: `${lab.dir}/run/flannel/subnet.env`,
      dataDir: `${lab.dir}/flannel`,
      ipam: { dataDir: `${lab.dir}/ipam` },
      delegate: { type: "galaxy-veth", routeSrc: "198.19.241.1" },
    }),
  },
  {
    name: "galaxy-k8s-vlan (bridge, VLAN 0)",
    plugin: "galaxy-k8s-vlan",
    network: "gtable-vlan-bridge",
    prefix: "198.18.50.",
    routed: false,
    rules: false,
    hostLocal: false,
    nodeState: ["docker"],
    // The default bridge takes over u0's address: the node and both pods share one L2 segment.
    setup: async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.50", routes: true });
      return { nodeIp: "198.18.50.2", gateway: { ns: u.net, ip: u.gateway } };
    },
    conf: (lab, version) => vlanConf(lab, "galaxy-k8s-vlan", "gtable-vlan-bridge", version),
    args: (pod) => ipinfos(`198.18.50.${pod === "a" ? 10 : 11}/24`, "198.18.50.1"),
  },
  {
    name: "galaxy-k8s-vlan (pure, VLAN 0)",
    plugin: "galaxy-k8s-vlan",
    network: "gtable-vlan-pure",
    prefix: "198.18.52.",
    routed: true,
    rules: false,
    hostLocal: false,
    nodeState: [],
    // Routed with proxy ARP: pod A ↔ pod B is forwarded by the node.
    setup: async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.52", routes: true, forwarding: true });
      return { nodeIp: "198.18.52.2", gateway: { ns: u.net, ip: u.gateway } };
    },
    conf: (lab, version) => vlanConf(lab, "galaxy-k8s-vlan", "gtable-vlan-pure", version, { switch: "pure" }),
    args: (pod) => ipinfos(`198.18.52.${pod === "a" ? 10 : 11}/24`, "198.18.52.1"),
  },
  {
    name: "galaxy-k8s-vlan (macvlan)",
    plugin: "galaxy-k8s-vlan",
    network: "gtable-vlan-macvlan",
    prefix: "198.18.54.",
    routed: false,
    rules: false,
    hostLocal: false,
    nodeState: [],
    // A macvlan's parent never hears its children, so, as on a real macvlan node, the node's underlay address
    // lives on a macvlan of its own (gt-shim), a bridge-mode sibling of the pods; the pods reach each other
    // as siblings on u0 without the node.
    setup: async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.54" });
      const missing = await linkTypeMissing(lab, "macvlan");
      if (missing) return { nodeIp: "198.18.54.2", skip: missing };
      await lab.ip(lab.node, ["addr", "del", u.nodeCidr, "dev", "u0"]);
      await lab.ip(lab.node, [
        "link",
        "add",
        "link",
        "u0",
        "name",
        "gt-shim",
        "type",
        "macvlan",
        "mode",
        "bridge",
      ]);
      await lab.ip(lab.node, ["addr", "add", u.nodeCidr, "dev", "gt-shim"]);
      await lab.ip(lab.node, ["link", "set", "gt-shim", "up"]);
      return { nodeIp: "198.18.54.2", gateway: { ns: u.net, ip: u.gateway } };
    },
    conf: (lab, version) =>
      vlanConf(lab, "galaxy-k8s-vlan", "gtable-vlan-macvlan", version, { switch: "macvlan" }),
    args: (pod) => ipinfos(`198.18.54.${pod === "a" ? 10 : 11}/24`, "198.18.54.1"),
  },
  {
    name: "galaxy-underlay-veth (VLAN 0)",
    plugin: "galaxy-underlay-veth",
    network: "gtable-underlay",
    prefix: "198.18.56.",
    routed: true,
    rules: false,
    hostLocal: true,
    nodeState: [],
    // Routed with proxy ARP: pod A ↔ pod B is forwarded by the node.
    setup: async (lab) => {
      const u = await underlayNet(lab, { subnet: "198.18.56", routes: true, forwarding: true });
      return { nodeIp: "198.18.56.2", gateway: { ns: u.net, ip: u.gateway } };
    },
    conf: (lab, version) =>
      vlanConf(lab, "galaxy-underlay-veth", "gtable-underlay", version, {
        ipam: {
          type: "host-local",
          dataDir: `${lab.dir}/ipam`,
          ranges: [[{ subnet: "198.18.56.0/24", rangeStart: "198.18.56.10", gateway: "198.18.56.1" }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      }),
  },
  {
    name: "tke-route-eni (a veth as the ENI)",
    plugin: "tke-route-eni",
    network: "gtable-eni",
    prefix: "198.18.44.",
    routed: true,
    rules: true,
    hostLocal: true,
    nodeState: [],
    setup: async (lab) => {
      await lab.ip(lab.node, ["link", "add", "eth1", "type", "veth", "peer", "name", "eth1peer"]);
      return await nodeAddress(lab, "198.19.244.1");
    },
    conf: (lab, version) => ({
      cniVersion: version,
      name: "gtable-eni",
      type: "tke-route-eni",
      eni: "eth1",
      ipam: hostLocalIpam(lab, "198.18.44.0/24"),
    }),
    // IgnoreUnknown: host-local gets the same CNI_ARGS and refuses the K8S_* keys otherwise.
    args: (pod, containerId) => ({
      IgnoreUnknown: "1",
      K8S_POD_NAMESPACE: "default",
      K8S_POD_NAME: `table-${pod}`,
      K8S_POD_INFRA_CONTAINER_ID: containerId,
    }),
  },
];

// ------------------------------------------------------------------------------------------ kernel readers

interface NodeSnapshot {
  links: string[];
  routes: string[];
  rules: string[];
}

async function nodeSnapshot(lab: Lab): Promise<NodeSnapshot> {
  const routes = await lab.ipJson(lab.node, ["-4", "route", "show", "table", "all"]);
  const rules = await lab.ipJson(lab.node, ["-4", "rule", "show"]);
  return {
    links: (await lab.linkNames(lab.node)).sort(),
    routes: routes.map((r) => JSON.stringify(r)).sort(),
    rules: rules.map((r) => JSON.stringify(r)).sort(),
  };
}

// The node's routes (every table) whose destination is `ip`.
async function hostRoutesTo(lab: Lab, ip: string): Promise<{ dst: string; dev?: string; table?: string }[]> {
  const all = await lab.ipJson<{ dst: string; dev?: string; table?: string }[]>(lab.node, [
    "route",
    "show",
    "table",
    "all",
  ]);
  return all.filter((r) => r.dst === ip || r.dst === `${ip}/32`);
}

// The node's policy rules that name `ip`.
async function rulesFor(lab: Lab, ip: string): Promise<Record<string, unknown>[]> {
  const all = await lab.ipJson<{ src?: string; dst?: string }[]>(lab.node, ["rule", "show"]);
  return all.filter((r) => r.src === ip || r.dst === ip);
}

async function savedFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return names.sort();
}

// The pod's address in an ADD result (`addr/prefix`) and the MAC the result gives its interface.
function podAddress(add: PluginRun, pod: Netns): { cidr: string; mac?: string } {
  const result = add.result!;
  const ips = result.ips ?? [];
  assert.equal(ips.length, 1, `expected one address: ${add.stdout}`);
  if (!result.interfaces?.length) return { cidr: ips[0].address }; // 0.1.0/0.2.0: no interfaces
  const index = result.interfaces.findIndex((i) => i.name === "eth0" && i.sandbox === pod.path);
  assert.ok(index >= 0, `the result has no eth0 in ${pod.path}: ${add.stdout}`);
  assert.equal(ips[0].interface, index, `the address is not on the pod's eth0: ${add.stdout}`);
  return { cidr: ips[0].address, mac: result.interfaces[index].mac };
}

// ------------------------------------------------------------------------------------------ one row

interface Attachment {
  key: PodKey;
  pod: Netns;
  containerId: string;
  args?: Record<string, string>;
  ip: string;
  output: Record<string, unknown>;
}

// An ADD's output with what legitimately differs between two runs masked: MACs (new links) and the last
// number of a pod address (host-local goes on to the next free one).
function comparable(c: TableCase, output: Record<string, unknown>): string {
  const prefix = c.prefix.replaceAll(".", "\\.");
  return JSON.stringify(output)
    .replace(/"mac":"[0-9a-f:]*"/g, '"mac":"<mac>"')
    .replace(new RegExp(`${prefix}\\d+`, "g"), `${c.prefix}<n>`);
}

// One row: ADD, traffic, CHECK, DEL and the clean-up proof, with the plugin run one way; resolves to the ADD
// outputs (comparable) so that the two ways can be compared.
async function runRow(
  lab: Lab,
  c: TableCase,
  site: Site,
  pods: Record<PodKey, Netns>,
  version: CniVersion,
  via: PluginVia,
): Promise<string[]> {
  const conf = c.conf(lab, version);
  const withPrev = (a: Attachment) =>
    versionAtLeast(version, "0.4.0") ? { ...conf, prevResult: a.output } : conf;
  const before = await nodeSnapshot(lab);
  const attached: Attachment[] = [];
  let passed = false;
  try {
    for (const key of ["a", "b"] as const) {
      const pod = pods[key];
      const containerId = `${key}${version.replaceAll(".", "")}tbl0c0ffee`;
      const args = c.args?.(key, containerId);
      const add = await runBuiltin(lab, c.plugin, { verb: "ADD", conf, containerId, netns: pod, args, via });
      assertOk(add, `ADD pod ${key}`);
      const { cidr, mac } = podAddress(add, pod);
      const ip = cidr.split("/")[0];
      attached.push({ key, pod, containerId, args, ip, output: add.output! });
      assert.ok(ip.startsWith(c.prefix), `pod ${key} got ${cidr}, outside ${c.prefix}0/24`);
      assert.deepEqual(
        await lab.addresses(pod, "eth0"),
        [cidr],
        `pod ${key}: the kernel disagrees with the result`,
      );
      if (mac) {
        const [link] = await lab.ipJson<{ address: string }[]>(pod, ["link", "show", "dev", "eth0"]);
        assert.equal(link.address, mac, `pod ${key}: eth0's MAC is not the result's`);
      }
      const hostRoutes = await hostRoutesTo(lab, ip);
      assert.equal(
        hostRoutes.length,
        c.routed ? 1 : 0,
        `pod ${key}: host routes ${JSON.stringify(hostRoutes)}`,
      );
      const dev = hostRoutes[0]?.dev;
      if (dev) {
        assert.ok(!before.links.includes(dev), `pod ${key}: the host route uses ${dev}, not its own link`);
      }
      assert.equal((await rulesFor(lab, ip)).length, c.rules ? 2 : 0, `pod ${key}: rules for ${ip}`);
    }
    const [a, b] = attached;
    assert.notEqual(a.ip, b.ip);
    if (c.hostLocal) assert.deepEqual(await reservations(lab, c.network), [a.ip, b.ip].sort());
    if (c.savedDir) {
      assert.deepEqual(await savedFiles(c.savedDir(lab)), [a.containerId, b.containerId].sort());
    }

    // Traffic: the node and each pod both ways, the underlay's gateway where there is one, pod A ↔ pod B.
    // Every mode of the table lets two pods of one node reach each other (see the cases' comments).
    for (const { key, pod, ip } of attached) {
      assert.ok(await ping(lab, lab.node, ip), `node → pod ${key} (${ip})`);
      assert.ok(await ping(lab, pod, site.nodeIp), `pod ${key} → node (${site.nodeIp})`);
      if (site.gateway) assert.ok(await ping(lab, pod, site.gateway.ip), `pod ${key} → underlay gateway`);
    }
    assert.ok(await ping(lab, a.pod, b.ip), `pod a → pod b (${b.ip})`);
    assert.ok(await ping(lab, b.pod, a.ip), `pod b → pod a (${a.ip})`);

    if (versionAtLeast(version, "0.4.0")) {
      for (const at of attached) {
        const check = await runBuiltin(lab, c.plugin, {
          verb: "CHECK",
          conf: withPrev(at),
          containerId: at.containerId,
          netns: at.pod,
          args: at.args,
          via,
        });
        assertOk(check, `CHECK pod ${at.key}`);
      }
    }

    // DEL: before 0.4.0 a runtime sends no prevResult, so the plugin must find its attachment without one.
    for (const at of attached) {
      const del = await runBuiltin(lab, c.plugin, {
        verb: "DEL",
        conf: withPrev(at),
        containerId: at.containerId,
        netns: at.pod,
        args: at.args,
        via,
      });
      assertOk(del, `DEL pod ${at.key}`);
    }

    for (const { key, pod, ip } of attached) {
      assert.deepEqual(await lab.linkNames(pod), ["lo"], `pod ${key} is not back to lo only`);
      assert.deepEqual(await hostRoutesTo(lab, ip), [], `a node route to pod ${key} (${ip}) is left`);
      assert.deepEqual(await rulesFor(lab, ip), [], `a node rule for pod ${key} (${ip}) is left`);
    }
    const after = await nodeSnapshot(lab);
    const attachmentLinks = (s: NodeSnapshot) => s.links.filter((l) => !c.nodeState.includes(l));
    assert.deepEqual(attachmentLinks(after), attachmentLinks(before), "node links are not as before the ADD");
    // The first ADD of a mode with node state (the default bridge) moves the uplink's routes onto it for
    // good; from then on, and in every other mode, routes and rules must be exactly as before.
    if (c.nodeState.every((l) => before.links.includes(l))) {
      assert.deepEqual(after.routes, before.routes, "node routes are not as before the ADD");
      assert.deepEqual(after.rules, before.rules, "node rules are not as before the ADD");
    }
    assert.deepEqual(await reservations(lab, c.network), [], "a host-local reservation is left");
    if (c.savedDir) assert.deepEqual(await savedFiles(c.savedDir(lab)), [], "a flannel saved file is left");
    passed = true;
    return attached.map((at) => comparable(c, at.output));
  } finally {
    // A failed row DELs what it added (again: DEL may be repeated), so that the next row starts clean.
    if (!passed) {
      for (const at of attached) {
        await runBuiltin(lab, c.plugin, {
          verb: "DEL",
          conf,
          containerId: at.containerId,
          netns: at.pod,
          args: at.args,
          via,
        }).catch(() => {});
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ the table

for (const c of CASES) {
  kernelTest(`plugin table: ${c.name}`, async (t) => {
    await withLab(`table${c.plugin.replace(/^galaxy-/, "")}`, async (lab) => {
      const site = await c.setup(lab);
      if (site.skip) console.log(`skipping the rows of "${c.name}": ${site.skip}`);
      const pods = { a: await lab.pod("a"), b: await lab.pod("b") };
      for (const version of VERSIONS) {
        await t.step({
          name: `${c.name} @ ${version}`,
          ignore: site.skip !== undefined,
          fn: async () => {
            // Both ways, with identical outputs: the executable, then the daemon's in-process call.
            const outputs: Partial<Record<PluginVia, string[]>> = {};
            for (const via of PLUGIN_VIAS) outputs[via] = await runRow(lab, c, site, pods, version, via);
            assert.deepEqual(
              outputs["in-process"],
              outputs.exec,
              "in process, the ADD printed another result",
            );
          },
        });
      }
    });
  });
}
