/**
 * Port mapping end to end on the real kernel: `galaxy serve` in a lab node namespace with a fake apiserver,
 * pods on a bridge network, an "outside" namespace routed through the node, and an echo server in each pod.
 * Traffic over TCP and UDP to nodeIP:hostPort from outside, hairpin from the pod, localhost from the node;
 * the rules, port files and held sockets read back; a conflicting hostPort; random ports written back; a
 * daemon restart that restores the mappings and removes a stale chain; DEL that leaves nothing.
 * Addresses from 198.18.0.0/15; every namespace is the lab's.
 * @module
 */
import assert from "node:assert/strict";
import {
  type Daemon,
  runtimeCall,
  shimList,
  startDaemon,
  Started,
  startFakeApiserver,
} from "../helpers/daemon.ts";
import { REPO_ROOT } from "../helpers/launchers.ts";
import { kernelTest, type Lab, type Netns, pathExists, runCommand, withLab } from "../helpers/netns.ts";
import { parseIptablesSave } from "../../netops/iptables.ts";
import { hostportChainName, PORTMAPPING_ANNOTATION } from "../../daemon/portmap_rules.ts";

const NODE = "node-a";
const NODE_IP = "198.18.31.1";
const ECHO = `${REPO_ROOT}/tests/helpers/echo.ts`;

function pod(name: string, ports: Record<string, unknown>[], annotations: Record<string, string> = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", annotations },
    spec: { nodeName: NODE, containers: [{ name: "app", image: "x", ports }] },
  };
}

async function startEcho(lab: Lab, ns: Netns, tag: string, ports: number[]): Promise<Started> {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns.name,
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      ECHO,
      "serve",
      ...ports.map(String),
    ],
    env: { ECHO_TAG: tag },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const started = new Started(child);
  // Ready when it answers on its own loopback.
  for (let i = 0; i < 100; i++) {
    const r = await lab.tryExec(ns, Deno.execPath(), [
      "run",
      "-A",
      "--quiet",
      ECHO,
      "tcp",
      "127.0.0.1",
      String(ports[0]),
      "x",
    ]);
    if (r.code === 0) return started;
    await new Promise((r) => setTimeout(r, 100));
  }
  await started.stop("SIGKILL");
  throw new Error(`echo server in ${ns.name} did not start`);
}

async function send(lab: Lab, from: Netns, proto: "tcp" | "udp", host: string, port: number, msg: string) {
  const r = await lab.tryExec(from, Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    ECHO,
    proto,
    host,
    String(port),
    msg,
  ]);
  return { ok: r.code === 0, out: r.stdout.trim() };
}

async function nat(lab: Lab) {
  const text = await lab.exec(lab.node, "iptables-save", ["-t", "nat"]);
  return parseIptablesSave(text).find((t) => t.table === "nat")!;
}

async function hostportChainsOf(lab: Lab): Promise<string[]> {
  return [...(await nat(lab)).chains.keys()].filter((c) => c.startsWith("KUBE-HP-")).sort();
}

async function jumps(lab: Lab): Promise<string[]> {
  const rules = (await nat(lab)).chains.get("KUBE-HOSTPORTS")?.rules ?? [];
  return rules.map((r) => r.args[r.args.indexOf("-j") + 1]).sort();
}

async function listening(lab: Lab, proto: "t" | "u", port: number): Promise<boolean> {
  const out = await lab.exec(lab.node, "ss", ["-Hn", `-${proto}l`, "sport", "=", `:${port}`]);
  return out.trim() !== "";
}

function bridgeNet(lab: Lab) {
  return {
    name: "bridge-net",
    type: "bridge",
    bridge: "gtbr0",
    isGateway: true,
    // With br_netfilter, a DNATed packet back to the pod it came from is bridged out of its own port.
    hairpinMode: true,
    ipam: {
      type: "host-local",
      dataDir: `${lab.dir}/ipam`,
      ranges: [[{ subnet: "198.18.30.0/24" }]],
      routes: [{ dst: "0.0.0.0/0" }],
    },
  };
}

