import assert from "node:assert/strict";
import {
  addNetworkList,
  checkNetworkList,
  delNetworkList,
  execVerb,
  findPlugin,
  gcNetworkList,
  getVersionInfo,
  statusNetworkList,
} from "../../cni/invoke.ts";
import { CniError, type NetConfList } from "../../cni/spec.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";

async function withPlugins(fn: (dir: string, record: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-invoke-test-" });
  try {
    await writeFakePlugins(`${dir}/bin`, ["first", "second", "third"]);
    await fn(dir, `${dir}/calls.jsonl`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const rt = {
  containerId: "ctr1",
  netns: "/var/run/netns/nowhere",
  ifname: "eth0",
  args: [["K8S_POD_NAME", "p1"]] as [string, string][],
  capabilityArgs: {
    portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
    bandwidth: { a: 1 },
  },
};

async function rejectsWith(promise: Promise<unknown>, code: number, text: RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof CniError, `expected a CniError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, text);
    return true;
  });
}

Deno.test("invoke: ADD runs plugins in order with prevResult, injects name/version/runtimeConfig, caches", async () => {
  await withPlugins(async (dir, record) => {
    const list: NetConfList = {
      cniVersion: "0.4.0",
      name: "chain",
      plugins: [
        {
          type: "first",
          recordFile: record,
          addAddress: "198.18.1.2/24",
          capabilities: { portMappings: true },
          custom: { x: 1 },
        },
        { type: "second", recordFile: record, addInterface: "veth-host" },
      ],
    };
    const options = { path: ["/nonexistent", `${dir}/bin`], cacheDir: `${dir}/cache` };
    const result = await addNetworkList(list, rt, options);
    assert.deepEqual(result, {
      cniVersion: "1.1.0",
      interfaces: [{ name: "eth0", sandbox: "/var/run/netns/nowhere" }, {
        name: "veth-host",
        sandbox: "/var/run/netns/nowhere",
      }],
      ips: [{ address: "198.18.1.2/24", interface: 0 }],
    });

    const calls = await readCalls(record);
    assert.deepEqual(calls.map((c) => `${c.verb} ${c.conf.type}`), ["ADD first", "ADD second"]);
    const [first, second] = calls;
    assert.equal(first.conf.name, "chain");
    assert.equal(first.conf.cniVersion, "0.4.0");
    assert.equal(first.conf.prevResult, undefined);
    assert.equal(first.conf.capabilities, undefined);
    assert.deepEqual(first.conf.runtimeConfig, { portMappings: rt.capabilityArgs.portMappings });
    assert.deepEqual(first.conf.custom, { x: 1 });
    assert.deepEqual(first.env, {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "ctr1",
      CNI_NETNS: "/var/run/netns/nowhere",
      CNI_IFNAME: "eth0",
      CNI_ARGS: "K8S_POD_NAME=p1",
      CNI_PATH: `/nonexistent:${dir}/bin`,
    });
    assert.equal(second.conf.runtimeConfig, undefined);
    assert.deepEqual(second.conf.prevResult, {
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0", sandbox: "/var/run/netns/nowhere" }],
      ips: [{ version: "4", address: "198.18.1.2/24", interface: 0 }],
    });

    const cache = JSON.parse(await Deno.readTextFile(`${dir}/cache/results/chain-ctr1-eth0`));
    assert.equal(cache.kind, "cniCacheV1");
    assert.equal(cache.containerId, "ctr1");
    assert.equal(cache.ifName, "eth0");
    assert.equal(cache.networkName, "chain");
    assert.deepEqual(cache.cniArgs, [["K8S_POD_NAME", "p1"]]);
    assert.deepEqual(JSON.parse(atob(cache.config)), list);
    assert.equal(cache.result.cniVersion, "0.4.0");
    assert.equal(cache.result.ips[0].version, "4");
  });
});

Deno.test("invoke: DEL runs in reverse with the cached result and removes the cache; CHECK uses it too", async () => {
  await withPlugins(async (dir, record) => {
    const list: NetConfList = {
      cniVersion: "1.0.0",
      name: "chain",
      plugins: [
        { type: "first", recordFile: record, addAddress: "198.18.1.3/24" },
        { type: "second", recordFile: record },
      ],
    };
    const options = { path: [`${dir}/bin`], cacheDir: `${dir}/cache` };
    await addNetworkList(list, rt, options);
    await checkNetworkList(list, rt, options);
    await delNetworkList(list, rt, options);
    const calls = await readCalls(record);
    assert.deepEqual(calls.map((c) => `${c.verb} ${c.conf.type}`), [
      "ADD first",
      "ADD second",
      "CHECK first",
      "CHECK second",
      "DEL second",
      "DEL first",
    ]);
    const cached = calls[1 + 1].conf.prevResult as { ips: { address: string }[] };
    assert.equal(cached.ips[0].address, "198.18.1.3/24");
    assert.deepEqual(calls[4].conf.prevResult, calls[2].conf.prevResult);
    await assert.rejects(Deno.stat(`${dir}/cache/results/chain-ctr1-eth0`), Deno.errors.NotFound);

    await delNetworkList(list, rt, options);
    const again = (await readCalls(record)).slice(6);
    assert.deepEqual(again.map((c) => c.conf.prevResult), [undefined, undefined]);
  });
});

Deno.test("invoke: CHECK honours disableCheck and refuses versions below 0.4.0", async () => {
  await withPlugins(async (dir, record) => {
    const options = { path: [`${dir}/bin`], cacheDir: `${dir}/cache` };
    const plugins = [{ type: "first", recordFile: record }];
    await checkNetworkList({ cniVersion: "1.0.0", name: "n", disableCheck: true, plugins }, rt, options);
    assert.deepEqual(await readCalls(record), []);
    await rejectsWith(
      checkNetworkList({ cniVersion: "0.3.1", name: "n", plugins }, rt, options),
      1,
      /0\.4\.0/,
    );
    await rejectsWith(
      checkNetworkList({ cniVersion: "1.0.0", name: "n", plugins }, rt, options),
      3,
      /no cached result/,
    );
  });
});

Deno.test("invoke: plugin errors, crashes, timeouts and missing plugins", async () => {
  await withPlugins(async (dir) => {
    const options = { path: [`${dir}/bin`], cacheDir: `${dir}/cache` };
    const conf = (extra: Record<string, unknown>) => ({
      cniVersion: "1.0.0",
      name: "n",
      type: "first",
      ...extra,
    });
    await rejectsWith(
      execVerb("ADD", conf({ fail: { code: 11, msg: "busy, retry" } }), rt, options),
      11,
      /^busy, retry$/,
    );
    await rejectsWith(
      execVerb("ADD", conf({ fail: "crash" }), rt, options),
      101,
      /exited with code 3.*simulated crash/,
    );
    const started = Date.now();
    await rejectsWith(
      execVerb("DEL", conf({ sleepMs: 10_000 }), rt, { ...options, timeoutMs: 1500 }),
      102,
      /1500 ms/,
    );
    assert.ok(Date.now() - started < 5000, "the timeout did not stop the plugin");
    await rejectsWith(execVerb("ADD", { ...conf({}), type: "missing" }, rt, options), 7, /"missing"/);
    assert.throws(() => findPlugin("../first", [`${dir}/bin`]), /may not contain/);
    assert.equal(findPlugin("second", ["/nonexistent", `${dir}/bin`]), `${dir}/bin/second`);
  });
});

Deno.test("invoke: version selection takes the highest supported of cniVersion and cniVersions", async () => {
  await withPlugins(async (dir, record) => {
    const options = { path: [`${dir}/bin`], cacheDir: `${dir}/cache` };
    const list: NetConfList = {
      cniVersion: "0.4.0",
      cniVersions: ["1.0.0", "1.1.0", "9.9.9"],
      name: "n",
      plugins: [{ type: "first", recordFile: record, addAddress: "198.18.1.4/32" }],
    };
    await addNetworkList(list, rt, options);
    assert.equal((await readCalls(record))[0].conf.cniVersion, "1.1.0");
    await rejectsWith(
      addNetworkList({ cniVersion: "9.0.0", name: "n", plugins: list.plugins }, rt, options),
      1,
      /no supported version/,
    );
    assert.deepEqual((await getVersionInfo("first", options)).supportedVersions, [
      "0.3.1",
      "0.4.0",
      "1.0.0",
      "1.1.0",
    ]);
  });
});

Deno.test("invoke: GC deletes stale cached attachments, sends GC to every plugin and goes on past errors", async () => {
  await withPlugins(async (dir, record) => {
    const options = { path: [`${dir}/bin`], cacheDir: `${dir}/cache` };
    const list: NetConfList = {
      cniVersion: "1.1.0",
      name: "gcnet",
      plugins: [
        { type: "first", recordFile: record, addAddress: "198.18.1.5/32" },
        { type: "second", recordFile: record },
      ],
    };
    await addNetworkList(list, { ...rt, containerId: "live" }, options);
    await addNetworkList(list, { ...rt, containerId: "gone" }, options);
    const valid = [{ containerID: "live", ifname: "eth0" }];
    const failing: NetConfList = {
      ...list,
      plugins: [{ ...list.plugins[0], fail: { code: 5, msg: "disk" }, failOn: ["GC"] }, list.plugins[1]],
    };
    await rejectsWith(gcNetworkList(failing, valid, options), 100, /disk/);
    const calls = (await readCalls(record)).slice(4);
    assert.deepEqual(calls.map((c) => `${c.verb} ${c.conf.type} ${c.env.CNI_CONTAINERID ?? "-"}`), [
      "DEL second gone",
      "DEL first gone",
      "GC first -",
      "GC second -",
    ]);
    assert.deepEqual(calls[3].conf["cni.dev/valid-attachments"], valid);
    await Deno.stat(`${dir}/cache/results/gcnet-live-eth0`);

    await statusNetworkList(list, options);
    assert.deepEqual((await readCalls(record)).slice(8).map((c) => `${c.verb} ${c.conf.type}`), [
      "STATUS first",
      "STATUS second",
    ]);
    await gcNetworkList({ ...list, disableGC: true }, valid, options);
    assert.equal((await readCalls(record)).length, 10, "disableGC still sent GC");
  });
});
