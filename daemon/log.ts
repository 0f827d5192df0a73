/**
 * Logging for `galaxy serve`: LogTape underneath, glog/klog's text line on top.
 *
 * ```
 * I1127 10:04:05.123456   12345 server.ts:42] message
 * ```
 * Severity letter (I/W/E/F), month and day, local time with microseconds, the pid right-aligned in 7 columns
 * (klog prints the pid there), the caller's `file:line`, then `] ` and the message. glog's V(n) lines
 * (n >= 1) are LogTape `debug` records, printed with the letter I like every V line. Lines go to stderr and/or log files as the klog flags say, and
 * never to stdout: stdout is the CNI channel in plugin and shim mode.
 *
 * Source location: LogTape's own `captureSourceLocation` would report this module (it reads a fixed frame
 * above its own logging method, which is our wrapper) and it formats the whole stack. Instead the wrapper
 * captures just the caller's frame with `Error.captureStackTrace` and a stack limit of 1: about 10 µs per
 * emitted line, paid only for lines that are written (a V line below the verbosity costs nothing).
 *
 * Log files are written unbuffered (one synchronous write per line), so nothing is lost when the process
 * exits through `Deno.exit`; `--log-flush-frequency` therefore has nothing to flush.
 *
 * Its length: klog's flags (files, thresholds, vmodule, backtraces) are one behaviour with one line format;
 * splitting it would spread the rules that decide where a line goes.
 * @module
 */
import {
  configureSync,
  getLogger,
  type LogLevel,
  type LogRecord,
  resetSync,
  type Sink,
} from "@logtape/logtape";
import { defaultServeFlags, globToRegExp, type ServeFlags, type TraceLocation } from "./flags.ts";

/** The flags that steer logging (a subset of {@link ServeFlags}). */
export type LogFlags = Pick<
  ServeFlags,
  | "v"
  | "logtostderr"
  | "alsologtostderr"
  | "logDir"
  | "logFile"
  | "stderrthreshold"
  | "vmodule"
  | "logBacktraceAt"
>;

/** Options of {@link configureLogging}. */
export interface LoggingOptions {
  /** Writes text to stderr; the default writes synchronously to `Deno.stderr`. Tests pass a collector. */
  writeStderr?: (text: string) => void;
  /** The program name in log file names (default `galaxy`). */
  program?: string;
}

/** A logger for one category with glog's severities and V levels. */
export interface Log {
  /** Logs at INFO. Extra arguments are appended, separated by spaces. */
  info(message: string, ...args: unknown[]): void;
  /** Logs at WARNING. */
  warn(message: string, ...args: unknown[]): void;
  /** Logs at ERROR. */
  error(message: string, ...args: unknown[]): void;
  /** Logs at FATAL; it does not exit, the caller does. */
  fatal(message: string, ...args: unknown[]): void;
  /** Logs at INFO when `level` <= `-v` (or the caller's `--vmodule` level). */
  v(level: number, message: string, ...args: unknown[]): void;
  /** Whether `v(level, ...)` from the caller's file would log; use it to skip building costly messages. */
  vEnabled(level: number): boolean;
}

/** What {@link formatGlogLine} needs of a record; a LogTape `LogRecord` fits. */
export interface GlogRecordLike {
  /** LogTape level: trace/debug/info → I, warning → W, error → E, fatal → F. */
  level: LogLevel;
  /** The message text, or LogTape's message parts (text, value, text, ...). */
  message: string | readonly unknown[];
  /** The logger category; its last part stands in for the file when there is no source location. */
  category?: readonly string[];
  /** Where the line was logged; the file's base name is printed. */
  sourceLocation?: { file: string; line: number };
}

/** Options of {@link formatGlogLine}. */
export interface GlogLineOptions {
  /** The pid to print (default `Deno.pid`). */
  pid?: number;
}

type Skip = (...args: never[]) => unknown;

interface Site {
  path: string;
  line: number;
}

interface State {
  active: boolean;
  v: number;
  vmodule: { regexp: RegExp; matchPath: boolean; level: number }[];
  vmoduleCache: Map<string, number>;
  backtraceAt: TraceLocation | null;
}

