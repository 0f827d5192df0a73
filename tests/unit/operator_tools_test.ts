import assert from "node:assert/strict";
import { execVerb, type PluginExec } from "../../cni/invoke.ts";
import { CniError } from "../../cni/spec.ts";
import { requestDaemon } from "../../cni/wire.ts";
import { auditMetrics, type AuditReport, runAudit } from "../../daemon/audit.ts";
import { parseGalaxyConfig } from "../../daemon/config.ts";
import {
  describeFailure,
  eventMessage,
  FailureReporter,
  type FailureWriter,
  lastStderrLines,
  NETWORK_FAILURE_ANNOTATION,
} from "../../daemon/failure.ts";
import { CniMetrics } from "../../daemon/metrics.ts";
import { formatPlan, planPod } from "../../daemon/plan.ts";
import { startServer } from "../../daemon/server.ts";
import { engineSelector, PolicyEngine } from "../../daemon/policy/mod.ts";
import { policyFromObject } from "../../daemon/policy/model.ts";
import { parseIptablesSave } from "../../netops/iptables.ts";

const VERSION_PLUGIN = `#!/bin/sh
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'; exit 0
fi
echo "starting $CNI_COMMAND" >&2
echo "line two" >&2
echo '{"cniVersion":"1.0.0","code":11,"msg":"busy, try later"}'; exit 1
`;

