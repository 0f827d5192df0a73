/**
 * Network policy on the real kernel. A node namespace with six pods in three namespaces (galaxy-veth
 * attachments, addresses from ipinfos) plus a client namespace standing for another node, the engine applying
 * to the node namespace, and for each case of the table (taken from the Kubernetes e2e network policy suite)
 * every TCP and UDP connection between every pair tried for real and compared with what Kubernetes says.
 * "What Kubernetes says" is an oracle written here from the API documentation, independent of the compiler.
 * Also: probes from the node, established connections across an update, a restart that never opens a
 * window, the Go engine's leftovers replaced, and nothing `GLX-` left once policy is gone.
 * @module
 */
import assert from "node:assert/strict";
import { Iptables } from "../../netops/iptables.ts";
import { ipsetRestore } from "../../netops/ipset.ts";
import { PolicyApplier } from "../../daemon/policy/apply.ts";
import { type EngineLog, PolicyEngine } from "../../daemon/policy/engine.ts";
import { removePolicyState } from "../../daemon/policy/mod.ts";
import { cidrRange } from "../../daemon/policy/cidr.ts";
import { matches } from "../../daemon/policy/selector.ts";
import { type LabelSelector, type Pod, policyFromObject } from "../../daemon/policy/model.ts";
import { kernelTest, type Lab, mustRun, type Netns, withLab } from "../helpers/netns.ts";
import { assertOk, runBuiltin } from "../helpers/plugin_harness.ts";
import { Agent } from "../helpers/netpol_lab.ts";

const NODE = "node-1";
const NODE_IP = "198.19.255.1";
const EXT_IP = "198.19.1.2";
const TCP_PORTS = [80, 81];
const UDP_PORTS = [80, 81];
/** Named container ports every pod declares, as the e2e suite's pods do. */
const NAMED = [
  { name: "serve-80-tcp", protocol: "TCP", port: 80 },
  { name: "serve-81-tcp", protocol: "TCP", port: 81 },
  { name: "serve-80-udp", protocol: "UDP", port: 80 },
  { name: "serve-81-udp", protocol: "UDP", port: 81 },
];
const NAMESPACES: Record<string, Record<string, string>> = {
  x: { "kubernetes.io/metadata.name": "x", ns: "x" },
  y: { "kubernetes.io/metadata.name": "y", ns: "y" },
  z: { "kubernetes.io/metadata.name": "z", ns: "z" },
};
const PODS = [
  { ns: "x", name: "a", ip: "198.18.20.11" },
  { ns: "x", name: "b", ip: "198.18.20.12" },
  { ns: "x", name: "c", ip: "198.18.20.13" },
  { ns: "y", name: "a", ip: "198.18.20.21" },
  { ns: "y", name: "b", ip: "198.18.20.22" },
  { ns: "z", name: "a", ip: "198.18.20.31" },
];

type Obj = Record<string, unknown>;
type Endpoint = { id: string; ip: string; pod?: Pod };

function pod(p: (typeof PODS)[number]): Pod {
  return { namespace: p.ns, name: p.name, labels: { pod: p.name }, ip: p.ip, nodeName: NODE, ports: NAMED };
}

// ------------------------------------------------------------------------------------------------ oracle

function inBlock(ip: string, block: { cidr: string; except?: string[] }): boolean {
  const n = cidrRange(`${ip}/32`)![0];
  const inside = (c: string) => {
    const r = cidrRange(c)!;
    return n >= r[0] && n <= r[1];
  };
  return inside(block.cidr) && !(block.except ?? []).some(inside);
}

function peerAllows(peer: Obj, policyNs: string, other: Endpoint): boolean {
  if (peer.ipBlock) return inBlock(other.ip, peer.ipBlock as { cidr: string; except?: string[] });
  if (!other.pod) return false;
  const nsSel = peer.namespaceSelector as LabelSelector | undefined;
  const podSel = peer.podSelector as LabelSelector | undefined;
  if (nsSel ? !matches(nsSel, NAMESPACES[other.pod.namespace]) : other.pod.namespace !== policyNs) {
    return false;
  }
  return !podSel || matches(podSel, other.pod.labels);
}

