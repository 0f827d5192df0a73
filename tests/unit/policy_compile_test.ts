/**
 * The network policy compiler without root: Galaxy's hash vectors, policyTypes defaulting, object parsing,
 * selectors, exact ipBlock CIDRs, the chains of a node (golden text), peers confined to their namespace,
 * `from: []` allowing all, named ports resolved per pod, only this node's pods getting chains, and the
 * engine: nothing applied before the watches are ready, incremental pod updates equal to a full compile,
 * a failing apply counted and retried. The scale target is measured too (compile only here; the bench
 * applies to a kernel).
 * @module
 */
import assert from "node:assert/strict";
import { blocksToCidrs, cidrRange } from "../../daemon/policy/cidr.ts";
import { compile, type Compiled } from "../../daemon/policy/compile.ts";
import { PolicyEngine } from "../../daemon/policy/engine.ts";
import { type Pod, podFromObject, policyFromObject, type PolicyModel } from "../../daemon/policy/model.ts";
import { contentSet, glxHash, hash16 } from "../../daemon/policy/names.ts";
import { matches } from "../../daemon/policy/selector.ts";
import { unwrapTombstone } from "../../daemon/policy/watch.ts";
import { renderPolicyMetrics } from "../../daemon/metrics.ts";
import { enforcingPodSource } from "../../daemon/policy/mod.ts";
import { scaleModel, scalePod } from "../bench/policy_scale.ts";

type Obj = Record<string, unknown>;

function np(ns: string, name: string, spec: Obj) {
  return policyFromObject({ metadata: { namespace: ns, name }, spec: { podSelector: {}, ...spec } });
}

function pod(
  ns: string,
  name: string,
  ip: string,
  labels: Record<string, string>,
  node = "n1",
  ports: Pod["ports"] = [],
): Pod {
  return { namespace: ns, name, labels, ip, nodeName: node, ports };
}

function model(policies: ReturnType<typeof np>[], pods: Pod[]): PolicyModel {
  return {
    policies,
    pods: new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p])),
    namespaces: new Map([
      ["x", { "kubernetes.io/metadata.name": "x", ns: "x" }],
      ["y", { "kubernetes.io/metadata.name": "y", ns: "y" }],
    ]),
    node: "n1",
  };
}

function members(c: Compiled): Record<string, string[]> {
  return Object.fromEntries([...c.members].map(([n, m]) => [n, [...m.keys()].sort()]));
}

Deno.test("names: Galaxy's hash vectors", () => {
  assert.equal(glxHash("test2", "ns2"), "352SVDAM4WOU2SIO");
  assert.equal(glxHash("test1", "ns1"), "Q6GMFAO3AMRGLUBA");
  assert.equal(glxHash("hello", "ns2"), "BLFOGEWPTSIKACFR");
  assert.match(contentSet("pods", "x"), /^GLX-pods-[A-Z2-7]{16}$/);
  assert.ok(contentSet("ports", "x").length <= 31);
});

Deno.test("policyTypes default as the API says; the other direction's rules are ignored", () => {
  const ingressOnly = np("x", "a", { ingress: [{}] });
  assert.deepEqual([ingressOnly.ingress, ingressOnly.egress], [true, false]);
  const both = np("x", "b", { egress: [] });
  assert.deepEqual([both.ingress, both.egress], [true, true], "an explicit egress: [] adds Egress");
  const egressOnly = np("x", "c", { policyTypes: ["Egress"], ingress: [{}], egress: [{}] });
  assert.deepEqual([egressOnly.ingress, egressOnly.egress, egressOnly.ingressRules], [false, true, []]);
  const ingressTyped = np("x", "d", { policyTypes: ["Ingress"], egress: [{ to: [{ podSelector: {} }] }] });
  assert.deepEqual([ingressTyped.egress, ingressTyped.egressRules], [false, []]);
});

Deno.test("policy objects: client-node's _from, numeric strings, bad ports and protocols refused", () => {
  const p = policyFromObject({
    metadata: { namespace: "x", name: "p" },
    spec: {
      podSelector: {},
      ingress: [{
        _from: [{ podSelector: { matchLabels: { a: "b" } } }],
        ports: [{ port: "80" }, { port: 81, endPort: 90, protocol: "UDP" }],
      }],
    },
  });
  assert.deepEqual(p.ingressRules[0].peers, [{ podSelector: { matchLabels: { a: "b" } } }]);
  assert.deepEqual(p.ingressRules[0].ports, [{ protocol: "TCP", port: 80 }, {
    protocol: "UDP",
    port: 81,
    endPort: 90,
  }]);
  assert.throws(() => np("x", "e", { ingress: [{ ports: [{ protocol: "ICMP" }] }] }), /unknown protocol/);
  assert.throws(() => np("x", "e", { ingress: [{ ports: [{ port: "http", endPort: 90 }] }] }), /endPort/);
  assert.throws(() => np("x", "e", { ingress: [{ from: [{}] }] }), /names no peer/);
  assert.throws(() => policyFromObject({}), /not a NetworkPolicy/);
});

