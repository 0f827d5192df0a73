/**
 * `galaxy serve --network-policy` as a process in a lab's node namespace, fed by the fake apiserver through
 * the real client-node informers: a policy, namespace and pods become GLX- chains and sets in the node
 * namespace's kernel; a pod label change and a policy deletion follow; a malformed policy and a tombstone-
 * like delete do not stop the daemon; a restart with the flag off removes everything. Connections under
 * these rules are the subject of tests/netns/policy_test.ts. `galaxy plan` shows the policies selecting a
 * pod, and `galaxy audit --fix` removes planted stale GLX- objects while the live policy's rules stay.
 * @module
 */
import assert from "node:assert/strict";
import {
  type FakeApiserver,
  runtimeCall,
  shimList,
  startDaemon,
  startFakeApiserver,
} from "../helpers/daemon.ts";
import { kernelTest, type Lab, mustRun, withLab } from "../helpers/netns.ts";
import { glxHash } from "../../daemon/policy/names.ts";
import type { AuditReport } from "../../daemon/audit.ts";
import type { Plan } from "../../daemon/plan.ts";
import { launcherDir } from "../helpers/launchers.ts";
import { runCommand } from "../helpers/netns.ts";

const NODE = "node-a"; // startDaemon's --hostname-override

function podObject(name: string, ip: string, labels: Record<string, string>, node = NODE) {
  return {
    metadata: { namespace: "x", name, labels },
    spec: { nodeName: node, containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] },
    status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
  };
}

async function kernel(lab: Lab): Promise<{ rules: string; sets: string }> {
  const rules = await mustRun("ip", ["netns", "exec", lab.node.name, "iptables-save", "-t", "filter"]);
  const sets = await mustRun("ip", ["netns", "exec", lab.node.name, "ipset", "save"]);
  return { rules, sets };
}

