import assert from "node:assert/strict";
import { childOutput } from "../../netops/child_output.ts";

const sh = (script: string, options: Deno.CommandOptions = {}) =>
  new Deno.Command("sh", {
    args: ["-c", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...options,
  })
    .spawn();

Deno.test("childOutput: stdout over many reads and stderr come back byte for byte", async () => {
  const out = await childOutput(sh('head -c 300000 /dev/zero | tr "\\0" a; echo err >&2'));
  assert.equal(out.code, 0);
  assert.equal(out.success, true);
  assert.equal(out.signal, null);
  assert.equal(out.stdout.byteLength, 300000);
  assert.ok(out.stdout.every((b) => b === 0x61), "every stdout byte is 'a'");
  assert.equal(new TextDecoder().decode(out.stderr), "err\n");
});

Deno.test("childOutput: the same bytes as Deno's output() for mixed content", async () => {
  const script = "seq 1 40000; printf 'x\\001\\377y' >&2; seq 5 >&2";
  const mine = await childOutput(sh(script));
  const theirs = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
  assert.deepEqual(mine.stdout, theirs.stdout);
  assert.deepEqual(mine.stderr, theirs.stderr);
});

Deno.test("childOutput: a failing command gives its exit code and success false", async () => {
  const out = await childOutput(sh("echo partial; echo bad >&2; exit 3"));
  assert.equal(out.code, 3);
  assert.equal(out.success, false);
  assert.equal(new TextDecoder().decode(out.stdout), "partial\n");
  assert.equal(new TextDecoder().decode(out.stderr), "bad\n");
});

Deno.test("childOutput: a stream that is not piped reads as empty bytes", async () => {
  const out = await childOutput(sh("echo gone; echo kept >&2", { stdout: "null" }));
  assert.equal(out.success, true);
  assert.deepEqual(out.stdout, new Uint8Array(0));
  assert.equal(new TextDecoder().decode(out.stderr), "kept\n");
  const none = await childOutput(sh("exit 0", { stdout: "null", stderr: "null" }));
  assert.equal(none.code, 0);
  assert.equal(none.stdout.byteLength, 0);
  assert.equal(none.stderr.byteLength, 0);
});

Deno.test("childOutput: a child killed by a signal reports it", async () => {
  const child = sh("exec sleep 30");
  child.kill("SIGKILL");
  const out = await childOutput(child);
  assert.equal(out.success, false);
  assert.equal(out.signal, "SIGKILL");
});
