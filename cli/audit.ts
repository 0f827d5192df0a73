/**
 * `galaxy audit [--socket-path PATH] [--json] [--fix]`: asks the daemon to cross-check the node (`GET /audit`;
 * with `--fix`, `POST /audit?fix=true`, which releases the orphans through DEL's and the GC's code). Exit
 * status 0 when nothing was found (or, with `--fix`, every orphan was released and no mismatch is left), 1
 * when there are findings, 2 for a usage error or an unreachable daemon.
 * @module
 */
import { parseArgs } from "node:util";
import { DEFAULT_SOCKET_PATH } from "../cni/wire.ts";
import { askDaemonJson } from "./ask_daemon.ts";
import { type AuditReport, formatAudit } from "../daemon/audit.ts";

const USAGE = "Usage: galaxy audit [--socket-path PATH] [--json] [--fix]";

/** Runs `galaxy audit`. */
export async function main(args: string[]): Promise<number> {
  let values: { "socket-path": string; json: boolean; fix: boolean };
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        "socket-path": { type: "string", default: DEFAULT_SOCKET_PATH },
        json: { type: "boolean", default: false },
        fix: { type: "boolean", default: false },
      },
    }).values as typeof values;
  } catch (e) {
    console.error(`galaxy audit: ${(e as Error).message}`);
    console.error(USAGE);
    return 2;
  }
  const report = await askDaemonJson<AuditReport>("audit", values["socket-path"], {
    path: values.fix ? "/audit?fix=true" : "/audit",
    method: values.fix ? "POST" : "GET",
    timeoutMs: 120_000,
  });
  if (report === undefined) return 2;
  console.log(values.json ? JSON.stringify(report, null, 2) : formatAudit(report));
  if (values.fix) {
    const fixed = report.fixed ?? [];
    const left = report.findings.filter((f) => !f.fixable).length + fixed.filter((x) => !x.ok).length;
    return left === 0 ? 0 : 1;
  }
  return report.findings.length === 0 ? 0 : 1;
}