Deno.test("pod objects: hostNetwork and finished pods get no address; named ports are read", () => {
  const base = {
    metadata: { namespace: "x", name: "p", labels: { a: "1" } },
    spec: {
      nodeName: "n1",
      containers: [{ ports: [{ name: "http", containerPort: 8080 }, { containerPort: 9 }] }],
    },
    status: { podIP: "198.18.0.5", podIPs: [{ ip: "fd00::5" }, { ip: "198.18.0.5" }] },
  };
  const p = podFromObject(base)!;
  assert.equal(p.ip, "198.18.0.5");
  assert.deepEqual(p.ports, [{ name: "http", protocol: "TCP", port: 8080 }]);
  assert.equal(podFromObject({ ...base, spec: { ...base.spec, hostNetwork: true } })!.ip, undefined);
  assert.equal(podFromObject({ ...base, status: { ...base.status, phase: "Succeeded" } })!.ip, undefined);
  assert.equal(podFromObject({ metadata: {} }), undefined);
  assert.deepEqual(unwrapTombstone({ obj: base }), base);
  assert.equal(unwrapTombstone(null), undefined);
});

Deno.test("selectors: matchLabels AND expressions; {} matches all", () => {
  const l = { app: "web", tier: "fe" };
  assert.ok(matches({}, l));
  assert.ok(
    matches({
      matchLabels: { app: "web" },
      matchExpressions: [{ key: "tier", operator: "In", values: ["fe"] }],
    }, l),
  );
  assert.ok(
    !matches({
      matchLabels: { app: "web" },
      matchExpressions: [{ key: "tier", operator: "NotIn", values: ["fe"] }],
    }, l),
  );
  assert.ok(
    matches({
      matchExpressions: [{ key: "x", operator: "DoesNotExist" }, { key: "app", operator: "Exists" }],
    }, l),
  );
  assert.ok(
    matches({ matchExpressions: [{ key: "x", operator: "NotIn", values: ["1"] }] }, l),
    "NotIn of a missing key",
  );
  assert.ok(!matches({ matchExpressions: [{ key: "x", operator: "In", values: ["1"] }] }, l));
});

Deno.test("ipBlock: CIDR minus exceptions is exact, /0 becomes two /1, overlaps do not undo each other", () => {
  assert.deepEqual(blocksToCidrs([{ cidr: "0.0.0.0/0", except: [] }]).cidrs, ["0.0.0.0/1", "128.0.0.0/1"]);
  assert.deepEqual(blocksToCidrs([{ cidr: "10.246.33.13/31", except: [] }]).cidrs, ["10.246.33.12/31"]);
  assert.deepEqual(blocksToCidrs([{ cidr: "198.18.0.0/24", except: ["198.18.0.0/25"] }]).cidrs, [
    "198.18.0.128/25",
  ]);
  // Two blocks of one rule: the second allows what the first excepts (a shared nomatch set would not).
  assert.deepEqual(
    blocksToCidrs([{ cidr: "198.18.0.0/16", except: ["198.18.1.0/24"] }, {
      cidr: "198.18.1.0/24",
      except: [],
    }]).cidrs,
    ["198.18.0.0/16"],
  );
  const cut = blocksToCidrs([{ cidr: "198.18.0.0/16", except: ["198.18.7.9/32"] }]).cidrs;
  const covered = cut.map((c) => cidrRange(c)!).reduce((n, [a, b]) => n + b - a + 1, 0);
  assert.equal(covered, 65535);
  assert.deepEqual(blocksToCidrs([{ cidr: "nonsense", except: [] }]).invalid, ["nonsense"]);
});