async function eventually(what: string, lab: Lab, ok: (k: { rules: string; sets: string }) => boolean) {
  const deadline = Date.now() + 15_000;
  let last = { rules: "", sets: "" };
  while (Date.now() < deadline) {
    last = await kernel(lab);
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}:\n${last.rules}\n${last.sets}`);
}

async function seed(api: FakeApiserver): Promise<void> {
  await api.putObject("namespaces", { metadata: { name: "x", labels: { team: "x" } } });
  await api.putObject("namespaces", { metadata: { name: "y", labels: { team: "y" } } });
  await api.putPod(podObject("a", "198.18.40.2", { app: "a" }));
  await api.putPod(podObject("b", "198.18.40.3", { app: "b" }, "node-b"));
}

kernelTest(
  "e2e: --network-policy turns watched policies into GLX- chains and sets, and --network-policy=false removes them",
  async () => {
    await withLab("npdaemon", async (lab) => {
      const api = await startFakeApiserver(lab);
      let daemon;
      try {
        await seed(api);
        // A policy that fails validation comes first: it is skipped, the daemon goes on.
        await api.putObject("networkpolicies", {
          metadata: { namespace: "x", name: "broken" },
          spec: { podSelector: {}, ingress: [{ ports: [{ protocol: "ICMP" }] }] },
        });
        await api.putObject("networkpolicies", {
          metadata: { namespace: "x", name: "from-b" },
          spec: {
            podSelector: { matchLabels: { app: "a" } },
            ingress: [{ from: [{ podSelector: { matchLabels: { app: "b" } } }], ports: [{ port: "http" }] }],
          },
        });
        daemon = await startDaemon(lab, {
          galaxyJson: { DefaultNetworks: [] },
          kubeconfig: api.kubeconfig,
          flags: ["--network-policy"],
        });
        const podChain = /--comment "?x\/a"? -j GLX-POD-I-/;
        const first = await eventually("the pod chain", lab, (k) => k.rules.includes(`-d 198.18.40.2/32`));
        assert.match(first.rules, /^-A FORWARD -j GLX-EGRESS\n-A FORWARD -j GLX-INGRESS$/m);
        assert.ok(podChain.test(first.rules), `no jump of x/a to a pod chain:\n${first.rules}`);
        assert.ok(first.rules.includes(`:GLX-PLCY-I-${glxHash("from-b", "x")}`));
        // The peer b runs on another node: the cluster-wide pod watch brought it; the named port resolved on a.
        assert.match(first.sets, /^add GLX-pods-\S+ 198\.18\.40\.3$/m);
        assert.match(first.sets, /^add GLX-ports-\S+ 198\.18\.40\.2,tcp:8080$/m);
        // b leaves the selector: its address leaves the set.
        await api.putPod(podObject("b", "198.18.40.3", { app: "other" }, "node-b"));
        await eventually("b out of the peer set", lab, (k) => !/198\.18\.40\.3/.test(k.sets));
        // The policy goes: nothing GLX- is left.
        await api.deleteObject("networkpolicies", "x", "from-b");
        await eventually("no GLX- state", lab, (k) => !k.rules.includes("GLX") && !k.sets.includes("GLX"));
        // Back again, then a restart without the flag removes it all.
        await api.putObject("networkpolicies", {
          metadata: { namespace: "x", name: "deny" },
          spec: { podSelector: {} },
        });
        await eventually("the deny chain", lab, (k) => podChain.test(k.rules));
        const out = await daemon.process.stop("SIGTERM");
        daemon = undefined;
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stderr, /broken.*unknown protocol ICMP/);
        assert.ok(
          podChain.test((await kernel(lab)).rules),
          "stopping the daemon removed the rules (fail-open)",
        );
        daemon = await startDaemon(lab, { galaxyJson: { DefaultNetworks: [] }, kubeconfig: api.kubeconfig });
        const after = await kernel(lab);
        assert.ok(
          !after.rules.includes("GLX") && !after.sets.includes("GLX"),
          `left:\n${after.rules}\n${after.sets}`,
        );
        const out2 = await daemon.process.stop("SIGTERM");
        daemon = undefined;
        assert.equal(out2.code, 0, out2.stderr);
      } finally {
        if (daemon) await daemon.process.stop("SIGKILL");
        await api.process.stop("SIGTERM");
      }
    });
  },
);

kernelTest(
  "e2e: with --network-policy, a new pod's ADD returns only once its rules are in the kernel",
  async () => {
    await withLab("npadd", async (lab) => {
      const api = await startFakeApiserver(lab);
      let daemon;
      try {
        await api.putObject("namespaces", { metadata: { name: "x" } });
        await api.putObject("networkpolicies", {
          metadata: { namespace: "x", name: "deny" },
          spec: { podSelector: {} },
        });
        // The pod as the apiserver has it at ADD time: scheduled here, no address yet (and it never gets one:
        // this fake kubelet reports nothing).
        await api.putPod({
          metadata: { namespace: "x", name: "p", labels: { app: "p" } },
          spec: { nodeName: NODE },
        });
        const galaxyJson = {
          NetworkConf: [{
            name: "net",
            type: "bridge",
            bridge: "gtnpbr0",
            isGateway: true,
            ipam: {
              type: "host-local",
              dataDir: `${lab.dir}/ipam`,
              ranges: [[{ subnet: "198.18.41.0/24" }]],
            },
          }],
          DefaultNetworks: ["net"],
        };
        daemon = await startDaemon(lab, {
          galaxyJson,
          kubeconfig: api.kubeconfig,
          flags: ["--network-policy"],
        });
        const netns = await lab.pod("p");
        const call = {
          containerId: "ctr-np-add",
          pod: netns,
          k8s: { namespace: "x", name: "p" },
          list: shimList(daemon.socket),
        };
        const add = await runtimeCall(lab, "add", call);
        assert.equal(add.code, 0, add.stdout + add.stderr);
        const ip = JSON.parse(add.stdout).ips[0].address.split("/")[0];
        const { rules } = await kernel(lab);
        assert.match(
          rules,
          new RegExp(`-d ${ip.replaceAll(".", "\\.")}/32 .*-j GLX-POD-I-`),
          `no rules for ${ip} when ADD returned:\n${rules}`,
        );
        const del = await runtimeCall(lab, "del", call);
        assert.equal(del.code, 0, del.stdout);
        const out = await daemon.process.stop("SIGTERM");
        daemon = undefined;
        assert.equal(out.code, 0, out.stderr);
      } finally {
        if (daemon) await daemon.process.stop("SIGKILL");
        await api.process.stop("SIGTERM");
      }
    });
  },
);

async function galaxy(args: string[]) {
  return await runCommand(`${await launcherDir()}/galaxy`, args);
}

/** A chain and a set no policy owns, the chain matching on the set (as a left-over pod chain would). */
async function plantStale(lab: Lab, chain: string, set: string): Promise<void> {
  await lab.exec(lab.node, "ipset", ["create", set, "hash:ip"]);
  await lab.exec(lab.node, "ipset", ["add", set, "198.18.40.99"]);
  await lab.exec(lab.node, "iptables", ["-N", chain]);
  await lab.exec(lab.node, "iptables", ["-A", chain, "-m", "set", "--match-set", set, "src", "-j", "DROP"]);
}

/** The GLX- rules and set members, without counters, sorted: what enforcement consists of. */
function glxState(k: { rules: string; sets: string }): string[] {
  return [
    ...k.rules.split("\n").filter((l) => l.includes("GLX-")).map((l) => l.replace(/ \[\d+:\d+\]$/, "")),
    // A set replaced by swap has a new hash seed.
    ...k.sets.split("\n").filter((l) => l.includes("GLX-")).map((l) => l.replace(/ initval 0x[0-9a-f]+/, "")),
  ].sort();
}

kernelTest(
  "e2e: galaxy plan shows the policies selecting a pod; galaxy audit --fix removes stale GLX- objects, the live policy stays",
  async () => {
    await withLab("npaudit", async (lab) => {
      const api = await startFakeApiserver(lab);
      let daemon;
      try {
        await seed(api);
        await api.putObject("networkpolicies", {
          metadata: { namespace: "x", name: "from-b" },
          spec: {
            podSelector: { matchLabels: { app: "a" } },
            ingress: [{ from: [{ podSelector: { matchLabels: { app: "b" } } }] }],
          },
        });
        await api.putObject("networkpolicies", {
          metadata: { namespace: "x", name: "egress-all" },
          spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"], egress: [{}] },
        });
        daemon = await startDaemon(lab, {
          galaxyJson: { DefaultNetworks: [] },
          kubeconfig: api.kubeconfig,
          flags: ["--network-policy"],
        });
        await eventually("the pod chains", lab, (k) => /-s 198\.18\.40\.2\/32 .*-j GLX-POD-E-/.test(k.rules));
        // Pods in x: a is selected by both policies for ingress, by egress-all for egress.
        const planned = await galaxy(["plan", "--json", `--socket-path=${daemon.socket}`, "x/a"]);
        const plan: Plan = JSON.parse(planned.stdout);
        assert.deepEqual(plan.policiesByDirection, {
          ingress: ["x/egress-all", "x/from-b"],
          egress: ["x/egress-all"],
        });
        assert.deepEqual(plan.policies, ["x/egress-all", "x/from-b"]);

        const live = glxState(await kernel(lab));
        const [chain, set] = ["GLX-POD-I-STALE00000000000", "GLX-pods-STALE00000000000"];
        await plantStale(lab, chain, set);
        const first = await galaxy(["audit", "--json", `--socket-path=${daemon.socket}`]);
        assert.equal(first.code, 1, first.stdout + first.stderr);
        const report: AuditReport = JSON.parse(first.stdout);
        assert.deepEqual(report.findings.map((f) => [f.kind, f.object, f.fixable]), [
          ["policy-object-without-policy", `chain ${chain}`, true],
          ["policy-object-without-policy", `set ${set}`, true],
        ], first.stdout);
        assert.match(
          report.findings[0].evidence,
          /not in the state the policy engine last applied \(2 policies/,
        );
        const fix = await galaxy(["audit", "--fix", "--json", `--socket-path=${daemon.socket}`]);
        assert.equal(fix.code, 0, fix.stdout + fix.stderr);
        const fixed: AuditReport = JSON.parse(fix.stdout);
        assert.deepEqual(fixed.fixed!.map((x) => [x.object, x.ok]), [[`chain ${chain}`, true], [
          `set ${set}`,
          true,
        ]]);
        const after = await kernel(lab);
        assert.ok(
          !after.rules.includes("STALE") && !after.sets.includes("STALE"),
          `left:\n${after.rules}\n${after.sets}`,
        );
        assert.deepEqual(glxState(after), live, "the live policies' rules and sets changed");
        const again = await galaxy(["audit", `--socket-path=${daemon.socket}`]);
        assert.equal(again.code, 0, again.stdout);

        // Without --network-policy nothing owns GLX- state: what is planted after the start-up removal is an
        // orphan, and --fix removes it.
        const out = await daemon.process.stop("SIGTERM");
        daemon = undefined;
        assert.equal(out.code, 0, out.stderr);
        daemon = await startDaemon(lab, { galaxyJson: { DefaultNetworks: [] }, kubeconfig: api.kubeconfig });
        await plantStale(lab, chain, set);
        const off = await galaxy(["audit", "--fix", "--json", `--socket-path=${daemon.socket}`]);
        assert.equal(off.code, 0, off.stdout + off.stderr);
        const offReport: AuditReport = JSON.parse(off.stdout);
        assert.deepEqual(offReport.findings.map((f) => f.object), [`chain ${chain}`, `set ${set}`]);
        assert.match(offReport.findings[0].evidence, /--network-policy is off/);
        const gone = await kernel(lab);
        assert.ok(
          !gone.rules.includes("GLX") && !gone.sets.includes("GLX"),
          `left:\n${gone.rules}\n${gone.sets}`,
        );
        const out2 = await daemon.process.stop("SIGTERM");
        daemon = undefined;
        assert.equal(out2.code, 0, out2.stderr);
      } finally {
        if (daemon) await daemon.process.stop("SIGKILL");
        await api.process.stop("SIGTERM");
      }
    });
  },
);
