/**
 * The worker behind {@link ./netns.ts}: it enters a network namespace with libc `setns` on its own OS thread,
 * runs the job's steps with synchronous calls only, and goes back to the namespace it started in.
 *
 * Only synchronous calls here: async fs ops and non-blocking FFI run on shared tokio threads that stay in the
 * host namespace (deno-platform-notes §3.2), so one `await` on such an op would silently act on the host.
 * The `message` listener itself is the only asynchronous thing, and it runs between jobs, at home.
 * @module
 */
import { parentPort } from "node:worker_threads";

/** Run a command inside the namespace (forked from this thread, so the child is in the namespace). */
export interface RunStep {
  /** Discriminator. */
  op: "run";
  /** Program and arguments. */
  argv: string[];
  /**
   * Text for the command's stdin; stdin is /dev/null without it. The worker cannot write to a pipe without
   * async I/O, so the text goes to a private temp file: an argv token `/dev/stdin` is replaced by that file's
   * path (the cheap way: `ip -batch /dev/stdin`), otherwise `/bin/sh` redirects it (about 1.4 ms more).
   */
  stdin?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Kill the command after this many seconds (coreutils `timeout`); exit code 124 then. */
  timeoutSeconds?: number;
}

/** Write a file under /proc/sys (a sysctl) of the namespace. */
export interface WriteStep {
  /** Discriminator. */
  op: "write";
  /** Absolute path under /proc/sys/. */
  path: string;
  /** The exact text written (no newline is added). */
  value: string;
}

/** Read files under /proc or /sys as seen from the namespace. */
export interface ReadStep {
  /** Discriminator. */
  op: "read";
  /** Absolute paths under /proc/ or /sys/. */
  paths: string[];
}

/** One unit of work inside a namespace. */
export type NetnsStep = RunStep | WriteStep | ReadStep;

/** The outcome of a {@linkcode RunStep}; a non-zero exit is reported, not thrown. */
export interface RunStepResult {
  /** Discriminator. */
  op: "run";
  /** Exit code (127 when the program could not be started). */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** The outcome of a {@linkcode WriteStep}. */
export interface WriteStepResult {
  /** Discriminator. */
  op: "write";
  /** The path written. */
  path: string;
  /** Why the write failed, when it did. */
  error?: string;
  /** True when the file does not exist (an unknown sysctl, e.g. an interface that is not there). */
  missing?: boolean;
}

/** The outcome of a {@linkcode ReadStep}: one entry per path, `null` when the file does not exist. */
export interface ReadStepResult {
  /** Discriminator. */
  op: "read";
  /** Raw contents in the order of the request. */
  values: (string | null)[];
}

/** The outcome of one step, in the same position as the step. */
export type NetnsStepResult = RunStepResult | WriteStepResult | ReadStepResult;

/** A job sent to the worker. */
export interface WorkerRequest {
  /** Correlates the reply. */
  id: number;
  /** The namespace file to enter. */
  netns: string;
  /** What to do there, in order. */
  steps: NetnsStep[];
}

/** The worker's answer to a {@linkcode WorkerRequest}. */
export type WorkerReply =
  & { id: number; home: boolean }
  & (
    | { ok: true; results: NetnsStepResult[] }
    | { ok: false; kind: "notfound" | "enter" | "internal"; message: string; errno?: number }
  );

const CLONE_NEWNET = 0x40000000;
const O_RDONLY_CLOEXEC = 0o2000000;
const ENOENT = 2;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Prints each file as `+<content>\0`, or `-\0` when it cannot be read, after mounting a private sysfs. */
const SYSFS_SCRIPT =
  'mount -t sysfs sysfs /sys || exit 90\nfor f; do if c=$(cat -- "$f" 2>/dev/null && echo x); ' +
  'then printf "+%s\\0" "${c%x}"; else printf "%s\\0" -; fi; done';

const libc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
});

