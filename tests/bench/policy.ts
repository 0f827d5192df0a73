/**
 * The network policy part of `deno task bench` (also runnable alone: `deno run -A tests/bench/policy.ts`):
 * the synthetic 1 000 policies × 10 000 pods of policy_scale.ts compiled and applied to a lab namespace's
 * kernel (target < 2 s), a policy changed (full compile, only changed sets swapped), and single pod events
 * applied member by member (target < 50 ms each), with the kernel read back. Needs root.
 * @module
 */
import { PolicyApplier } from "../../daemon/policy/apply.ts";
import { PolicyEngine } from "../../daemon/policy/engine.ts";
import { policyFromObject } from "../../daemon/policy/model.ts";
import { Iptables } from "../../netops/iptables.ts";
import { kernelSkipReason, mustRun, withLab } from "../helpers/netns.ts";
import { scaleIp, scaleModel, scalePod } from "./policy_scale.ts";

/** One result row: metric, measured, target, met. */
export type PolicyRow = [string, string, string, boolean];

async function timed(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

/** Runs the policy benchmark; returns its rows. */
export async function benchPolicy(): Promise<PolicyRow[]> {
  const rows: PolicyRow[] = [];
  await withLab("npbench", async (lab) => {
    const model = scaleModel();
    const errors: string[] = [];
    const engine = new PolicyEngine(
      model.node,
      new PolicyApplier(await Iptables.open({ netns: lab.node.path })),
      { error: (m) => errors.push(m), warn: () => {}, v: () => {} },
    );
    engine.debounceMs = 0;
    for (const [name, labels] of model.namespaces) engine.setNamespace(name, labels);
    for (const p of model.pods.values()) engine.setPod(p);
    for (const p of model.policies) engine.setPolicy(p);
    const full = await timed(async () => {
      engine.ready();
      await engine.idle();
    });
    const sets = (await mustRun("ip", ["netns", "exec", lab.node.name, "ipset", "list", "-n"])).split("\n")
      .filter((l) => l.startsWith("GLX-")).length;
    const chains = (await mustRun("ip", ["netns", "exec", lab.node.name, "iptables-save", "-t", "filter"]))
      .split("\n").filter((l) => l.startsWith(":GLX-")).length;
    rows.push([
      `compile + apply, ${model.policies.length} policies × ${model.pods.size} pods (${chains} chains, ${sets} sets in the kernel)`,
      `${full.toFixed(0)} ms`,
      "< 2000 ms",
      full < 2000 && errors.length === 0 && chains === engine.counters.chains &&
      sets === engine.counters.sets,
    ]);
    const change = await timed(async () => {
      engine.setPolicy(policyFromObject({
        metadata: { namespace: "ns-3", name: "p1" },
        spec: {
          podSelector: { matchLabels: { app: "a1" } },
          ingress: [{ from: [{ podSelector: { matchLabels: { app: "a7" } } }] }],
        },
      }));
      await engine.idle();
    });
    rows.push([
      "one policy changed (full compile, changed sets swapped)",
      `${change.toFixed(0)} ms`,
      "< 2000 ms",
      change < 2000,
    ]);
    const times: Record<string, number> = {};
    const remote = { ...scalePod(20_000), name: "bench-remote", ip: scaleIp(20_000) };
    const local = { ...scalePod(20_001), name: "bench-local", ip: scaleIp(20_001), nodeName: model.node };
    times["remote pod added"] = await timed(async () => {
      engine.setPod(remote);
      await engine.idle();
    });
    times["remote pod removed"] = await timed(async () => {
      engine.deletePod(remote.namespace, remote.name);
      await engine.idle();
    });
    times["local pod added (its chains written)"] = await timed(async () => {
      engine.setPod(local);
      await engine.idle();
    });
    times["local pod removed"] = await timed(async () => {
      engine.deletePod(local.namespace, local.name);
      await engine.idle();
    });
    for (const [what, ms] of Object.entries(times)) {
      rows.push([`incremental: ${what}`, `${ms.toFixed(1)} ms`, "< 50 ms", ms < 50]);
    }
    rows.push(["sync errors", String(engine.counters.errors), "0", engine.counters.errors === 0]);
    await engine.close();
  });
  return rows;
}

/** Prints the rows; returns how many missed their target. */
export function printPolicyRows(rows: PolicyRow[]): number {
  const width = [0, 1, 2].map((c) => Math.max(...rows.map((x) => String(x[c]).length), 8));
  console.log("Network policy benchmark");
  for (const x of rows) {
    console.log(
      x.slice(0, 3).map((c, i) => String(c).padEnd(width[i])).join("  ") + `  ${x[3] ? "met" : "MISSED"}`,
    );
  }
  return rows.filter((x) => !x[3]).length;
}

if (import.meta.main) {
  const reason = kernelSkipReason();
  if (reason) {
    console.error(`bench: ${reason}`);
    Deno.exit(1);
  }
  Deno.exit(printPolicyRows(await benchPolicy()) ? 1 : 0);
}
