/**
 * Garbage collection of what dead containers leave on the node when no DEL ever comes (kubelet restarts,
 * runtime crashes, reboots). Two loops, as in Galaxy: every `--flannel-gc-interval` the files (host-local IP
 * files of `--flannel-allocated-ip-dir`, the container-ID files of `--gc-dirs`, the daemon's state files),
 * every 3× that the host veths (`v-h<cid9>…` and tke-route-eni's `eni<hash>`).
 *
 * Safety rules (Galaxy had none of them):
 * - a container counts as dead only when the runtime does not list it (one `ListPodSandbox` per pass), or,
 *   without a runtime, when its pod left this node and its network namespace is gone ({@link Liveness});
 * - nothing younger than `--gc-grace-period` is touched, and a veth is removed only after it has been seen
 *   dead for that long;
 * - a container with a request in flight is skipped, and a collection holds the container's lock, so no ADD
 *   or DEL of it runs meanwhile;
 * - the network is released through its plugins' DEL from the state file first (VLAN, ENI and SR-IOV state
 *   goes too); port mappings are released before their file goes; raw file removal comes last, and
 *   host-local's files are removed under host-local's own `lock` file.
 * Every removal is logged with its reason and counted in /metrics.
 * @module
 */
import { withFileLock } from "../cni/plugins/kit/file_lock.ts";
import { isValidContainerId } from "../cni/request.ts";
import { type Link, linkDel, listLinks, runBatch } from "../netops/ip.ts";
import { isIP } from "../netops/ip_address.ts";
import type { CriClient } from "./cri.ts";
import { deadVeths } from "./gc_veths.ts";
import { type ContainerFacts, factsFromState, Liveness, type NodePods } from "./liveness.ts";
import type { Counters } from "./metrics.ts";
import { listStates, readState, type StoredNetwork } from "./state.ts";

/** After this many failed DELs in a row, a dead container's state file is set aside (renamed, kept). */
export const MAX_DEL_ATTEMPTS = 5;

/** Logging as the GC needs it. */
export interface GcLog {
  /** A removal or a decision the operator should see. */
  info(msg: string): void;
  /** Something that failed and will be retried. */
  warn(msg: string): void;
  /** Verbose detail at glog level `level`. */
  v(level: number, msg: string): void;
}

/** What the GC needs from the daemon. */
export interface GcOptions {
  /** `--state-dir`. */
  stateDir: string;
  /** `--flannel-allocated-ip-dir`: host-local folders with one file per IP. */
  ipDirs: string[];
  /** `--gc-dirs`: folders of files named by container ID. */
  gcDirs: string[];
  /** `--flannel-gc-interval`; the veth loop runs at 3× this. */
  intervalMs: number;
  /** `--gc-grace-period`. */
  graceMs: number;
  /** The runtime's CRI client, when one is configured. */
  cri?: CriClient;
  /** The pod cache, when the daemon has an apiserver. */
  pods?: NodePods;
  /** Runs every network's DEL from the state file (false when there is none); the caller holds the lock. */
  releaseState(containerId: string): Promise<boolean>;
  /**
   * Releases the port mappings of a container before its file in `--gc-dirs` goes (hostPort sockets and
   * iptables rules); the file stays when it throws. Called for every such file; a no-op when unset.
   */
  releasePorts?: (containerId: string, file: string) => Promise<void>;
  /** True while a request holds or waits for the container's lock. */
  isBusy(containerId: string): boolean;
  /** Container IDs with a request in flight (veths carry only a prefix). */
  busyContainers(): string[];
  /** Runs `fn` holding the container's lock (the daemon's per-container serialization). */
  withLock<T>(containerId: string, fn: () => Promise<T>): Promise<T>;
  /** Where removals and errors are counted. */
  counters?: Counters;
  /** The log. */
  log: GcLog;
  /** The namespace whose host veths are collected; `null` (default) is the daemon's own. */
  hostNetns?: string | null;
  /** The clock (tests). */
  now?: () => number;
}

/** One file the GC may remove. */
interface Artifact {
  kind: "state" | "gc-dir" | "ip-file";
  path: string;
  dir: string;
}

/** What one pass did. */
export interface PassReport {
  /** Where the verdicts came from. */
  source: Liveness["source"];
  /** Paths and link names removed. */
  removed: string[];
  /** Container IDs skipped because a request was in flight. */
  busy: string[];
  /** Failures (retried next pass). */
  errors: string[];
}

function trimDir(dir: string): string {
  return dir.replace(/(?<=.)\/+$/, "");
}