function portAllows(ports: Obj[] | undefined, proto: string, port: number, dst: Endpoint): boolean {
  if (!ports?.length) return true;
  return ports.some((p) => {
    if (((p.protocol as string) ?? "TCP") !== proto.toUpperCase()) return false;
    if (p.port === undefined) return true;
    if (typeof p.port === "string") {
      return !!dst.pod?.ports.some((c) =>
        c.name === p.port && c.protocol === proto.toUpperCase() && c.port === port
      );
    }
    return port >= (p.port as number) && port <= ((p.endPort as number) ?? p.port);
  });
}

/** Whether Kubernetes allows `src` → `dst` on proto/port under `policies`. */
function kubernetesAllows(
  policies: Obj[],
  src: Endpoint,
  dst: Endpoint,
  proto: string,
  port: number,
): boolean {
  if (src.id === "node") return true; // the pod's own node always reaches it
  const direction = (self: Endpoint, other: Endpoint, dir: "Ingress" | "Egress"): boolean => {
    if (!self.pod) return true;
    const selecting = policies.filter((p) => {
      const meta = p.metadata as Obj;
      const spec = p.spec as Obj;
      const types = (spec.policyTypes as string[] | undefined) ??
        (spec.egress !== undefined ? ["Ingress", "Egress"] : ["Ingress"]);
      return meta.namespace === self.pod!.namespace && types.includes(dir) &&
        matches(spec.podSelector as LabelSelector, self.pod!.labels);
    });
    if (!selecting.length) return true;
    return selecting.some((p) => {
      const spec = p.spec as Obj;
      const rules = ((dir === "Ingress" ? spec.ingress : spec.egress) ?? []) as Obj[];
      return rules.some((r) => {
        const peers = (dir === "Ingress" ? r.from : r.to) as Obj[] | undefined;
        const peerOk = !peers?.length ||
          peers.some((peer) => peerAllows(peer, (p.metadata as Obj).namespace as string, other));
        return peerOk &&
          portAllows(r.ports as Obj[] | undefined, proto, port, dir === "Ingress" ? self : other);
      });
    });
  };
  return direction(src, dst, "Egress") && direction(dst, src, "Ingress");
}

// ------------------------------------------------------------------------------------------------ cases

function np(ns: string, name: string, spec: Obj): Obj {
  return { metadata: { namespace: ns, name }, spec: { podSelector: {}, ...spec } };
}
const pods = (labels: Record<string, string>) => ({ matchLabels: labels });

