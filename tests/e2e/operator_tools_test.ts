/**
 * The operator's tools against a real daemon in a lab: `galaxy plan` (with the fake apiserver), `galaxy audit`
 * and `--fix` (with the fake CRI and planted orphans), and failures written to the pod (Event, annotation,
 * per-plugin histogram).
 */
import assert from "node:assert/strict";
import { parseIptablesSave } from "../../netops/iptables.ts";
import { hostportChainName } from "../../daemon/portmap_rules.ts";
import type { AuditReport } from "../../daemon/audit.ts";
import type { Plan } from "../../daemon/plan.ts";
import { NETWORK_FAILURE_ANNOTATION } from "../../daemon/failure.ts";
import { type FakeCri, startFakeCri } from "../helpers/fake_cri.ts";
import { runtimeCall, shimList, startDaemon, startFakeApiserver } from "../helpers/daemon.ts";
import { grpcSkipReason, launcherDir } from "../helpers/launchers.ts";
import { kernelTest, type Lab, pathExists, runCommand, withLab } from "../helpers/netns.ts";

const NODE = "node-a";

function bridgeNet(lab: Lab, name: string, bridge: string, subnet: string) {
  return {
    name,
    type: "bridge",
    bridge,
    isGateway: true,
    ipam: { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[{ subnet }]] },
  };
}

function vlanNet(name: string, device: string) {
  return { name, type: "galaxy-k8s-vlan", device };
}

function pod(name: string, annotations: Record<string, string>, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", annotations, ...extra },
    spec: {
      nodeName: NODE,
      containers: [{
        name: "app",
        image: "x",
        ports: [{ containerPort: 80, hostPort: 18090, protocol: "TCP" }],
      }],
    },
  };
}

async function galaxy(args: string[]) {
  return await runCommand(`${await launcherDir()}/galaxy`, args);
}