const SEVERITY_LETTERS = ["I", "W", "E", "F"];
const SEVERITY_NAMES = ["INFO", "WARNING", "ERROR", "FATAL"];
const encoder = new TextEncoder();

let state: State = inactiveState();
let clockWall = 0;
let clockPerf = 0;

/**
 * Routes LogTape to glog-style sinks as the flags say (missing flags take their defaults). Throws when a log
 * file cannot be opened. Calling it again replaces the previous configuration.
 */
export function configureLogging(flags: Partial<LogFlags> = {}, options: LoggingOptions = {}): void {
  const f: LogFlags = { ...defaultServeFlags(), ...flags };
  const writeStderr = options.writeStderr ?? writeDenoStderr;
  const files = f.logtostderr ? null : openLogFiles(f, options.program ?? "galaxy", writeStderr);
  const sink: Sink & Disposable = Object.assign(
    function glogSink(record: LogRecord): void {
      const line = formatGlogLine(glogRecord(record), recordTime(record.timestamp));
      const severity = severityOf(record.level);
      if (files === null) return writeStderr(line);
      files.write(severity, line);
      if (f.alsologtostderr || severity >= f.stderrthreshold) writeStderr(line);
    },
    { [Symbol.dispose]: () => files?.close() },
  );
  const verbose = f.v > 0 || f.vmodule.length > 0;
  try {
    configureSync({
      reset: true,
      sinks: { glog: sink },
      loggers: [
        { category: [], sinks: ["glog"], lowestLevel: verbose ? "debug" : "info" },
        { category: ["logtape", "meta"], lowestLevel: "warning" },
      ],
    });
  } catch (e) {
    files?.close();
    throw e;
  }
  state = {
    active: true,
    v: f.v,
    vmodule: f.vmodule.map((r) => ({
      regexp: globToRegExp(r.pattern),
      matchPath: r.pattern.includes("/"),
      level: r.level,
    })),
    vmoduleCache: new Map(),
    backtraceAt: f.logBacktraceAt,
  };
}

/** Undoes {@link configureLogging}: closes log files and resets LogTape (for tests and shutdown). */
export function resetLogging(): void {
  state = inactiveState();
  resetSync();
}

/**
 * A logger for `category` (e.g. `server`). Before {@link configureLogging} (and after
 * {@link resetLogging}) lines go straight to stderr as with the default flags.
 */
export function getLog(category: string): Log {
  const cat = ["galaxy", category];
  function info(message: string, ...args: unknown[]): void {
    emit(cat, "info", message, args, callerSite(info));
  }
  function warn(message: string, ...args: unknown[]): void {
    emit(cat, "warning", message, args, callerSite(warn));
  }
  function error(message: string, ...args: unknown[]): void {
    emit(cat, "error", message, args, callerSite(error));
  }
  function fatal(message: string, ...args: unknown[]): void {
    emit(cat, "fatal", message, args, callerSite(fatal));
  }
  function v(level: number, message: string, ...args: unknown[]): void {
    if (level > state.v && state.vmodule.length === 0) return;
    const site = callerSite(v);
    if (level <= state.v || level <= vLevelAt(site)) emit(cat, vLogLevel(level), message, args, site);
  }
  function vEnabled(level: number): boolean {
    if (level <= state.v) return true;
    return state.vmodule.length > 0 && level <= vLevelAt(callerSite(vEnabled));
  }
  return { info, warn, error, fatal, v, vEnabled };
}

/** Logs `message` at V(`level`) under the category `galaxy`: only when `level` <= `-v` (or vmodule's). */
export function logV(level: number, message: string, ...args: unknown[]): void {
  if (level > state.v && state.vmodule.length === 0) return;
  const site = callerSite(logV);
  if (level <= state.v || level <= vLevelAt(site)) emit(["galaxy"], vLogLevel(level), message, args, site);
}