async function outsideNamespace(lab: Lab): Promise<Netns> {
  const outside = await lab.pod("outside");
  await lab.ip(lab.node, [
    "link",
    "add",
    "gtout0",
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    outside.name,
  ]);
  await lab.ip(lab.node, ["addr", "add", `${NODE_IP}/24`, "dev", "gtout0"]);
  await lab.ip(lab.node, ["link", "set", "gtout0", "up"]);
  await lab.ip(outside, ["addr", "add", "198.18.31.2/24", "dev", "eth0"]);
  await lab.ip(outside, ["link", "set", "eth0", "up"]);
  await lab.ip(outside, ["route", "add", "default", "via", NODE_IP]);
  await lab.exec(lab.node, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
  return outside;
}

kernelTest(
  "e2e: hostPort and random ports: outside, hairpin, localhost, conflict, restart, DEL",
  async () => {
    await withLab("portmap", async (lab) => {
      const api = await startFakeApiserver(lab);
      const servers: Started[] = [];
      let daemon: Daemon | undefined;
      const galaxyJson = {
        NetworkConf: [bridgeNet(lab)],
        DefaultNetworks: ["bridge-net"],
      };
      const portDir = `${lab.dir}/ports`;
      const start = () =>
        startDaemon(lab, { galaxyJson, kubeconfig: api.kubeconfig, flags: [`--port-dir=${portDir}`] });
      try {
        const outside = await outsideNamespace(lab);
        daemon = await start();
        const list = shimList(daemon.socket);

        // A pod with a TCP and a UDP hostPort, given by the spec and again by runtimeConfig (one set).
        const web = await lab.pod("web");
        await api.putPod(pod("web", [
          { containerPort: 8080, hostPort: 30080, protocol: "TCP" },
          { containerPort: 8081, hostPort: 30081, protocol: "UDP" },
          { containerPort: 9000 },
        ]));
        const webCall = { containerId: "cweb", pod: web, k8s: { namespace: "default", name: "web" } };
        const added = await runtimeCall(lab, "add", {
          ...webCall,
          list,
          capabilityArgs: {
            portMappings: [
              { hostPort: 30080, containerPort: 8080, protocol: "tcp" },
              { hostPort: 30081, containerPort: 8081, protocol: "udp" },
            ],
          },
        });
        assert.equal(added.code, 0, `ADD web: ${added.stdout}\n${added.stderr}`);
        const webIP = (await lab.addresses(web, "eth0"))[0].split("/")[0];
        servers.push(await startEcho(lab, web, "web", [8080, 8081]));

        const chains = [
          hostportChainName({ hostPort: 30080, protocol: "TCP", containerPort: 8080, podName: "web" }),
          hostportChainName({ hostPort: 30081, protocol: "UDP", containerPort: 8081, podName: "web" }),
        ].sort();
        assert.deepEqual(await hostportChainsOf(lab), chains);
        assert.deepEqual(
          await jumps(lab),
          chains,
          "one jump per port although spec and runtimeConfig both name it",
        );
        const file = JSON.parse(await Deno.readTextFile(`${portDir}/cweb`));
        assert.deepEqual(file.map((p: { hostPort: number }) => p.hostPort).sort(), [30080, 30081]);
        assert.equal(file[0].podIP, webIP);
        assert.ok(await listening(lab, "t", 30080), "the daemon holds TCP 30080");
        assert.ok(await listening(lab, "u", 30081), "the daemon holds UDP 30081");

        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30080, "hello"), {
          ok: true,
          out: "web:hello",
        });
        assert.deepEqual(await send(lab, outside, "udp", NODE_IP, 30081, "dgram"), {
          ok: true,
          out: "web:dgram",
        });
        assert.deepEqual(await send(lab, web, "tcp", NODE_IP, 30080, "hairpin"), {
          ok: true,
          out: "web:hairpin",
        });
        assert.deepEqual(await send(lab, web, "udp", NODE_IP, 30081, "hp-udp"), {
          ok: true,
          out: "web:hp-udp",
        });
        assert.deepEqual(await send(lab, lab.node, "tcp", "127.0.0.1", 30080, "local"), {
          ok: true,
          out: "web:local",
        });

        // A second pod wanting the same hostPort: a clear error, and nothing of it left.
        const clash = await lab.pod("clash");
        await api.putPod(pod("clash", [{ containerPort: 80, hostPort: 30080 }]));
        const clashCall = { containerId: "cclash", pod: clash, k8s: { namespace: "default", name: "clash" } };
        const refused = await runtimeCall(lab, "add", { ...clashCall, list });
        assert.equal(refused.code, 1);
        assert.match(refused.stdout, /hostPort 30080\/TCP .*already in use/);
        assert.ok(!(await pathExists(`${portDir}/cclash`)), "no port file for the refused pod");
        assert.ok(!(await pathExists(`${daemon.stateDir}/cclash`)), "no state file for the refused pod");
        assert.deepEqual(await lab.addresses(clash, "eth0"), [], "its network was rolled back");
        assert.deepEqual(await hostportChainsOf(lab), chains);
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30080, "still"), {
          ok: true,
          out: "web:still",
        });

        // Random ports: the annotation key asks for them; the chosen ports are written back and reachable.
        const rand = await lab.pod("rand");
        await api.putPod(pod("rand", [{ containerPort: 9090 }, { containerPort: 9091, protocol: "UDP" }], {
          [PORTMAPPING_ANNOTATION]: "",
        }));
        const randCall = { containerId: "crand", pod: rand, k8s: { namespace: "default", name: "rand" } };
        const randAdded = await runtimeCall(lab, "add", { ...randCall, list });
        assert.equal(randAdded.code, 0, randAdded.stdout);
        const patch = (await api.patches()).find((p) =>
          p.name === "rand" && p.body.metadata.annotations[PORTMAPPING_ANNOTATION]
        );
        assert.ok(patch, "the annotation was patched before ADD returned");
        const randPorts = JSON.parse(patch.body.metadata.annotations[PORTMAPPING_ANNOTATION]) as {
          hostPort: number;
          containerPort: number;
          protocol: string;
        }[];
        const tcpPort = randPorts.find((p) => p.containerPort === 9090)!.hostPort;
        const udpPort = randPorts.find((p) => p.containerPort === 9091)!.hostPort;
        assert.ok(tcpPort > 0 && udpPort > 0, `kernel-chosen ports: ${JSON.stringify(randPorts)}`);
        servers.push(await startEcho(lab, rand, "rand", [9090, 9091]));
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, tcpPort, "r"), { ok: true, out: "rand:r" });
        assert.deepEqual(await send(lab, outside, "udp", NODE_IP, udpPort, "u"), { ok: true, out: "rand:u" });

        // Ports only in runtimeConfig (a runtime outside Kubernetes, or a spec the daemon never saw): the same
        // code maps them.
        const rc = await lab.pod("rc");
        await api.putPod(pod("rc", []));
        const rcCall = { containerId: "crc", pod: rc, k8s: { namespace: "default", name: "rc" } };
        const rcAdded = await runtimeCall(lab, "add", {
          ...rcCall,
          list,
          capabilityArgs: { portMappings: [{ hostPort: 30090, containerPort: 8090, protocol: "tcp" }] },
        });
        assert.equal(rcAdded.code, 0, rcAdded.stdout);
        servers.push(await startEcho(lab, rc, "rc", [8090]));
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30090, "cap"), { ok: true, out: "rc:cap" });
        const delRc = await runtimeCall(lab, "del", { ...rcCall, list });
        assert.equal(delRc.code, 0, delRc.stdout);
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30090, "x"), { ok: false, out: "refused" });

        // Restart: the kubelet has reported the pod IPs; a stale chain (a removed pod's) and a flushed
        // KUBE-HOSTPORTS wait for the new daemon, which restores without any new ADD.
        const randIP = (await lab.addresses(rand, "eth0"))[0].split("/")[0];
        const stored = await api.putPod({
          ...pod("web", [
            { containerPort: 8080, hostPort: 30080, protocol: "TCP" },
            { containerPort: 8081, hostPort: 30081, protocol: "UDP" },
          ]),
          status: { podIP: webIP, phase: "Running" },
        });
        assert.ok(stored);
        await api.putPod({
          ...pod("rand", [{ containerPort: 9090 }, { containerPort: 9091, protocol: "UDP" }], {
            [PORTMAPPING_ANNOTATION]: patch.body.metadata.annotations[PORTMAPPING_ANNOTATION],
          }),
          status: { podIP: randIP, phase: "Running" },
        });
        const out = await daemon.process.stop("SIGTERM");
        assert.equal(out.code, 0, out.stderr);
        daemon = undefined;
        assert.ok(!(await listening(lab, "t", 30080)), "sockets close with the daemon");
        const stale = hostportChainName({
          hostPort: 80,
          protocol: "TCP",
          containerPort: 80,
          podName: "deletedpod-1",
        });
        await lab.exec(lab.node, "iptables", ["-t", "nat", "-N", stale]);
        await lab.exec(lab.node, "iptables", [
          "-t",
          "nat",
          "-A",
          "KUBE-HOSTPORTS",
          "-p",
          "tcp",
          "--dport",
          "80",
          "-j",
          stale,
        ]);
        await lab.exec(lab.node, "iptables", ["-t", "nat", "-F", "KUBE-HOSTPORTS"]);
        // rand as a Galaxy that wrote no port file left it: restored from its annotation instead.
        await Deno.remove(`${portDir}/crand`);
        // A port file of a pod deleted while the daemon was down: its rules go, the file waits for DEL/GC.
        const ghost = {
          hostPort: 30099,
          containerPort: 99,
          protocol: "TCP",
          podName: "ghost",
          podIP: "198.18.30.99",
        };
        await Deno.writeTextFile(`${portDir}/cghost`, JSON.stringify([ghost]));
        await lab.exec(lab.node, "iptables", ["-t", "nat", "-N", hostportChainName(ghost)]);
        daemon = await start();
        assert.ok(
          !(await hostportChainsOf(lab)).includes(hostportChainName(ghost)),
          "the gone pod's chain too",
        );
        assert.ok(!(await hostportChainsOf(lab)).includes(stale), "the stale chain is gone");
        assert.equal((await jumps(lab)).length, 4, "KUBE-HOSTPORTS rebuilt: two ports of web, two of rand");
        assert.ok(await listening(lab, "t", 30080), "the socket is held again");
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30080, "back"), {
          ok: true,
          out: "web:back",
        });
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, tcpPort, "back"), {
          ok: true,
          out: "rand:back",
        });

        // DEL: refused afterwards, and no chain, jump, socket or port file left.
        const del = await runtimeCall(lab, "del", { ...webCall, list });
        assert.equal(del.code, 0, del.stdout);
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30080, "gone"), {
          ok: false,
          out: "refused",
        });
        assert.equal((await send(lab, outside, "udp", NODE_IP, 30081, "gone")).ok, false);
        assert.ok(!(await listening(lab, "t", 30080)) && !(await listening(lab, "u", 30081)));
        assert.ok(!(await pathExists(`${portDir}/cweb`)));
        for (const c of chains) assert.ok(!(await hostportChainsOf(lab)).includes(c), `${c} removed`);
        assert.equal((await jumps(lab)).length, 2);
        const again = await runtimeCall(lab, "del", { ...webCall, list });
        assert.equal(again.code, 0, "DEL is idempotent");

        // DEL of the pod restored without a port file: found by its name in CNI_ARGS.
        const delRand = await runtimeCall(lab, "del", { ...randCall, list });
        assert.equal(delRand.code, 0, delRand.stdout);
        assert.deepEqual(await hostportChainsOf(lab), []);
        assert.deepEqual(await jumps(lab), []);
        assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, tcpPort, "gone"), {
          ok: false,
          out: "refused",
        });

        // DEL from the port file alone (pod and state gone): the file goes, DEL succeeds.
        const ghostNs = await lab.pod("ghost");
        const delGhost = await runtimeCall(lab, "del", {
          containerId: "cghost",
          pod: ghostNs,
          k8s: { namespace: "default", name: "ghost" },
          list,
        });
        assert.equal(delGhost.code, 0, delGhost.stdout);
        assert.ok(!(await pathExists(`${portDir}/cghost`)));
        assert.deepEqual([...Deno.readDirSync(portDir)].filter((e) => !e.name.startsWith(".")), []);

        // Nothing of ours reached the host namespace (reading it changes nothing).
        for (const save of ["iptables-nft-save", "iptables-legacy-save"]) {
          const host = await runCommand(save, ["-t", "nat"]);
          assert.ok(
            !host.stdout.includes("GALAXY-HOSTPORT-MASQ"),
            `${save} of the host shows no rule of ours`,
          );
        }

        const stopped = await daemon.process.stop("SIGTERM");
        assert.equal(stopped.code, 0, stopped.stderr);
        daemon = undefined;
      } finally {
        for (const s of servers) await s.stop("SIGKILL");
        if (daemon) {
          const out = await daemon.process.stop("SIGKILL");
          if (out.stderr) console.log(out.stderr.split("\n").slice(-40).join("\n"));
        }
        await api.process.stop("SIGTERM");
      }
    });
  },
);