Deno.test("compile: the chains of a node (golden)", () => {
  const a = pod("x", "a", "198.18.0.1", { app: "a" });
  const b = pod("x", "b", "198.18.0.2", { app: "b" });
  const far = pod("x", "c", "198.18.0.3", { app: "a" }, "n2");
  const c = compile(model([
    np("x", "from-b", {
      podSelector: { matchLabels: { app: "a" } },
      ingress: [{
        from: [{ podSelector: { matchLabels: { app: "b" } } }],
        ports: [{ port: 80 }, { port: 8000, endPort: 8080 }, { protocol: "UDP", port: 53 }],
      }],
    }),
    np("x", "deny-egress", { podSelector: { matchLabels: { app: "b" } }, policyTypes: ["Egress"] }),
  ], [a, b, far]));
  const H = glxHash("from-b", "x");
  const peer = [...c.specs.keys()][0];
  const mark = "0x2000000";
  const podI = `GLX-POD-I-${hash16(`I:GLX-PLCY-I-${H}`)}`;
  const podE = `GLX-POD-E-${hash16(`E:GLX-PLCY-E-${glxHash("deny-egress", "x")}`)}`;
  assert.deepEqual(Object.fromEntries(c.chains), {
    [`GLX-PLCY-I-${H}`]: [
      `-m set --match-set ${peer} src -p tcp -m multiport --dports 80,8000:8080 -j RETURN`,
      `-m set --match-set ${peer} src -p udp -m multiport --dports 53 -j RETURN`,
      `-j MARK --set-xmark ${mark}/${mark}`,
    ],
    [`GLX-PLCY-E-${glxHash("deny-egress", "x")}`]: [`-j MARK --set-xmark ${mark}/${mark}`],
    [podI]: [
      `-j MARK --set-xmark 0x0/${mark}`,
      `-j GLX-PLCY-I-${H}`,
      `-m mark --mark 0x0/${mark} -j RETURN`,
      "-j DROP",
    ],
    [podE]: [
      `-j MARK --set-xmark 0x0/${mark}`,
      `-j GLX-PLCY-E-${glxHash("deny-egress", "x")}`,
      `-m mark --mark 0x0/${mark} -j RETURN`,
      "-j DROP",
    ],
    "GLX-INGRESS": [
      "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
      `-d 198.18.0.1/32 ! -s 198.18.0.1/32 -m comment --comment x/a -j ${podI}`,
    ],
    "GLX-EGRESS": [
      "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
      `-s 198.18.0.2/32 ! -d 198.18.0.2/32 -m comment --comment x/b -j ${podE}`,
    ],
  });
  assert.deepEqual(members(c), { [peer]: ["198.18.0.2"] });
  assert.equal(
    c.chains.get("GLX-INGRESS")!.some((r) => r.includes("198.18.0.3")),
    false,
    "a pod of another node got a chain",
  );
});

Deno.test("compile: podSelector peers stay in the policy's namespace; both selectors intersect; from: [] allows all", () => {
  const pods = [
    pod("x", "a", "198.18.0.1", { app: "a" }),
    pod("x", "b", "198.18.0.2", { app: "b" }),
    pod("y", "b", "198.18.1.2", { app: "b" }, "n2"),
    pod("y", "c", "198.18.1.3", { app: "c" }, "n2"),
  ];
  const sel = (l: Record<string, string>) => ({ matchLabels: l });
  const c = compile(model([
    np("x", "p", {
      podSelector: sel({ app: "a" }),
      ingress: [
        { from: [{ podSelector: sel({ app: "b" }) }] },
        { from: [{ namespaceSelector: sel({ ns: "y" }), podSelector: sel({ app: "c" }) }] },
        { from: [], ports: [{ port: 22 }] },
      ],
    }),
  ], pods));
  assert.deepEqual(Object.values(members(c)).sort(), [["198.18.0.2"], ["198.18.1.3"]]);
  assert.ok(
    c.chains.get(`GLX-PLCY-I-${glxHash("p", "x")}`)!.includes("-p tcp -m multiport --dports 22 -j RETURN"),
  );
  const all = compile(model([np("x", "all", { ingress: [{ from: [] }] })], pods));
  assert.deepEqual(all.chains.get(`GLX-PLCY-I-${glxHash("all", "x")}`)!.slice(0, 1), ["-j RETURN"]);
});

Deno.test("compile: named ports resolve per target pod (ingress) and per destination pod (egress)", () => {
  const http = (port: number) => [{ name: "http", protocol: "TCP", port }];
  const pods = [
    pod("x", "a", "198.18.0.1", { app: "s" }, "n1", http(8080)),
    pod("x", "b", "198.18.0.2", { app: "s" }, "n1", http(9090)),
    pod("x", "c", "198.18.0.3", { app: "s" }, "n1"),
    pod("y", "d", "198.18.1.4", { app: "d" }, "n2", http(7070)),
  ];
  const c = compile(model([
    np("x", "in", {
      podSelector: { matchLabels: { app: "s" } },
      ingress: [{ ports: [{ port: "http" }, { port: "http", protocol: "UDP" }] }],
    }),
    np("x", "out", {
      podSelector: { matchLabels: { app: "s" } },
      policyTypes: ["Egress"],
      egress: [{ ports: [{ port: "http" }] }],
    }),
  ], pods));
  const sets = members(c);
  const portSets = [...c.specs.values()].filter((s) => s.kind === "ports").map((s) => sets[s.name]);
  assert.deepEqual(portSets.sort(), [
    ["198.18.0.1,tcp:8080", "198.18.0.2,tcp:9090"],
    ["198.18.0.1,tcp:8080", "198.18.0.2,tcp:9090", "198.18.1.4,tcp:7070"],
  ]);
});