/** Formats one glog line, newline included: `I1127 10:04:05.123456   12345 server.ts:42] message`. */
export function formatGlogLine(
  record: GlogRecordLike,
  now: Date | number,
  options: GlogLineOptions = {},
): string {
  const totalUs = Math.round((typeof now === "number" ? now : now.getTime()) * 1000);
  const d = new Date(Math.floor(totalUs / 1000));
  const us = ((totalUs % 1_000_000) + 1_000_000) % 1_000_000;
  const two = (n: number) => String(n).padStart(2, "0");
  const where = record.sourceLocation
    ? `${basename(record.sourceLocation.file)}:${record.sourceLocation.line}`
    : `${record.category?.at(-1) ?? "galaxy"}:0`;
  const text = typeof record.message === "string" ? record.message : renderParts(record.message);
  return `${SEVERITY_LETTERS[severityOf(record.level)]}${two(d.getMonth() + 1)}${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(us).padStart(6, "0")} ` +
    `${String(options.pid ?? Deno.pid).padStart(7)} ${where}] ${text}${text.endsWith("\n") ? "" : "\n"}`;
}

function inactiveState(): State {
  return { active: false, v: 0, vmodule: [], vmoduleCache: new Map(), backtraceAt: null };
}

function emit(
  category: string[],
  level: LogLevel,
  message: string,
  args: unknown[],
  site: Site | null,
): void {
  let text = args.length === 0 ? message : [message, ...args.map(renderValue)].join(" ");
  const bt = state.backtraceAt;
  if (bt && site && site.line === bt.line && basename(site.path) === bt.file) {
    const frames = (new Error().stack ?? "").split("\n").slice(1);
    text += `\n${frames.filter((f) => !f.includes(import.meta.url)).join("\n")}`;
  }
  const sourceLocation = site ? { file: site.path, line: site.line } : undefined;
  if (!state.active) {
    writeDenoStderr(formatGlogLine({ level, message: text, category, sourceLocation }, preciseNow()));
    return;
  }
  const logger = getLogger(category);
  const props = { message: text, glogSite: sourceLocation };
  if (level === "debug") logger.debug("{message}", props);
  else if (level === "info") logger.info("{message}", props);
  else if (level === "warning") logger.warn("{message}", props);
  else if (level === "error") logger.error("{message}", props);
  else logger.fatal("{message}", props);
}

/** The frame that called `skip`, read from a one-frame stack (see the module comment for the cost). */
function callerSite(skip: Skip): Site | null {
  const holder: { stack?: string } = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 1;
  try {
    Error.captureStackTrace(holder, skip);
  } finally {
    Error.stackTraceLimit = limit;
  }
  const m = /\(?([^()\s]+):(\d+):\d+\)?$/m.exec(holder.stack ?? "");
  return m ? { path: m[1], line: Number(m[2]) } : null;
}

/** The verbosity at `site`: the first matching vmodule rule, else `-v` (cached per file). Callers also accept
 * levels <= `-v`, so as in klog a rule can raise the verbosity of a file but not lower it. */
