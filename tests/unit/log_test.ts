import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { defaultServeFlags } from "../../daemon/flags.ts";
import {
  configureLogging,
  formatGlogLine,
  getLog,
  type LogFlags,
  logV,
  resetLogging,
} from "../../daemon/log.ts";

const GLOG_LINE = /^([IWEF])(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) +(\d+) ([^ :]+):(\d+)\] (.*)\n$/s;
const REPO_ROOT = new URL("../../", import.meta.url);

/** The line number of the caller of `here()`. */
function here(): number {
  const frame = (new Error().stack ?? "").split("\n")[2];
  return Number(/:(\d+):\d+\)?$/.exec(frame)?.[1]);
}

/** Configures logging with `flags`, collecting stderr; the returned lines are what stderr got. */
function capture(flags: Partial<LogFlags> = {}): string[] {
  const lines: string[] = [];
  configureLogging(flags, { writeStderr: (text) => void lines.push(text) });
  return lines;
}

/** Runs `fn` with logging reset afterwards, even when it throws. */
async function withLogging(fn: () => void | Promise<void>): Promise<void> {
  try {
    await fn();
  } finally {
    resetLogging();
  }
}

function messages(lines: string[]): string[] {
  return lines.map((l) => GLOG_LINE.exec(l)?.[11] ?? `<not a glog line: ${l}>`);
}

Deno.test("log: formatGlogLine gives klog's exact line for a fixed local time", () => {
  const at = new Date(2024, 10, 27, 10, 4, 5, 123).getTime() + 0.456;
  const record = {
    level: "info" as const,
    message: "hello",
    sourceLocation: { file: "server.ts", line: 42 },
  };
  assert.equal(
    formatGlogLine(record, at, { pid: 12345 }),
    "I1127 10:04:05.123456   12345 server.ts:42] hello\n",
  );
  assert.equal(
    formatGlogLine({ ...record, level: "warning" }, new Date(2025, 0, 2, 3, 4, 5, 6), { pid: 7 }),
    "W0102 03:04:05.006000       7 server.ts:42] hello\n",
  );
  // A pid wider than seven columns is printed whole.
  assert.equal(
    formatGlogLine({ ...record, level: "error" }, new Date(2024, 11, 31, 23, 59, 59, 999), {
      pid: 123456789,
    }),
    "E1231 23:59:59.999000 123456789 server.ts:42] hello\n",
  );
});

Deno.test("log: formatGlogLine letters, locations, message parts and newlines", () => {
  const at = new Date(2024, 0, 1, 0, 0, 0, 0);
  const letters = [["trace", "I"], ["debug", "I"], ["info", "I"], ["warning", "W"], ["error", "E"], [
    "fatal",
    "F",
  ]] as const;
  for (const [level, letter] of letters) {
    assert.equal(formatGlogLine({ level, message: "m" }, at, { pid: 1 })[0], letter, level);
  }
  const url = { file: "file:///work/main/daemon/server.ts", line: 9 };
  assert.match(
    formatGlogLine({ level: "info", message: "m", sourceLocation: url }, at),
    / server\.ts:9\] m\n$/,
  );
  // No source location: the logger category stands in, klog-style `name:0`.
  assert.match(
    formatGlogLine({ level: "info", message: "m", category: ["galaxy", "gc"] }, at),
    / gc:0\] m\n$/,
  );
  assert.match(formatGlogLine({ level: "info", message: "m" }, at), / galaxy:0\] m\n$/);
  // LogTape message parts: text, value, text, ...
  assert.match(
    formatGlogLine({ level: "info", message: ["pod ", "a", " has ", 2, " ips"] }, at),
    /\] pod a has 2 ips\n$/,
  );
  assert.match(
    formatGlogLine({ level: "info", message: ["v=", { a: [1] }, ""] }, at),
    /\] v=\{ a: \[ 1 \] \}\n$/,
  );
  // Exactly one newline at the end; inner newlines are kept.
  assert.match(formatGlogLine({ level: "info", message: "a\nb\n" }, at), /\] a\nb\n$/);
  assert.ok(!formatGlogLine({ level: "info", message: "x\n" }, at).endsWith("\n\n"));
  // The pid defaults to this process's.
  assert.match(formatGlogLine({ level: "info", message: "m" }, at), new RegExp(` ${Deno.pid} `));
});

