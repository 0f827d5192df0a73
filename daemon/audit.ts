/**
 * `galaxy audit [--fix]` (`GET /audit`, `POST /audit?fix=true`): one cross-check of what this node holds for
 * its pods: state files ↔ the runtime's sandboxes ↔ host-local reservations ↔ kernel objects (host veths, ENI
 * rules 512/1536, SR-IOV VF records, `KUBE-HP-*` chains, `GLX-*` chains and sets) ↔ port files. Every orphan
 * and every mismatch is a {@linkcode Finding} with its evidence.
 *
 * Liveness is the GC's ({@link Liveness}): the runtime first, else the apiserver's pods and their network
 * namespaces, else nothing counts as dead. Nothing younger than `--gc-grace-period` is an orphan (an ADD may be
 * writing it), and a container with a request in flight is left out.
 *
 * `--fix` releases the orphans it found through the code DEL and the GC use, each under its container's
 * lock: a dead container's state through its plugins' DEL, port files and `KUBE-HP-*` chains through the port
 * mapper, IP files under host-local's lock after re-checking their owner, veths by `ip link del` after
 * checking no request for them started, `GLX-*` chains and sets by one full sync of the policy applier.
 * Mismatches and findings that have no such path are reported only.
 * @module
 */
import { isIP } from "../netops/ip_address.ts";
import { linkDel, listLinks, listRules, runBatch } from "../netops/ip.ts";
import type { Iptables } from "../netops/iptables.ts";
import { listAttachments } from "../cni/plugins/kit/sriov_state.ts";
import type { CriClient } from "./cri.ts";
import { ipFileOwner, removeIpFileOf } from "./gc.ts";
import { deadVeths, vethContainerPrefix } from "./gc_veths.ts";
import { factsFromState, Liveness, type NodePods } from "./liveness.ts";
import type { PortMapper } from "./portmap.ts";
import { hostportChains } from "./portmap_rules.ts";
import { listStates, readState, type StoredNetwork } from "./state.ts";

/** Version of the JSON shape of {@linkcode AuditReport}. */
export const AUDIT_FORMAT = 1;

/** The kinds of finding; the README documents each. */
export type FindingKind =
  | "state-without-sandbox"
  | "veth-without-state"
  | "veth-of-dead-container"
  | "ip-of-gone-container"
  | "ip-reserved-twice"
  | "port-file-without-container"
  | "hostport-chain-without-pod"
  | "eni-rule-without-pod"
  | "sriov-record-without-state"
  | "policy-object-without-policy";

/** One orphan or mismatch. */
export interface Finding {
  /** What kind. */
  kind: FindingKind;
  /** The object: a path, a link name, a chain, a rule. */
  object: string;
  /** The container it belongs to, when known. */
  container?: string;
  /** Why it is an orphan or a mismatch. */
  evidence: string;
  /** True when `--fix` releases it (an orphan with a release path); mismatches are never fixed. */
  fixable: boolean;
}

/** What `--fix` did with one finding. */
export interface FixOutcome {
  /** The finding's kind and object. */
  kind: FindingKind;
  /** The object. */
  object: string;
  /** What was done. */
  action: string;
  /** True when the object is gone afterwards. */
  ok: boolean;
  /** Why not. */
  error?: string;
}

/** The result of one audit. */
export interface AuditReport {
  /** {@linkcode AUDIT_FORMAT}. */
  format: number;
  /** When it ran (RFC 3339). */
  time: string;
  /** Where liveness came from: `runtime`, `apiserver` or `none` (then nothing counts as dead). */
  source: string;
  /** Why the runtime was not used, when it was not. */
  runtimeError?: string;
  /** How many objects of each kind were looked at. */
  checked: Record<string, number>;
  /** Orphans and mismatches. */
  findings: Finding[];
  /** What `--fix` did; absent without `--fix`. */
  fixed?: FixOutcome[];
  /** Parts that could not be read (the rest of the audit still ran). */
  errors: string[];
}

/**
 * Which `GLX-*` objects network policy owns on the node: the engine's applied state, or none at all when no
 * engine runs (`--network-policy` off). Every other `GLX-*` chain or set is an orphan.
 */
export interface PolicyInventory {
  /**
   * Chain and set names the desired state holds, and why one outside it is an orphan (the evidence);
   * `undefined` while that is not known (the engine has not synced yet), and then none is judged.
   */
  expectedObjects(): Promise<{ chains: Set<string>; sets: Set<string>; why: string } | undefined>;
  /** The `GLX-*` ipset sets present on the node. */
  presentSets(): Promise<{ name: string; type: string }[]>;
  /**
   * Replaces all `GLX-*` state with the desired one through the policy applier (what a live policy uses is
   * rewritten within the same atomic restore, never removed); says what it did.
   */
  removeOrphans(): Promise<string>;
}

