/**
 * `galaxy demo`: Galaxy end to end on this machine without touching it. In a throwaway "node" network
 * namespace and a temporary folder it writes a galaxy.json (default network galaxy-flannel delegating to
 * galaxy-veth, plus Debian's bridge as a second network), starts `galaxy serve` standalone, adds two pods through
 * galaxy-sdn exactly as a container runtime does, shows their addresses and pings between them, deletes them,
 * and proves that nothing is left. Ctrl-C cleans up too. Exit 0 only when every step worked.
 * @module
 */
import { addNetworkList, delNetworkList, type RuntimeConf } from "../cni/invoke.ts";
import type { NetConfList, Result } from "../cni/version.ts";
import { requestDaemon } from "../cni/wire.ts";
import { addrAdd, linkSet, listLinks, listRoutes, runBatch } from "../netops/ip.ts";
import { runCommands } from "../netops/netns.ts";
import { addNamedNetns, deleteNamedNetns, listNamedNetns } from "../netops/netns_named.ts";
import { setSysctls } from "../netops/sysctl.ts";
import { isCompiled } from "./install.ts";
import { EXECUTABLE_NAMES, writeLaunchers } from "./launchers.ts";

const STANDARD_PLUGINS = ["/usr/lib/cni", "/opt/cni/bin"];
const FLANNEL_NETWORK = "198.18.48.0/20";
const FLANNEL_SUBNET = "198.18.50.1/24";
const SECOND_SUBNET = "198.18.60.0/24";
const NODE_ADDRESS = "198.18.63.1";

interface Step {
  ok: boolean;
  detail: string;
}

function findStandardPlugins(): string | undefined {
  return STANDARD_PLUGINS.find((dir) => {
    try {
      return Deno.statSync(`${dir}/host-local`).isFile && Deno.statSync(`${dir}/bridge`).isFile;
    } catch {
      return false;
    }
  });
}

function which(name: string): boolean {
  return (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}

/** What is missing to run the demo here, as advice to the user; empty when nothing is. */
export function missingPrerequisites(): string[] {
  const missing: string[] = [];
  if (Deno.uid() !== 0) missing.push("root: network namespaces need it; run the demo as root (sudo)");
  if (!which("ip")) missing.push("iproute2's ip: apt-get install iproute2");
  if (!which("ping")) missing.push("ping: apt-get install iputils-ping");
  if (!findStandardPlugins()) {
    missing.push(
      "the standard CNI plugins (host-local, bridge): apt-get install containernetworking-plugins",
    );
  }
  return missing;
}

/** A namespace the demo made: its name and its path. */
interface DemoNetns {
  name: string;
  path: string;
}

/**
 * Everything the demo made, so that it can all be removed whatever happens. Every kernel change goes through
 * netops, as everywhere else.
 */
class Scene {
  readonly prefix = `galaxy-demo-${Deno.pid}`;
  readonly namespaces: string[] = [];
  dir = "";
  daemon?: Deno.ChildProcess;
  daemonLog: Promise<string> = Promise.resolve("");

  async netns(name: string): Promise<DemoNetns> {
    const full = `${this.prefix}-${name}`;
    const path = await addNamedNetns(full);
    this.namespaces.push(full);
    await runBatch(path, [linkSet("lo", { up: true })]);
    return { name: full, path };
  }

  async cleanup(): Promise<void> {
    if (this.daemon) {
      try {
        this.daemon.kill("SIGTERM");
      } catch {
        // already gone
      }
      await this.daemon.status;
      this.daemon = undefined;
    }
    for (const ns of this.namespaces.splice(0).reverse()) await deleteNamedNetns(ns).catch(() => {});
    if (this.dir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

function say(line: string): void {
  console.log(line);
}

async function step<T>(n: number, total: number, title: string, fn: () => Promise<T>): Promise<T> {
  say(`[${n}/${total}] ${title}`);
  return await fn();
}

async function binDir(scene: Scene): Promise<string> {
  const dir = `${scene.dir}/bin`;
  if (isCompiled()) {
    await Deno.mkdir(dir);
    for (const name of EXECUTABLE_NAMES) await Deno.symlink(Deno.execPath(), `${dir}/${name}`);
  } else {
    await writeLaunchers(dir);
  }
  return dir;
}

async function waitReady(socket: string, daemon: Deno.ChildProcess): Promise<void> {
  let exited = false;
  daemon.status.then(() => exited = true);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !exited) {
    try {
      if ((await requestDaemon(socket, "/readyz", { timeoutMs: 1000 })).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    exited ? "galaxy serve exited during start-up" : "galaxy serve did not become ready in 20 s",
  );
}

function addressesOf(result: Result): { iface: string; address: string; gateway: string }[] {
  return (result.ips ?? []).map((ip) => ({
    iface: ip.interface === undefined ? "?" : result.interfaces?.[ip.interface]?.name ?? "?",
    address: ip.address,
    gateway: ip.gateway ?? "-",
  }));
}

async function ping(from: DemoNetns, to: string): Promise<Step> {
  const [r] = await runCommands(from.path, [{ argv: ["ping", "-c", "2", "-i", "0.2", "-W", "2", to] }]);
  const summary = /(\d+)% packet loss/.exec(r.stdout)?.[0] ?? r.stderr.trim();
  return { ok: r.code === 0, detail: summary };
}

async function leftovers(scene: Scene, node: DemoNetns, pods: DemoNetns[]): Promise<string[]> {
  const found: string[] = [];
  for (const ns of pods) {
    const extra = (await listLinks(ns.path)).map((l) => l.name).filter((n) => n !== "lo");
    if (extra.length) found.push(`links in ${ns.name}: ${extra.join(", ")}`);
  }
  const veths = (await listLinks(node.path)).map((l) => l.name).filter((n) =>
    n.startsWith("v-h") || n.startsWith("veth")
  );
  if (veths.length) found.push(`host-side links in the node namespace: ${veths.join(", ")}`);
  const routes = await listRoutes(node.path);
  const podRoutes = routes.filter((r) => r.dst.startsWith("198.18.50."));
  if (podRoutes.length) {
    found.push(`pod routes in the node namespace: ${podRoutes.map((r) => r.dst).join(", ")}`);
  }
  for (const dir of ["ipam", "state", "flannel"]) {
    for (const file of await listFiles(`${scene.dir}/${dir}`)) {
      if (/\/(lock|last_reserved_ip\.\d+)$/.test(file)) continue; // host-local's own bookkeeping
      found.push(`file ${file.slice(scene.dir.length + 1)}`);
    }
  }
  return found;
}

async function listFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) files.push(...await listFiles(path));
      else files.push(path);
    }
  } catch {
    // no such folder: nothing in it
  }
  return files;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => ("    " + r.map((cell, c) => cell.padEnd(widths[c])).join("   ")).trimEnd()).join(
    "\n",
  );
}

