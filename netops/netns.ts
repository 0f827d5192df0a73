/**
 * Work inside a network namespace given by path (`/proc/<pid>/ns/net`, `/var/run/netns/<name>`, any bind
 * mount): commands, sysctl writes and /proc or /sys reads, run by a pooled worker thread that enters the
 * namespace with libc `setns` and uses only synchronous calls there. The calling thread never changes
 * namespace. `null` as the path means "where this process is" and runs on the calling thread.
 *
 * Pool design: a few long-lived workers that `setns` into the target at the start of each job and `setns`
 * back home at its end (checked; a worker that fails to get home is dropped). A pool keyed by path was
 * rejected: a thread parked in a pod namespace holds a reference to it, so a deleted pod's namespace (and the
 * host end of its veth) would live on until the worker exits, and the pool would grow with the pod count.
 * `setns` costs microseconds, so entering per job is free. Idle workers are `unref`'d and never keep the
 * process alive; {@linkcode shutdownNetnsWorkers} ends them (tests, daemon shutdown).
 *
 * A process uses `nsenter` unless it opts in to the pool: most processes here are one-shot CNI plugins that
 * live for a few hundred milliseconds, and for them an `nsenter --net=<path>` child per step (about 3 ms)
 * beats starting a worker thread (about 60 ms) and loading `node:worker_threads` (about 15 ms). A long-lived
 * process (the daemon) calls {@linkcode configureNetnsWorkers} with `executor: "worker"`. Either way the
 * calling thread never changes namespace.
 * @module
 */
import type { Worker } from "node:worker_threads";
import { childOutput } from "./child_output.ts";
import type {
  NetnsStep,
  NetnsStepResult,
  ReadStep,
  ReadStepResult,
  RunStep,
  RunStepResult,
  WorkerReply,
  WorkerRequest,
  WriteStep,
  WriteStepResult,
} from "./netns_worker.ts";

export type {
  NetnsStep,
  NetnsStepResult,
  ReadStep,
  ReadStepResult,
  RunStep,
  RunStepResult,
  WriteStep,
  WriteStepResult,
};

/** The CNI error code for a container whose namespace is gone ("Unknown container", spec code 3). */
export const NETNS_NOT_FOUND_CODE = 3;

/**
 * The namespace path does not exist. DEL treats this as "already gone"; elsewhere it maps to CNI error
 * code 3 ({@linkcode NETNS_NOT_FOUND_CODE}, carried in `code`).
 */
export class NetnsNotFoundError extends Error {
  /** The path that was asked for. */
  readonly path: string;
  /** The matching CNI error code. */
  readonly code: number = NETNS_NOT_FOUND_CODE;

  constructor(path: string) {
    super(`network namespace ${path} does not exist`);
    this.name = "NetnsNotFoundError";
    this.path = path;
  }
}

/** The namespace exists but could not be entered (not a namespace file, no permission), or a job failed. */
export class NetnsError extends Error {
  /** The namespace path. */
  readonly path: string;
  /** The libc errno, when the failure came from `open`/`setns`. */
  readonly errno?: number;

  constructor(path: string, message: string, errno?: number) {
    super(`network namespace ${path}: ${message}`);
    this.name = "NetnsError";
    this.path = path;
    if (errno !== undefined) this.errno = errno;
  }
}

/** A command for {@linkcode runCommands}: argv plus optional stdin text. */
export interface NetnsCommand {
  /** Program and arguments. */
  argv: string[];
  /** Text for the command's stdin. */
  stdin?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Kill the command after this many seconds. */
  timeoutSeconds?: number;
}

/** The outcome of a command. */
export interface CommandResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** Counters of the worker pool, for tests and metrics. */
export interface NetnsWorkerStats {
  /** Workers alive now. */
  workers: number;
  /** Workers started since the process began. */
  created: number;
  /** Jobs completed. */
  jobs: number;
  /** Workers dropped because they could not return to their home namespace or crashed. */
  dropped: number;
  /** Jobs waiting for a free worker. */
  queued: number;
}

interface Job {
  request: WorkerRequest;
  resolve: (results: NetnsStepResult[]) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  job?: Job;
}

const WORKER_URL = new URL("./netns_worker.ts", import.meta.url);
const slots: Slot[] = [];
const queue: Job[] = [];
const stats = { created: 0, jobs: 0, dropped: 0 };
let maxWorkers = 4;
let executor: "worker" | "nsenter" = "nsenter";
let WorkerClass: typeof Worker | undefined;
let nextId = 1;
const decoder = new TextDecoder();

/**
 * Sets the pool size (default 4; workers above a lowered limit are not stopped until shutdown) and how work
 * reaches a namespace: `nsenter` (default, for one-shot processes) or `worker` (for long-lived processes).
 */
export function configureNetnsWorkers(
  options: { maxWorkers?: number; executor?: "worker" | "nsenter" } = {},
): void {
  if (options.executor !== undefined) executor = options.executor;
  if (options.maxWorkers !== undefined) {
    if (!Number.isInteger(options.maxWorkers) || options.maxWorkers < 1) {
      throw new RangeError(`maxWorkers must be a positive integer, got ${options.maxWorkers}`);
    }
    maxWorkers = options.maxWorkers;
  }
}