/** What the audit needs from the daemon. */
export interface AuditContext {
  /** `--state-dir`. */
  stateDir: string;
  /** `--flannel-allocated-ip-dir`. */
  ipDirs: string[];
  /** `--gc-grace-period`. */
  graceMs: number;
  /** The runtime's CRI client. */
  cri?: CriClient;
  /** The pod cache. */
  pods?: NodePods;
  /** iptables, for `KUBE-HP-*` and `GLX-*` chains. */
  iptables?: Iptables;
  /** The port mapper (port files, chains, releases). */
  portmap?: PortMapper;
  /** `--port-dir`: the port files. */
  portDir?: string;
  /** Folders of SR-IOV VF records (galaxy-k8s-sriov's `lockDir`s). */
  sriovDirs?: string[];
  /** What network policy owns; without it, `GLX-*` objects are not checked. */
  policies?: PolicyInventory;
  /** The namespace whose host objects are read; `null` (default) is the daemon's own. */
  hostNetns?: string | null;
  /** True while a request holds or waits for the container's lock. */
  isBusy(containerId: string): boolean;
  /** Containers with a request in flight. */
  busyContainers(): string[];
  /** Runs `fn` holding the container's lock. */
  withLock<T>(containerId: string, fn: () => Promise<T>): Promise<T>;
  /** DEL of every network of a state file through its plugins (the GC's and DEL's path). */
  releaseState(containerId: string): Promise<boolean>;
  /** The clock (tests). */
  now?: () => number;
}

/** Internal: a finding with what its fix needs. */
interface Planned extends Finding {
  fix?: () => Promise<string>;
}

function trimDir(dir: string): string {
  return dir.replace(/(?<=.)\/+$/, "");
}

