import assert from "node:assert/strict";
import { launcherDir } from "../helpers/launchers.ts";
import { kernelTest, namespacesWithPrefix, runCommand } from "../helpers/netns.ts";

async function demoTempDirs(): Promise<string[]> {
  const found: string[] = [];
  for await (const e of Deno.readDir("/tmp")) if (e.name.startsWith("galaxy-demo-")) found.push(e.name);
  return found.sort();
}

kernelTest("demo: galaxy demo succeeds and leaves no namespaces or files behind", async () => {
  const before = await demoTempDirs();
  const r = await runCommand(`${await launcherDir()}/galaxy`, ["demo"]);
  assert.equal(r.code, 0, `demo failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /demo succeeded/);
  assert.match(r.stdout, /pod-a\s+eth0\s+198\.18\.50\.\d+\/32\s+169\.254\.1\.1/);
  assert.match(r.stdout, /pod-b\s+eth1\s+198\.18\.60\.\d+\/24/);
  assert.equal((r.stdout.match(/^ {4}ok {4}/gm) ?? []).length, 5, r.stdout);
  assert.match(r.stdout, /nothing left behind/);
  assert.deepEqual(await namespacesWithPrefix("galaxy-demo-"), []);
  assert.deepEqual(await demoTempDirs(), before);
});

Deno.test("demo: extra arguments are a usage error", async () => {
  const r = await runCommand(`${await launcherDir()}/galaxy`, ["demo", "now"]);
  assert.equal(r.code, 2);
});