/** Cases named after the e2e tests they follow (test/e2e/network/netpol/network_policy.go). */
const CASES: { name: string; policies: Obj[] }[] = [
  { name: "no policy: everything allowed", policies: [] },
  {
    name: "should support a 'default-deny-ingress' policy",
    policies: [np("x", "deny", { policyTypes: ["Ingress"] })],
  },
  {
    name: "should support a 'default-deny-all' policy",
    policies: [np("x", "deny", { policyTypes: ["Ingress", "Egress"] })],
  },
  { name: "default-deny egress only", policies: [np("x", "deny", { policyTypes: ["Egress"] })] },
  {
    name: "should allow ingress access from anywhere ({} rule)",
    policies: [np("x", "all", { ingress: [{}] })],
  },
  {
    name: "should support allow-all policy for the same namespace",
    policies: [np("x", "same", { ingress: [{ from: [{ podSelector: {} }] }] })],
  },
  {
    name: "should enforce policy to allow traffic only from a pod in the same namespace",
    policies: [
      np("x", "from-b", {
        podSelector: pods({ pod: "a" }),
        ingress: [{ from: [{ podSelector: pods({ pod: "b" }) }] }],
      }),
    ],
  },
  {
    name:
      "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
    policies: [
      np("x", "from-y", {
        podSelector: pods({ pod: "a" }),
        ingress: [{ from: [{ namespaceSelector: pods({ ns: "y" }) }] }],
      }),
    ],
  },
  {
    name: "should enforce policy based on PodSelector and NamespaceSelector (one peer: intersection)",
    policies: [np("x", "y-b", {
      podSelector: pods({ pod: "a" }),
      ingress: [{ from: [{ namespaceSelector: pods({ ns: "y" }), podSelector: pods({ pod: "b" }) }] }],
    })],
  },
  {
    name: "should enforce policy based on PodSelector or NamespaceSelector (two peers: union)",
    policies: [np("x", "y-or-b", {
      podSelector: pods({ pod: "a" }),
      ingress: [{ from: [{ namespaceSelector: pods({ ns: "y" }) }, { podSelector: pods({ pod: "b" }) }] }],
    })],
  },
  {
    name: "should enforce policy based on NamespaceSelector with MatchExpressions",
    policies: [np("x", "not-y", {
      podSelector: pods({ pod: "a" }),
      ingress: [{
        from: [{
          namespaceSelector: { matchExpressions: [{ key: "ns", operator: "NotIn", values: ["y"] }] },
        }],
      }],
    })],
  },
  {
    name: "should enforce policy based on PodSelector with MatchExpressions (Exists / DoesNotExist)",
    policies: [np("x", "expr", {
      podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["a", "b"] }] },
      ingress: [{
        from: [{
          podSelector: {
            matchExpressions: [{ key: "pod", operator: "Exists" }, { key: "x", operator: "DoesNotExist" }],
          },
        }],
      }],
    })],
  },
  {
    name: "should allow ingress access on one named port",
    policies: [
      np("x", "named", { podSelector: pods({ pod: "a" }), ingress: [{ ports: [{ port: "serve-81-tcp" }] }] }),
    ],
  },
  {
    name: "should allow ingress access from namespace on one named port (UDP)",
    policies: [np("x", "named-udp", {
      ingress: [{
        from: [{ namespaceSelector: pods({ ns: "y" }) }],
        ports: [{ protocol: "UDP", port: "serve-80-udp" }],
      }],
    })],
  },
  {
    name: "should enforce policy to allow traffic only from a pod on multiple ports",
    policies: [
      np("x", "multi", {
        podSelector: pods({ pod: "a" }),
        ingress: [{ ports: [{ port: 80 }, { protocol: "UDP", port: 81 }] }],
      }),
    ],
  },
  {
    name: "should enforce ingress policy allowing any port traffic to a server on a specific protocol (UDP)",
    policies: [
      np("x", "udp", { podSelector: pods({ pod: "a" }), ingress: [{ ports: [{ protocol: "UDP" }] }] }),
    ],
  },
  {
    // SCTP itself is not tried (this kernel has no SCTP sockets, and neither Deno nor node:net speak it): the
    // rule is loaded into the real kernel, and TCP and UDP to the same port stay refused.
    name: "should enforce policy based on Ports on SCTP (the rule loads; TCP/UDP stay refused)",
    policies: [
      np("x", "sctp", {
        podSelector: pods({ pod: "a" }),
        ingress: [{ ports: [{ protocol: "SCTP", port: 80 }] }],
      }),
    ],
  },
  {
    name: "should support a port range with endPort",
    policies: [
      np("x", "range", {
        podSelector: pods({ pod: "a" }),
        ingress: [{ ports: [{ port: 81, endPort: 90 }] }],
      }),
    ],
  },
  {
    name: "should allow ingress from an ipBlock with except",
    policies: [np("x", "block", {
      podSelector: pods({ pod: "a" }),
      ingress: [{
        from: [{ ipBlock: { cidr: "198.18.0.0/15", except: ["198.18.20.12/32", "198.18.20.20/30"] } }],
      }],
    })],
  },
  {
    name:
      "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
    policies: [np("x", "egress-y", {
      podSelector: pods({ pod: "a" }),
      policyTypes: ["Egress"],
      egress: [{ to: [{ namespaceSelector: pods({ ns: "y" }), podSelector: pods({ pod: "a" }) }] }],
    })],
  },
  {
    name: "should enforce egress to a CIDR with except (ipBlock 0.0.0.0/0)",
    policies: [np("x", "egress-cidr", {
      podSelector: pods({ pod: "a" }),
      policyTypes: ["Egress"],
      egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["198.18.20.0/28"] } }] }],
    })],
  },
  {
    name: "should enforce egress on a named port of the destination",
    policies: [
      np("y", "egress-named", {
        policyTypes: ["Egress"],
        egress: [{ ports: [{ protocol: "UDP", port: "serve-81-udp" }] }],
      }),
    ],
  },
  {
    name: "should not enforce egress rules when policyTypes is Ingress only",
    policies: [np("x", "ingress-only", {
      podSelector: pods({ pod: "a" }),
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ podSelector: pods({ pod: "b" }) }] }],
      egress: [{ to: [{ ipBlock: { cidr: "198.19.1.2/32" } }] }],
    })],
  },
  {
    name: "should not enforce ingress rules when policyTypes is Egress only",
    policies: [np("y", "egress-only", {
      policyTypes: ["Egress"],
      ingress: [{ from: [{ podSelector: pods({ pod: "b" }) }] }],
      egress: [{ to: [{ namespaceSelector: pods({ ns: "z" }) }] }],
    })],
  },
  {
    name: "should enforce multiple, stacked policies with overlapping podSelectors (OR'ed)",
    policies: [
      np("x", "from-b", {
        podSelector: pods({ pod: "a" }),
        ingress: [{ from: [{ podSelector: pods({ pod: "b" }) }] }],
      }),
      np("x", "from-z", {
        ingress: [{ from: [{ namespaceSelector: pods({ ns: "z" }) }], ports: [{ port: 80 }] }],
      }),
    ],
  },
  {
    name: "same node: the source's egress and the destination's ingress both apply",
    policies: [
      np("x", "a-egress", {
        podSelector: pods({ pod: "a" }),
        policyTypes: ["Egress"],
        egress: [{ to: [{ namespaceSelector: {} }] }],
      }),
      np("y", "deny-a", { podSelector: pods({ pod: "a" }), policyTypes: ["Ingress"] }),
      np("y", "b-from-x", {
        podSelector: pods({ pod: "b" }),
        ingress: [{ from: [{ namespaceSelector: pods({ ns: "x" }) }] }],
      }),
    ],
  },
  {
    name: "should allow egress to everything in the cluster but not outside (namespaceSelector {})",
    policies: [
      np("z", "cluster-only", { policyTypes: ["Egress"], egress: [{ to: [{ namespaceSelector: {} }] }] }),
    ],
  },
];

