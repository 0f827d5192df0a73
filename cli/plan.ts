/**
 * `galaxy plan [--socket-path PATH] [--json] [--ifname NAME] NAMESPACE/POD`: asks the daemon (`GET /plan`) what
 * an ADD of the pod would do, without doing it. Exit status 0 when the ADD would run its plugins, 1 when it
 * would fail before any plugin runs (the reason is printed), 2 for a usage error or an unreachable daemon.
 * @module
 */
import { parseArgs } from "node:util";
import { DEFAULT_SOCKET_PATH } from "../cni/wire.ts";
import { askDaemonJson } from "./ask_daemon.ts";
import { formatPlan, type Plan } from "../daemon/plan.ts";

const USAGE = "Usage: galaxy plan [--socket-path PATH] [--json] [--ifname NAME] NAMESPACE/POD";

/** Runs `galaxy plan`. */
export async function main(args: string[]): Promise<number> {
  let values: { "socket-path": string; json: boolean; ifname: string };
  let target: string;
  try {
    const parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        "socket-path": { type: "string", default: DEFAULT_SOCKET_PATH },
        json: { type: "boolean", default: false },
        ifname: { type: "string", default: "eth0" },
      },
    });
    values = parsed.values as typeof values;
    if (parsed.positionals.length !== 1 || !/^[^/]+\/[^/]+$/.test(parsed.positionals[0])) {
      throw new Error("expected one NAMESPACE/POD");
    }
    target = parsed.positionals[0];
  } catch (e) {
    console.error(`galaxy plan: ${(e as Error).message}`);
    console.error(USAGE);
    return 2;
  }
  const [namespace, name] = target.split("/");
  const query = new URLSearchParams({ namespace, name, ifname: values.ifname });
  const plan = await askDaemonJson<Plan>("plan", values["socket-path"], {
    path: `/plan?${query}`,
    timeoutMs: 60_000,
  });
  if (plan === undefined) return 2;
  console.log(values.json ? JSON.stringify(plan, null, 2) : formatPlan(plan));
  if (!plan.attempted && !values.json) console.error(`galaxy plan: ${plan.reason}`);
  return plan.attempted ? 0 : 1;
}