Deno.test("log: a logged line has klog's format, this file and line, and the local time", async () => {
  await withLogging(() => {
    const lines = capture();
    const before = Date.now();
    const line = here() + 1;
    getLog("test").info("hello", "world", 3, { a: 1 }, new Error("boom"));
    const after = Date.now();
    assert.equal(lines.length, 1);
    const m = GLOG_LINE.exec(lines[0]);
    assert.ok(m, lines[0]);
    assert.equal(m[1], "I");
    assert.equal(Number(m[8]), Deno.pid);
    assert.equal(m[9], "log_test.ts");
    assert.equal(Number(m[10]), line);
    assert.equal(m[11], "hello world 3 { a: 1 } boom");
    const d = new Date(before);
    const logged = new Date(
      d.getFullYear(),
      Number(m[2]) - 1,
      Number(m[3]),
      Number(m[4]),
      Number(m[5]),
      Number(m[6]),
    );
    const ms = logged.getTime() + Number(m[7]) / 1000;
    assert.ok(ms >= before - 1 && ms <= after + 1, `${ms} in [${before}, ${after}]`);
  });
});

Deno.test("log: severities map to I/W/E/F and all go to stderr by default", async () => {
  await withLogging(() => {
    const lines = capture();
    const log = getLog("sev");
    log.info("i");
    log.warn("w");
    log.error("e");
    log.fatal("f");
    assert.deepEqual(lines.map((l) => l[0]), ["I", "W", "E", "F"]);
    assert.deepEqual(messages(lines), ["i", "w", "e", "f"]);
  });
});

Deno.test("log: messages with braces are printed verbatim", async () => {
  await withLogging(() => {
    const lines = capture();
    getLog("t").info('conf {"cniVersion":"1.0.0","name":"{x}"}');
    assert.deepEqual(messages(lines), ['conf {"cniVersion":"1.0.0","name":"{x}"}']);
  });
});

Deno.test("log: -v filters V lines, logV and vEnabled follow it", async () => {
  for (const v of [0, 1, 2, 5]) {
    await withLogging(() => {
      const lines = capture({ v });
      const log = getLog("verbosity");
      for (let level = 0; level <= 6; level++) log.v(level, `v${level}`);
      logV(2, "logV2");
      logV(3, "logV3");
      const expected = [0, 1, 2, 3, 4, 5, 6].filter((l) => l <= v).map((l) => `v${l}`);
      if (v >= 2) expected.push("logV2");
      if (v >= 3) expected.push("logV3");
      assert.deepEqual(messages(lines), expected, `v=${v}`);
      assert.ok(lines.every((l) => l.startsWith("I")), "V lines are INFO lines");
      assert.ok(lines.every((l) => / log_test\.ts:\d+\] /.test(l)), "V lines carry the caller's location");
      assert.equal(log.vEnabled(v), true);
      assert.equal(log.vEnabled(v + 1), false);
    });
  }
});