function vLevelAt(site: Site | null): number {
  if (site === null || state.vmodule.length === 0) return state.v;
  const cached = state.vmoduleCache.get(site.path);
  if (cached !== undefined) return cached;
  const path = site.path.replace(/^file:\/\//, "").replace(/\.[cm]?[jt]sx?$/, "");
  const rule = state.vmodule.find((r) => r.regexp.test(r.matchPath ? path : basename(path)));
  const level = rule ? rule.level : state.v;
  state.vmoduleCache.set(site.path, level);
  return level;
}

function glogRecord(record: LogRecord): GlogRecordLike {
  const site = record.properties.glogSite as { file: string; line: number } | undefined;
  return {
    level: record.level,
    message: record.message,
    category: record.category,
    sourceLocation: record.sourceLocation ?? site,
  };
}

/** The time for a record: microsecond-precise when it agrees with the record's millisecond timestamp. */
function recordTime(timestamp: number): number {
  const now = preciseNow();
  return now >= timestamp && now < timestamp + 1 ? now : timestamp;
}

/**
 * Wall-clock time in ms with microseconds: `Date.now()` has only milliseconds, so the sub-millisecond part
 * comes from `performance.now()`, re-anchored whenever the two disagree (start, clock steps, drift).
 */
function preciseNow(): number {
  const wall = Date.now();
  const perf = performance.now();
  const t = clockWall + (perf - clockPerf);
  if (t >= wall && t < wall + 1) return t;
  clockWall = wall;
  clockPerf = perf;
  return wall;
}

/** V(0) is plain INFO (always on in klog); V(1) and up are LogTape `debug`. */
function vLogLevel(level: number): LogLevel {
  return level <= 0 ? "info" : "debug";
}

function severityOf(level: LogLevel): number {
  if (level === "warning") return 1;
  if (level === "error") return 2;
  if (level === "fatal") return 3;
  return 0;
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function renderParts(parts: readonly unknown[]): string {
  return parts.map((p, i) => (i % 2 === 0 ? String(p) : renderValue(p))).join("");
}

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  return Deno.inspect(value, { compact: true, breakLength: Infinity, depth: 6 });
}

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

function writeDenoStderr(text: string): void {
  writeAll(Deno.stderr, text);
}

interface LogFiles {
  write(severity: number, line: string): void;
  close(): void;
}

/**
 * klog's files. `--log-file`: one file with every line. Else, in `--log-dir` (or the temp directory), one
 * file per severity, `<program>.<host>.<user>.log.<SEVERITY>.<yyyymmdd-hhmmss>.<pid>`, with a symlink
 * `<program>.<SEVERITY>`; a line goes to the file of its severity and of every lower one (INFO has all).
 * The INFO file is opened at once so that a bad directory fails at startup.
 */
function openLogFiles(f: LogFlags, program: string, writeStderr: (text: string) => void): LogFiles {
  const open: (Deno.FsFile | undefined)[] = [];
  let failed = false;
  function create(severity: number): Deno.FsFile {
    const now = new Date();
    const dir = f.logDir || Deno.env.get("TMPDIR") || "/tmp";
    const name = `${program}.${safeHost()}.${safeUser()}.log.${SEVERITY_NAMES[severity]}.` +
      `${stamp(now, "", "-", "")}.${Deno.pid}`;
    const file = Deno.openSync(f.logFile || `${dir}/${name}`, { create: true, append: true, mode: 0o644 });
    try {
      writeAll(
        file,
        `Log file created at: ${stamp(now, "/", " ", ":")}\nRunning on machine: ${safeHost()}\n` +
          `Binary: ${program} on Deno ${Deno.version.deno}\n` +
          `Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu pid file:line] msg\n`,
      );
    } catch (e) {
      file.close();
      throw e;
    }
    if (f.logFile === "") {
      const link = `${dir}/${program}.${SEVERITY_NAMES[severity]}`;
      try {
        Deno.removeSync(link);
      } catch { /* not there yet */ }
      try {
        Deno.symlinkSync(name, link);
      } catch { /* klog ignores symlink errors too */ }
    }
    return file;
  }
  function fileFor(severity: number): Deno.FsFile | undefined {
    if (open[severity] === undefined && !failed) {
      try {
        open[severity] = create(severity);
      } catch (e) {
        failed = true;
        writeStderr(`log: cannot create log file, logging to stderr only: ${(e as Error).message}\n`);
      }
    }
    return open[severity];
  }
  open[0] = create(0);
  return {
    write(severity: number, line: string): void {
      const upTo = f.logFile === "" ? severity : 0;
      for (let s = upTo; s >= 0; s--) {
        const file = fileFor(s);
        if (file === undefined) return writeStderr(line);
        try {
          writeAll(file, line);
        } catch (e) {
          // A full disk must not take the daemon down: say so once, then keep logging to stderr.
          failed = true;
          open[s] = undefined;
          file.close();
          writeStderr(`log: cannot write log file, logging to stderr only: ${(e as Error).message}\n`);
          return writeStderr(line);
        }
      }
    },
    close(): void {
      for (const file of open.splice(0)) file?.close();
    },
  };
}

function stamp(d: Date, dateSep: string, mid: string, timeSep: string): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${dateSep}${two(d.getMonth() + 1)}${dateSep}${two(d.getDate())}${mid}` +
    `${two(d.getHours())}${timeSep}${two(d.getMinutes())}${timeSep}${two(d.getSeconds())}`;
}

function safeHost(): string {
  try {
    return Deno.hostname().split(".")[0].replace(/[^A-Za-z0-9_-]/g, "_") || "unknownhost";
  } catch {
    return "unknownhost";
  }
}

function safeUser(): string {
  try {
    return (Deno.env.get("USER") ?? "").replace(/[^A-Za-z0-9._-]/g, "_") || "unknownuser";
  } catch {
    return "unknownuser";
  }
}