// ------------------------------------------------------------------------------------------------ lab

interface PolicyLab {
  lab: Lab;
  endpoints: Endpoint[];
  agents: Map<string, Agent>;
  iptables: Iptables;
}

const quietLog: EngineLog = {
  error: (m) => console.error(m),
  warn: (m) => console.error(m),
  v: () => {},
};

async function withPolicyLab(label: string, fn: (pl: PolicyLab) => Promise<void>): Promise<void> {
  await withLab(label, async (lab) => {
    await lab.ip(lab.node, ["addr", "add", `${NODE_IP}/32`, "dev", "lo"]);
    const ext = await lab.pod("ext");
    await lab.ip(lab.node, [
      "link",
      "add",
      "n-ext",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      ext.name,
    ]);
    await lab.ip(lab.node, ["addr", "add", "198.19.1.1/24", "dev", "n-ext"]);
    await lab.ip(lab.node, ["link", "set", "n-ext", "up"]);
    await lab.ip(ext, ["addr", "add", `${EXT_IP}/24`, "dev", "eth0"]);
    await lab.ip(ext, ["link", "set", "eth0", "up"]);
    await lab.ip(ext, ["route", "add", "198.18.0.0/15", "via", "198.19.1.1"]);
    await lab.exec(lab.node, "sh", ["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    const nsOf = new Map<string, Netns>([["ext", ext], ["node", lab.node]]);
    await Promise.all(PODS.map(async (p, i) => {
      const netns = await lab.pod(`${p.ns}${p.name}`);
      nsOf.set(`${p.ns}/${p.name}`, netns);
      const run = await runBuiltin(lab, "galaxy-veth", {
        verb: "ADD",
        conf: { cniVersion: "1.0.0", name: "gtest-np", type: "galaxy-veth", routeSrc: NODE_IP },
        containerId: `np${i}cafe0000`,
        netns,
        args: { ipinfos: JSON.stringify([{ ip: `${p.ip}/24`, vlan: 0 }]) },
      });
      assertOk(run, `galaxy-veth ADD of ${p.ns}/${p.name}`);
    }));
    const endpoints: Endpoint[] = [
      ...PODS.map((p) => ({ id: `${p.ns}/${p.name}`, ip: p.ip, pod: pod(p) })),
      { id: "ext", ip: EXT_IP },
      { id: "node", ip: NODE_IP },
    ];
    const agents = new Map<string, Agent>();
    try {
      await Promise.all(endpoints.map(async (e) => {
        const serve = e.id === "node" ? { tcp: [], udp: [] } : { tcp: TCP_PORTS, udp: UDP_PORTS };
        agents.set(e.id, await Agent.start(nsOf.get(e.id)!, serve));
      }));
      const iptables = await Iptables.open({ netns: lab.node.path });
      await fn({ lab, endpoints, agents, iptables });
    } finally {
      await Promise.all([...agents.values()].map((a) => a.stop()));
    }
  });
}

function newEngine(pl: PolicyLab): PolicyEngine {
  const engine = new PolicyEngine(NODE, new PolicyApplier(pl.iptables), quietLog);
  engine.debounceMs = 0;
  for (const [name, labels] of Object.entries(NAMESPACES)) engine.setNamespace(name, labels);
  for (const e of pl.endpoints) if (e.pod) engine.setPod(e.pod);
  return engine;
}

async function setPolicies(engine: PolicyEngine, current: Obj[], next: Obj[]): Promise<void> {
  for (const p of current) {
    const m = p.metadata as Obj;
    engine.deletePolicy(m.namespace as string, m.name as string);
  }
  for (const p of next) engine.setPolicy(policyFromObject(p));
  await engine.idle();
  assert.equal(engine.counters.errors, 0, "the engine reported an error");
}

/** Every pair, every protocol and port: tried for real, compared with the oracle; returns the mismatches. */
async function truthTable(pl: PolicyLab, policies: Obj[], round: number): Promise<string[]> {
  const checks: Promise<string | undefined>[] = [];
  for (const src of pl.endpoints) {
    let sourcePort = 10_000 + round * 100;
    for (const dst of pl.endpoints) {
      if (src === dst || dst.id === "node") continue;
      for (const [proto, ports] of [["tcp", TCP_PORTS], ["udp", UDP_PORTS]] as const) {
        for (const port of ports) {
          // A source port of its own per round: an earlier round's UDP flow (conntrack keeps it for 30 s)
          // must not carry this check through.
          const from = sourcePort++;
          checks.push((async () => {
            const want = kubernetesAllows(policies, src, dst, proto, port);
            const got = await pl.agents.get(src.id)!.try(proto, dst.ip, port, want ? 3000 : 800, from);
            return got === want
              ? undefined
              : `${src.id} -> ${dst.id} ${proto}/${port}: ${got ? "allowed" : "refused"}, Kubernetes says ${
                want ? "allowed" : "refused"
              }`;
          })());
        }
      }
    }
  }
  return (await Promise.all(checks)).filter((m): m is string => m !== undefined);
}

async function glxLeft(lab: Lab): Promise<string[]> {
  const rules = await mustRun("ip", ["netns", "exec", lab.node.name, "iptables-save"]);
  const sets = await mustRun("ip", ["netns", "exec", lab.node.name, "ipset", "list", "-n"]);
  return [...rules.split("\n"), ...sets.split("\n")].filter((l) => l.includes("GLX"));
}

// ------------------------------------------------------------------------------------------------ tests

kernelTest(
  `network policy truth table: ${CASES.length} cases, every TCP/UDP pair checked by real connections`,
  async () => {
    await withPolicyLab("nptable", async (pl) => {
      const engine = newEngine(pl);
      engine.ready();
      let current: Obj[] = [];
      const failures: string[] = [];
      const started = performance.now();
      for (const [round, c] of CASES.entries()) {
        await setPolicies(engine, current, c.policies);
        current = c.policies;
        const wrong = await truthTable(pl, c.policies, round);
        failures.push(...wrong.map((w) => `[${c.name}] ${w}`));
      }
      console.log(
        "skipped kernel part: SCTP connections (no SCTP socket support in Deno; SCTP rules are loaded and checked by TCP/UDP)",
      );
      console.log(`${CASES.length} cases in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      await setPolicies(engine, current, []);
      await engine.close();
      assert.deepEqual(failures, []);
      assert.deepEqual(await glxLeft(pl.lab), [], "GLX- chains or sets left after every policy was removed");
    });
  },
);

kernelTest(
  "network policy: probes, established connections across updates, restart without a window, Go leftovers, clean removal",
  async () => {
    await withPolicyLab("nplife", async (pl) => {
      const { lab, agents } = pl;
      // The Go engine's leftovers: its shared pod chain, its INPUT/OUTPUT jumps, a target set.
      await ipsetRestore(lab.node.path, [
        "create GLX-ip-Q6GMFAO3AMRGLUBA hash:ip",
        "add GLX-ip-Q6GMFAO3AMRGLUBA 198.18.20.11",
        // What a crash between create and swap leaves behind.
        "create GLX-tmp-1-0-0 hash:ip",
      ]);
      await mustRun("ip", ["netns", "exec", lab.node.name, "iptables-restore", "--noflush"], {
        stdin: [
          "*filter",
          ":GLX-INGRESS - [0:0]",
          ":GLX-EGRESS - [0:0]",
          ":GLX-POD-BLFOGEWPTSIKACFR - [0:0]",
          // Its pod chain as Galaxy writes it (the conntrack match also makes this namespace track connections,
          // as any node with kube-proxy does, so the connection opened below is known as established).
          "-A GLX-POD-BLFOGEWPTSIKACFR -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A GLX-POD-BLFOGEWPTSIKACFR -j DROP",
          "-A GLX-INGRESS -d 198.18.20.31/32 -j GLX-POD-BLFOGEWPTSIKACFR",
          "-I FORWARD 1 -j GLX-INGRESS",
          "-I FORWARD 1 -j GLX-EGRESS",
          "-I OUTPUT 1 -j GLX-INGRESS",
          "-I INPUT 1 -j GLX-EGRESS",
          "COMMIT",
          "",
        ].join("\n"),
      });
      assert.equal(
        await agents.get("node")!.try("tcp", "198.18.20.31", 80),
        false,
        "the Go leftover should block probes",
      );

      const deny = [np("x", "deny", { policyTypes: ["Ingress"] })];
      const engine = newEngine(pl);
      engine.setPolicy(policyFromObject(deny[0]));
      // Established before the policy exists: y/a -> x/a.
      assert.ok(await agents.get("y/a")!.open("held", "198.18.20.11", 80));
      assert.ok(await agents.get("y/a")!.send("held"));
      engine.ready();
      await engine.idle();
      assert.equal(engine.counters.errors, 0);
      const left = await glxLeft(lab);
      assert.ok(
        !left.some((l) =>
          l.includes("GLX-POD-BLFOGEWPTSIKACFR") || l.includes("GLX-ip-") || l.includes("GLX-tmp-")
        ),
        `Go leftovers remain: ${left.join("; ")}`,
      );
      assert.ok(!left.some((l) => /^-A (INPUT|OUTPUT)/.test(l)), "Galaxy's INPUT/OUTPUT jumps remain");
      assert.equal(
        await agents.get("node")!.try("tcp", "198.18.20.31", 80),
        true,
        "z/a is not isolated any more",
      );
      // Probes: the node reaches isolated pods; other pods do not.
      assert.equal(
        await agents.get("node")!.try("tcp", "198.18.20.11", 80),
        true,
        "a probe from the node was refused",
      );
      assert.equal(
        await agents.get("node")!.try("udp", "198.18.20.12", 81),
        true,
        "a probe from the node was refused",
      );
      assert.equal(
        await agents.get("y/b")!.try("tcp", "198.18.20.11", 80),
        false,
        "deny-all ingress let y/b in",
      );
      assert.ok(await agents.get("y/a")!.send("held"), "the established connection was cut by the policy");

      // An update (a new policy, a changed pod): the held connection lives on.
      engine.setPolicy(
        policyFromObject(
          np("x", "from-z", { ingress: [{ from: [{ namespaceSelector: pods({ ns: "z" }) }] }] }),
        ),
      );
      engine.setPod({ ...pod(PODS[1]), labels: { pod: "b", extra: "1" } });
      await engine.idle();
      assert.ok(await agents.get("y/a")!.send("held"), "the established connection was cut by an update");
      assert.equal(await agents.get("z/a")!.try("tcp", "198.18.20.11", 80), true);

      // A namespace label change: z/a loses the label the policy selects it by.
      engine.setNamespace("z", { "kubernetes.io/metadata.name": "z", ns: "other" });
      await engine.idle();
      assert.equal(
        await agents.get("z/a")!.try("tcp", "198.18.20.11", 80),
        false,
        "z left the namespace selector",
      );
      engine.setNamespace("z", NAMESPACES.z);
      await engine.idle();
      assert.equal(
        await agents.get("z/a")!.try("tcp", "198.18.20.11", 80),
        true,
        "z came back into the selector",
      );

      // Restart: the old engine stops; a new one starts fresh. Denied connections stay denied all along.
      let probing = true;
      let leaked = 0;
      let attempts = 0;
      const probe = (async () => {
        while (probing) {
          attempts++;
          if (await agents.get("y/b")!.try("tcp", "198.18.20.11", 80, 150)) leaked++;
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      await engine.close();
      await new Promise((r) => setTimeout(r, 300));
      const engine2 = newEngine(pl);
      engine2.setPolicy(policyFromObject(deny[0]));
      await new Promise((r) => setTimeout(r, 300));
      engine2.ready();
      await engine2.idle();
      await new Promise((r) => setTimeout(r, 300));
      probing = false;
      await probe;
      assert.equal(leaked, 0, `${leaked} of ${attempts} denied connections got through during the restart`);
      assert.ok(attempts >= 4);
      assert.equal(
        await agents.get("z/a")!.try("tcp", "198.18.20.11", 80),
        false,
        "the removed policy still allows",
      );

      // An incremental pod change: x/b moves to a new IP-less state and back; sets follow member by member.
      engine2.setPolicy(
        policyFromObject(np("x", "from-b", { ingress: [{ from: [{ podSelector: pods({ pod: "b" }) }] }] })),
      );
      await engine2.idle();
      assert.equal(await agents.get("x/b")!.try("tcp", "198.18.20.11", 80), true);
      const fulls = engine2.counters.fullSyncs;
      engine2.setPod({ ...pod(PODS[1]), labels: { pod: "other" } });
      await engine2.idle();
      assert.equal(engine2.counters.fullSyncs, fulls, "a pod label change caused a full sync");
      assert.ok(engine2.counters.incrementalSyncs > 0);
      assert.equal(
        await agents.get("x/b")!.try("tcp", "198.18.20.11", 80),
        false,
        "x/b left the selector but is still allowed",
      );
      engine2.setPod(pod(PODS[1]));
      await engine2.idle();
      assert.equal(
        await agents.get("x/b")!.try("tcp", "198.18.20.11", 80),
        true,
        "x/b came back but is refused",
      );
      await engine2.close();

      // --network-policy=false at the next start: everything GLX- goes.
      await removePolicyState(pl.iptables);
      assert.deepEqual(await glxLeft(lab), []);
      assert.equal(await agents.get("y/b")!.try("tcp", "198.18.20.11", 80), true);
    });
  },
);
