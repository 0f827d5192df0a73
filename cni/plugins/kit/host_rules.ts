/**
 * The node side of an attachment: the host `/32` route to the pod and the policy rules some plugins add.
 * @module
 */
import {
  IpBatchError,
  type IpOp,
  listRoutes,
  listRules,
  routeReplace,
  type Rule,
  ruleAdd,
  ruleDel,
  type RuleSpec,
  runBatch,
} from "../../../netops/ip.ts";
import { kernelError, logLine } from "./errors.ts";

/**
 * Adds (replaces) the host route `<ip>/32 dev <dev> scope link [src <src>]`. When the kernel refuses `src`
 * (not a local address, old kernels) it retries without it, as Galaxy does. Returns whether `src` was kept.
 */
export async function addHostRoute(
  ip: string,
  dev: string,
  options: { src?: string; plugin?: string } = {},
): Promise<boolean> {
  const route = { dst: `${ip}/32`, dev, scope: "link" as const };
  if (options.src) {
    try {
      await runBatch(null, [routeReplace({ ...route, src: options.src })]);
      return true;
    } catch (err) {
      if (!(err instanceof IpBatchError)) throw kernelError(err, `host route ${ip}/32 dev ${dev}`);
      logLine(
        options.plugin ?? "galaxy",
        `host route ${ip}/32 dev ${dev} src ${options.src} refused (${err.message}); retrying without src`,
      );
    }
  }
  try {
    await runBatch(null, [routeReplace(route)]);
  } catch (err) {
    throw kernelError(err, `host route ${ip}/32 dev ${dev}`);
  }
  return false;
}

/** The main-table route of this namespace for `<ip>/32`, if any. */
export async function hostRouteFor(ip: string): Promise<{ dev?: string; prefsrc?: string } | undefined> {
  return (await listRoutes(null)).find((r) => r.dst === ip || r.dst === `${ip}/32`);
}

/** Selects policy rules: same selectors and priority; any table unless `table` is given. */
export interface RuleKey {
  /** Source selector (an address or CIDR; a bare address means /32). */
  from?: string;
  /** Destination selector. */
  to?: string;
  /** Priority. */
  priority: number;
  /** Table (number or name); any when absent. */
  table?: number | string;
}

const TABLE_NAMES: Record<string, string> = { "253": "default", "254": "main", "255": "local" };

/** A routing table as `ip rule` prints it: `main`, `local`, `default`, or its number. */
export function tableName(t: number | string): string {
  return TABLE_NAMES[String(t)] ?? String(t);
}

function asCidr(sel: string | undefined): string | undefined {
  return sel === undefined || sel.includes("/") ? sel : `${sel}/32`;
}

function ruleMatches(rule: Rule, key: RuleKey): boolean {
  return rule.priority === key.priority && rule.from === asCidr(key.from) && rule.to === asCidr(key.to) &&
    (key.table === undefined || rule.table === tableName(key.table)) && !rule.iif && !rule.oif;
}

/** The host rules matching each key (one listing). */
export async function findHostRules(keys: RuleKey[]): Promise<Rule[][]> {
  const rules = await listRules(null);
  return keys.map((key) => rules.filter((r) => ruleMatches(r, key)));
}

function delOp(rule: Rule): IpOp {
  const t = /^\d+$/.test(rule.table) ? Number(rule.table) : rule.table;
  return ruleDel({ from: rule.from, to: rule.to, priority: rule.priority, table: t });
}

/**
 * Installs `rules` in this namespace idempotently, as Galaxy's delete-then-add: rules with the same
 * selectors and priority (any table, e.g. a crashed ADD's) are removed in the same batch first.
 */
export async function replaceHostRules(rules: RuleSpec[]): Promise<void> {
  try {
    const found = await findHostRules(rules.map((r) => ({ from: r.from, to: r.to, priority: r.priority })));
    await runBatch(null, [...found.flat().map(delOp), ...rules.map(ruleAdd)]);
  } catch (err) {
    throw kernelError(err, "policy rules");
  }
}

/** Deletes every host rule matching one of `keys` (one listing, one batch); returns how many. */
export async function deleteHostRules(keys: RuleKey[]): Promise<number> {
  try {
    const found = (await findHostRules(keys)).flat();
    await runBatch(null, found.map(delOp));
    return found.length;
  } catch (err) {
    throw kernelError(err, "delete policy rules");
  }
}
