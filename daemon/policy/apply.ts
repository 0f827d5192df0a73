/**
 * The applier: makes the kernel hold a {@linkcode Compiled} state, in batches. Order per change: one
 * `ipset restore` (new sets created and filled; changed sets filled under a temporary name and swapped in;
 * single members added and deleted for pod events), then one `iptables-restore --noflush` transaction for
 * the filter table (changed chains rewritten: declaring a chain flushes it inside the same atomic commit),
 * then one `ipset restore` destroying the sets no rule uses any more.
 *
 * The first apply, and the first after any failure, starts "fresh": it reads what the kernel holds and
 * replaces every `GLX-` chain and set it finds (the Go engine's leftovers, or ours from before a restart), and
 * re-places the FORWARD jumps (Galaxy's INPUT/OUTPUT jumps are removed). Until then nothing is touched, so
 * rules left by the previous run keep enforcing.
 * @module
 */
import {
  destroySetsBatch,
  ipsetRestore,
  listIpsets,
  memberChangesBatch,
  replaceSetsBatch,
} from "../../netops/ipset.ts";
import { type Iptables, RestoreBatch, type SavedTable } from "../../netops/iptables.ts";
import type { Compiled } from "./compile.ts";
import { EGRESS_CHAIN, INGRESS_CHAIN, PREFIX } from "./names.ts";

/** Set members added or removed since the last apply, by set name (for a pod event). */
export type Touched = Map<string, Set<string>>;

/** What one apply did. */
export interface ApplyStats {
  /** It re-read and replaced all kernel state. */
  fresh: boolean;
  /** Sets created or replaced by swap. */
  setsWritten: number;
  /** Single members added or deleted. */
  membersChanged: number;
  /** Sets destroyed. */
  setsDestroyed: number;
  /** Chains (re)written. */
  chainsWritten: number;
  /** Chains deleted. */
  chainsDeleted: number;
}

const BUILTIN = ["INPUT", "FORWARD", "OUTPUT"];

function jumpsToGlx(args: string[]): boolean {
  for (let i = 0; i < args.length - 1; i++) {
    if ((args[i] === "-j" || args[i] === "-g") && args[i + 1].startsWith(PREFIX)) return true;
  }
  return false;
}

function sameRules(a: string[] | undefined, b: string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((r, i) => r === b[i]);
}

/** Turns a compiled rule (`-s 1.2.3.4/32 -j X`, no spaces inside arguments) into arguments. */
function args(rule: string): string[] {
  return rule.split(" ").filter(Boolean);
}

/** Applies compiled states to one namespace's filter table and ipsets. */
export class PolicyApplier {
  readonly #netns: string | null;
  readonly #iptables: Iptables;
  #sets?: Map<string, Set<string>>;
  #chains = new Map<string, string[]>();
  #tmp = 0;
  #pendingDestroy = new Set<string>();

  /** An applier for the namespace `iptables` works in (`netns` must be the same one). */
  constructor(iptables: Iptables, options: { netns?: string | null } = {}) {
    this.#iptables = iptables;
    this.#netns = options.netns ?? iptables.netns;
  }

  /** True when the next apply re-reads the kernel (first one, or after a failure). */
  get fresh(): boolean {
    return this.#sets === undefined;
  }

  /** Forgets what was applied: the next apply replaces everything (the periodic full resync). */
  forget(): void {
    this.#sets = undefined;
  }

  /**
   * Makes the kernel hold `next`. With `touched` (a pod event), unchanged sets are only updated member by
   * member; without it, every set whose members differ is replaced by swap. A failure leaves the applier
   * fresh (the next apply replaces everything) and is thrown.
   */
  async apply(next: Compiled, touched?: Touched): Promise<ApplyStats> {
    try {
      return this.#sets === undefined ? await this.#applyFresh(next) : await this.#applyDelta(next, touched);
    } catch (e) {
      this.#sets = undefined;
      throw e;
    }
  }