async function mtimeOf(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch {
    return undefined;
  }
}

async function removeFile(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The first line of a host-local IP file: the container ID that holds the address. */
async function ipFileOwner(path: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path)).split("\n")[0].trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes the host-local IP file `path` of folder `dir` under host-local's own `lock` file, only while it still
 * names container `id` and is not `young`; true when it was removed. The GC and `galaxy audit --fix` use it.
 */
export async function removeIpFileOf(
  dir: string,
  path: string,
  id: string,
  young: (mtimeMs: number) => boolean,
): Promise<boolean> {
  return await withFileLock(`${dir}/lock`, async () => {
    // host-local may have handed the address to another container since the pass began.
    if (await ipFileOwner(path) !== id) return false;
    const mtime = await mtimeOf(path);
    if (mtime === undefined || young(mtime)) return false;
    return await removeFile(path);
  });
}

/** The first line of a host-local IP file: the container ID that holds the address (exported for the audit). */
export { ipFileOwner };

/** The two GC loops of the daemon. */
export class GarbageCollector {
  readonly #o: GcOptions;
  readonly #now: () => number;
  readonly #delFailures = new Map<string, number>();
  readonly #vethDeadSince = new Map<string, number>();
  readonly #timers: ReturnType<typeof setTimeout>[] = [];
  readonly #running = new Set<Promise<unknown>>();
  #lastSource?: string;
  #stopped = false;

  constructor(options: GcOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    const c = options.counters;
    c?.declare("galaxy_gc_removed_total", "Leftovers of dead containers the GC removed, by kind and reason.");
    c?.declare("galaxy_gc_errors_total", "GC removals that failed (retried next pass), by kind.");
    c?.declare("galaxy_gc_skipped_total", "Containers the GC left alone, by why (busy, fresh).");
    c?.declare("galaxy_gc_passes_total", "GC passes, by loop and where liveness came from.");
  }