/** What `ip -j` shows of the node namespace: links, addresses, routes of every table, rules. */
async function snapshot(lab: Lab): Promise<string> {
  const parts = [];
  for (const args of [["link"], ["addr"], ["route", "show", "table", "all"], ["rule"]]) {
    parts.push(await lab.exec(lab.node, "ip", ["-j", ...args]));
  }
  parts.push(await lab.exec(lab.node, "iptables-save", ["-t", "nat"]));
  return parts.join("\n").replace(/^# .*$/gm, "");
}

kernelTest(
  "e2e: galaxy plan shows sources, @ifname override, ipinfos conflict, missing uplink; changes nothing",
  async () => {
    await withLab("plan", async (lab) => {
      const api = await startFakeApiserver(lab);
      let daemon;
      try {
        await lab.ip(lab.node, ["link", "add", "gtup0", "type", "dummy"]).catch(() =>
          lab.ip(lab.node, ["link", "add", "gtup0", "type", "veth", "peer", "name", "gtup1"])
        );
        await Deno.mkdir(`${lab.dir}/net.d`);
        await Deno.writeTextFile(`${lab.dir}/net.d/05-broken.conf`, "{ not json");
        await Deno.writeTextFile(
          `${lab.dir}/net.d/10-macnet.conflist`,
          JSON.stringify({
            cniVersion: "1.0.0",
            name: "macnet",
            plugins: [{
              type: "macvlan",
              master: "gtup0",
              ipam: {
                type: "host-local",
                dataDir: `${lab.dir}/ipam`,
                ranges: [[{ subnet: "198.18.21.0/24" }]],
              },
            }],
          }),
        );
        // Another pod's state file holds the address the plan's ipinfos ask for.
        await Deno.mkdir(`${lab.dir}/state`, { recursive: true });
        await Deno.writeTextFile(
          `${lab.dir}/state/ctr-holder`,
          JSON.stringify([{
            NetworkType: "bridge-net",
            Args: {},
            Conf: bridgeNet(lab, "bridge-net", "gtbr0", "198.18.20.0/24"),
            IfName: "eth0",
            Result: { cniVersion: "1.1.0", ips: [{ address: "198.18.30.5/24" }] },
            Runtime: { netns: "", args: { K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "holder" }, path: [] },
          }]),
        );
        daemon = await startDaemon(lab, {
          galaxyJson: {
            NetworkConf: [
              bridgeNet(lab, "bridge-net", "gtbr0", "198.18.20.0/24"),
              vlanNet("vlan-net", "gtnoup0"),
            ],
            DefaultNetworks: ["bridge-net"],
          },
          kubeconfig: api.kubeconfig,
        });
        await api.putPod(pod("p1", {
          "k8s.v1.cni.cncf.io/networks": "bridge-net@net9, macnet@net1, vlan-net@net2",
          "k8s.v1.cni.galaxy.io/args":
            '{"common":{"ipinfos":[{"ip":"198.18.30.5/24","vlan":0,"gateway":"198.18.30.1"}]}}',
        }));
        await api.putPod(pod("p-unknown", { "k8s.v1.cni.cncf.io/networks": "no-such-net" }));

        const before = await snapshot(lab);
        const out = await galaxy(["plan", "--json", `--socket-path=${daemon.socket}`, "default/p1"]);
        const text = await galaxy(["plan", `--socket-path=${daemon.socket}`, "default/p1"]);
        const bad = await galaxy(["plan", `--socket-path=${daemon.socket}`, "default/p-unknown"]);
        const after = await snapshot(lab);
        assert.equal(after, before, "galaxy plan changed the node's kernel state");

        assert.equal(out.code, 0, out.stderr);
        const plan: Plan = JSON.parse(out.stdout);
        assert.equal(plan.format, 1);
        assert.equal(plan.attempted, true);
        assert.deepEqual(plan.attachments.map((a) => [a.network, a.ifname, a.sourceKind]), [
          ["bridge-net", "eth0", "galaxy.json"],
          ["macnet", "net1", "conf-dir"],
          ["vlan-net", "net2", "galaxy.json"],
        ]);
        const [a0, a1, a2] = plan.attachments;
        assert.equal(a0.overriddenIfname, "net9");
        assert.equal(a0.source, 'galaxy.json NetworkConf "bridge-net"');
        assert.equal(a0.cniVersionFrom, "negotiated");
        assert.ok(a0.plugins[0].supportedVersions?.includes(a0.cniVersion!), JSON.stringify(a0.plugins));
        assert.equal(a1.source, `${lab.dir}/net.d/10-macnet.conflist`);
        assert.equal(a1.cniVersion, "1.0.0");
        assert.equal(a1.cniVersionFrom, "config");
        assert.ok(a1.skippedFiles.some((s) => s.includes("05-broken.conf")), JSON.stringify(a1.skippedFiles));
        assert.equal(a1.overriddenIfname, undefined);
        for (const a of plan.attachments) {
          assert.equal(a.cniArgs.K8S_POD_NAME, "p1");
          assert.deepEqual(a.ipinfos, [{ ip: "198.18.30.5/24", vlan: 0, gateway: "198.18.30.1" }]);
          const taken = a.preconditions.find((p) => p.check === "ipinfos-free");
          assert.equal(taken?.ok, false);
          assert.match(taken!.detail, /ctr-holder of pod default\/holder/);
        }
        const uplink = a2.preconditions.find((p) => p.check === "uplink");
        assert.equal(uplink?.ok, false);
        assert.match(uplink!.detail, /gtnoup0/);
        assert.ok(plan.failing.some((f) => f.startsWith("vlan-net: uplink:")), JSON.stringify(plan.failing));
        assert.deepEqual(plan.ports, [{ hostPort: 18090, containerPort: 80, protocol: "TCP" }]);
        const ports = a0.capabilities.find((c) => c.name === "portMappings");
        assert.equal(ports?.handledBy, "galaxy port mapper");
        assert.equal(plan.policies, null);

        assert.equal(text.code, 0);
        assert.match(text.stdout, /#0 network "bridge-net" → eth0 \(the annotation asked for "net9"/);
        assert.match(text.stdout, /FAIL +uplink: .*gtnoup0/);
        assert.match(text.stdout, /skipped: .*05-broken\.conf/);

        assert.equal(bad.code, 1, bad.stdout);
        assert.match(bad.stderr, /network "no-such-net" .*not found/);
      } finally {
        if (daemon) await daemon.process.stop("SIGTERM");
        await api.process.stop("SIGTERM");
      }
    });
  },
);

async function natChains(lab: Lab): Promise<string[]> {
  const nat = parseIptablesSave(await lab.exec(lab.node, "iptables-save", ["-t", "nat"]));
  return [...(nat.find((t) => t.table === "nat")?.chains.keys() ?? [])];
}

async function old(path: string): Promise<void> {
  const t = new Date(Date.now() - 3600_000);
  await Deno.utime(path, t, t);
}

kernelTest(
  "e2e: galaxy audit finds each planted orphan and nothing else; --fix removes exactly those",
  async () => {
    await withLab("audit", async (lab) => {
      let cri: FakeCri | undefined;
      let daemon;
      try {
        const live = "ctr-live-0123456789";
        cri = await startFakeCri(`${lab.dir}/cri.sock`, [{
          id: live,
          pod: { namespace: "default", name: "live" },
        }]);
        const ipDir = `${lab.dir}/ipam/bridge-net`;
        const stateDir = `${lab.dir}/state`;
        const portDir = `${lab.dir}/ports`;
        const net = bridgeNet(lab, "bridge-net", "gtbr0", "198.18.20.0/24");
        const metricsPort = 19000 + Math.floor(Math.random() * 900);
        daemon = await startDaemon(lab, {
          galaxyJson: { NetworkConf: [net], DefaultNetworks: ["bridge-net"] },
          flags: [
            `--container-runtime-endpoint=unix://${lab.dir}/cri.sock`,
            `--flannel-allocated-ip-dir=${ipDir}`,
            `--port-dir=${portDir}`,
            "--gc-grace-period=1s",
            "--flannel-gc-interval=1h",
            `--metrics-address=127.0.0.1:${metricsPort}`,
          ],
        });
        const livePod = await lab.pod("live");
        const add = await runtimeCall(lab, "add", {
          containerId: live,
          pod: livePod,
          k8s: { namespace: "default", name: "live" },
          list: shimList(daemon.socket),
          capabilityArgs: { portMappings: [{ hostPort: 18091, containerPort: 80, protocol: "tcp" }] },
        });
        assert.equal(add.code, 0, `ADD failed: ${add.stdout}\n${add.stderr}`);
        const liveIp = JSON.parse(add.stdout).ips[0].address.split("/")[0];
        const liveChain = hostportChainName({
          hostPort: 18091,
          protocol: "TCP",
          containerPort: 80,
          podName: "live",
        });

        // The orphans.
        const orphanState = `${stateDir}/ctr-orphan-state`;
        await Deno.writeTextFile(
          orphanState,
          JSON.stringify([{
            NetworkType: "bridge-net",
            Args: { IgnoreUnknown: "1" },
            Conf: net,
            IfName: "eth0",
            Runtime: {
              netns: "",
              args: { K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "gone" },
              path: [await launcherDir(), "/usr/lib/cni"],
            },
          }]),
        );
        await lab.ip(lab.node, [
          "link",
          "add",
          "v-h0badc0de1",
          "type",
          "veth",
          "peer",
          "name",
          "v-c0badc0de1",
        ]);
        const staleChain = "KUBE-HP-AAAAAAAAAAAAAAAA";
        await lab.exec(lab.node, "iptables", ["-t", "nat", "-N", staleChain]);
        const orphanIp = `${ipDir}/198.18.20.200`;
        await Deno.writeTextFile(orphanIp, "ctr-gone-ip\neth0");
        for (
          const p of [
            orphanState,
            orphanIp,
            `${stateDir}/${live}`,
            `${ipDir}/${liveIp}`,
            `${portDir}/${live}`,
          ]
        ) {
          await old(p);
        }
        const linksBefore = (await lab.linkNames(lab.node)).sort();

        const first = await galaxy(["audit", "--json", `--socket-path=${daemon.socket}`]);
        assert.equal(first.code, 1, first.stderr);
        const report: AuditReport = JSON.parse(first.stdout);
        assert.equal(report.source, "runtime");
        const expected = [
          ["hostport-chain-without-pod", staleChain],
          ["ip-of-gone-container", orphanIp],
          ["state-without-sandbox", orphanState],
          ["veth-without-state", "v-h0badc0de1"],
        ];
        assert.deepEqual(report.findings.map((f) => [f.kind, f.object]).sort(), expected, first.stdout);
        assert.ok(report.findings.every((f) => f.fixable && f.evidence), first.stdout);
        assert.ok(report.checked["state-files"] === 2 && report.checked["port-files"] === 1, first.stdout);
        const metrics = await metricsText(lab, metricsPort);
        for (const [kind] of expected) {
          assert.match(metrics, new RegExp(`galaxy_audit_findings\\{kind="${kind}"\\} 1`));
        }
        assert.match(metrics, /galaxy_audit_checked\{kind="state-files"\} 2/);

        const table = await galaxy(["audit", `--socket-path=${daemon.socket}`]);
        assert.equal(table.code, 1);
        assert.match(table.stdout, /ORPHAN +state-without-sandbox +\S+ctr-orphan-state/);

        const fix = await galaxy(["audit", "--fix", "--json", `--socket-path=${daemon.socket}`]);
        assert.equal(fix.code, 0, fix.stdout);
        const fixed: AuditReport = JSON.parse(fix.stdout);
        assert.deepEqual(
          fixed.fixed!.map((x) => [x.kind, x.object, x.ok]).sort(),
          expected.map((e) => [...e, true]),
        );

        assert.ok(!(await pathExists(orphanState)), "orphan state file removed (through DEL)");
        assert.ok(!(await pathExists(orphanIp)), "orphan reservation removed");
        const chains = await natChains(lab);
        assert.ok(!chains.includes(staleChain), "stale chain removed");
        const linksAfter = (await lab.linkNames(lab.node)).sort();
        assert.deepEqual(linksAfter, linksBefore.filter((l) => l !== "v-h0badc0de1" && l !== "v-c0badc0de1"));
        // The live pod is untouched.
        assert.ok(chains.includes(liveChain), "the live pod's chain stays");
        for (const p of [`${stateDir}/${live}`, `${ipDir}/${liveIp}`, `${portDir}/${live}`]) {
          assert.ok(await pathExists(p), `${p} stays`);
        }
        assert.deepEqual(await lab.addresses(livePod, "eth0"), [`${liveIp}/24`]);

        const again = await galaxy(["audit", `--socket-path=${daemon.socket}`]);
        assert.equal(again.code, 0, again.stdout);
        assert.match(again.stdout, /no orphans and no mismatches/);
      } finally {
        if (daemon) await daemon.process.stop("SIGTERM");
        await cri?.stop();
      }
    });
  },
  { otherSkipReason: grpcSkipReason() },
);

async function metricsText(lab: Lab, port: number): Promise<string> {
  return await lab.exec(lab.node, Deno.execPath(), [
    "eval",
    `console.log(await (await fetch("http://127.0.0.1:${port}/metrics")).text())`,
  ]);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

kernelTest(
  "e2e: a failing ADD puts an Event and the annotation on the pod; a later success removes it",
  async () => {
    await withLab("failure", async (lab) => {
      const api = await startFakeApiserver(lab);
      let daemon;
      try {
        const port = 19000 + Math.floor(Math.random() * 900);
        daemon = await startDaemon(lab, {
          galaxyJson: {
            NetworkConf: [
              bridgeNet(lab, "bridge-net", "gtbr0", "198.18.22.0/24"),
              vlanNet("vlan-net", "gtnoup0"),
            ],
            DefaultNetworks: ["bridge-net"],
          },
          kubeconfig: api.kubeconfig,
          flags: [`--metrics-address=127.0.0.1:${port}`],
        });
        const created = await api.putPod(pod("p2", { "k8s.v1.cni.cncf.io/networks": "vlan-net" }));
        const uid = (created.metadata as { uid: string }).uid;
        const p2 = await lab.pod("p2");
        const call = {
          pod: p2,
          k8s: { namespace: "default", name: "p2", uid },
          list: shimList(daemon.socket),
        };
        const failed = await runtimeCall(lab, "add", { ...call, containerId: "ctr-fail-1" });
        assert.notEqual(failed.code, 0, "the ADD with a missing uplink must fail");

        const event = await until(
          "the Event",
          async () => (await api.events()).find((e) => e.reason === "NetworkSetupFailed"),
        );
        assert.equal((event.involvedObject as { name: string; uid: string }).name, "p2");
        assert.equal((event.involvedObject as { uid: string }).uid, uid);
        assert.equal(event.type, "Warning");
        assert.match(String(event.message), /network "vlan-net", plugin galaxy-k8s-vlan, code \d+/);
        const marked = await until(
          "the annotation",
          async () =>
            (await api.patches()).find((p) => p.body.metadata.annotations[NETWORK_FAILURE_ANNOTATION]),
        );
        const failure = JSON.parse(marked.body.metadata.annotations[NETWORK_FAILURE_ANNOTATION]);
        assert.equal(failure.network, "vlan-net");
        assert.equal(failure.plugin, "galaxy-k8s-vlan");
        assert.equal(failure.containerId, "ctr-fail-1");
        assert.ok(failure.code > 0 && failure.message.includes("gtnoup0"), JSON.stringify(failure));
        assert.ok(typeof failure.durationSeconds === "number" && Date.parse(failure.time) > 0);

        // The kubelet's retry fails the same way: the Event's count goes up (a patch), no second Event.
        const again = await runtimeCall(lab, "add", { ...call, containerId: "ctr-fail-2" });
        assert.notEqual(again.code, 0);
        await until("the Event's count of 2", async () => {
          const all = (await api.events()).filter((e) => e.reason === "NetworkSetupFailed");
          return all.length === 1 && all[0].count === 2 ? true : undefined;
        });

        const metrics = await metricsText(lab, port);
        assert.match(
          metrics,
          new RegExp(
            `galaxy_cni_plugin_duration_seconds_count\\{network="vlan-net",plugin="galaxy-k8s-vlan",verb="ADD",` +
              `code="${failure.code}"\\} 2`,
          ),
        );

        // The pod is fixed (a network that works); the next ADD succeeds and the annotation goes.
        await api.putPod({
          ...pod("p2", { "k8s.v1.cni.cncf.io/networks": "bridge-net" }, { uid }),
        });
        await until("a successful ADD", async () => {
          const ok = await runtimeCall(lab, "add", { ...call, containerId: "ctr-ok-1" });
          if (ok.code === 0) {
            return true;
          }
          await runtimeCall(lab, "del", { ...call, containerId: "ctr-ok-1" });
          return undefined;
        });
        await until(
          "the annotation's removal",
          async () =>
            (await api.patches()).find((p) =>
              Object.hasOwn(p.body.metadata.annotations, NETWORK_FAILURE_ANNOTATION) &&
              p.body.metadata.annotations[NETWORK_FAILURE_ANNOTATION] === null
            ),
        );
        assert.match(
          await metricsText(lab, port),
          /galaxy_cni_plugin_duration_seconds_count\{network="bridge-net",plugin="bridge",verb="ADD",code="0"\} 1/,
        );
      } finally {
        if (daemon) await daemon.process.stop("SIGTERM");
        await api.process.stop("SIGTERM");
      }
    });
  },
);
