/**
 * Memory and process figures of the benchmark, from /proc: the RSS of one process and of its whole tree.
 * @module
 */

/** RSS in KiB of `pid` alone; 0 when it is gone. */
export function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * PSS in KiB of `pid` alone (its share of every page it maps: shared pages divided among their users); 0
 * when it is gone. Summed over a tree it is the memory the tree takes, where summed RSS counts the pages a
 * forked child still shares with its parent, or a library's text, once per process.
 */
export function pssKiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The processes of `pid`'s tree: itself and all its descendants. */
function treePids(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e.name)]);
    } catch {
      // exited meanwhile
    }
  }
  const all: number[] = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    all.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return all;
}

/** RSS and PSS in KiB of `pid` and all its descendants, each summed. */
export function treeMemoryKiB(pid: number): { rss: number; pss: number } {
  let rss = 0;
  let pss = 0;
  for (const p of treePids(pid)) {
    rss += rssKiB(p);
    pss += pssKiB(p);
  }
  return { rss, pss };
}