function errno(): number {
  const p = libc.symbols.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

function strerror(code: number): string {
  const p = libc.symbols.strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** Whether `path` exists (a second opinion on ENOENT, in case the FFI machinery clobbered errno). */
function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (err) {
    return !(err instanceof Deno.errors.NotFound);
  }
}

function openNs(path: string): number {
  return libc.symbols.open(encoder.encode(path + "\0"), O_RDONLY_CLOEXEC);
}

const HOME_PATH = "/proc/thread-self/ns/net";
const homeFd = openNs(HOME_PATH);
if (homeFd < 0) throw new Error(`netns worker: open ${HOME_PATH}: ${strerror(errno())}`);
const homeId = Deno.readLinkSync(HOME_PATH);

/** Returns to the namespace the worker started in; false when that failed (the worker must then be dropped). */
function goHome(): boolean {
  if (libc.symbols.setns(homeFd, CLONE_NEWNET) !== 0) return false;
  try {
    return Deno.readLinkSync(HOME_PATH) === homeId;
  } catch {
    return false;
  }
}

function runStep(step: RunStep): RunStepResult {
  let argv = step.argv;
  if (step.timeoutSeconds !== undefined) argv = ["timeout", "-k", "1", String(step.timeoutSeconds), ...argv];
  let tmp: string | undefined;
  try {
    if (step.stdin !== undefined) {
      tmp = Deno.makeTempFileSync({ prefix: "galaxy-netns-stdin-" });
      Deno.writeTextFileSync(tmp, step.stdin);
      const file = tmp;
      argv = argv.includes("/dev/stdin")
        ? argv.map((a) => (a === "/dev/stdin" ? file : a))
        : ["/bin/sh", "-c", 'exec "$@" <"$0"', file, ...argv];
    }
    const out = new Deno.Command(argv[0], {
      args: argv.slice(1),
      env: step.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    return {
      op: "run",
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } catch (err) {
    return { op: "run", code: 127, stdout: "", stderr: `${argv[0]}: ${(err as Error).message}` };
  } finally {
    if (tmp !== undefined) Deno.removeSync(tmp);
  }
}

function writeStep(step: WriteStep): WriteStepResult {
  if (!step.path.startsWith("/proc/sys/") || step.path.includes("/../")) {
    return { op: "write", path: step.path, error: "only files under /proc/sys/ may be written" };
  }
  try {
    Deno.writeTextFileSync(step.path, step.value, { create: false });
    return { op: "write", path: step.path };
  } catch (err) {
    const missing = err instanceof Deno.errors.NotFound;
    return { op: "write", path: step.path, error: (err as Error).message, ...(missing ? { missing } : {}) };
  }
}

/** /proc/net and /proc/self/net show the namespace of the process's main thread; this thread's is elsewhere. */
function procPath(path: string): string {
  for (const prefix of ["/proc/net/", "/proc/self/net/"]) {
    if (path.startsWith(prefix)) return "/proc/thread-self/net/" + path.slice(prefix.length);
  }
  return path;
}

/**
 * sysfs shows the network namespace of whoever mounted it, so /sys/class/net of the host mount lists host
 * links. A child in its own mount namespace (forked here, hence in the target netns) mounts a fresh sysfs.
 */
function readSysfs(paths: string[]): (string | null)[] {
  const r = runStep({
    op: "run",
    argv: ["unshare", "--mount", "--propagation", "private", "sh", "-c", SYSFS_SCRIPT, "sh", ...paths],
  });
  if (r.code !== 0) throw new Error(`reading sysfs in the namespace failed (${r.code}): ${r.stderr.trim()}`);
  const records = r.stdout.split("\0");
  return paths.map((_, i) => (records[i]?.startsWith("+") ? records[i].slice(1) : null));
}

function readStep(step: ReadStep): ReadStepResult {
  const values: (string | null)[] = step.paths.map(() => null);
  const sysIndex: number[] = [];
  step.paths.forEach((path, i) => {
    if (path.startsWith("/sys/")) {
      sysIndex.push(i);
    } else if (path.startsWith("/proc/")) {
      try {
        values[i] = Deno.readTextFileSync(procPath(path));
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    } else {
      throw new Error(`only files under /proc/ or /sys/ may be read, not ${path}`);
    }
  });
  if (sysIndex.length > 0) {
    const sys = readSysfs(sysIndex.map((i) => step.paths[i]));
    sysIndex.forEach((i, k) => values[i] = sys[k]);
  }
  return { op: "read", values };
}

function handle(req: WorkerRequest): WorkerReply {
  const fd = openNs(req.netns);
  if (fd < 0) {
    const e = errno();
    const kind = e === ENOENT || !exists(req.netns) ? "notfound" : "enter";
    return {
      id: req.id,
      home: true,
      ok: false,
      kind,
      errno: e,
      message: `open ${req.netns}: ${strerror(e)}`,
    };
  }
  const rc = libc.symbols.setns(fd, CLONE_NEWNET);
  const e = errno();
  libc.symbols.close(fd);
  if (rc !== 0) {
    return {
      id: req.id,
      home: true,
      ok: false,
      kind: "enter",
      errno: e,
      message: `setns ${req.netns}: ${strerror(e)}`,
    };
  }
  let reply: WorkerReply;
  try {
    const results = req.steps.map((step): NetnsStepResult =>
      step.op === "run" ? runStep(step) : step.op === "write" ? writeStep(step) : readStep(step)
    );
    reply = { id: req.id, home: false, ok: true, results };
  } catch (err) {
    reply = { id: req.id, home: false, ok: false, kind: "internal", message: (err as Error).message };
  }
  reply.home = goHome();
  return reply;
}

parentPort?.on("message", (req: WorkerRequest) => parentPort?.postMessage(handle(req)));