/** The pool's counters. */
export function netnsWorkerStats(): NetnsWorkerStats {
  return { workers: slots.length, ...stats, queued: queue.length };
}

function drop(slot: Slot, reason: string): void {
  const i = slots.indexOf(slot);
  if (i < 0) return;
  slots.splice(i, 1);
  stats.dropped++;
  slot.job?.reject(new NetnsError(slot.job.request.netns, reason));
  slot.job = undefined;
  slot.worker.terminate().catch(() => {});
}

function spawn(): Slot {
  const worker = new WorkerClass!(WORKER_URL);
  worker.unref();
  const slot: Slot = { worker };
  worker.on("message", (reply: WorkerReply) => {
    const job = slot.job;
    if (!job || job.request.id !== reply.id) return;
    slot.job = undefined;
    stats.jobs++;
    if (reply.home) {
      worker.unref();
    } else {
      console.error(`netns worker could not return from ${job.request.netns}; dropping it`);
      drop(slot, "worker could not return to its namespace");
    }
    if (reply.ok) job.resolve(reply.results);
    else if (reply.kind === "notfound") job.reject(new NetnsNotFoundError(job.request.netns));
    else job.reject(new NetnsError(job.request.netns, reply.message, reply.errno));
    dispatch();
  });
  worker.on("error", (err: Error) => {
    drop(slot, `worker failed: ${err.message}`);
    dispatch();
  });
  worker.on("exit", () => {
    drop(slot, "worker exited");
    dispatch();
  });
  slots.push(slot);
  stats.created++;
  return slot;
}

function dispatch(): void {
  while (queue.length > 0) {
    let slot = slots.find((s) => s.job === undefined);
    if (!slot) {
      if (slots.length >= maxWorkers) return;
      slot = spawn();
    }
    const job = queue.shift()!;
    slot.job = job;
    slot.worker.ref();
    slot.worker.postMessage(job.request);
  }
}

function checkNetnsPath(path: string): void {
  if (typeof path !== "string" || !path.startsWith("/") || path.includes("\0")) {
    throw new NetnsError(String(path), "a namespace must be given as an absolute path");
  }
}

function checkStep(step: NetnsStep): void {
  if (step.op === "run") {
    if (step.argv.length === 0) throw new TypeError("a command needs at least a program name");
  } else if (step.op === "write") {
    if (!step.path.startsWith("/proc/sys/")) {
      throw new TypeError(`only /proc/sys/ may be written, not ${step.path}`);
    }
  } else {
    for (const p of step.paths) {
      if (!p.startsWith("/proc/") && !p.startsWith("/sys/")) {
        throw new TypeError(`only files under /proc/ or /sys/ may be read, not ${p}`);
      }
    }
  }
}

/**
 * Runs `steps` in order inside the namespace at `netnsPath`, in one worker round trip. A failing command or
 * write is reported in its result; a missing namespace rejects with {@linkcode NetnsNotFoundError}.
 */
export function inNetns(netnsPath: string, steps: NetnsStep[]): Promise<NetnsStepResult[]> {
  try {
    checkNetnsPath(netnsPath);
    steps.forEach(checkStep);
  } catch (err) {
    return Promise.reject(err);
  }
  if (executor === "nsenter") return runWithNsenter(netnsPath, steps);
  return loadWorkerClass().then(() =>
    new Promise((resolve, reject) => {
      queue.push({ request: { id: nextId++, netns: netnsPath, steps }, resolve, reject });
      dispatch();
    })
  );
}

/** Loads node:worker_threads on first use only: a process that never needs a worker never pays for it. */
async function loadWorkerClass(): Promise<void> {
  WorkerClass ??= (await import("node:worker_threads")).Worker;
}

/** Prints each file as `+<content>\0`, or `-\0` when it cannot be read; `$1` says whether to mount a sysfs. */
const READ_SCRIPT = '[ "$1" = sys ] && { mount -t sysfs sysfs /sys || exit 90; }; shift\n' +
  'for f; do if c=$(cat -- "$f" 2>/dev/null && echo x); then printf "+%s\\0" "${c%x}"; else printf "%s\\0" -; fi; done';
const WRITE_SCRIPT = '[ -e "$2" ] || exit 3; printf %s "$1" > "$2"';

async function nsenter(netnsPath: string, argv: string[], stdin?: string): Promise<CommandResult> {
  const r = await runHere({ argv: ["nsenter", `--net=${netnsPath}`, "--", ...argv], stdin });
  if (r.code !== 0 && r.stderr.startsWith("nsenter: ")) {
    try {
      await Deno.stat(netnsPath);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw new NetnsNotFoundError(netnsPath);
    }
    throw new NetnsError(netnsPath, r.stderr.trim());
  }
  return r;
}