async function demo(scene: Scene): Promise<boolean> {
  const total = 7;
  const standard = findStandardPlugins()!;
  scene.dir = await Deno.makeTempDir({ prefix: "galaxy-demo-" });
  const node = await step(
    1,
    total,
    "creating a throwaway node namespace and two pod namespaces",
    async () => {
      const node = await scene.netns("node");
      // The node forwards between its pods, as a real node does (galaxy serve --ip-forward will set this).
      await setSysctls(node.path, { "net.ipv4.ip_forward": "1" });
      // An address of the node itself, for the pod → node ping.
      await runBatch(node.path, [addrAdd(`${NODE_ADDRESS}/32`, "lo")]);
      return node;
    },
  );
  const pods = [await scene.netns("pod-a"), await scene.netns("pod-b")];

  const bin = await binDir(scene);
  const socket = `${scene.dir}/run/galaxy.sock`;
  await step(2, total, "writing galaxy.json and flannel's subnet.env", async () => {
    await Deno.mkdir(`${scene.dir}/etc`);
    await Deno.writeTextFile(
      `${scene.dir}/etc/subnet.env`,
      `FLANNEL_NETWORK=${FLANNEL_NETWORK}\nFLANNEL_SUBNET=${FLANNEL_SUBNET}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`,
    );
    const galaxyJson = {
      NetworkConf: [
        {
          name: "overlay",
          type: "galaxy-flannel",
          subnetFile: `${scene.dir}/etc/subnet.env`,
          dataDir: `${scene.dir}/flannel`,
          delegate: { type: "galaxy-veth" },
          ipam: { dataDir: `${scene.dir}/ipam` },
        },
        {
          name: "second",
          type: "bridge",
          bridge: "gdemo0",
          ipam: { type: "host-local", dataDir: `${scene.dir}/ipam`, ranges: [[{ subnet: SECOND_SUBNET }]] },
        },
      ],
      DefaultNetworks: ["overlay", "second"],
    };
    await Deno.writeTextFile(`${scene.dir}/etc/galaxy.json`, JSON.stringify(galaxyJson, null, 2));
  });

  await step(3, total, "starting galaxy serve (standalone: no apiserver) in the node namespace", async () => {
    const args = [
      "netns",
      "exec",
      node.name,
      `${bin}/galaxy`,
      "serve",
      `--json-config-path=${scene.dir}/etc/galaxy.json`,
      `--network-conf-dir=${scene.dir}/etc/net.d`,
      `--cni-paths=${bin},${standard}`,
      `--socket-path=${socket}`,
      `--state-dir=${scene.dir}/state`,
      // The GC's folders and runtime socket default to the node's own: the demo keeps to its scene.
      `--gc-dirs=${scene.dir}/state`,
      `--flannel-allocated-ip-dir=${scene.dir}/gc-ipam`,
      `--container-runtime-endpoint=unix://${scene.dir}/no-runtime.sock`,
      "--hostname-override=demo-node",
    ];
    scene.daemon = new Deno.Command("ip", { args, stdin: "null", stdout: "null", stderr: "piped" }).spawn();
    scene.daemonLog = new Response(scene.daemon.stderr).text();
    await waitReady(socket, scene.daemon);
  });

  const list: NetConfList = {
    cniVersion: "1.1.0",
    name: "galaxy-sdn",
    plugins: [{ type: "galaxy-sdn", socketPath: socket }],
  };
  const options = { path: [bin], cacheDir: `${scene.dir}/runtime-cache` };
  const attachments: RuntimeConf[] = pods.map((ns, i) => ({
    // Runtimes use 64 hex digits; Galaxy names host interfaces after the first 9.
    containerId: crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", ""),
    netns: ns.path,
    ifname: "eth0",
    args: [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "demo"], [
      "K8S_POD_NAME",
      i === 0 ? "pod-a" : "pod-b",
    ]],
  }));
  const results = await step(
    4,
    total,
    "adding both pods through galaxy-sdn, as a container runtime does",
    async () => {
      const out: Result[] = [];
      for (const rt of attachments) out.push(await addNetworkList(list, rt, options));
      return out;
    },
  );
  const rows = [["pod", "interface", "address", "gateway"]];
  results.forEach((r, i) => {
    for (const a of addressesOf(r)) {
      if (a.iface !== "?" && !a.iface.startsWith("v-h")) {
        rows.push([i ? "pod-b" : "pod-a", a.iface, a.address, a.gateway]);
      }
    }
  });
  say(table(rows));

  const checks = await step(5, total, "pinging pod ↔ pod and node ↔ pod", async () => {
    const ipOf = (r: Result, iface: string) =>
      addressesOf(r).find((a) => a.iface === iface)?.address.split("/")[0] ?? "";
    const [a, b] = results;
    const list: [string, Promise<Step>][] = [
      [`pod-a → pod-b over the overlay (${ipOf(b, "eth0")})`, ping(pods[0], ipOf(b, "eth0"))],
      [`pod-b → pod-a over the overlay (${ipOf(a, "eth0")})`, ping(pods[1], ipOf(a, "eth0"))],
      [`pod-a → pod-b over the second network (${ipOf(b, "eth1")})`, ping(pods[0], ipOf(b, "eth1"))],
      [`node → pod-a (${ipOf(a, "eth0")})`, ping(node, ipOf(a, "eth0"))],
      [`pod-b → node (${NODE_ADDRESS})`, ping(pods[1], NODE_ADDRESS)],
    ];
    const done: [string, Step][] = [];
    for (const [title, p] of list) done.push([title, await p]);
    for (const [title, s] of done) say(`    ${s.ok ? "ok  " : "FAIL"}  ${title}: ${s.detail}`);
    return done.every(([, s]) => s.ok);
  });

  await step(6, total, "deleting both pods through galaxy-sdn", async () => {
    for (const rt of attachments) await delNetworkList(list, rt, options);
  });

  const left = await step(
    7,
    total,
    "checking that nothing is left (links, routes, addresses, IPAM and state files)",
    () => leftovers(scene, node, pods),
  );
  if (left.length) { for (const l of left) say(`    left behind: ${l}`); }
  else say("    nothing left behind");
  return checks && left.length === 0;
}

