/**
 * A synthetic cluster for the network policy scale target (issue: 1 000 policies over 10 000 pods compiled
 * and applied in under 2 s, an incremental pod add/remove in under 50 ms): 100 namespaces of 100 pods on 20
 * nodes (this node holds 1 000 of them, ten per namespace with every label value, so every policy selects
 * pods here: the worst case), ten policies
 * per namespace mixing every peer and port kind. Addresses from 198.18.0.0/15.
 * @module
 */
import { type Pod, type Policy, policyFromObject, type PolicyModel } from "../../daemon/policy/model.ts";

/** The node whose rules are compiled. */
export const SCALE_NODE = "node-0";

/** The address of pod number `i`. */
export function scaleIp(i: number): string {
  return `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

/** A pod of the synthetic cluster. */
export function scalePod(i: number, namespaces = 100): Pod {
  const ns = i % namespaces;
  const j = Math.floor(i / namespaces);
  return {
    namespace: `ns-${ns}`,
    name: `pod-${j}`,
    labels: { app: `a${j % 10}`, tier: `t${j % 3}` },
    ip: scaleIp(i),
    nodeName: j < 10 ? SCALE_NODE : `node-${1 + (j % 19)}`,
    ports: [
      { name: "http", protocol: "TCP", port: 8000 + (j % 4) },
      { name: "dns", protocol: "UDP", port: 53 },
    ],
  };
}

function policy(ns: number, k: number): Policy {
  const sel = (labels: Record<string, string>) => ({ matchLabels: labels });
  const spec: Record<string, unknown>[] = [
    { podSelector: {}, policyTypes: ["Ingress"] },
    {
      podSelector: sel({ app: "a1" }),
      ingress: [{ from: [{ podSelector: sel({ app: "a2" }) }], ports: [{ port: 80 }] }],
    },
    {
      podSelector: sel({ tier: "t1" }),
      ingress: [{
        from: [{ namespaceSelector: sel({ team: `t${ns % 10}` }), podSelector: sel({ tier: "t0" }) }],
        ports: [{ port: "http" }],
      }],
    },
    {
      podSelector: sel({ app: "a3" }),
      policyTypes: ["Egress"],
      egress: [
        { to: [{ ipBlock: { cidr: "198.18.0.0/15", except: ["198.18.1.0/24"] } }] },
        { to: [{ namespaceSelector: sel({ team: "t1" }) }], ports: [{ protocol: "UDP", port: 53 }] },
      ],
    },
    {
      podSelector: sel({ app: "a4" }),
      ingress: [{
        from: [{ namespaceSelector: {} }, { podSelector: {} }],
        ports: [{ port: 9000, endPort: 9100 }],
      }],
    },
    {
      podSelector: sel({ app: "a5" }),
      ingress: [{}],
      egress: [{ to: [{ podSelector: sel({ tier: "t2" }) }] }],
    },
    {
      podSelector: { matchExpressions: [{ key: "app", operator: "In", values: ["a6", "a7"] }] },
      ingress: [{
        from: [{ podSelector: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["t0"] }] } }],
      }],
    },
    { podSelector: sel({ app: "a8" }), egress: [{ ports: [{ port: "http" }] }], policyTypes: ["Egress"] },
    {
      podSelector: sel({ app: "a9" }),
      ingress: [{ from: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["198.19.0.0/16"] } }] }],
    },
    {
      podSelector: sel({ tier: "t2" }),
      ingress: [{
        from: [{ namespaceSelector: sel({ team: `t${(ns + 1) % 10}` }) }],
        ports: [{ protocol: "SCTP", port: 3868 }, { port: 443 }],
      }],
    },
  ];
  return policyFromObject({
    metadata: { namespace: `ns-${ns}`, name: `p${k}` },
    spec: spec[k % spec.length],
  });
}

/** The synthetic model: `policies` policies over `pods` pods in 100 namespaces. */
export function scaleModel(policies = 1000, pods = 10_000): PolicyModel {
  const model: PolicyModel = { policies: [], pods: new Map(), namespaces: new Map(), node: SCALE_NODE };
  for (let n = 0; n < 100; n++) {
    model.namespaces.set(`ns-${n}`, { "kubernetes.io/metadata.name": `ns-${n}`, team: `t${n % 10}` });
  }
  for (let i = 0; i < pods; i++) {
    const p = scalePod(i);
    model.pods.set(`${p.namespace}/${p.name}`, p);
  }
  for (let i = 0; i < policies; i++) model.policies.push(policy(i % 100, Math.floor(i / 100)));
  return model;
}
