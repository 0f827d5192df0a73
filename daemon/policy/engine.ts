/**
 * The policy engine: the model fed by watch events, compiles, and one applier, with every kernel change
 * serialised. Policy and namespace events cause a (debounced) full compile; pod events update the sets
 * member by member (and rewrite the rules only when a pod of this node changed). Nothing reaches the kernel
 * before {@linkcode PolicyEngine.ready} (informers synced): the rules of the previous run stay in force until
 * the first full compile replaces them (no fail-open on restart). A compile or apply error keeps the last
 * good kernel state, is logged and counted, and is retried.
 * @module
 */
import type { PolicyApplier, Touched } from "./apply.ts";
import { compile, type Compiled, compileRules, fillSets, podEntries, RulesCache } from "./compile.ts";
import { keyOf, type Pod, type Policy, type PolicyModel } from "./model.ts";

/** What the engine needs of an applier ({@linkcode PolicyApplier} is the real one). */
export type Applier =
  & Pick<PolicyApplier, "apply" | "forget">
  & Partial<Pick<PolicyApplier, "pending" | "destroyPending">>;

/** Where the engine logs. */
export interface EngineLog {
  /** Something went wrong and is retried. */
  error(message: string): void;
  /** Something odd. */
  warn(message: string): void;
  /** Progress, at a verbosity level. */
  v(level: number, message: string): void;
}

/** Counters of the engine, for `/metrics`. */
export interface PolicyCounters {
  /** Full compiles applied. */
  fullSyncs: number;
  /** Pod events applied incrementally. */
  incrementalSyncs: number;
  /** Compiles or applies that failed. */
  errors: number;
  /** Seconds the last full compile + apply took. */
  lastFullSeconds: number;
  /** Seconds the last incremental apply took. */
  lastIncrementalSeconds: number;
  /** Chains and sets the kernel holds now. */
  chains: number;
  /** Sets the kernel holds now. */
  sets: number;
}

function samePod(a: Pod | undefined, b: Pod | undefined): boolean {
  if (!a || !b) return a === b;
  return a.ip === b.ip && a.nodeName === b.nodeName &&
    JSON.stringify(a.labels) === JSON.stringify(b.labels) &&
    JSON.stringify(a.ports) === JSON.stringify(b.ports);
}

/** The engine of one node. */
export class PolicyEngine {
  /** What the engine knows (tests and the watches read it). */
  readonly model: PolicyModel;
  /** Counters (read by the metrics page). */
  readonly counters: PolicyCounters = {
    fullSyncs: 0,
    incrementalSyncs: 0,
    errors: 0,
    lastFullSeconds: 0,
    lastIncrementalSeconds: 0,
    chains: 0,
    sets: 0,
  };
  readonly #applier: Applier;
  readonly #log: EngineLog;
  readonly #policies = new Map<string, Policy>();
  readonly #cniIps = new Map<string, string>();
  #current?: Compiled;
  readonly #rulesCache = new RulesCache();
  #ready = false;
  #fullPending = false;
  #fresh = false;
  #podChanges: { old?: Pod; new?: Pod }[] = [];
  #timer?: ReturnType<typeof setTimeout>;
  #running?: Promise<void>;
  #closed = false;
  #cleanup = false;
  #cleanupTimer?: ReturnType<typeof setTimeout>;
  /** Full syncs started so far, and the number of the last one that re-read and replaced the kernel state. */
  #fullStarted = 0;
  #freshDone = 0;
  /** Debounce of full compiles after policy and namespace events. */
  debounceMs = 50;
  /** Delay before a failed sync is retried. */
  retryMs = 2000;

  /** An engine for `node`'s pods, writing through `applier`. */
  constructor(node: string, applier: Applier, log: EngineLog) {
    this.model = { policies: [], pods: new Map(), namespaces: new Map(), node };
    this.#applier = applier;
    this.#log = log;
  }