Deno.test("compile: pods selected by the same policies share one pod chain", () => {
  const pods = [1, 2, 3].map((i) => pod("x", `p${i}`, `198.18.0.${i}`, { app: i < 3 ? "web" : "db" }));
  const c = compile(model([
    np("x", "all", { ingress: [{ from: [{ podSelector: {} }] }] }),
    np("x", "web", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ ports: [{ port: 80 }] }] }),
  ], pods));
  const podChains = [...c.chains.keys()].filter((n) => n.startsWith("GLX-POD-I-"));
  assert.equal(podChains.length, 2, "web pods share a chain, the db pod has its own");
  const jumps = c.chains.get("GLX-INGRESS")!.slice(1).map((r) => r.split(" -j ")[1]);
  assert.equal(jumps[0], jumps[1]);
  assert.notEqual(jumps[0], jumps[2]);
});

Deno.test("compile: nothing isolated here means no chain and no set", () => {
  const c = compile(
    model([np("x", "p", { podSelector: { matchLabels: { app: "none" } } })], [
      pod("x", "a", "198.18.0.1", {}),
    ]),
  );
  assert.equal(c.chains.size, 0);
  assert.equal(c.specs.size, 0);
  assert.equal(compile(model([], [])).chains.size, 0);
});

class FakeApplier {
  applied: Compiled[] = [];
  fail = false;
  forget() {}
  apply(next: Compiled): Promise<never> | Promise<{ fresh: boolean }> {
    if (this.fail) return Promise.reject(new Error("boom"));
    // A deep copy: the engine updates members in place afterwards.
    this.applied.push({ ...next, members: new Map([...next.members].map(([k, v]) => [k, new Map(v)])) });
    return Promise.resolve({ fresh: false });
  }
}

const silent = { error() {}, warn() {}, v() {} };

Deno.test("engine: nothing applied before ready; pod events applied member by member equal a full compile", async () => {
  const applier = new FakeApplier();
  const engine = new PolicyEngine("node-0", applier as never, silent);
  engine.debounceMs = 0;
  const m = scaleModel(50, 2000);
  for (const [name, labels] of m.namespaces) engine.setNamespace(name, labels);
  for (const p of m.policies) engine.setPolicy(p);
  for (const p of m.pods.values()) engine.setPod(p);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(applier.applied.length, 0, "applied before the watches were ready");
  engine.ready();
  await engine.idle();
  assert.equal(engine.counters.fullSyncs, 1);
  // Remote and local pods come, change labels, go.
  engine.setPod(scalePod(5000));
  engine.setPod({ ...scalePod(3), labels: { app: "a2", tier: "t0" } });
  engine.setPod({ ...scalePod(150), labels: { app: "a3", tier: "t0" } });
  engine.deletePod("ns-7", "pod-0");
  engine.setPod({ ...scalePod(7), ip: "198.19.200.7" });
  await engine.idle();
  assert.equal(engine.counters.fullSyncs, 1, "a pod event caused a full compile");
  assert.ok(engine.counters.incrementalSyncs >= 1);
  const last = applier.applied[applier.applied.length - 1];
  const full = compile(engine.model);
  assert.deepEqual(members(last), members(full));
  assert.deepEqual(Object.fromEntries(last.chains), Object.fromEntries(full.chains));
  await engine.close();
});

Deno.test("engine: a failing apply is counted, logged and retried with a full compile", async () => {
  const applier = new FakeApplier();
  const errors: string[] = [];
  const engine = new PolicyEngine("n1", applier as never, {
    ...silent,
    error: (m: string) => errors.push(m),
  });
  engine.debounceMs = 0;
  engine.retryMs = 10;
  engine.setPod(pod("x", "a", "198.18.0.1", {}));
  engine.setPolicy(np("x", "deny", {}));
  applier.fail = true;
  engine.ready();
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(engine.counters.errors >= 1);
  assert.match(errors[0], /keeping the rules in force: boom/);
  applier.fail = false;
  await engine.idle();
  assert.equal(applier.applied.length, 1);
  assert.equal(applier.applied[0].chains.size, 4);
  await engine.close();
});