async function runWithNsenter(netnsPath: string, steps: NetnsStep[]): Promise<NetnsStepResult[]> {
  try {
    await Deno.stat(netnsPath);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new NetnsNotFoundError(netnsPath);
    throw new NetnsError(netnsPath, (err as Error).message);
  }
  const results: NetnsStepResult[] = [];
  for (const step of steps) {
    if (step.op === "run") {
      let argv = step.argv;
      if (step.timeoutSeconds !== undefined) {
        argv = ["timeout", "-k", "1", String(step.timeoutSeconds), ...argv];
      }
      if (step.env) argv = ["env", ...Object.entries(step.env).map(([k, v]) => `${k}=${v}`), ...argv];
      const r = await nsenter(netnsPath, argv, step.stdin);
      results.push({ op: "run", ...r });
    } else if (step.op === "write") {
      const r = await nsenter(netnsPath, ["sh", "-c", WRITE_SCRIPT, "sh", step.value, step.path]);
      if (r.code === 0) results.push({ op: "write", path: step.path });
      else if (r.code === 3) {
        results.push({ op: "write", path: step.path, error: "No such file", missing: true });
      } else results.push({ op: "write", path: step.path, error: r.stderr.trim() || `exit ${r.code}` });
    } else {
      const values: (string | null)[] = step.paths.map(() => null);
      for (const kind of ["proc", "sys"]) {
        const index = step.paths.flatMap((p, i) => (p.startsWith(`/${kind}/`) ? [i] : []));
        if (!index.length) continue;
        const prefix = kind === "sys" ? ["unshare", "--mount", "--propagation", "private"] : [];
        const paths = index.map((i) => step.paths[i]);
        const r = await nsenter(netnsPath, [...prefix, "sh", "-c", READ_SCRIPT, "sh", kind, ...paths]);
        if (r.code !== 0) {
          throw new NetnsError(netnsPath, `reading ${kind} failed (${r.code}): ${r.stderr.trim()}`);
        }
        const records = r.stdout.split("\0");
        index.forEach((i, k) => values[i] = records[k]?.startsWith("+") ? records[k].slice(1) : null);
      }
      results.push({ op: "read", values });
    }
  }
  return results;
}

/** Stops every worker and rejects queued jobs; the pool starts again on the next job. */
export async function shutdownNetnsWorkers(): Promise<void> {
  for (const job of queue.splice(0)) job.reject(new NetnsError(job.request.netns, "netns workers shut down"));
  const all = slots.splice(0);
  for (const slot of all) {
    slot.job?.reject(new NetnsError(slot.job.request.netns, "netns workers shut down"));
    slot.job = undefined;
  }
  await Promise.all(all.map((s) => s.worker.terminate()));
}

async function runHere(cmd: NetnsCommand): Promise<CommandResult> {
  let argv = cmd.argv;
  if (cmd.timeoutSeconds !== undefined) argv = ["timeout", "-k", "1", String(cmd.timeoutSeconds), ...argv];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      env: cmd.env,
      stdin: cmd.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    return { code: 127, stdout: "", stderr: `${argv[0]}: ${(err as Error).message}` };
  }
  if (cmd.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(cmd.stdin)).catch(() => {});
    await writer.close().catch(() => {});
  }
  const out = await childOutput(child);
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/**
 * Runs commands in order inside `netnsPath` (one worker round trip), or in this process's own namespace
 * when it is `null`. Every command runs; check each `code`.
 */
export async function runCommands(
  netnsPath: string | null,
  commands: NetnsCommand[],
): Promise<CommandResult[]> {
  if (netnsPath === null) {
    const results: CommandResult[] = [];
    for (const cmd of commands) results.push(await runHere(cmd));
    return results;
  }
  const results = await inNetns(netnsPath, commands.map((c): RunStep => ({ op: "run", ...c })));
  return results.map((r) => {
    const run = r as RunStepResult;
    return { code: run.code, stdout: run.stdout, stderr: run.stderr };
  });
}

/**
 * Writes files under /proc/sys inside the namespace, in order; throws a {@linkcode NetnsError} naming the
 * first file that failed (the others are still attempted).
 */
export async function writeNetnsFiles(netnsPath: string, files: Record<string, string>): Promise<void> {
  const steps = Object.entries(files).map(([path, value]): WriteStep => ({ op: "write", path, value }));
  const results = (await inNetns(netnsPath, steps)) as WriteStepResult[];
  const failed = results.find((r) => r.error !== undefined);
  if (failed) throw new NetnsError(netnsPath, `write ${failed.path}: ${failed.error}`);
}

/**
 * Reads files under /proc or /sys as the namespace sees them (raw text, `undefined` when absent).
 * `/proc/net/...` is read through `/proc/thread-self/net`, and /sys through a private sysfs mount, because
 * both otherwise show the process's (host) namespace.
 */
export async function readNetnsFiles(netnsPath: string, paths: string[]): Promise<(string | undefined)[]> {
  const [result] = await inNetns(netnsPath, [{ op: "read", paths }]);
  return (result as ReadStepResult).values.map((v) => v ?? undefined);
}