  /**
   * Temporary set names for one batch. Random, not by PID: in a container the daemon is PID 1 on every start,
   * and a crash between `create` and `swap` leaves a temporary set that the next run must not trip over
   * (the next fresh apply destroys it as an unwanted `GLX-` set).
   */
  #tmpName(): (i: number) => string {
    const run = `${crypto.randomUUID().slice(0, 6)}${(this.#tmp++).toString(36)}`;
    return (i) => `${PREFIX}tmp-${run}-${i.toString(36)}`;
  }

  #content(next: Compiled, name: string) {
    const spec = next.specs.get(name)!;
    const members = next.members.get(name) ?? new Map<string, number>();
    return { name, type: spec.type, entries: members.keys(), size: members.size };
  }

  async #applyFresh(next: Compiled): Promise<ApplyStats> {
    const [headers, table] = await Promise.all([
      listIpsets(this.#netns).catch((e) => {
        // No ipset at all (a node that never ran policy) is fine when nothing needs sets.
        if (next.specs.size) throw e;
        return [];
      }),
      this.#iptables.save("filter"),
    ]);
    const existing = new Map(headers.filter((h) => h.name.startsWith(PREFIX)).map((h) => [h.name, h.type]));
    for (const [name, spec] of next.specs) {
      const type = existing.get(name);
      if (type !== undefined && type !== spec.type) {
        throw new Error(`ipset ${name} exists as ${type}, not ${spec.type}: destroy it by hand`);
      }
    }
    const sets = [...next.specs.keys()].map((n) => this.#content(next, n));
    await ipsetRestore(this.#netns, replaceSetsBatch(sets, new Set(existing.keys()), this.#tmpName()));
    const batch = new RestoreBatch();
    const chainsDeleted = this.#rewriteAll(batch, table, next);
    await this.#iptables.restore(batch);
    const stale = [...existing.keys()].filter((n) => !next.specs.has(n));
    this.#pendingDestroy.clear(); // the kernel was just read: stale covers what is left
    await this.#destroy(stale, 5);
    this.#remember(next);
    return {
      fresh: true,
      setsWritten: sets.length,
      membersChanged: 0,
      setsDestroyed: stale.length,
      chainsWritten: next.chains.size,
      chainsDeleted,
    };
  }

  #rewriteAll(batch: RestoreBatch, table: SavedTable, next: Compiled): number {
    for (const chain of BUILTIN) {
      for (const rule of table.chains.get(chain)?.rules ?? []) {
        if (jumpsToGlx(rule.args)) batch.delete("filter", chain, rule);
      }
    }
    this.#writeChains(batch, next, () => true);
    let deleted = 0;
    for (const name of table.chains.keys()) {
      if (name.startsWith(PREFIX) && !next.chains.has(name)) {
        batch.deleteChain("filter", name);
        deleted++;
      }
    }
    if (next.chains.has(EGRESS_CHAIN)) this.#insertJumps(batch);
    return deleted;
  }

  #insertJumps(batch: RestoreBatch): void {
    // Inserted at the top in this order, so FORWARD starts with GLX-EGRESS then GLX-INGRESS, ahead of any
    // ACCEPT a CNI or kube-proxy put there. Neither chain ACCEPTs, so the order of the two is only cosmetic.
    batch.insert("filter", "FORWARD", ["-j", INGRESS_CHAIN]);
    batch.insert("filter", "FORWARD", ["-j", EGRESS_CHAIN]);
  }

  #writeChains(
    batch: RestoreBatch,
    next: Compiled,
    changed: (name: string, rules: string[]) => boolean,
  ): number {
    let n = 0;
    // Chains that are jumped to are declared before the chains that jump (a restore resolves targets).
    const order = [...next.chains.keys()].sort((a, b) => rank(a) - rank(b));
    for (const name of order) {
      const rules = next.chains.get(name)!;
      if (!changed(name, rules)) continue;
      batch.declareChain("filter", name);
      n++;
    }
    for (const name of order) {
      const rules = next.chains.get(name)!;
      if (!changed(name, rules)) continue;
      for (const r of rules) batch.append("filter", name, args(r));
    }
    return n;
  }

  async #applyDelta(next: Compiled, touched?: Touched): Promise<ApplyStats> {
    const applied = this.#sets!;
    const replace: string[] = [];
    const changes: { set: string; add: string[]; del: string[] }[] = [];
    let membersChanged = 0;
    for (const name of next.specs.keys()) {
      const want = next.members.get(name) ?? new Map<string, number>();
      const have = applied.get(name);
      if (!have) {
        replace.push(name);
        continue;
      }
      if (touched) {
        const t = touched.get(name);
        if (!t) continue;
        const add: string[] = [];
        const del: string[] = [];
        for (const e of t) {
          if (want.has(e) && !have.has(e)) add.push(e);
          else if (!want.has(e) && have.has(e)) del.push(e);
        }
        if (add.length || del.length) changes.push({ set: name, add, del });
        membersChanged += add.length + del.length;
      } else if (have.size !== want.size || [...want.keys()].some((e) => !have.has(e))) {
        replace.push(name);
      }
    }
    // A set waiting to be destroyed that is wanted again still exists: it is refilled by swap.
    const existing = new Set(replace.filter((n) => applied.has(n) || this.#pendingDestroy.has(n)));
    for (const n of existing) this.#pendingDestroy.delete(n);
    const setLines = [
      ...replaceSetsBatch(replace.map((n) => this.#content(next, n)), existing, this.#tmpName()),
      ...memberChangesBatch(changes),
    ];
    // Rules may only name sets that exist: when sets are created, they go first. Member changes alone do not
    // order against the rules (each side is correct on its own), so they run alongside.
    let setsDone: Promise<void> = Promise.resolve();
    if (replace.length) await ipsetRestore(this.#netns, setLines);
    else {
      setsDone = ipsetRestore(this.#netns, setLines);
      setsDone.catch(() => {}); // awaited below; never an unhandled rejection if building the batch throws
    }
    const batch = new RestoreBatch();
    const hadTop = this.#chains.has(EGRESS_CHAIN);
    const wantTop = next.chains.has(EGRESS_CHAIN);
    if (hadTop && !wantTop) {
      batch.delete("filter", "FORWARD", ["-j", EGRESS_CHAIN]);
      batch.delete("filter", "FORWARD", ["-j", INGRESS_CHAIN]);
    }
    // The two top chains hold one jump per isolated pod; a pod event changes one line of them, so they are
    // edited line by line (their order does not matter after the first, conntrack, rule).
    const edited = new Set<string>();
    for (const top of [INGRESS_CHAIN, EGRESS_CHAIN]) {
      const have = this.#chains.get(top);
      const want = next.chains.get(top);
      if (!have || !want || have[0] !== want[0]) continue;
      edited.add(top);
      const keep = new Set(want);
      const had = new Set(have);
      for (const r of have) if (!keep.has(r)) batch.delete("filter", top, args(r));
      for (const r of want) if (!had.has(r)) batch.append("filter", top, args(r));
    }
    const chainsWritten = this.#writeChains(
      batch,
      next,
      (name, rules) => !edited.has(name) && !sameRules(this.#chains.get(name), rules),
    );
    let chainsDeleted = 0;
    for (const name of this.#chains.keys()) {
      if (!next.chains.has(name)) {
        batch.deleteChain("filter", name);
        chainsDeleted++;
      }
    }
    if (wantTop && !hadTop) this.#insertJumps(batch);
    await Promise.all([setsDone, this.#iptables.restore(batch)]);
    const stale = [...applied.keys()].filter((n) => !next.specs.has(n));
    await this.#destroy(stale, 0);
    this.#remember(next, touched && replace.length === 0 ? changes.map((c) => c.set) : undefined);
    return {
      fresh: false,
      setsWritten: replace.length,
      membersChanged,
      setsDestroyed: stale.length,
      chainsWritten,
      chainsDeleted,
    };
  }

  /** Sets that could not be destroyed yet (still referenced for a moment), for {@linkcode destroyPending}. */
  get pending(): number {
    return this.#pendingDestroy.size;
  }

  /** Destroys the sets left over by earlier applies, waiting a little for references to go. */
  destroyPending(): Promise<void> {
    return this.#destroy([], 5);
  }

  /**
   * Destroys sets no rule uses. With the nf_tables backend the kernel drops the rules' references to a set
   * after the commit, asynchronously, so a destroy right after can find the set still "in use": it is then
   * retried up to `retries` times, and otherwise left pending (a set that stays behind is harmless: no rule
   * matches on it).
   */
  async #destroy(names: string[], retries: number): Promise<void> {
    const all = [...new Set([...names, ...this.#pendingDestroy])];
    if (!all.length) return;
    for (let attempt = 0;; attempt++) {
      try {
        await ipsetRestore(this.#netns, destroySetsBatch(all));
        this.#pendingDestroy.clear();
        return;
      } catch (e) {
        const left = new Set((await listIpsets(this.#netns).catch(() => [])).map((h) => h.name));
        const remaining = all.filter((n) => left.has(n));
        all.splice(0, all.length, ...remaining);
        this.#pendingDestroy = new Set(all);
        if (!all.length) return;
        if (attempt >= retries || !/in use/i.test((e as Error).message)) return;
        await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
      }
    }
  }

  /** Records what the kernel now holds; with `only`, just those sets' members changed. */
  #remember(next: Compiled, only?: string[]): void {
    const sets = this.#sets ?? new Map<string, Set<string>>();
    if (only) {
      for (const name of only) sets.set(name, new Set(next.members.get(name)?.keys() ?? []));
      for (const name of [...sets.keys()]) if (!next.specs.has(name)) sets.delete(name);
    } else {
      sets.clear();
      for (const name of next.specs.keys()) sets.set(name, new Set(next.members.get(name)?.keys() ?? []));
    }
    this.#sets = sets;
    this.#chains = new Map(next.chains);
  }
}

/**
 * Removes every `GLX-` chain, jump and set from the namespace `iptables` works in (the Go engine's or ours):
 * what `--network-policy=false` does at start, and `galaxy audit --fix` when no engine runs.
 */
export function removePolicyState(iptables: Iptables): Promise<ApplyStats> {
  return new PolicyApplier(iptables).apply({
    chains: new Map(),
    specs: new Map(),
    members: new Map(),
    warnings: [],
  });
}

/** Policy chains first, then pod chains, then the two top chains (declaration order for a restore). */
function rank(chain: string): number {
  if (chain.startsWith("GLX-PLCY-")) return 0;
  if (chain.startsWith("GLX-POD-")) return 1;
  return 2;
}