Deno.test("scale: 1 000 policies over 10 000 pods compile well under 2 s", () => {
  const m = scaleModel();
  const started = performance.now();
  const c = compile(m);
  const ms = performance.now() - started;
  const entries = [...c.members.values()].reduce((n, s) => n + s.size, 0);
  console.log(
    `compile: ${ms.toFixed(0)} ms, ${c.chains.size} chains, ${c.specs.size} sets, ${entries} members`,
  );
  assert.ok(c.chains.size > 2000, "the synthetic policies should all select pods of this node");
  assert.ok(ms < 2000, `compile took ${ms.toFixed(0)} ms`);
});

Deno.test("metrics: the policy counters in Prometheus text", () => {
  const text = renderPolicyMetrics({
    fullSyncs: 3,
    incrementalSyncs: 7,
    errors: 1,
    lastFullSeconds: 0.5,
    lastIncrementalSeconds: 0.01,
    chains: 12,
    sets: 4,
  });
  assert.match(
    text,
    /^# TYPE galaxy_network_policy_sync_errors_total counter\ngalaxy_network_policy_sync_errors_total 1$/m,
  );
  assert.match(text, /^galaxy_network_policy_full_syncs_total 3$/m);
  assert.match(text, /^galaxy_network_policy_sets 4$/m);
  assert.ok(text.endsWith("\n"));
});

Deno.test("engine: dropping the pods of other nodes recompiles without them", async () => {
  const applier = new FakeApplier();
  const engine = new PolicyEngine("n1", applier as never, silent);
  engine.debounceMs = 0;
  engine.setPod(pod("x", "a", "198.18.0.1", { app: "a" }));
  engine.setPod(pod("x", "b", "198.18.0.2", { app: "b" }, "n2"));
  engine.setPolicy(
    np("x", "p", { podSelector: { matchLabels: { app: "a" } }, ingress: [{ from: [{ podSelector: {} }] }] }),
  );
  engine.ready();
  await engine.idle();
  assert.ok(engine.needsClusterPods());
  assert.deepEqual(Object.values(members(applier.applied.at(-1)!)), [["198.18.0.1", "198.18.0.2"]]);
  engine.dropRemotePods();
  await engine.idle();
  assert.deepEqual(Object.values(members(applier.applied.at(-1)!)), [["198.18.0.1"]]);
  await engine.close();
});

Deno.test("CNI ADD: the new pod's rules are applied before its annotation is written, and kept until the watch has its IP", async () => {
  const applier = new FakeApplier();
  const engine = new PolicyEngine("n1", applier as never, silent);
  engine.debounceMs = 0;
  engine.setPolicy(np("x", "deny", {}));
  const obj = {
    metadata: { namespace: "x", name: "new", labels: { app: "a" } },
    spec: { nodeName: "n1" },
    status: {},
  };
  engine.setPod(podFromObject(obj)!); // the watch saw the pod before it had an address
  engine.ready();
  await engine.idle();
  assert.equal(applier.applied.at(-1)!.chains.size, 0, "nothing to isolate without an address");
  const written: string[] = [];
  const source = enforcingPodSource(
    {
      getPod: () => Promise.resolve(obj as never),
      setNetworkStatus: (_ns, _name, value) => {
        written.push(value);
        // By now the pod's chain must be in the applied state.
        assert.ok(
          applier.applied.at(-1)!.chains.get("GLX-INGRESS")!.some((r) => r.startsWith("-d 198.18.9.9/32")),
        );
        return Promise.resolve();
      },
      notReadyReason: () => undefined,
    },
    engine,
    silent,
  );
  await source.getPod("x", "new");
  await source.setNetworkStatus(
    "x",
    "new",
    JSON.stringify([{ name: "n", interface: "eth0", ips: ["198.18.9.9"], default: true }]),
  );
  assert.equal(written.length, 1);
  // The watch reports the pod again, still without an address (our own annotation patch): the rules stay.
  engine.setPod(podFromObject({ ...obj, metadata: { ...obj.metadata, annotations: { a: "b" } } })!);
  await engine.idle();
  assert.ok(applier.applied.at(-1)!.chains.get("GLX-INGRESS")!.some((r) => r.startsWith("-d 198.18.9.9/32")));
  // Deleted: gone.
  engine.deletePod("x", "new");
  await engine.idle();
  assert.equal(applier.applied.at(-1)!.chains.size, 0);
  await engine.close();
});