async function filesOf(dir: string): Promise<{ name: string; mtime: number }[]> {
  const out: { name: string; mtime: number }[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || e.name.startsWith(".") || e.name.includes(".tmp")) continue;
      const st = await Deno.stat(`${dir}/${e.name}`).catch(() => undefined);
      if (st) out.push({ name: e.name, mtime: st.mtime?.getTime() ?? 0 });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

function resultAddresses(networks: StoredNetwork[] | undefined): string[] {
  return (networks ?? []).flatMap((n) => (n.Result?.ips ?? []).map((ip) => ip.address.split("/")[0]));
}

/** Runs the audit; with `fix`, releases the fixable orphans and reports what it did. */
export async function runAudit(ctx: AuditContext, options: { fix?: boolean } = {}): Promise<AuditReport> {
  const now = ctx.now ?? Date.now;
  const young = (ms: number) => now() - ms < ctx.graceMs;
  const live = await Liveness.take(ctx.cri, ctx.pods);
  const report: AuditReport = {
    format: AUDIT_FORMAT,
    time: new Date(now()).toISOString(),
    source: live.source,
    checked: {},
    findings: [],
    errors: [],
  };
  if (live.runtimeError) report.runtimeError = live.runtimeError;
  const planned: Planned[] = [];
  const busy = (id: string) => ctx.isBusy(id);

  // State files and the runtime's sandboxes.
  const states = new Map<string, StoredNetwork[] | undefined>();
  const times = new Map<string, number>();
  for (const { containerId, mtime } of await listStates(ctx.stateDir)) {
    states.set(containerId, await readState(ctx.stateDir, containerId).catch(() => undefined));
    times.set(containerId, mtime.getTime());
  }
  report.checked["state-files"] = states.size;
  const dead = new Map<string, string>();
  for (const [id, networks] of states) {
    const verdict = await live.judge(factsFromState(id, networks));
    if (!verdict.dead) continue;
    dead.set(id, verdict.reason);
    if (young(times.get(id) ?? 0) || busy(id)) continue;
    planned.push({
      kind: "state-without-sandbox",
      object: `${trimDir(ctx.stateDir)}/${id}`,
      container: id,
      evidence: `${verdict.reason}; networks ${
        (networks ?? []).map((n) => `"${n.NetworkType}"`).join(", ") || "(unreadable)"
      }`,
      fixable: true,
      fix: () =>
        ctx.withLock(id, async () => {
          await ctx.releaseState(id);
          return "DEL of its networks through their plugins";
        }),
    });
  }
  const isDead = async (id: string): Promise<string | undefined> => {
    if (dead.has(id)) return dead.get(id);
    const v = await live.judge(factsFromState(id, states.get(id)));
    return v.dead ? v.reason : undefined;
  };

  // host-local reservations.
  const reservedBy = new Map<string, string[]>();
  let ipFiles = 0;
  for (const raw of ctx.ipDirs) {
    const dir = trimDir(raw);
    for (const f of await filesOf(dir).catch((e) => (report.errors.push(`${dir}: ${e.message}`), []))) {
      if (!isIP(f.name)) continue;
      ipFiles++;
      const path = `${dir}/${f.name}`;
      const owner = await ipFileOwner(path);
      if (!owner) continue;
      reservedBy.set(f.name, [...(reservedBy.get(f.name) ?? []), `${path} (container ${owner})`]);
      const reason = await isDead(owner);
      if (!reason || young(f.mtime) || busy(owner)) continue;
      // A dead container whose state file is still there: its DEL releases the address.
      const viaState = states.has(owner);
      planned.push({
        kind: "ip-of-gone-container",
        object: path,
        container: owner,
        evidence: `${f.name} is reserved for container ${owner}: ${reason}`,
        fixable: true,
        fix: () =>
          ctx.withLock(owner, async () => {
            if (viaState && await Deno.stat(path).then(() => false, () => true)) return "released by its DEL";
            const removed = await removeIpFileOf(dir, path, owner, young);
            return removed ? "removed under host-local's lock" : "left: its owner or age changed meanwhile";
          }),
      });
    }
  }
  report.checked["ip-files"] = ipFiles;
  const holders = new Map<string, string[]>();
  for (const [id, networks] of states) {
    for (const ip of new Set(resultAddresses(networks))) holders.set(ip, [...(holders.get(ip) ?? []), id]);
  }
  for (const [ip, ids] of holders) {
    if (ids.length < 2) continue;
    planned.push({
      kind: "ip-reserved-twice",
      object: ip,
      evidence: `${ip} is in the results of ${ids.length} state files: ${ids.join(", ")}`,
      fixable: false,
    });
  }
  for (const [ip, files] of reservedBy) {
    if (files.length < 2) continue;
    planned.push({
      kind: "ip-reserved-twice",
      object: ip,
      evidence: `${ip} is reserved in ${files.length} host-local folders: ${files.join(", ")}`,
      fixable: false,
    });
  }

  // Host veths.
  const netns = ctx.hostNetns ?? null;
  try {
    const links = (await listLinks(netns)).filter((l) => l.kind === "veth");
    report.checked["veths"] = links.length;
    // The audit is a point in time: a veth counts as dead now (the GC's wait across passes is its own).
    const deadSince = new Map(links.map((l) => [l.name, 0]));
    const doomed = await deadVeths(links, {
      live,
      states,
      times,
      deadSince,
      now: now(),
      graceMs: ctx.graceMs,
    });
    const doomedNames = new Set(doomed.map((d) => d.name));
    for (const d of doomed) {
      const hasState = d.prefix !== undefined && [...states.keys()].some((id) => id.startsWith(d.prefix!));
      planned.push({
        kind: hasState ? "veth-of-dead-container" : "veth-without-state",
        object: d.name,
        container: d.id,
        evidence: hasState ? `${d.reason}; its state file's DEL removes it` : `no state file; ${d.reason}`,
        fixable: true,
        fix: async () => {
          if (d.prefix !== undefined && ctx.busyContainers().some((id) => id.startsWith(d.prefix!))) {
            throw new Error("a request for its container started meanwhile");
          }
          const present = (await listLinks(netns)).some((l) => l.name === d.name);
          if (!present) return "removed by its container's DEL";
          await runBatch(netns, [linkDel(d.name)]);
          return "ip link del";
        },
      });
    }
    for (const l of links) {
      const prefix = vethContainerPrefix(l.name);
      if (!prefix || doomedNames.has(l.name)) continue;
      if ([...states.keys()].some((id) => id.startsWith(prefix))) continue;
      planned.push({
        kind: "veth-without-state",
        object: l.name,
        container: prefix,
        evidence: "no state file names a container with this prefix, but the container may live " +
          `(${live.source === "none" ? "no liveness source" : "its sandbox is listed"}): not removed`,
        fixable: false,
      });
    }
  } catch (e) {
    report.errors.push(`veths: ${(e as Error).message}`);
  }

  // ENI rules: `to <ip> lookup main priority 512` and `from <ip> ... priority 1536`.
  const podAddresses = new Set([...states.values()].flatMap(resultAddresses));
  try {
    const rules = (await listRules(netns)).filter((r) => r.priority === 512 || r.priority === 1536);
    report.checked["eni-rules"] = rules.length;
    for (const r of rules) {
      const sel = r.priority === 512 ? r.to : r.from;
      const ip = sel?.split("/")[0];
      if (!ip || podAddresses.has(ip)) continue;
      planned.push({
        kind: "eni-rule-without-pod",
        object: `${
          r.priority === 512 ? `to ${sel}` : `from ${sel}`
        } lookup ${r.table} priority ${r.priority}`,
        evidence: `no state file's result holds ${ip}`,
        fixable: false,
      });
    }
  } catch (e) {
    report.errors.push(`rules: ${(e as Error).message}`);
  }

  // SR-IOV VF records.
  let records = 0;
  for (const dir of ctx.sriovDirs ?? []) {
    try {
      const { attachments } = await listAttachments(dir);
      records += attachments.length;
      for (const a of attachments) {
        if (states.has(a.containerId)) continue;
        const reason = await isDead(a.containerId);
        if (!reason) continue;
        planned.push({
          kind: "sriov-record-without-state",
          object: `${trimDir(dir)}/${a.containerId}@${a.ifname}.json`,
          container: a.containerId,
          evidence:
            `VF ${a.vf} of ${a.pf} recorded for container ${a.containerId}, which has no state file: ` +
            `${reason}; the next CNI GC of network "${a.network}" releases it`,
          fixable: false,
        });
      }
    } catch (e) {
      report.errors.push(`${dir}: ${(e as Error).message}`);
    }
  }
  report.checked["sriov-records"] = records;

  // Port files and KUBE-HP-* chains.
  const chainsOfLive = ctx.portmap?.liveChains() ?? new Set<string>();
  if (ctx.portmap && ctx.portDir) {
    const portDir = trimDir(ctx.portDir);
    const files = await filesOf(portDir).catch((e) => (report.errors.push(`${portDir}: ${e.message}`), []));
    report.checked["port-files"] = files.length;
    for (const f of files) {
      const reason = await isDead(f.name);
      if (!reason || young(f.mtime) || busy(f.name)) continue;
      const portmap = ctx.portmap;
      planned.push({
        kind: "port-file-without-container",
        object: `${portDir}/${f.name}`,
        container: f.name,
        evidence: reason,
        fixable: true,
        fix: () =>
          ctx.withLock(f.name, async () => {
            await portmap.releasePortMappings(f.name);
            return "port mappings released (sockets, chains, file)";
          }),
      });
    }
  }
  if (ctx.iptables) {
    try {
      const nat = await ctx.iptables.save("nat");
      const chains = hostportChains(nat);
      report.checked["hostport-chains"] = chains.length;
      const stale = chains.filter((c) => !chainsOfLive.has(c));
      for (const chain of stale) {
        const portmap = ctx.portmap;
        planned.push({
          kind: "hostport-chain-without-pod",
          object: chain,
          evidence: "no port mapping this daemon holds uses it",
          fixable: portmap !== undefined,
          fix: portmap
            ? async () => {
              await portmap.removeStaleChains([chain]);
              return "deleted with KUBE-HOSTPORTS rebuilt (one iptables-restore)";
            }
            : undefined,
        });
      }
    } catch (e) {
      report.errors.push(`iptables: ${(e as Error).message}`);
    }
  }

  if (ctx.iptables && ctx.policies) {
    try {
      planned.push(...await policyOrphans(ctx.iptables, ctx.policies, report));
    } catch (e) {
      report.errors.push(`network policy: ${(e as Error).message}`);
    }
  }

  report.findings = planned.map(({ fix: _, ...f }) => f);
  if (options.fix) {
    report.fixed = [];
    // State first: its DEL takes the veth, the address and the ports with it; what is left goes after.
    const order: FindingKind[] = [
      "state-without-sandbox",
      "port-file-without-container",
      "ip-of-gone-container",
    ];
    const rank = (k: FindingKind) => order.includes(k) ? order.indexOf(k) : order.length;
    for (const p of [...planned].sort((a, b) => rank(a.kind) - rank(b.kind))) {
      if (!p.fixable || !p.fix) continue;
      try {
        const action = await p.fix();
        report.fixed.push({ kind: p.kind, object: p.object, action, ok: true });
      } catch (e) {
        report.fixed.push({
          kind: p.kind,
          object: p.object,
          action: "none",
          ok: false,
          error: (e as Error).message,
        });
      }
    }
  }
  return report;
}

/**
 * `GLX-*` chains and sets that `inventory` does not own. Their fix is one removal through the policy applier
 * for all of them (shared), after which each is checked to be gone.
 */
async function policyOrphans(
  iptables: Iptables,
  inventory: PolicyInventory,
  report: AuditReport,
): Promise<Planned[]> {
  // Owned is what the desired state held before or after the kernel was read: a sync in between neither
  // makes its new objects nor the ones it just deleted look like orphans.
  const before = await inventory.expectedObjects();
  const [filter, sets] = before
    ? await Promise.all([iptables.save("filter"), inventory.presentSets()])
    : [undefined, []];
  const after = before && await inventory.expectedObjects();
  if (!before || !after || !filter) {
    report.errors.push(
      "network policy: the engine holds no applied state yet (not synced, or its last sync failed); GLX- chains and sets not checked",
    );
    return [];
  }
  const expected = {
    chains: new Set([...before.chains, ...after.chains]),
    sets: new Set([...before.sets, ...after.sets]),
    why: after.why,
  };
  const chains = [...filter.chains.values()].filter((c) => c.name.startsWith("GLX-"));
  report.checked["policy-chains"] = chains.length;
  report.checked["policy-sets"] = sets.length;
  let removal: Promise<string> | undefined;
  const remove = () => removal ??= inventory.removeOrphans();
  const out: Planned[] = [];
  const jumpsTo = (name: string) =>
    [...filter.chains.values()].filter((c) =>
      c.rules.some((r) => r.args.some((a, i) => a === name && ["-j", "-g"].includes(r.args[i - 1])))
    ).map((c) => c.name);
  for (const c of chains.filter((c) => !expected.chains.has(c.name))) {
    const from = jumpsTo(c.name);
    out.push({
      kind: "policy-object-without-policy",
      object: `chain ${c.name}`,
      evidence: `${expected.why}; ${c.rules.length} rule(s)${
        from.length ? `, jumped to from ${from.join(", ")}` : ""
      }`,
      fixable: true,
      fix: async () => {
        const action = await remove();
        if ((await iptables.save("filter")).chains.has(c.name)) {
          throw new Error(`still present after: ${action}`);
        }
        return action;
      },
    });
  }
  for (const s of sets.filter((s) => !expected.sets.has(s.name))) {
    out.push({
      kind: "policy-object-without-policy",
      object: `set ${s.name}`,
      evidence: `${expected.why}; ${s.type}`,
      fixable: true,
      fix: async () => {
        const action = await remove();
        if ((await inventory.presentSets()).some((x) => x.name === s.name)) {
          throw new Error(`still present after: ${action}`);
        }
        return action;
      },
    });
  }
  return out;
}

/** The audit as lines for people. */
export function formatAudit(report: AuditReport): string {
  const lines = [
    `audit at ${report.time}; liveness from ${report.source}${
      report.runtimeError ? ` (runtime: ${report.runtimeError})` : ""
    }`,
    `checked: ${Object.entries(report.checked).map(([k, n]) => `${n} ${k}`).join(", ")}`,
  ];
  if (report.findings.length === 0) lines.push("no orphans and no mismatches");
  for (const f of report.findings) {
    lines.push(
      `${f.fixable ? "ORPHAN  " : "MISMATCH"} ${f.kind}  ${f.object}${
        f.container ? `  (container ${f.container})` : ""
      }`,
    );
    lines.push(`         ${f.evidence}`);
  }
  for (const x of report.fixed ?? []) {
    lines.push(`${x.ok ? "fixed" : "NOT FIXED"}: ${x.kind} ${x.object}: ${x.ok ? x.action : x.error}`);
  }
  for (const e of report.errors) lines.push(`error: ${e}`);
  return lines.join("\n");
}

/** Prometheus lines of the last audit: findings by kind, objects checked, and when it ran. */
export function auditMetrics(report: AuditReport | undefined): string {
  if (!report) return "";
  const kinds = new Map<string, number>();
  for (const f of report.findings) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
  const lines = [
    "# HELP galaxy_audit_findings Orphans and mismatches the last audit found, by kind.",
    "# TYPE galaxy_audit_findings gauge",
    ...[...kinds].sort().map(([k, n]) => `galaxy_audit_findings{kind="${k}"} ${n}`),
    "# HELP galaxy_audit_checked Objects the last audit looked at, by kind.",
    "# TYPE galaxy_audit_checked gauge",
    ...Object.entries(report.checked).sort().map(([k, n]) => `galaxy_audit_checked{kind="${k}"} ${n}`),
    "# HELP galaxy_audit_last_run_timestamp_seconds When the last audit ran.",
    "# TYPE galaxy_audit_last_run_timestamp_seconds gauge",
    `galaxy_audit_last_run_timestamp_seconds ${Date.parse(report.time) / 1000}`,
  ];
  return lines.join("\n") + "\n";
}