  #young(mtime: number): boolean {
    return this.#now() - mtime < this.#o.graceMs;
  }

  #removed(kind: string, what: string, id: string, reason: string, report: PassReport): void {
    report.removed.push(what);
    this.#o.counters?.inc("galaxy_gc_removed_total", { kind, reason: reasonLabel(reason) });
    this.#o.log.info(`GC: removed ${kind} ${what} of container ${id}: ${reason}`);
  }

  #failed(kind: string, what: string, e: unknown, report: PassReport): void {
    const msg = `${kind} ${what}: ${(e as Error).message ?? e}`;
    report.errors.push(msg);
    this.#o.counters?.inc("galaxy_gc_errors_total", { kind });
    this.#o.log.warn(`GC: cannot remove ${msg}; retrying next pass`);
  }

  async #liveness(loop: string): Promise<Liveness> {
    const live = await Liveness.take(this.#o.cri, this.#o.pods);
    this.#o.counters?.inc("galaxy_gc_passes_total", { loop, source: live.source });
    const note = live.source === "runtime"
      ? `container runtime ${this.#o.cri?.endpoint}`
      : live.source === "apiserver"
      ? `the apiserver's pods of this node and their network namespaces (runtime: ${live.runtimeError})`
      : `nothing: every container counts as alive (runtime: ${live.runtimeError}; no pod cache)`;
    if (note !== this.#lastSource) {
      this.#lastSource = note;
      (live.source === "runtime" ? this.#o.log.info : this.#o.log.warn).call(
        this.#o.log,
        `GC: liveness from ${note}`,
      );
    }
    return live;
  }

  /** Every state file's networks (`undefined` when unreadable) and modification time. */
  async #readStates(): Promise<
    { states: Map<string, StoredNetwork[] | undefined>; times: Map<string, number> }
  > {
    const states = new Map<string, StoredNetwork[] | undefined>();
    const times = new Map<string, number>();
    for (const { containerId, mtime } of await listStates(this.#o.stateDir)) {
      states.set(containerId, await readState(this.#o.stateDir, containerId).catch(() => undefined));
      times.set(containerId, mtime.getTime());
    }
    return { states, times };
  }

  /** Every file of the file loop, grouped by container ID. */
  async #artifacts(): Promise<Map<string, Artifact[]>> {
    const byId = new Map<string, Artifact[]>();
    const add = (id: string, a: Artifact) => {
      if (!isValidContainerId(id)) return;
      const list = byId.get(id) ?? [];
      list.push(a);
      byId.set(id, list);
    };
    const stateDir = trimDir(this.#o.stateDir);
    for (const { containerId } of await listStates(stateDir)) {
      add(containerId, { kind: "state", path: `${stateDir}/${containerId}`, dir: stateDir });
    }
    for (const raw of this.#o.gcDirs) {
      const dir = trimDir(raw);
      if (dir === stateDir) continue; // the state dir is collected through DEL
      for (const name of await regularFiles(dir, this.#o.log)) {
        add(name, { kind: "gc-dir", path: `${dir}/${name}`, dir });
      }
    }
    for (const raw of this.#o.ipDirs) {
      const dir = trimDir(raw);
      for (const name of await regularFiles(dir, this.#o.log)) {
        if (!isIP(name)) continue;
        const owner = await ipFileOwner(`${dir}/${name}`);
        if (owner) add(owner, { kind: "ip-file", path: `${dir}/${name}`, dir });
      }
    }
    return byId;
  }

  /** One pass of the file loop. */
  async collectFiles(): Promise<PassReport> {
    const live = await this.#liveness("files");
    const report: PassReport = { source: live.source, removed: [], busy: [], errors: [] };
    const byId = await this.#artifacts();
    const { states, times } = await this.#readStates();
    for (const [id, artifacts] of byId) {
      if (this.#stopped) break;
      if (this.#o.isBusy(id)) {
        report.busy.push(id);
        this.#o.counters?.inc("galaxy_gc_skipped_total", { why: "busy" });
        continue;
      }
      const facts = factsFromState(id, states.get(id));
      if (facts.pod && live.source === "apiserver") facts.replaced = replacedBy(id, facts, states, times);
      const verdict = await live.judge(facts);
      if (!verdict.dead) {
        this.#delFailures.delete(id);
        continue;
      }
      await this.#o.withLock(id, () => this.#collect(id, artifacts, verdict.reason, report));
    }
    return report;
  }

  /** Removes one dead container's files; runs under its lock, so nothing of it changes meanwhile. */
  async #collect(id: string, artifacts: Artifact[], reason: string, report: PassReport): Promise<void> {
    const fresh: string[] = [];
    const old: Artifact[] = [];
    for (const a of artifacts) {
      const mtime = await mtimeOf(a.path);
      if (mtime === undefined) continue; // gone meanwhile
      if (this.#young(mtime)) fresh.push(a.path);
      else old.push(a);
    }
    const state = artifacts.find((a) => a.kind === "state");
    if (state && fresh.includes(state.path)) {
      // The state file is rewritten by every ADD step: a fresh one means this container is being set up.
      this.#o.counters?.inc("galaxy_gc_skipped_total", { why: "fresh" });
      this.#o.log.v(
        3,
        `GC: container ${id} looks dead (${reason}) but its state is younger than the grace period`,
      );
      return;
    }
    if (state && old.includes(state)) {
      if (!await this.#releaseState(id, state, reason, report)) return;
    }
    for (const a of old) {
      if (a.kind === "gc-dir") await this.#removeGcDirFile(id, a, reason, report);
      else if (a.kind === "ip-file") await this.#removeIpFile(id, a, reason, report);
    }
    for (const path of fresh) {
      this.#o.log.v(3, `GC: keeping ${path} of container ${id}: younger than the grace period`);
    }
  }

  /** DEL through the plugins; false when it failed and the container's other files must stay for a retry. */
  async #releaseState(id: string, state: Artifact, reason: string, report: PassReport): Promise<boolean> {
    try {
      if (await this.#o.releaseState(id)) {
        this.#removed(
          "state",
          state.path,
          id,
          `${reason}; its networks were deleted through their plugins`,
          report,
        );
      }
      this.#delFailures.delete(id);
      return true;
    } catch (e) {
      const failures = (this.#delFailures.get(id) ?? 0) + 1;
      this.#delFailures.set(id, failures);
      this.#failed("state", `${state.path} (DEL attempt ${failures})`, e, report);
      if (failures < MAX_DEL_ATTEMPTS) return false;
      // Raw removal as the last step: the file is set aside (dot-names are never read as state), not lost.
      const aside = `${state.dir}/.gc-failed-${id}-${this.#now()}`;
      try {
        await Deno.rename(state.path, aside);
        this.#delFailures.delete(id);
        this.#removed(
          "state",
          state.path,
          id,
          `${reason}; DEL failed ${failures} times, set aside as ${aside}`,
          report,
        );
        return true;
      } catch (err) {
        this.#failed("state", state.path, err, report);
        return false;
      }
    }
  }

  async #removeGcDirFile(id: string, a: Artifact, reason: string, report: PassReport): Promise<void> {
    try {
      await this.#o.releasePorts?.(id, a.path);
    } catch (e) {
      this.#failed("gc-dir", `${a.path} (port mappings not released)`, e, report);
      return;
    }
    try {
      if (await removeFile(a.path)) this.#removed("gc-dir", a.path, id, reason, report);
    } catch (e) {
      this.#failed("gc-dir", a.path, e, report);
    }
  }

  /** Removes a host-local IP file under host-local's lock, after checking it still names this container. */
  async #removeIpFile(id: string, a: Artifact, reason: string, report: PassReport): Promise<void> {
    try {
      if (await removeIpFileOf(a.dir, a.path, id, (ms) => this.#young(ms))) {
        this.#removed("ip-file", a.path, id, reason, report);
      }
    } catch (e) {
      this.#failed("ip-file", a.path, e, report);
    }
  }

  /** One pass of the veth loop. */
  async collectVeths(): Promise<PassReport> {
    const live = await this.#liveness("veths");
    const report: PassReport = { source: live.source, removed: [], busy: [], errors: [] };
    const netns = this.#o.hostNetns ?? null;
    let links: Link[];
    try {
      links = (await listLinks(netns)).filter((l) => l.kind === "veth");
    } catch (e) {
      this.#failed("veth", "list", e, report);
      return report;
    }
    const { states, times } = await this.#readStates();
    const dead = await deadVeths(links, {
      live,
      states,
      times,
      deadSince: this.#vethDeadSince,
      now: this.#now(),
      graceMs: this.#o.graceMs,
    });
    // Checked right before the batch: an ADD that started meanwhile keeps its veth. (An eni veth's ADD wrote
    // its state file, which names the pod, before the veth existed: it is among the live names above.)
    const busy = this.#o.busyContainers();
    const doomed = dead.filter((d) => {
      const isBusy = d.prefix !== undefined && busy.some((id) => id.startsWith(d.prefix!));
      if (isBusy) report.busy.push(d.id);
      return !isBusy;
    });
    if (doomed.length === 0) return report;
    try {
      await runBatch(netns, doomed.map((d) => linkDel(d.name)), { force: true });
    } catch {
      // -force ran every line; what is still there is reported below
    }
    const left = new Set((await listLinks(netns).catch(() => [])).map((l) => l.name));
    for (const d of doomed) {
      if (left.has(d.name)) this.#failed("veth", d.name, new Error("still there after ip link del"), report);
      else {
        this.#vethDeadSince.delete(d.name);
        this.#removed("veth", d.name, d.id, d.reason, report);
      }
    }
    return report;
  }

  /** Starts both loops; the first passes run one interval after start. */
  start(): void {
    this.#loop(() => this.collectFiles(), this.#o.intervalMs);
    this.#loop(() => this.collectVeths(), 3 * this.#o.intervalMs);
  }

  #loop(pass: () => Promise<PassReport>, every: number): void {
    const tick = () => {
      if (this.#stopped) return;
      const p = pass().catch((e) => this.#o.log.warn(`GC pass failed: ${(e as Error).message}`)).finally(
        () => {
          this.#running.delete(p);
          if (!this.#stopped) this.#timers.push(setTimeout(tick, every));
        },
      );
      this.#running.add(p);
    };
    this.#timers.push(setTimeout(tick, every));
  }

  /** Stops both loops and waits for passes in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    await Promise.all([...this.#running]);
  }
}

/** True when a newer state file names the same pod UID: a later sandbox replaced this one. */
function replacedBy(
  id: string,
  facts: ContainerFacts,
  states: Map<string, StoredNetwork[] | undefined>,
  times: Map<string, number>,
): boolean {
  if (!facts.pod?.uid) return false;
  for (const [other, networks] of states) {
    if (other === id || (times.get(other) ?? 0) <= (times.get(id) ?? 0)) continue;
    if (factsFromState(other, networks).pod?.uid === facts.pod.uid) return true;
  }
  return false;
}

/** A short, bounded label for the metrics: the reason up to its first `;` or `(`. */
function reasonLabel(reason: string): string {
  return reason.split(/[;(]/)[0].replace(/pod \S+/g, "pod").replace(/\/\S+/g, "").trim();
}

async function regularFiles(dir: string, log: GcLog): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      // Dot-names and `.tmp-` files are temporary or set aside; sub-folders (port/) are folders of their own.
      if (e.isFile && !e.name.startsWith(".") && !e.name.includes(".tmp")) names.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) log.warn(`GC: cannot list ${dir}: ${(e as Error).message}`);
  }
  return names.sort();
}