async function withPlugins(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gtest-plan-" });
  try {
    for (const name of ["capped", "plain"]) {
      await Deno.writeTextFile(`${dir}/${name}`, VERSION_PLUGIN, { mode: 0o755 });
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("invoke: onPluginExec sees the plugin, network, code, duration and stderr of every process", async () => {
  await withPlugins(async (dir) => {
    const seen: PluginExec[] = [];
    await assert.rejects(
      execVerb(
        "ADD",
        { cniVersion: "1.0.0", name: "n1", type: "plain" },
        { containerId: "c1", netns: "/x", ifname: "eth0" },
        { path: [dir], cacheDir: null, onPluginExec: (e) => seen.push(e) },
      ),
      (e: unknown) => e instanceof CniError && e.code === 11,
    );
    assert.equal(seen.length, 1);
    assert.deepEqual([seen[0].verb, seen[0].plugin, seen[0].network, seen[0].code], [
      "ADD",
      "plain",
      "n1",
      11,
    ]);
    assert.ok(seen[0].seconds > 0 && seen[0].seconds < 30);
    assert.match(seen[0].stderr, /starting ADD\nline two/);
  });
});

Deno.test("failure: the failing plugin is the last failed ADD, not a rollback DEL after it", () => {
  const exec = (verb: string, plugin: string, code: number, stderr = ""): PluginExec => ({
    verb,
    plugin,
    network: "net-a",
    code,
    seconds: 0.1,
    stderr,
  });
  const f = describeFailure(
    new CniError(7, 'network "net-a": no uplink'),
    [exec("ADD", "bridge", 0), exec("ADD", "galaxy-k8s-vlan", 7, "a\nb\n"), exec("DEL", "bridge", 2)],
    { containerId: "c1", seconds: 1.23456, now: new Date("2026-01-02T03:04:05Z") },
  );
  assert.deepEqual(f, {
    network: "net-a",
    plugin: "galaxy-k8s-vlan",
    code: 7,
    message: 'network "net-a": no uplink',
    stderr: "a\nb",
    durationSeconds: 1.235,
    time: "2026-01-02T03:04:05.000Z",
    containerId: "c1",
  });
  assert.equal(
    eventMessage(f),
    'CNI ADD failed (network "net-a", plugin galaxy-k8s-vlan, code 7): network "net-a": no uplink',
  );
  // Before any plugin: the network from the message, no plugin.
  const early = describeFailure(new CniError(7, 'network "x" not found'), [], {
    containerId: "c",
    seconds: 0,
  });
  assert.equal(early.plugin, "");
  const lines = Array.from({ length: 30 }, (_, i) => `l${i}`).join("\n");
  assert.equal(lastStderrLines(lines), Array.from({ length: 10 }, (_, i) => `l${i + 20}`).join("\n"));
  assert.ok(lastStderrLines("x".repeat(5000)).length <= 2000);
});

Deno.test("failure: reporter writes Event + annotation, then the clear after, in order; no clear when unmarked", async () => {
  const writes: string[] = [];
  let release!: () => void;
  const slow = new Promise<void>((r) => release = r);
  const writer: FailureWriter = {
    async recordPodEvent(pod, event) {
      await slow;
      writes.push(`event ${pod.name} ${event.reason}`);
    },
    async setAnnotation(_ns, name, key, value) {
      await slow;
      writes.push(`annotation ${name} ${key} ${value === null ? "null" : JSON.parse(value).plugin}`);
    },
  };
  const reporter = new FailureReporter(writer, { warn: (m) => writes.push(`warn ${m}`) });
  const f = describeFailure(new CniError(7, "x"), [], { containerId: "c", seconds: 0 });
  void reporter.report({ namespace: "d", name: "p" }, { ...f, plugin: "vlan" });
  void reporter.clear({ namespace: "d", name: "p" });
  await reporter.clear({ namespace: "d", name: "other" }); // never marked, no annotation: nothing written
  release();
  await reporter.idle();
  assert.deepEqual(writes, [
    "event p NetworkSetupFailed",
    `annotation p ${NETWORK_FAILURE_ANNOTATION} vlan`,
    `annotation p ${NETWORK_FAILURE_ANNOTATION} null`,
  ]);
  // An annotation a previous daemon wrote is cleared too.
  await reporter.clear({ namespace: "d", name: "q", annotations: { [NETWORK_FAILURE_ANNOTATION]: "{}" } });
  assert.equal(writes.at(-1), `annotation q ${NETWORK_FAILURE_ANNOTATION} null`);
});

Deno.test("metrics: galaxy_cni_plugin_duration_seconds by network, plugin, verb and code", () => {
  const m = new CniMetrics();
  m.observePlugin({ network: "n1", plugin: "galaxy-k8s-vlan", verb: "ADD", code: 7 }, 0.02);
  m.observePlugin({ network: "n1", plugin: "galaxy-k8s-vlan", verb: "ADD", code: 7 }, 3);
  const text = m.render({ active: 0, queued: 0 });
  assert.match(text, /# TYPE galaxy_cni_plugin_duration_seconds histogram/);
  const l = 'network="n1",plugin="galaxy-k8s-vlan",verb="ADD",code="7"';
  assert.ok(text.includes(`galaxy_cni_plugin_duration_seconds_bucket{${l},le="0.025"} 1`), text);
  assert.ok(text.includes(`galaxy_cni_plugin_duration_seconds_bucket{${l},le="5"} 2`), text);
  assert.ok(text.includes(`galaxy_cni_plugin_duration_seconds_count{${l}} 2`), text);
});

Deno.test("audit metrics: findings by kind, objects checked, last run", () => {
  const report: AuditReport = {
    format: 1,
    time: "2026-01-02T03:04:05.000Z",
    source: "runtime",
    checked: { "state-files": 3, veths: 2 },
    findings: [
      { kind: "veth-without-state", object: "v-h1", evidence: "e", fixable: true },
      { kind: "veth-without-state", object: "v-h2", evidence: "e", fixable: true },
      { kind: "ip-reserved-twice", object: "198.18.0.1", evidence: "e", fixable: false },
    ],
    errors: [],
  };
  const text = auditMetrics(report);
  assert.match(text, /galaxy_audit_findings\{kind="veth-without-state"\} 2/);
  assert.match(text, /galaxy_audit_findings\{kind="ip-reserved-twice"\} 1/);
  assert.match(text, /galaxy_audit_checked\{kind="state-files"\} 3/);
  assert.match(text, /galaxy_audit_last_run_timestamp_seconds 1767323045/);
  assert.equal(auditMetrics(undefined), "");
});

Deno.test("plan: capabilities reach the plugins that declare them, the rest are dropped; versions negotiated", async () => {
  await withPlugins(async (dir) => {
    const config = parseGalaxyConfig(
      JSON.stringify({
        NetworkConf: [{ name: "n1", type: "capped", capabilities: { mac: true } }, {
          name: "n2",
          type: "missing",
        }],
        DefaultNetworks: ["n1"],
      }),
      "galaxy.json",
    );
    const stateDir = `${dir}/state`;
    const ctx = { config, confDir: `${dir}/net.d`, cniPaths: [dir], stateDir };
    const annotations = {
      "k8s.v1.cni.cncf.io/networks": '[{"name":"n1","ips":["198.18.0.5/24"],"mac":"02:00:00:00:00:01"}]',
      "kubernetes.io/ingress-bandwidth": "10M",
    };
    const plan = await planPod(
      {
        ...ctx,
        pods: { getPod: () => Promise.resolve({ metadata: { namespace: "d", name: "p", annotations } }) },
      },
      "d",
      "p",
    );
    assert.equal(plan.attempted, true, plan.reason);
    const [a] = plan.attachments;
    assert.equal(a.cniVersion, "1.0.0");
    assert.equal(a.cniVersionFrom, "negotiated");
    assert.deepEqual(a.plugins[0].supportedVersions, ["0.4.0", "1.0.0"]);
    assert.deepEqual(
      a.capabilities.map((c) => [c.name, c.reaches, c.dropped]),
      [["ips", [], true], ["mac", ["capped"], false], ["bandwidth", [], true]],
    );
    assert.deepEqual(a.capabilities.find((c) => c.name === "bandwidth")?.value, { ingressRate: 10_000_000 });
    assert.match(formatPlan(plan), /capability: +ips → DROPPED \(no plugin declares it\)/);

    // A first plugin that is not installed fails before any plugin runs: exit status 1.
    const missing = await planPod(
      {
        ...ctx,
        pods: {
          getPod: () =>
            Promise.resolve({
              metadata: { namespace: "d", name: "q", annotations: { "k8s.v1.cni.cncf.io/networks": "n2" } },
            }),
        },
      },
      "d",
      "q",
    );
    assert.equal(missing.attempted, false);
    assert.match(missing.reason!, /plugin missing not found/);
    // The pod cannot be found: the reason, no attachments.
    const gone = await planPod(
      {
        ...ctx,
        pods: { getPod: () => Promise.reject(new CniError(3, "pod d/x not found")) },
      },
      "d",
      "x",
    );
    assert.deepEqual([gone.attempted, gone.reason, gone.attachments.length], [false, "pod d/x not found", 0]);
  });
});

Deno.test("server: /plan needs namespace and name; /audit fixes only on POST", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gtest-srv-" });
  const calls: string[] = [];
  const server = startServer({
    cni: () => Promise.resolve({ status: 200, body: "" }),
    notReadyReason: () => undefined,
    plan: (ns, name, ifname) => (calls.push(`plan ${ns}/${name} ${ifname}`), Promise.resolve({ ok: true })),
    audit: (fix) => (calls.push(`audit ${fix}`), Promise.resolve({ fix })),
  }, { socketPath: `${dir}/s.sock`, maxConcurrent: 2 });
  try {
    const s = `${dir}/s.sock`;
    assert.equal((await requestDaemon(s, "/plan?namespace=d", { timeoutMs: 5000 })).status, 400);
    const plan = await requestDaemon(s, "/plan?namespace=d&name=p", { timeoutMs: 5000 });
    assert.deepEqual([plan.status, JSON.parse(plan.body)], [200, { ok: true }]);
    assert.equal((await requestDaemon(s, "/audit?fix=true", { timeoutMs: 5000 })).status, 405);
    assert.equal((await requestDaemon(s, "/audit", { timeoutMs: 5000 })).status, 200);
    assert.equal(
      (await requestDaemon(s, "/audit?fix=true", { method: "POST", timeoutMs: 5000 })).status,
      200,
    );
    assert.deepEqual(calls, ["plan d/p eth0", "audit false", "audit true"]);
  } finally {
    await server.shutdown(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audit: dead, young and busy containers, addresses reserved twice; --fix goes through DEL and host-local's lock", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gtest-audit-" });
  try {
    const stateDir = `${dir}/state`;
    const [ipA, ipB] = [`${dir}/ipam/a`, `${dir}/ipam/b`];
    for (const d of [stateDir, ipA, ipB]) await Deno.mkdir(d, { recursive: true });
    const old = new Date(Date.now() - 3600_000);
    const state = async (id: string, pod: string, ip: string, fresh = false) => {
      await Deno.writeTextFile(
        `${stateDir}/${id}`,
        JSON.stringify([{
          NetworkType: "n1",
          Args: {},
          Conf: { name: "n1", type: "bridge" },
          IfName: "eth0",
          Result: { cniVersion: "1.1.0", ips: [{ address: `${ip}/24` }] },
          Runtime: {
            netns: `${dir}/no-such-netns`,
            args: { K8S_POD_NAMESPACE: "d", K8S_POD_NAME: pod },
            path: [],
          },
        }]),
      );
      if (!fresh) await Deno.utime(`${stateDir}/${id}`, old, old);
    };
    await state("c-dead", "gone", "198.18.0.10");
    await state("c-live", "live", "198.18.0.10");
    await state("c-young", "gone-too", "198.18.0.11", true);
    await state("c-busy", "gone-three", "198.18.0.12");
    const ipFile = async (d: string, ip: string, owner: string) => {
      await Deno.writeTextFile(`${d}/${ip}`, `${owner}\neth0`);
      await Deno.utime(`${d}/${ip}`, old, old);
    };
    await ipFile(ipA, "198.18.0.10", "c-dead");
    await ipFile(ipA, "198.18.0.30", "c-live");
    await ipFile(ipB, "198.18.0.30", "c-live");
    const calls: string[] = [];
    const ctx = {
      stateDir,
      ipDirs: [ipA, ipB],
      graceMs: 60_000,
      pods: { nodePodUids: () => new Map([["d/live", {}]]) },
      hostNetns: `${dir}/no-such-host-netns`,
      isBusy: (id: string) => id === "c-busy",
      busyContainers: () => ["c-busy"],
      withLock: <T>(id: string, fn: () => Promise<T>) => (calls.push(`lock ${id}`), fn()),
      releaseState: async (id: string) => {
        calls.push(`release ${id}`);
        await Deno.remove(`${stateDir}/${id}`);
        return true;
      },
    };
    const report = await runAudit(ctx);
    assert.equal(report.source, "apiserver");
    assert.deepEqual(report.findings.map((f) => [f.kind, f.object.replace(dir, ""), f.fixable]).sort(), [
      ["ip-of-gone-container", "/ipam/a/198.18.0.10", true],
      ["ip-reserved-twice", "198.18.0.10", false],
      ["ip-reserved-twice", "198.18.0.30", false],
      ["state-without-sandbox", "/state/c-dead", true],
    ]);
    assert.match(report.findings.find((f) => f.kind === "state-without-sandbox")!.evidence, /pod d\/gone/);
    assert.ok(
      report.errors.some((e) => e.startsWith("veths:")),
      "an unreadable namespace is an error, not a finding",
    );
    assert.equal(calls.length, 0, "no fix without --fix");

    const fixed = await runAudit(ctx, { fix: true });
    assert.deepEqual(fixed.fixed!.map((x) => [x.kind, x.ok]), [["state-without-sandbox", true], [
      "ip-of-gone-container",
      true,
    ]]);
    assert.deepEqual(calls, ["lock c-dead", "release c-dead", "lock c-dead"]);
    assert.ok(!(await Deno.stat(`${ipA}/198.18.0.10`).then(() => true, () => false)), "reservation released");
    assert.ok(await Deno.stat(`${ipA}/198.18.0.30`).then(() => true, () => false), "the live pod's stays");
    assert.ok(await Deno.stat(`${stateDir}/c-busy`).then(() => true, () => false), "the busy one stays");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plan: the policies selecting the pod, per direction, by the compiler's own selection", async () => {
  const engine = new PolicyEngine("node-a", {
    apply: () => Promise.reject(new Error("no apply")),
    forget() {},
  }, {
    error() {},
    warn() {},
    v() {},
  });
  const policy = (namespace: string, name: string, spec: Record<string, unknown>) =>
    engine.setPolicy(policyFromObject({ metadata: { namespace, name }, spec }));
  policy("x", "web-in", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress"] });
  policy("x", "all-both", { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
  policy("x", "not-db", {
    podSelector: { matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }] },
    egress: [{}],
  });
  policy("y", "web-elsewhere", { podSelector: { matchLabels: { app: "web" } } }); // another namespace
  await engine.close();
  const config = parseGalaxyConfig(JSON.stringify({ NetworkConf: [], DefaultNetworks: [] }), "galaxy.json");
  const plan = await planPod(
    {
      config,
      confDir: "/nonexistent",
      cniPaths: [],
      stateDir: "/nonexistent",
      pods: {
        getPod: () => Promise.resolve({ metadata: { namespace: "x", name: "p", labels: { app: "web" } } }),
      },
      policies: engineSelector(engine),
    },
    "x",
    "p",
  );
  assert.deepEqual(plan.policiesByDirection, { ingress: ["x/all-both", "x/web-in"], egress: ["x/all-both"] });
  assert.deepEqual(plan.policies, ["x/all-both", "x/web-in"]);
  assert.match(formatPlan(plan), /^policies: ingress: x\/all-both, x\/web-in; egress: x\/all-both$/m);
  // Without an engine the field says so rather than "none".
  const none = await planPod(
    { config, confDir: "/nonexistent", cniPaths: [], stateDir: "/nonexistent" },
    "x",
    "p",
  );
  assert.deepEqual([none.policies, none.policiesByDirection], [null, null]);
  assert.match(formatPlan(none), /^policies: \(no policy engine in this daemon\)$/m);
});

Deno.test("audit: GLX- chains and sets outside the owned state are orphans; --fix is one removal, then checked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gtest-auditglx-" });
  try {
    let filter = [
      "*filter",
      ":FORWARD ACCEPT [0:0]",
      ":GLX-INGRESS - [0:0]",
      ":GLX-POD-I-STALE - [0:0]",
      "-A FORWARD -j GLX-INGRESS",
      "-A GLX-INGRESS -d 198.18.0.2/32 -j GLX-POD-I-STALE",
      "-A GLX-POD-I-STALE -j DROP",
      "COMMIT",
    ].join("\n");
    let sets = [{ name: "GLX-pods-LIVE", type: "hash:ip" }, { name: "GLX-pods-OLD", type: "hash:ip" }];
    const iptables = {
      save: (table: string) =>
        Promise.resolve(parseIptablesSave(table === "filter" ? filter : "*nat\nCOMMIT")[0]),
    };
    const removals: string[] = [];
    let removes = true;
    let owned: { chains: Set<string>; sets: Set<string>; why: string } | undefined = {
      chains: new Set(["GLX-INGRESS"]),
      sets: new Set(["GLX-pods-LIVE"]),
      why: "not in the engine's state",
    };
    const inventory = {
      expectedObjects: () => Promise.resolve(owned),
      presentSets: () => Promise.resolve(sets),
      removeOrphans: () => {
        removals.push("sync");
        if (!removes) return Promise.resolve("full sync");
        filter = filter.split("\n").filter((l) => !l.includes("STALE")).join("\n");
        sets = sets.filter((s) => s.name !== "GLX-pods-OLD");
        return Promise.resolve("full sync");
      },
    };
    const ctx = {
      stateDir: `${dir}/state`,
      ipDirs: [],
      graceMs: 60_000,
      hostNetns: `${dir}/no-such-host-netns`,
      iptables: iptables as never,
      policies: inventory,
      isBusy: () => false,
      busyContainers: () => [],
      withLock: <T>(_: string, fn: () => Promise<T>) => fn(),
      releaseState: () => Promise.resolve(true),
    };
    const report = await runAudit(ctx);
    const glx = report.findings.filter((f) => f.kind === "policy-object-without-policy");
    assert.deepEqual(glx.map((f) => [f.object, f.fixable]), [
      ["chain GLX-POD-I-STALE", true],
      ["set GLX-pods-OLD", true],
    ]);
    assert.equal(glx[0].evidence, "not in the engine's state; 1 rule(s), jumped to from GLX-INGRESS");
    assert.equal(glx[1].evidence, "not in the engine's state; hash:ip");
    assert.deepEqual([report.checked["policy-chains"], report.checked["policy-sets"]], [2, 2]);
    assert.deepEqual(removals, []);
    const fixed = await runAudit(ctx, { fix: true });
    assert.deepEqual(removals, ["sync"], "one removal for every GLX- orphan");
    assert.deepEqual(fixed.fixed!.filter((x) => x.kind === "policy-object-without-policy").map((x) => x.ok), [
      true,
      true,
    ]);
    // A removal that leaves the object is reported as not fixed.
    removes = false;
    filter = filter.replace(":GLX-INGRESS", ":GLX-POD-I-STALE - [0:0]\n:GLX-INGRESS");
    const stuck = await runAudit(ctx, { fix: true });
    assert.match(
      stuck.fixed!.find((x) => x.object === "chain GLX-POD-I-STALE")!.error!,
      /still present after: full sync/,
    );
    // An engine that has not synced judges nothing.
    owned = undefined;
    const early = await runAudit(ctx);
    assert.equal(early.findings.filter((f) => f.kind === "policy-object-without-policy").length, 0);
    assert.ok(early.errors.some((e) => /holds no applied state yet/.test(e)), early.errors.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("engine: owned() is the last applied state, none before the first sync; syncNow() waits for a fresh one", async () => {
  const applied: boolean[] = [];
  let fresh = true;
  const applier = {
    apply: () => {
      applied.push(fresh);
      const stats = {
        fresh,
        setsWritten: 0,
        membersChanged: 0,
        setsDestroyed: 0,
        chainsWritten: 0,
        chainsDeleted: 0,
      };
      fresh = false;
      return Promise.resolve(stats);
    },
    forget: () => fresh = true,
  };
  const engine = new PolicyEngine("node-a", applier, { error() {}, warn() {}, v() {} });
  engine.debounceMs = 0;
  engine.setPolicy(
    policyFromObject({ metadata: { namespace: "x", name: "deny" }, spec: { podSelector: {} } }),
  );
  engine.setPod({ namespace: "x", name: "a", labels: {}, ip: "198.18.0.2", nodeName: "node-a", ports: [] });
  assert.equal(engine.owned(), undefined);
  await assert.rejects(engine.syncNow(), /not running its syncs/);
  engine.ready();
  await engine.idle();
  const owned = engine.owned()!;
  assert.ok(owned.chains.has("GLX-INGRESS") && [...owned.chains].some((c) => c.startsWith("GLX-POD-I-")));
  assert.deepEqual(applied, [true]);
  await engine.syncNow(5000);
  assert.deepEqual(applied, [true, true], "syncNow's sync re-read the kernel");
  await engine.close();
});
