/**
 * Port-mapping scenarios run as a process inside a test's node namespace (the sockets the mapper holds must be
 * bound there, never in the host namespace): `portmap_scenarios.ts <port-dir>`. Each scenario asserts on the
 * kernel (iptables-save, ss, /proc/sys) and the port folder, and prints `ok <name>`; the first failure exits 1
 * with its stack. Expects a veth `gtpm0` with 198.18.40.1/24 and a device `gtother0` in the namespace.
 * @module
 */
import assert from "node:assert/strict";
import { CniError } from "../../cni/spec.ts";
import { Iptables, parseIptablesSave } from "../../netops/iptables.ts";
import { holdHostPort } from "../../daemon/host_ports.ts";
import { PortMapper, type PortmapPods } from "../../daemon/portmap.ts";
import { hostportChainName, PORTMAPPING_ANNOTATION } from "../../daemon/portmap_rules.ts";

const [portDir] = Deno.args;
const log = { info: () => {}, warn: (m: string) => console.error(`warn: ${m}`), v: () => {} };
const decoder = new TextDecoder();

async function sh(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${decoder.decode(out.stderr)}`);
  return decoder.decode(out.stdout);
}

async function nat() {
  return parseIptablesSave(await sh("iptables-save", "-t", "nat")).find((t) => t.table === "nat")!;
}

async function hpChains(): Promise<string[]> {
  return [...(await nat()).chains.keys()].filter((c) => c.startsWith("KUBE-HP-"));
}

async function listeners(port: number): Promise<string[]> {
  return (await sh("ss", "-Hntl", "sport", "=", `:${port}`)).trim().split("\n").filter(Boolean);
}

async function portFiles(): Promise<string[]> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(portDir)) if (!e.name.startsWith(".")) names.push(e.name);
    return names;
  } catch {
    return [];
  }
}

async function portIsFree(protocol: string, port: number): Promise<boolean> {
  try {
    (await holdHostPort(protocol, port)).close();
    return true;
  } catch {
    return false;
  }
}

function pod(name: string, ports: Record<string, unknown>[], annotations?: Record<string, string>) {
  return {
    metadata: { name, namespace: "default", annotations },
    spec: { containers: [{ name: "c", ports }] },
  };
}

const iptables = await Iptables.open();
const failingPods: PortmapPods = {
  setAnnotation: () => Promise.reject(new Error("apiserver says no")),
};
const patches: string[] = [];
const pods: PortmapPods = {
  setAnnotation: (_ns, _name, key, value) => {
    patches.push(`${key}=${value}`);
    return Promise.resolve();
  },
};

{
  // A failed annotation write leaves nothing: sockets, port file, chains, jumps.
  const mapper = new PortMapper({ portDir, iptables, masqueradeBit: 14, log, pods: failingPods });
  await assert.rejects(
    () =>
      mapper.setUp({
        containerId: "cfail",
        pod: pod("fail", [{ containerPort: 80 }, { containerPort: 81, hostPort: 31081 }], {
          [PORTMAPPING_ANNOTATION]: "",
        }),
        podIP: "198.18.40.2",
      }),
    (e) => e instanceof CniError && e.code === 11 && /cannot write tkestack.io\/portmapping/.test(e.message),
  );
  assert.deepEqual(await hpChains(), []);
  assert.deepEqual((await nat()).chains.get("KUBE-HOSTPORTS")?.rules ?? [], []);
  assert.deepEqual(await portFiles(), []);
  assert.ok(await portIsFree("TCP", 31081));
  await mapper.close();
  console.log("ok failed annotation write leaves nothing");
}

// As on a node without kube-proxy: our mapper makes KUBE-MARK-MASQ itself, with its own bit.
await sh("iptables", "-t", "nat", "-F", "KUBE-MARK-MASQ");
await sh("iptables", "-t", "nat", "-X", "KUBE-MARK-MASQ");
const mapper = new PortMapper({ portDir, iptables, masqueradeBit: 15, log, pods });
{
  // hostIP narrows the bind and the jump; the route_localnet lands on the pod's device only.
  const ports = await mapper.setUp({
    containerId: "chost",
    pod: pod("host", [{ containerPort: 80, hostPort: 31080, hostIP: "198.18.40.1" }]),
    podIP: "198.18.40.2",
  });
  assert.equal(ports[0].hostIP, "198.18.40.1");
  assert.deepEqual(await listeners(31080).then((l) => l.map((x) => x.split(/\s+/)[3])), [
    "198.18.40.1:31080",
  ]);
  const jump = (await nat()).chains.get("KUBE-HOSTPORTS")!.rules[0].args;
  assert.ok(jump.join(" ").includes("-d 198.18.40.1/32"), jump.join(" "));
  assert.equal((await Deno.readTextFile("/proc/sys/net/ipv4/conf/gtpm0/route_localnet")).trim(), "1");
  assert.equal((await Deno.readTextFile("/proc/sys/net/ipv4/conf/gtother0/route_localnet")).trim(), "0");
  // KUBE-MARK-MASQ made with the --masquerade-bit mark, as no kube-proxy made it.
  const markRule = (await nat()).chains.get("KUBE-MARK-MASQ")!.rules[0].text;
  assert.match(markRule, /0x8000\/0x8000/);
  const masq = (await nat()).chains.get("GALAXY-HOSTPORT-MASQ")!.rules.map((r) => r.text);
  assert.match(masq[0], /! --mark 0x8000\/0x8000 -j RETURN/, "the masquerade chain follows the new bit");
  console.log("ok hostIP, route_localnet, masquerade bit");

  await assert.rejects(
    () =>
      mapper.setUp({
        containerId: "cnotlocal",
        pod: pod("notlocal", [{ containerPort: 80, hostPort: 31082, hostIP: "198.18.41.9" }]),
        podIP: "198.18.40.3",
      }),
    /198\.18\.41\.9 is not an address of this node/,
  );
  assert.ok(!(await portFiles()).includes("cnotlocal"));
  await assert.rejects(
    () => mapper.setUp({ containerId: "cnoip", pod: pod("noip", [{ containerPort: 1, hostPort: 31083 }]) }),
    /no IPv4 address/,
  );
  console.log("ok non-local hostIP and missing pod IP refused");
}
{
  // A second ADD of one container and a new sandbox of the pod release what the earlier one held.
  const spec = pod("twice", [{ containerPort: 80, hostPort: 31090 }]);
  await mapper.setUp({ containerId: "ctwice", pod: spec, podIP: "198.18.40.4" });
  await mapper.setUp({ containerId: "ctwice", pod: spec, podIP: "198.18.40.4" });
  assert.equal((await listeners(31090)).length, 1, "one socket after a double ADD");
  await mapper.setUp({ containerId: "ctwice-new", pod: spec, podIP: "198.18.40.5" });
  assert.equal((await listeners(31090)).length, 1);
  assert.ok(!(await portFiles()).includes("ctwice"), "the old sandbox's port file went");
  assert.ok((await portFiles()).includes("ctwice-new"));
  const dnat = (await nat()).chains.get(
    hostportChainName({ hostPort: 31090, protocol: "TCP", containerPort: 80, podName: "twice" }),
  )!;
  assert.ok(dnat.rules.some((r) => r.text.includes("198.18.40.5:80")), "the chain points at the new sandbox");
  console.log("ok double ADD and new sandbox");
}
{
  // Base rules and KUBE-HOSTPORTS repaired by the periodic check.
  await sh("iptables", "-t", "nat", "-F", "KUBE-HOSTPORTS");
  await sh("iptables", "-t", "nat", "-F", "OUTPUT");
  await mapper.ensureRules();
  const t = await nat();
  assert.equal(t.chains.get("KUBE-HOSTPORTS")!.rules.length, 2, "host and twice jumps back");
  assert.ok(t.chains.get("OUTPUT")!.rules.some((r) => r.args.includes("KUBE-HOSTPORTS")));
  assert.equal(t.chains.get("PREROUTING")!.rules.filter((r) => r.args.includes("KUBE-HOSTPORTS")).length, 1);
  console.log("ok periodic repair");
}
{
  // Random ports: chosen by the kernel, written back; release frees them; release twice is fine.
  const ports = await mapper.setUp({
    containerId: "crandom",
    pod: pod("random", [{ containerPort: 80 }, { containerPort: 53, protocol: "UDP" }], {
      [PORTMAPPING_ANNOTATION]: "x",
    }),
    podIP: "198.18.40.6",
  });
  assert.ok(ports.every((p) => p.hostPort > 0));
  assert.deepEqual(JSON.parse(patches.at(-1)!.slice(PORTMAPPING_ANNOTATION.length + 1)), ports);
  await mapper.releasePortMappings("crandom");
  await mapper.releasePortMappings("crandom");
  assert.ok(await portIsFree("TCP", ports[0].hostPort));
  assert.ok(await portIsFree("UDP", ports[1].hostPort));
  console.log("ok random ports");
}
{
  // An empty port file (Go Galaxy left them) is removed by release.
  await Deno.writeTextFile(`${portDir}/cempty`, "");
  await mapper.releasePortMappings("cempty");
  assert.ok(!(await portFiles()).includes("cempty"));
  console.log("ok empty port file removed");
}
await mapper.releasePortMappings("chost");
await mapper.releasePortMappings("ctwice-new");
assert.deepEqual(await hpChains(), []);
assert.deepEqual(await portFiles(), []);
await mapper.close();
console.log("ok all released");