  /** Adds or replaces a policy. */
  setPolicy(policy: Policy): void {
    this.#policies.set(keyOf(policy), policy);
    this.model.policies = [...this.#policies.values()];
    this.#scheduleFull();
  }

  /** Removes a policy. */
  deletePolicy(namespace: string, name: string): void {
    if (!this.#policies.delete(`${namespace}/${name}`)) return;
    this.model.policies = [...this.#policies.values()];
    this.#scheduleFull();
  }

  /** True when some policy has peers that are pods (so pods of every node must be watched). */
  needsClusterPods(): boolean {
    for (const p of this.#policies.values()) {
      for (const r of [...p.ingressRules, ...p.egressRules]) {
        if (r.peers.some((peer) => !peer.ipBlock)) return true;
        if (r.peers.length === 0 && r.ports.some((port) => typeof port.port === "string")) return true;
      }
    }
    return false;
  }

  /** Adds or replaces a namespace's labels. */
  setNamespace(name: string, labels: Record<string, string>): void {
    const old = this.model.namespaces.get(name);
    if (old && JSON.stringify(old) === JSON.stringify(labels)) return;
    this.model.namespaces.set(name, labels);
    this.#scheduleFull();
  }

  /** Removes a namespace. */
  deleteNamespace(name: string): void {
    if (this.model.namespaces.delete(name)) this.#scheduleFull();
  }

  /**
   * A pod of this node got `ip` from its CNI ADD, before the apiserver knows it: its rules are written now,
   * and the address is kept while the watch still reports the pod without one. Resolves once applied, or
   * after `timeoutMs`.
   */
  async podAddressFromCni(pod: Pod, ip: string, timeoutMs = 2000): Promise<void> {
    const key = keyOf(pod);
    this.#cniIps.set(key, ip);
    this.#setPod({ ...pod, nodeName: this.model.node, ip });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => timer = setTimeout(r, timeoutMs))]);
    clearTimeout(timer);
  }

  /** Adds or replaces a pod. */
  setPod(pod: Pod): void {
    const key = keyOf(pod);
    const cniIp = this.#cniIps.get(key);
    if (cniIp !== undefined) {
      // The watch is behind the CNI ADD until the kubelet reports the address; from then on it is the truth.
      if (pod.ip) this.#cniIps.delete(key);
      else if (pod.nodeName === this.model.node) pod = { ...pod, ip: cniIp };
    }
    this.#setPod(pod);
  }

  #setPod(pod: Pod): void {
    const key = keyOf(pod);
    const old = this.model.pods.get(key);
    if (samePod(old, pod)) {
      this.model.pods.set(key, pod);
      return;
    }
    this.model.pods.set(key, pod);
    this.#podChanged(old, pod);
  }

  /** Removes a pod. */
  deletePod(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    this.#cniIps.delete(key);
    const old = this.model.pods.get(key);
    if (!old) return;
    this.model.pods.delete(key);
    this.#podChanged(old, undefined);
  }

  /** Drops every pod not on this node (the cluster-wide watch stopped); a full compile follows. */
  dropRemotePods(): void {
    let dropped = 0;
    for (const [key, pod] of this.model.pods) {
      if (pod.nodeName !== this.model.node) {
        this.model.pods.delete(key);
        dropped++;
      }
    }
    if (dropped) this.#scheduleFull();
  }

  #podChanged(old: Pod | undefined, pod: Pod | undefined): void {
    if (!this.#ready || this.#fullPending) return; // the coming full compile sees it
    this.#podChanges.push({ old, new: pod });
    this.#kick();
  }

  /**
   * The informers have synced: the first full compile may replace what the kernel holds. Until this is
   * called nothing is written.
   */
  ready(): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#fullPending = true;
    this.#kick();
  }

  /** Schedules a full compile that also re-reads and replaces the kernel state (the periodic resync). */
  resync(): void {
    this.#fresh = true;
    this.#scheduleFull(0);
  }

  /**
   * The chain and set names of the state the engine last applied, or `undefined` before its first sync and
   * after a failed one (the kernel then holds an older state that the next sync replaces).
   */
  owned(): { chains: Set<string>; sets: Set<string> } | undefined {
    const c = this.#current;
    return c && { chains: new Set(c.chains.keys()), sets: new Set(c.specs.keys()) };
  }

  /**
   * A full sync that starts after this call and re-reads and replaces every `GLX-` chain, jump and set of the
   * kernel (what the periodic resync does), awaited up to `timeoutMs`. Throws when it did not happen.
   */
  async syncNow(timeoutMs = 15_000): Promise<void> {
    if (!this.#ready || this.#closed) throw new Error("the policy engine is not running its syncs");
    const after = this.#fullStarted;
    this.resync();
    const deadline = Date.now() + timeoutMs;
    while (this.#freshDone <= after) {
      if (Date.now() > deadline) {
        throw new Error(
          `no full sync completed within ${timeoutMs / 1000} s (${this.counters.errors} errors)`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  #scheduleFull(delay = this.debounceMs): void {
    this.#fullPending = true;
    this.#podChanges = [];
    if (!this.#ready || this.#closed) return;
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#kick();
    }, delay);
  }

  #kick(): void {
    if (this.#running || this.#closed) return;
    this.#running = this.#pump().catch((e) => this.#failed(e)).finally(() => {
      this.#running = undefined;
      if ((this.#fullPending && this.#timer === undefined) || this.#podChanges.length || this.#cleanup) {
        this.#kick();
      }
    });
  }

  /** Resolves when nothing is queued or running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running || this.#timer !== undefined || this.#cleanupTimer !== undefined || this.#cleanup) {
      if (this.#running) await this.#running;
      else await new Promise((r) => setTimeout(r, 5));
    }
  }

  async #pump(): Promise<void> {
    if (this.#cleanup && !this.#fullPending && !this.#podChanges.length) {
      this.#cleanup = false;
      await this.#applier.destroyPending?.();
      return;
    }
    if (this.#fullPending) {
      this.#fullPending = false;
      this.#podChanges = [];
      await this.#full();
      return;
    }
    const changes = this.#podChanges.splice(0);
    if (changes.length) await this.#incremental(changes);
  }

  async #full(): Promise<void> {
    const started = performance.now();
    const seq = ++this.#fullStarted;
    try {
      const next = compile(this.model, this.#rulesCache);
      for (const w of next.warnings) this.#log.warn(`network policy: ${w}`);
      if (this.#fresh) this.#applier.forget();
      this.#fresh = false;
      const stats = await this.#applier.apply(next);
      this.#current = next;
      if (stats.fresh) this.#freshDone = seq;
      this.#scheduleCleanup();
      this.counters.fullSyncs++;
      this.counters.lastFullSeconds = (performance.now() - started) / 1000;
      this.counters.chains = next.chains.size;
      this.counters.sets = next.specs.size;
      this.#log.v(
        2,
        `network policy: full sync of ${this.model.policies.length} policies, ${this.model.pods.size} pods: ` +
          `${next.chains.size} chains, ${next.specs.size} sets (${stats.setsWritten} written, ${stats.chainsWritten} chains written) in ${
            (this.counters.lastFullSeconds * 1000).toFixed(0)
          } ms`,
      );
    } catch (e) {
      this.#failed(e);
    }
  }

  async #incremental(changes: { old?: Pod; new?: Pod }[]): Promise<void> {
    const current = this.#current;
    if (!current) {
      this.#scheduleFull(0);
      return;
    }
    const started = performance.now();
    try {
      const node = this.model.node;
      const local = changes.some((c) => c.old?.nodeName === node || c.new?.nodeName === node);
      let next: Compiled = current;
      const touched: Touched = new Map();
      if (local) {
        const rules = compileRules(this.model, this.#rulesCache);
        const added = [...rules.specs.values()].filter((s) => !current.specs.has(s.name));
        const members = new Map(current.members);
        for (const name of members.keys()) if (!rules.specs.has(name)) members.delete(name);
        for (const [name, m] of fillSets(this.model, added)) members.set(name, m);
        next = { ...rules, members };
        for (const s of added) touched.set(s.name, new Set(members.get(s.name)!.keys()));
      }
      for (const change of changes) {
        for (const spec of next.specs.values()) {
          if (spec.kind === "cidrs" || !current.specs.has(spec.name)) continue;
          const before = podEntries(spec, change.old, this.model);
          const after = podEntries(spec, change.new, this.model);
          if (!before.length && !after.length) continue;
          const members = next.members.get(spec.name)!;
          let t = touched.get(spec.name);
          if (!t) touched.set(spec.name, t = new Set());
          for (const e of before) {
            const n = (members.get(e) ?? 0) - 1;
            if (n > 0) members.set(e, n);
            else members.delete(e);
            t.add(e);
          }
          for (const e of after) {
            members.set(e, (members.get(e) ?? 0) + 1);
            t.add(e);
          }
        }
      }
      await this.#applier.apply(next, touched);
      this.#current = next;
      this.#scheduleCleanup();
      this.counters.incrementalSyncs++;
      this.counters.lastIncrementalSeconds = (performance.now() - started) / 1000;
      this.counters.chains = next.chains.size;
      this.counters.sets = next.specs.size;
    } catch (e) {
      this.#failed(e);
    }
  }

  /** Sets the last apply could not destroy yet go a little later, off the path of the next event. */
  #scheduleCleanup(): void {
    if (!this.#applier.pending || this.#cleanupTimer !== undefined || this.#closed) return;
    this.#cleanupTimer = setTimeout(() => {
      this.#cleanupTimer = undefined;
      this.#cleanup = true;
      this.#kick();
    }, 100);
  }

  #failed(e: unknown): void {
    this.counters.errors++;
    this.#log.error(`network policy: sync failed, keeping the rules in force: ${(e as Error).message}`);
    // The in-memory members may be ahead of the kernel now: rebuild everything on the retry.
    this.#current = undefined;
    this.#fresh = true;
    if (this.#closed) return;
    this.#fullPending = true;
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#kick();
      }, this.retryMs);
    }
  }

  /** Stops scheduling; the kernel state stays as it is (the next start takes over from it). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#cleanupTimer !== undefined) clearTimeout(this.#cleanupTimer);
    this.#timer = undefined;
    this.#cleanupTimer = undefined;
    this.#cleanup = false;
    await this.#running;
  }
}
