import assert from "node:assert/strict";
import { configureInProcessPlugins } from "../../cni/in_process.ts";
import { clearVersionCache, execVerb, getVersionInfo, runPluginFile } from "../../cni/invoke.ts";
import type { Plugin } from "../../cni/skel.ts";
import { CniError } from "../../cni/version.ts";

// A plugin executable that records every call in `<dir>/calls` and answers VERSION; any other verb fails,
// so a test sees at once whether a call went to the executable or stayed in process.
async function writeRecorder(dir: string, name: string, versions = '"0.4.0","1.0.0"'): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\necho "$CNI_COMMAND" >> ${dir}/calls\n` +
      `if [ "$CNI_COMMAND" = VERSION ]; then echo '{"cniVersion":"1.0.0","supportedVersions":[${versions}]}'; exit 0; fi\n` +
      `echo '{"code":999,"msg":"executed"}'; exit 1\n`,
  );
  await Deno.chmod(path, 0o755);
  return path;
}

async function calls(dir: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(`${dir}/calls`)).trim().split("\n").filter((l) => l);
  } catch {
    return [];
  }
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-in-process-test-" });
  try {
    await fn(dir);
  } finally {
    await configureInProcessPlugins({});
    clearVersionCache();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("VERSION is asked once per plugin file, and again when the file changes", async () => {
  await withDir(async (dir) => {
    const path = await writeRecorder(dir, "ipam-x");
    for (let i = 0; i < 3; i++) {
      assert.deepEqual((await getVersionInfo("ipam-x", { path: [dir] })).supportedVersions, [
        "0.4.0",
        "1.0.0",
      ]);
    }
    assert.deepEqual(await calls(dir), ["VERSION"]);
    // An upgrade in place: another size (and mtime) makes the answer stale.
    await writeRecorder(dir, "ipam-x", '"0.4.0","1.0.0","1.1.0"');
    await Deno.utime(path, new Date(), new Date(Date.now() + 5000));
    assert.deepEqual((await getVersionInfo("ipam-x", { path: [dir] })).supportedVersions, [
      "0.4.0",
      "1.0.0",
      "1.1.0",
    ]);
    assert.deepEqual(await calls(dir), ["VERSION", "VERSION"]);
  });
});

const conf = { cniVersion: "1.0.0", name: "net", type: "builtin-x" };
const rt = {
  containerId: "c1",
  netns: "/proc/self/ns/net",
  ifname: "eth0",
  args: [["A", "b"]] as [string, string][],
};

Deno.test("a registered built-in runs in process with the executable's environment and stdin", async () => {
  await withDir(async (dir) => {
    await writeRecorder(dir, "builtin-x");
    const seen: { env?: Record<string, string>; config?: unknown } = {};
    const plugin: Plugin = {
      name: "builtin-x",
      add: (req) => {
        seen.env = req.env;
        seen.config = req.config;
        return Promise.resolve({ cniVersion: "1.1.0", ips: [{ address: "198.18.0.5/24" }] });
      },
      del: () => Promise.resolve(),
    };
    // Unregistered: the executable runs (and fails with its marker error).
    await assert.rejects(execVerb("ADD", conf, rt, { path: [dir], env: { KEEP: "1" } }), /executed/);
    await configureInProcessPlugins({ "builtin-x": () => Promise.resolve(plugin) });
    const result = await execVerb("ADD", conf, rt, { path: [dir], env: { KEEP: "1", CNI_IFNAME: "no" } });
    assert.deepEqual(result?.ips, [{ address: "198.18.0.5/24" }]);
    assert.deepEqual(seen.config, conf);
    assert.equal(seen.env?.KEEP, "1");
    assert.equal(seen.env?.CNI_COMMAND, "ADD");
    assert.equal(seen.env?.CNI_IFNAME, "eth0");
    assert.equal(seen.env?.CNI_ARGS, "A=b");
    assert.equal(seen.env?.CNI_PATH, dir);
    assert.deepEqual(await calls(dir), ["ADD"], "the in-process call started the executable");
  });
});

Deno.test("an in-process built-in fails like its executable: the error object, and 102 on a timeout", async () => {
  await withDir(async (dir) => {
    await writeRecorder(dir, "builtin-x");
    let finish: () => void = () => {};
    const done = new Promise<void>((resolve) => finish = resolve);
    const plugin: Plugin = {
      name: "builtin-x",
      add: () => Promise.reject(new CniError(11, "try again", "later")),
      del: () => new Promise<void>((resolve) => setTimeout(() => (resolve(), finish()), 150)),
    };
    await configureInProcessPlugins({ "builtin-x": () => Promise.resolve(plugin) });
    await assert.rejects(execVerb("ADD", conf, rt, { path: [dir] }), (e: unknown) => {
      assert.ok(e instanceof CniError);
      assert.equal(e.code, 11);
      assert.equal(e.details, "later");
      return true;
    });
    await assert.rejects(execVerb("DEL", conf, rt, { path: [dir], timeoutMs: 30 }), (e: unknown) => {
      assert.ok(e instanceof CniError);
      assert.equal(e.code, 102);
      return true;
    });
    await done;
    assert.deepEqual(await calls(dir), []);
  });
});

Deno.test("an in-process call's log lines are its stderr, a delegate's its own, not this process's", async () => {
  await withDir(async (dir) => {
    await writeRecorder(dir, "builtin-x");
    await writeRecorder(dir, "builtin-y");
    const inner: Plugin = {
      name: "builtin-y",
      add: () => {
        console.error("builtin-y: inner line");
        return Promise.resolve({ cniVersion: "1.1.0" });
      },
      del: () => Promise.resolve(),
    };
    const outer: Plugin = {
      name: "builtin-x",
      add: async () => {
        console.error("builtin-x: before");
        await execVerb("ADD", { ...conf, type: "builtin-y" }, rt, { path: [dir] });
        console.warn("builtin-x: after", { n: 1 });
        return { cniVersion: "1.1.0" };
      },
      del: () => Promise.resolve(),
    };
    await configureInProcessPlugins({
      "builtin-x": () => Promise.resolve(outer),
      "builtin-y": () => Promise.resolve(inner),
    });
    const env = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "c1",
      CNI_NETNS: "/proc/self/ns/net",
      CNI_IFNAME: "eth0",
      CNI_PATH: dir,
    };
    const out = await runPluginFile(`${dir}/builtin-x`, env, { stdin: JSON.stringify(conf) });
    assert.equal(out.code, 0, out.stdout);
    assert.equal(out.stderr, "builtin-x: before\nbuiltin-x: after { n: 1 }\n");
    assert.deepEqual(await calls(dir), []);
  });
});