Deno.test("log: --vmodule raises the verbosity for matching files only", async () => {
  await withLogging(() => {
    const lines = capture({ v: 1, vmodule: [{ pattern: "log_t*", level: 3 }] });
    const log = getLog("vm");
    log.v(3, "three");
    log.v(4, "four");
    logV(3, "logV three");
    assert.equal(log.vEnabled(3), true);
    assert.equal(log.vEnabled(4), false);
    assert.deepEqual(messages(lines), ["three", "logV three"]);
  });
  await withLogging(() => {
    // A rule raises a file's verbosity but never lowers it below -v, as in klog.
    const lines = capture({ v: 2, vmodule: [{ pattern: "log_test", level: 1 }] });
    getLog("vm").v(2, "two");
    logV(2, "logV two");
    assert.equal(getLog("vm").vEnabled(2), true);
    assert.deepEqual(messages(lines), ["two", "logV two"]);
  });
  await withLogging(() => {
    const lines = capture({ v: 1, vmodule: [{ pattern: "server", level: 5 }] });
    const log = getLog("vm");
    log.v(1, "one");
    log.v(2, "two");
    assert.equal(log.vEnabled(2), false);
    assert.deepEqual(messages(lines), ["one"]);
  });
  await withLogging(() => {
    // A pattern with a slash matches the whole path without its extension; `*` does not cross a slash.
    const path = new URL(import.meta.url).pathname.replace(/\.ts$/, "");
    const lines = capture({ vmodule: [{ pattern: path.replace(/\/unit\//, "/*/"), level: 2 }] });
    getLog("vm").v(2, "by path");
    assert.deepEqual(messages(lines), ["by path"]);
  });
  await withLogging(() => {
    const lines = capture({ vmodule: [{ pattern: "*/log_test", level: 2 }] });
    getLog("vm").v(2, "a slash pattern must match the whole path");
    assert.deepEqual(lines, []);
  });
});

Deno.test("log: --log-backtrace-at adds a stack trace to the line logged there", async () => {
  await withLogging(() => {
    const line = here() + 2;
    const lines = capture({ logBacktraceAt: { file: "log_test.ts", line } });
    getLog("bt").info("traced");
    getLog("bt").info("not traced");
    assert.equal(lines.length, 2);
    assert.match(lines[0], new RegExp(`\\] traced\n {4}at .*log_test\\.ts:${line}:\\d+`));
    assert.ok(!lines[0].includes("daemon/log.ts"), "the trace starts at the caller");
    assert.match(lines[1], /\] not traced\n$/);
  });
});

Deno.test("log: records from other LogTape loggers use the same line, and LogTape's meta notice is hidden", async () => {
  await withLogging(() => {
    const lines = capture({ v: 1 });
    getLogger(["other", "lib"]).info("from {who}", { who: "a library" });
    getLogger(["other", "lib"]).debug("debug shows at v>0");
    assert.deepEqual(messages(lines), ["from a library", "debug shows at v>0"]);
    assert.match(lines[0], / lib:0\] /);
  });
  await withLogging(() => {
    const lines = capture({ v: 0 });
    getLogger(["other"]).debug("hidden at v=0");
    assert.deepEqual(lines, []);
  });
});

function logAll(): void {
  const log = getLog("files");
  log.info("an info");
  log.warn("a warning");
  log.error("an error");
  log.v(1, "a v1");
}

async function readDir(dir: string): Promise<Map<string, Deno.DirEntry>> {
  const entries = new Map<string, Deno.DirEntry>();
  for await (const e of Deno.readDir(dir)) entries.set(e.name, e);
  return entries;
}

function bodyMessages(text: string): string[] {
  return messages(text.split(/(?<=\n)/).filter((l) => GLOG_LINE.test(l)));
}

Deno.test("log: --logtostderr=false writes klog's per-severity files and only severe lines to stderr", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-log-test-" });
  try {
    await withLogging(async () => {
      const lines = capture({ logtostderr: false, logDir: dir, v: 1 });
      logAll();
      resetLogging();
      assert.deepEqual(messages(lines), ["an error"], "stderrthreshold 2 = ERROR by default");
      const entries = await readDir(dir);
      const link = (sev: string) => `${dir}/galaxy.${sev}`;
      for (const sev of ["INFO", "WARNING", "ERROR"]) {
        assert.ok(entries.get(`galaxy.${sev}`)?.isSymlink, `galaxy.${sev} symlink`);
        const target = await Deno.readLink(link(sev));
        assert.match(
          target,
          new RegExp(`^galaxy\\.[^.]+\\.[^.]+\\.log\\.${sev}\\.\\d{8}-\\d{6}\\.${Deno.pid}$`),
        );
      }
      assert.ok(!entries.has("galaxy.FATAL"), "no FATAL file without a FATAL line");
      const info = await Deno.readTextFile(link("INFO"));
      assert.match(info, /^Log file created at: \d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}\n/);
      assert.match(info, /\nLog line format: \[IWEF\]mmdd hh:mm:ss\.uuuuuu pid file:line\] msg\n/);
      assert.deepEqual(bodyMessages(info), ["an info", "a warning", "an error", "a v1"]);
      assert.deepEqual(bodyMessages(await Deno.readTextFile(link("WARNING"))), ["a warning", "an error"]);
      assert.deepEqual(bodyMessages(await Deno.readTextFile(link("ERROR"))), ["an error"]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("log: --alsologtostderr and --stderrthreshold choose what else goes to stderr", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-log-test-" });
  try {
    const cases: [Partial<LogFlags>, string[]][] = [
      [{ alsologtostderr: true }, ["an info", "a warning", "an error", "a v1"]],
      [{ stderrthreshold: 0 }, ["an info", "a warning", "an error", "a v1"]],
      [{ stderrthreshold: 1 }, ["a warning", "an error"]],
      [{ stderrthreshold: 3 }, []],
      // --logtostderr wins over files: stderr gets everything and no file is made.
      [{ logtostderr: true, logFile: `${dir}/never.log` }, ["an info", "a warning", "an error", "a v1"]],
    ];
    for (const [flags, expected] of cases) {
      await withLogging(() => {
        const lines = capture({ logtostderr: false, logFile: `${dir}/galaxy.log`, v: 1, ...flags });
        logAll();
        assert.deepEqual(messages(lines), expected, JSON.stringify(flags));
      });
    }
    assert.ok(!(await readDir(dir)).has("never.log"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("log: --log-file gets every line in one file, appending", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-log-test-" });
  try {
    const file = `${dir}/galaxy.log`;
    await Deno.writeTextFile(file, "earlier content\n");
    await withLogging(() => {
      capture({ logtostderr: false, logFile: file, logDir: `${dir}/ignored`, stderrthreshold: 3 });
      logAll();
    });
    const text = await Deno.readTextFile(file);
    assert.ok(text.startsWith("earlier content\nLog file created at: "));
    assert.deepEqual(bodyMessages(text), ["an info", "a warning", "an error"]);
    assert.deepEqual([...(await readDir(dir)).keys()], ["galaxy.log"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("log: a log directory that cannot be used fails configureLogging and leaves nothing open", async () => {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-log-test-" });
  try {
    assert.throws(() => capture({ logtostderr: false, logDir: `${dir}/missing/dir` }), Deno.errors.NotFound);
    assert.throws(
      () => capture({ logtostderr: false, logFile: `${dir}/missing/x.log` }),
      Deno.errors.NotFound,
    );
  } finally {
    resetLogging();
    await Deno.remove(dir, { recursive: true });
  }
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "log: a log file that cannot take the header fails configureLogging and is closed (/dev/full)",
  ignore: !exists("/dev/full"),
  fn() {
    try {
      assert.throws(() => capture({ logtostderr: false, logFile: "/dev/full" }), /space/i);
    } finally {
      resetLogging();
    }
  },
});

Deno.test("log: reconfiguring replaces the previous sinks", async () => {
  await withLogging(() => {
    const first = capture({ v: 0 });
    const second = capture({ v: 2 });
    getLog("re").v(2, "to the second");
    assert.deepEqual(first, []);
    assert.deepEqual(messages(second), ["to the second"]);
  });
});

Deno.test("log: configureLogging takes the flags object of galaxy serve as it is", async () => {
  await withLogging(() => {
    const lines: string[] = [];
    configureLogging({ ...defaultServeFlags(), v: 1 }, { writeStderr: (t) => void lines.push(t) });
    getLog("serve").v(1, "ok");
    assert.deepEqual(messages(lines), ["ok"]);
  });
});

async function runDeno(code: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("log: nothing goes to stdout — configured, unconfigured, LogTape's own loggers", async () => {
  const logUrl = new URL("daemon/log.ts", REPO_ROOT).href;
  const r = await runDeno(`
    import { configureLogging, getLog, resetLogging } from "${logUrl}";
    import { getLogger } from "@logtape/logtape";
    const log = getLog("child");
    log.info("before configure");
    log.v(1, "hidden before configure");
    configureLogging({ v: 2 });
    log.info("an info");
    log.warn("a warning");
    log.error("an error");
    log.v(2, "a v2");
    log.v(3, "a v3");
    getLogger(["lib"]).info("library info");
    getLogger(["lib"]).debug("library debug");
    resetLogging();
    log.error("after reset");
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "");
  const lines = r.stderr.split(/(?<=\n)/);
  assert.deepEqual(messages(lines), [
    "before configure",
    "an info",
    "a warning",
    "an error",
    "a v2",
    "library info",
    "library debug",
    "after reset",
  ]);
  assert.ok(lines.every((l) => / (\$deno\$eval\.ts:\d+|lib:0)\] /.test(l)), r.stderr);
  assert.ok(!r.stderr.includes("LogTape loggers are configured"));
});