kernelTest("e2e: legacy backend, and a hostPort a process holds fails the ADD naming it", async () => {
  await withLab("portmapleg", async (lab) => {
    const api = await startFakeApiserver(lab);
    const servers: Started[] = [];
    let daemon: Daemon | undefined;
    try {
      const outside = await outsideNamespace(lab);
      daemon = await startDaemon(lab, {
        galaxyJson: { NetworkConf: [bridgeNet(lab)], DefaultNetworks: ["bridge-net"] },
        kubeconfig: api.kubeconfig,
        flags: [`--port-dir=${lab.dir}/ports`, "--iptables-backend=legacy"],
        env: { XTABLES_LOCKFILE: `${lab.dir}/xtables.lock` },
      });
      const list = shimList(daemon.socket);
      servers.push(await startEcho(lab, lab.node, "node", [30070]));

      const busy = await lab.pod("busy");
      await api.putPod(pod("busy", [{ containerPort: 80, hostPort: 30070, protocol: "UDP" }]));
      const refused = await runtimeCall(lab, "add", {
        containerId: "cbusy",
        pod: busy,
        k8s: { namespace: "default", name: "busy" },
        list,
      });
      assert.equal(refused.code, 1);
      assert.match(
        refused.stdout,
        /hostPort 30070\/UDP on 0\.0\.0\.0 is already in use \(by another pod or process\)/,
      );
      assert.ok(!(await pathExists(`${lab.dir}/ports/cbusy`)));
      assert.deepEqual(await lab.addresses(busy, "eth0"), []);

      const leg = await lab.pod("leg");
      await api.putPod(pod("leg", [{ containerPort: 8080, hostPort: 30071 }]));
      const call = { containerId: "cleg", pod: leg, k8s: { namespace: "default", name: "leg" } };
      const added = await runtimeCall(lab, "add", { ...call, list });
      assert.equal(added.code, 0, added.stdout);
      servers.push(await startEcho(lab, leg, "leg", [8080]));
      assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30071, "l"), { ok: true, out: "leg:l" });
      const chain = hostportChainName({
        hostPort: 30071,
        protocol: "TCP",
        containerPort: 8080,
        podName: "leg",
      });
      const legacy = await lab.exec(lab.node, "iptables-legacy-save", ["-t", "nat"]);
      const nft = await lab.exec(lab.node, "iptables-nft-save", ["-t", "nat"]);
      assert.ok(legacy.includes(`:${chain} `), "the rules are in the legacy tables");
      assert.ok(!nft.includes("KUBE-HP-"), "and not in nft");

      const del = await runtimeCall(lab, "del", { ...call, list });
      assert.equal(del.code, 0, del.stdout);
      assert.ok(!(await lab.exec(lab.node, "iptables-legacy-save", ["-t", "nat"])).includes("KUBE-HP-"));
      assert.deepEqual(await send(lab, outside, "tcp", NODE_IP, 30071, "x"), { ok: false, out: "refused" });
      const out = await daemon.process.stop("SIGTERM");
      assert.equal(out.code, 0, out.stderr);
      daemon = undefined;
    } finally {
      for (const s of servers) await s.stop("SIGKILL");
      if (daemon) {
        const out = await daemon.process.stop("SIGKILL");
        if (out.stderr) console.log(out.stderr.split("\n").slice(-40).join("\n"));
      }
      await api.process.stop("SIGTERM");
    }
  });
});