/** Runs the demo; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args.length) {
    console.error(`galaxy demo: unexpected argument "${args[0]}"\nUsage: galaxy demo`);
    return 2;
  }
  const missing = missingPrerequisites();
  if (missing.length) {
    console.error("galaxy demo cannot run here yet. It needs:");
    for (const m of missing) console.error(`  - ${m}`);
    return 1;
  }
  const scene = new Scene();
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    console.error("\ninterrupted: cleaning up...");
    scene.cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let ok = false;
  try {
    ok = await demo(scene);
  } catch (e) {
    console.error(`galaxy demo failed: ${(e as Error).message}`);
    if (scene.daemon) {
      try {
        scene.daemon.kill("SIGTERM");
      } catch {
        // already gone
      }
      const log = (await scene.daemonLog).trim().split("\n").slice(-15).join("\n");
      scene.daemon = undefined;
      if (log) console.error(`last lines of galaxy serve's log:\n${log}`);
    }
  } finally {
    if (!interrupted) {
      await scene.cleanup();
      const ours = (await listNamedNetns().catch(() => [])).filter((n) => n.startsWith(scene.prefix));
      say(ours.length ? `namespaces left: ${ours.join(", ")}` : "removed the demo's namespaces and files");
      if (ours.length) ok = false;
    }
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  say(ok ? "demo succeeded" : "demo FAILED");
  return ok ? 0 : 1;
}
