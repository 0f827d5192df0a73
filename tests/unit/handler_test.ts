import { pathExists } from "../helpers/netns.ts";
import assert from "node:assert/strict";
import type { Result } from "../../cni/spec.ts";
import { encodeBase64 } from "../../cni/wire.ts";
import { parseGalaxyConfig } from "../../daemon/config.ts";
import {
  GC_GRACE_MS,
  handleCni,
  type HandlerContext,
  type HandlerReply,
  mergeResults,
  networkStatusEntry,
  type PodSource,
} from "../../daemon/handler.ts";
import { isStandalone } from "../../daemon/k8s.ts";
import type { PodLike } from "../../daemon/networks.ts";
import { readState, statePath, type StoredNetwork, writeState } from "../../daemon/state.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import { REPO_ROOT } from "../helpers/launchers.ts";

// ---------------------------------------------------------------------------------------------------------
// Pure functions.

Deno.test("mergeResults: interfaces concatenated, address interface indexes offset, routes kept, dns from first", () => {
  const first: Result = {
    cniVersion: "1.1.0",
    interfaces: [{ name: "veth0" }, { name: "eth0", sandbox: "/var/run/netns/p", mac: "0a:00:00:00:00:01" }],
    ips: [{ address: "198.18.0.2/24", gateway: "198.18.0.1", interface: 1 }],
    routes: [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }],
    dns: { nameservers: ["198.18.0.53"] },
  };
  const second: Result = {
    cniVersion: "1.1.0",
    interfaces: [{ name: "net1", sandbox: "/var/run/netns/p" }],
    ips: [{ address: "198.18.1.2/24", interface: 0 }, { address: "198.18.1.3/32" }],
    routes: [{ dst: "198.18.128.0/17", gw: "198.18.1.1" }],
    dns: { nameservers: ["198.18.1.53"], search: ["x"] },
  };
  const before = structuredClone([first, second]);
  const merged = mergeResults([first, second]);
  assert.deepEqual(merged, {
    cniVersion: "1.1.0",
    interfaces: [
      { name: "veth0" },
      { name: "eth0", sandbox: "/var/run/netns/p", mac: "0a:00:00:00:00:01" },
      { name: "net1", sandbox: "/var/run/netns/p" },
    ],
    ips: [
      { address: "198.18.0.2/24", gateway: "198.18.0.1", interface: 1 },
      { address: "198.18.1.2/24", interface: 2 },
      { address: "198.18.1.3/32" },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }, { dst: "198.18.128.0/17", gw: "198.18.1.1" }],
    dns: { nameservers: ["198.18.0.53"] },
  });
  assert.deepEqual([first, second], before, "mergeResults changed its inputs");
});

Deno.test("mergeResults: no results or empty results give a bare 1.1.0 result; dns only from the first", () => {
  assert.deepEqual(mergeResults([]), { cniVersion: "1.1.0" });
  assert.deepEqual(mergeResults([{ cniVersion: "1.1.0" }, { cniVersion: "1.1.0" }]), { cniVersion: "1.1.0" });
  const merged = mergeResults([
    { cniVersion: "1.1.0", interfaces: [{ name: "eth0" }] },
    { cniVersion: "1.1.0", dns: { nameservers: ["198.18.1.53"] } },
  ]);
  assert.deepEqual(merged, { cniVersion: "1.1.0", interfaces: [{ name: "eth0" }] });
});

Deno.test("networkStatusEntry: addresses of the pod interface without prefix, its MAC, dns when present", () => {
  const result: Result = {
    cniVersion: "1.1.0",
    interfaces: [
      { name: "eth0", mac: "0a:00:00:00:00:aa" }, // host side with the same name
      { name: "eth0", sandbox: "/var/run/netns/p", mac: "0a:00:00:00:00:bb" },
      { name: "net1", sandbox: "/var/run/netns/p", mac: "0a:00:00:00:00:cc" },
    ],
    ips: [
      { address: "198.18.0.9/32", interface: 0 },
      { address: "198.18.0.2/24", interface: 1 },
      { address: "198.18.1.2/24", interface: 2 },
      { address: "198.18.3.3/24" },
    ],
    dns: { nameservers: ["198.18.0.53"] },
  };
  assert.deepEqual(networkStatusEntry("net-a", "eth0", result, true), {
    name: "net-a",
    interface: "eth0",
    ips: ["198.18.0.2", "198.18.3.3"],
    mac: "0a:00:00:00:00:bb",
    default: true,
    dns: { nameservers: ["198.18.0.53"] },
  });
  assert.deepEqual(networkStatusEntry("net-b", "net1", { ...result, dns: {} }, false), {
    name: "net-b",
    interface: "net1",
    ips: ["198.18.1.2", "198.18.3.3"],
    mac: "0a:00:00:00:00:cc",
    default: false,
  });
  // the interface is not in the result: every address, no MAC
  assert.deepEqual(
    networkStatusEntry("net-c", "eth9", {
      cniVersion: "1.1.0",
      ips: [{ address: "198.18.2.2/24", interface: 0 }],
    }, false),
    { name: "net-c", interface: "eth9", ips: ["198.18.2.2"], default: false },
  );
  // only a host-side interface of that name: it is used
  assert.deepEqual(
    networkStatusEntry("net-d", "eth0", {
      cniVersion: "1.1.0",
      interfaces: [{ name: "eth0", mac: "0a:00:00:00:00:dd" }],
      ips: [{ address: "198.18.4.4/24", interface: 0 }],
    }, false).mac,
    "0a:00:00:00:00:dd",
  );
});

// ---------------------------------------------------------------------------------------------------------
// handleCni with fake plugins (no kernel, no root: netns paths are only strings).

const NETNS = "/var/run/netns/handler-test-does-not-exist";

interface Env {
  dir: string;
  record: string;
  ctx: HandlerContext;
  logs: string[];
}

/** Fake plugins: `recorder` (the scriptable fake), `flaky` (fails DEL while `<dir>/broken-<ifname>` exists). */
async function withHandler(
  galaxyJson: unknown,
  fn: (env: Env) => Promise<void>,
  pods?: PodSource,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-handler-test-" });
  try {
    const bin = await writeFakePlugins(`${dir}/bin`, ["recorder", "other"]);
    const fake = `exec '${Deno.execPath()}' run -A --quiet --config '${REPO_ROOT}/deno.json' ` +
      `'${REPO_ROOT}/tests/helpers/fake_plugin.ts'`;
    await Deno.writeTextFile(
      `${bin}/flaky`,
      `#!/bin/bash
if [ "$CNI_COMMAND" = DEL ] && [ -e '${dir}/broken-'"$CNI_IFNAME" ]; then
  cat >/dev/null
  echo '{"verb":"DEL-FAILED","env":{"CNI_IFNAME":"'"$CNI_IFNAME"'"},"conf":{},"start":0,"end":0}' >> '${dir}/calls.jsonl'
  echo '{"cniVersion":"1.1.0","code":120,"msg":"device busy on '"$CNI_IFNAME"'"}'
  exit 1
fi
${fake}
`,
      { mode: 0o755 },
    );
    // a plugin that stops at 1.0.0, like Debian's standard plugins
    await Deno.writeTextFile(
      `${bin}/old`,
      `#!/bin/bash
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'
  exit 0
fi
${fake}
`,
      { mode: 0o755 },
    );
    const text = JSON.stringify(galaxyJson).replaceAll("RECORD", `${dir}/calls.jsonl`);
    const logs: string[] = [];
    const ctx: HandlerContext = {
      config: parseGalaxyConfig(text, "galaxy.json"),
      confDir: `${dir}/net.d`,
      cniPaths: [bin],
      stateDir: `${dir}/state`,
      pods,
      log: {
        info: (m) => logs.push(`I ${m}`),
        warn: (m) => logs.push(`W ${m}`),
        v: (l, m) => logs.push(`V${l} ${m}`),
      },
      pluginEnv: Deno.env.toObject(),
      pluginTimeoutMs: 30_000,
    };
    await fn({ dir, record: `${dir}/calls.jsonl`, ctx, logs });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface CallOptions {
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  config?: Record<string, unknown>;
  extraEnv?: Record<string, string>;
}

function wireBody(command: string, o: CallOptions = {}): string {
  const env: Record<string, string> = { CNI_COMMAND: command };
  if (command !== "STATUS" && command !== "GC") {
    env.CNI_CONTAINERID = o.containerId ?? "ctr1";
    env.CNI_NETNS = o.netns ?? NETNS;
    env.CNI_IFNAME = o.ifname ?? "eth0";
    env.CNI_ARGS = o.args ?? "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1";
  }
  Object.assign(env, o.extraEnv ?? {});
  const config = o.config ?? { cniVersion: "1.1.0", name: "galaxy-sdn", type: "galaxy-sdn" };
  return JSON.stringify({ env, config: encodeBase64(new TextEncoder().encode(JSON.stringify(config))) });
}

function call(ctx: HandlerContext, command: string, o: CallOptions = {}): Promise<HandlerReply> {
  return handleCni(ctx, wireBody(command, o));
}

function errorOf(reply: HandlerReply): { code: number; msg: string; details?: string } {
  assert.notEqual(reply.status, 200, `expected an error, got ${reply.body}`);
  return JSON.parse(reply.body);
}

const TWO_NETS = {
  NetworkConf: [
    { name: "first", type: "recorder", recordFile: "RECORD", addAddress: "198.18.0.10/24" },
    { name: "second", type: "recorder", recordFile: "RECORD", addAddress: "198.18.1.10/24" },
  ],
  DefaultNetworks: ["first", "second"],
};

Deno.test("handleCni: ADD (standalone) runs DefaultNetworks in order and writes Galaxy's state file with results", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    const reply = await call(ctx, "ADD", {
      config: {
        cniVersion: "1.1.0",
        name: "galaxy-sdn",
        type: "galaxy-sdn",
        runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
      },
    });
    assert.equal(reply.status, 200, reply.body);
    assert.deepEqual(JSON.parse(reply.body), {
      cniVersion: "1.1.0",
      interfaces: [{ name: "eth0", sandbox: NETNS }, { name: "eth1", sandbox: NETNS }],
      ips: [{ address: "198.18.0.10/24", interface: 0 }, { address: "198.18.1.10/24", interface: 1 }],
    });

    const calls = await readCalls(record);
    assert.deepEqual(calls.map((c) => `${c.verb} ${c.conf.name} ${c.env.CNI_IFNAME}`), [
      "ADD first eth0",
      "ADD second eth1",
    ]);
    for (const c of calls) {
      assert.equal(c.env.CNI_NETNS, NETNS);
      assert.equal(c.env.CNI_CONTAINERID, "ctr1");
      const args = c.env.CNI_ARGS.split(";");
      assert.ok(args.includes("IgnoreUnknown=1") && args.includes("K8S_POD_NAME=p1"), c.env.CNI_ARGS);
      // a galaxy.json network has no cniVersion: the highest version both sides support is used
      assert.equal(c.conf.cniVersion, "1.1.0");
    }

    const path = statePath(ctx.stateDir, "ctr1");
    assert.equal(((await Deno.stat(path)).mode! & 0o777).toString(8), "600");
    const state = JSON.parse(await Deno.readTextFile(path));
    assert.ok(Array.isArray(state));
    assert.equal(state.length, 2);
    assert.deepEqual(state.map((n: StoredNetwork) => [n.NetworkType, n.IfName]), [
      ["first", "eth0"],
      ["second", "eth1"],
    ]);
    for (const n of state as StoredNetwork[]) {
      assert.deepEqual(Object.keys(n).filter((k) => /^[A-Z]/.test(k)).sort(), [
        "Args",
        "CapabilityArgs",
        "Conf",
        "IfName",
        "NetworkType",
        "Result",
        "Runtime",
      ]);
      assert.equal(n.Args.IgnoreUnknown, "1");
      assert.equal(n.Conf.type, "recorder");
      assert.equal(n.Conf.name, n.NetworkType);
      assert.equal(n.Conf.cniVersion, "1.1.0");
      assert.equal(n.Result?.cniVersion, "1.1.0");
      assert.deepEqual(n.CapabilityArgs?.portMappings, [{
        hostPort: 8080,
        containerPort: 80,
        protocol: "tcp",
      }]);
    }
    assert.deepEqual(state[0].Result.ips, [{ address: "198.18.0.10/24", interface: 0 }]);
    assert.deepEqual(state[1].Result.ips, [{ address: "198.18.1.10/24", interface: 0 }]);

    const del = await call(ctx, "DEL");
    assert.equal(del.status, 200, del.body);
    assert.ok(!(await pathExists(path)));
  });
});

Deno.test("handleCni: a network without cniVersion gets the highest version every plugin supports", async () => {
  await withHandler({
    NetworkConf: [
      { name: "new", type: "recorder", recordFile: "RECORD", addAddress: "198.18.2.2/24" },
      { name: "old", type: "old", recordFile: "RECORD", addAddress: "198.18.2.3/24" },
      { name: "pinned", type: "recorder", cniVersion: "0.4.0", recordFile: "RECORD" },
    ],
    DefaultNetworks: ["new", "old", "pinned"],
  }, async ({ ctx, record }) => {
    const reply = await call(ctx, "ADD");
    assert.equal(reply.status, 200, reply.body);
    const versions = (await readCalls(record)).map((c) => `${c.conf.name}=${c.conf.cniVersion}`);
    assert.deepEqual(versions, ["new=1.1.0", "old=1.0.0", "pinned=0.4.0"]);
    const state = (await readState(ctx.stateDir, "ctr1"))!;
    assert.deepEqual(state.map((n) => n.Conf.cniVersion), ["1.1.0", "1.0.0", "0.4.0"]);
    assert.equal((await call(ctx, "DEL")).status, 200);
    const delVersions = (await readCalls(record)).filter((c) => c.verb === "DEL").map((c) =>
      `${c.conf.name}=${c.conf.cniVersion}`
    );
    assert.deepEqual(delVersions, ["pinned=0.4.0", "old=1.0.0", "new=1.1.0"]);
  });
});

Deno.test("handleCni: DEL goes on past failures, keeps only the failed networks, and a later DEL finishes", async () => {
  await withHandler({
    NetworkConf: [
      { name: "a", type: "recorder", recordFile: "RECORD" },
      { name: "b", type: "flaky", recordFile: "RECORD" },
      { name: "c", type: "flaky", recordFile: "RECORD" },
      { name: "d", type: "recorder", recordFile: "RECORD" },
    ],
    DefaultNetworks: ["a", "b", "c", "d"],
  }, async ({ ctx, dir, record }) => {
    const add = await call(ctx, "ADD", { ifname: "eth0" });
    assert.equal(add.status, 200, add.body);
    await Deno.writeTextFile(`${dir}/broken-eth1`, "");
    await Deno.writeTextFile(`${dir}/broken-eth2`, "");
    await Deno.remove(record);

    // DEL needs neither the pod nor its K8S args: it works from the state file
    const first = errorOf(await call(ctx, "DEL", { args: "" }));
    assert.equal(first.code, 100);
    assert.match(first.msg, /^network "c": .*device busy on eth2 \/ network "b": .*device busy on eth1$/);
    const calls = await readCalls(record);
    assert.deepEqual(calls.map((c) => `${c.verb} ${c.env.CNI_IFNAME}`), [
      "DEL eth3",
      "DEL-FAILED eth2",
      "DEL-FAILED eth1",
      "DEL eth0",
    ]);
    let state = (await readState(ctx.stateDir, "ctr1"))!;
    assert.deepEqual(
      state.map((n) => n.NetworkType),
      ["b", "c"],
      "state must keep exactly the failed networks",
    );
    assert.ok(state.every((n) => n.Result), "the kept networks lost their results");

    await Deno.remove(`${dir}/broken-eth2`);
    await Deno.remove(record);
    const second = errorOf(await call(ctx, "DEL", { args: "" }));
    assert.match(second.msg, /^network "b": .*device busy on eth1$/);
    assert.deepEqual((await readCalls(record)).map((c) => `${c.verb} ${c.env.CNI_IFNAME}`), [
      "DEL eth2",
      "DEL-FAILED eth1",
    ]);
    state = (await readState(ctx.stateDir, "ctr1"))!;
    assert.deepEqual(state.map((n) => n.NetworkType), ["b"]);

    await Deno.remove(`${dir}/broken-eth1`);
    await Deno.remove(record);
    const third = await call(ctx, "DEL", { args: "" });
    assert.equal(third.status, 200, third.body);
    assert.equal(third.body, "");
    assert.deepEqual((await readCalls(record)).map((c) => `${c.verb} ${c.conf.name} ${c.env.CNI_IFNAME}`), [
      "DEL b eth1",
    ]);
    assert.equal(await readState(ctx.stateDir, "ctr1"), undefined);
  });
});

Deno.test("handleCni: a repeated ADD first removes what the earlier ADD left, then adds again", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record, logs }) => {
    assert.equal((await call(ctx, "ADD")).status, 200);
    const again = await call(ctx, "ADD");
    assert.equal(again.status, 200, again.body);
    assert.deepEqual((await readCalls(record)).map((c) => `${c.verb} ${c.conf.name}`), [
      "ADD first",
      "ADD second",
      "DEL second",
      "DEL first",
      "ADD first",
      "ADD second",
    ]);
    assert.ok(logs.some((l) => l.startsWith("W ") && l.includes("left by an earlier ADD")), logs.join("\n"));
    assert.equal((await readState(ctx.stateDir, "ctr1"))!.length, 2);
    assert.equal((await call(ctx, "DEL")).status, 200);
  });
});

Deno.test("handleCni: DEL of a container without a state file succeeds and runs nothing", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    const reply = await call(ctx, "DEL", { containerId: "never-added", netns: "" });
    assert.deepEqual(reply, { status: 200, body: "" });
    assert.deepEqual(await readCalls(record), []);
  });
});

Deno.test("handleCni: DEL with an empty or missing CNI_NETNS still runs every plugin (IPAM release)", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    for (const [containerId, extra] of [["ctr-empty", {}], ["ctr-missing", null]] as const) {
      assert.equal((await call(ctx, "ADD", { containerId })).status, 200);
      const body = JSON.parse(wireBody("DEL", { containerId, netns: "", ...(extra ?? {}) }));
      if (extra === null) delete body.env.CNI_NETNS;
      const reply = await handleCni(ctx, JSON.stringify(body));
      assert.equal(reply.status, 200, reply.body);
      const dels = (await readCalls(record)).filter((c) =>
        c.verb === "DEL" && c.env.CNI_CONTAINERID === containerId
      );
      assert.deepEqual(dels.map((c) => `${c.conf.name} ${c.env.CNI_IFNAME} netns=${c.env.CNI_NETNS}`), [
        "second eth1 netns=",
        "first eth0 netns=",
      ]);
      // the stored result goes along so the plugin knows what to release
      assert.deepEqual((dels[1].conf.prevResult as Result).ips, [{
        address: "198.18.0.10/24",
        interface: 0,
      }]);
      assert.equal(await readState(ctx.stateDir, containerId), undefined);
    }
  });
});

Deno.test("handleCni: CHECK runs each network's CHECK with its own stored result as prevResult", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    assert.equal((await call(ctx, "ADD")).status, 200);
    const stored = (await readState(ctx.stateDir, "ctr1"))!;
    const reply = await call(ctx, "CHECK");
    assert.deepEqual(reply, { status: 200, body: "" });
    const checks = (await readCalls(record)).filter((c) => c.verb === "CHECK");
    assert.deepEqual(checks.map((c) => `${c.conf.name} ${c.env.CNI_IFNAME}`), ["first eth0", "second eth1"]);
    assert.deepEqual(checks[0].conf.prevResult, stored[0].Result);
    assert.deepEqual(checks[1].conf.prevResult, stored[1].Result);
    assert.deepEqual((checks[1].conf.prevResult as Result).ips, [{
      address: "198.18.1.10/24",
      interface: 0,
    }]);

    const unknown = errorOf(await call(ctx, "CHECK", { containerId: "nobody" }));
    assert.equal(unknown.code, 3);
    assert.match(unknown.msg, /nobody/);
    assert.equal((await call(ctx, "DEL")).status, 200);
  });
});

Deno.test("handleCni: a failing CHECK names the network and keeps the plugin's code", async () => {
  await withHandler({
    NetworkConf: [
      { name: "ok", type: "recorder", recordFile: "RECORD" },
      {
        name: "bad",
        type: "other",
        recordFile: "RECORD",
        fail: { code: 55, msg: "route missing" },
        failOn: ["CHECK"],
      },
    ],
    DefaultNetworks: ["ok", "bad"],
  }, async ({ ctx }) => {
    assert.equal((await call(ctx, "ADD")).status, 200);
    const err = errorOf(await call(ctx, "CHECK"));
    assert.equal(err.code, 55);
    assert.match(err.msg, /network "bad".*route missing/);
    assert.equal((await call(ctx, "DEL")).status, 200);
  });
});

function fakePods(
  pods: Record<string, PodLike & { metadata?: { uid?: string } }>,
  reason?: () => string | undefined,
): PodSource & { statuses: { namespace: string; name: string; value: string }[] } {
  const statuses: { namespace: string; name: string; value: string }[] = [];
  return {
    statuses,
    getPod(namespace, name) {
      const pod = pods[`${namespace}/${name}`];
      return pod ? Promise.resolve(pod) : Promise.reject(new Error(`pod ${namespace}/${name} not found`));
    },
    setNetworkStatus(namespace, name, value) {
      statuses.push({ namespace, name, value });
      return Promise.resolve();
    },
    notReadyReason: reason ?? (() => undefined),
  };
}

Deno.test("handleCni: STATUS is ready when the pod source is synced, else code 50 with its reason", async () => {
  let reason: string | undefined = "x";
  const pods = fakePods({}, () => reason);
  await withHandler(TWO_NETS, async ({ ctx }) => {
    const notReady = errorOf(await call(ctx, "STATUS"));
    assert.equal(notReady.code, 50);
    assert.match(notReady.msg, /\bx\b/);
    reason = undefined;
    assert.deepEqual(await call(ctx, "STATUS"), { status: 200, body: "" });
    ctx.shuttingDown = () => true;
    assert.equal(errorOf(await call(ctx, "STATUS")).code, 50);
  }, pods);
  await withHandler(TWO_NETS, async ({ ctx }) => {
    assert.deepEqual(await call(ctx, "STATUS"), { status: 200, body: "" }, "standalone is always ready");
  });
});

Deno.test("handleCni: STATUS asks every default network's plugins; their 50/51 comes back naming the network", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    assert.deepEqual(await call(ctx, "STATUS"), { status: 200, body: "" });
    assert.deepEqual((await readCalls(record)).map((c) => `${c.verb} ${c.conf.name}`), [
      "STATUS first",
      "STATUS second",
    ]);
  });
  const failing = (code: number) => ({
    ...TWO_NETS,
    NetworkConf: [
      TWO_NETS.NetworkConf[0],
      { ...TWO_NETS.NetworkConf[1], fail: { code, msg: "subnet file missing" }, failOn: ["STATUS"] },
    ],
  });
  // A default network from --network-conf-dir is asked too.
  await withHandler({ ...TWO_NETS, DefaultNetworks: ["first", "fromdir"] }, async ({ ctx, record }) => {
    await Deno.mkdir(ctx.confDir, { recursive: true });
    await Deno.writeTextFile(
      `${ctx.confDir}/10-fromdir.conf`,
      JSON.stringify({ cniVersion: "1.1.0", name: "fromdir", type: "recorder", recordFile: record }),
    );
    assert.deepEqual(await call(ctx, "STATUS"), { status: 200, body: "" });
    assert.deepEqual((await readCalls(record)).map((c) => `${c.verb} ${c.conf.name}`), [
      "STATUS first",
      "STATUS fromdir",
    ]);
    await Deno.remove(`${ctx.confDir}/10-fromdir.conf`);
    const missing = errorOf(await call(ctx, "STATUS"));
    assert.equal(missing.code, 50);
    assert.match(missing.msg, /^default network "fromdir": not in galaxy\.json NetworkConf nor in /);
  });
  for (const [code, expected] of [[51, 51], [50, 50], [100, 50]]) {
    await withHandler(failing(code), async ({ ctx }) => {
      const err = errorOf(await call(ctx, "STATUS"));
      assert.equal(err.code, expected, err.msg);
      assert.match(err.msg, /^default network "second": .*subnet file missing/);
    });
  }
});

Deno.test("handleCni: ADD while shutting down gets code 11 and runs nothing", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    ctx.shuttingDown = () => true;
    const err = errorOf(await call(ctx, "ADD"));
    assert.equal(err.code, 11);
    assert.deepEqual(await readCalls(record), []);
    assert.equal(await readState(ctx.stateDir, "ctr1"), undefined);
  });
});

Deno.test("handleCni: GC DELs old state files not in cni.dev/valid-attachments, keeps fresh and valid ones", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    const stored = (name: string): StoredNetwork[] => [{
      NetworkType: name,
      Args: { IgnoreUnknown: "1" },
      Conf: { cniVersion: "1.1.0", name, type: "recorder", recordFile: record },
      IfName: "eth0",
      Result: { cniVersion: "1.1.0", ips: [{ address: "198.18.5.5/24" }] },
    }];
    const old = new Date(Date.now() - GC_GRACE_MS - 60_000);
    for (const id of ["old-gone", "old-valid", "fresh-gone"]) await writeState(ctx.stateDir, id, stored(id));
    await Deno.utime(statePath(ctx.stateDir, "old-gone"), old, old);
    await Deno.utime(statePath(ctx.stateDir, "old-valid"), old, old);

    const noList = errorOf(
      await call(ctx, "GC", { config: { cniVersion: "1.1.0", name: "galaxy-sdn", type: "galaxy-sdn" } }),
    );
    assert.equal(noList.code, 7);
    assert.match(noList.msg, /cni\.dev\/valid-attachments/);
    assert.deepEqual(await readCalls(record), [], "GC without a valid list removed something");

    const reply = await call(ctx, "GC", {
      config: {
        cniVersion: "1.1.0",
        name: "galaxy-sdn",
        type: "galaxy-sdn",
        "cni.dev/valid-attachments": [{ containerID: "old-valid", ifname: "eth0" }],
      },
    });
    assert.deepEqual(reply, { status: 200, body: "" });
    const calls = await readCalls(record);
    // The DEL of the gone container, then GC to the plugins of every galaxy.json network and of every network
    // a kept container uses, each with the attachments of that network that remain.
    assert.deepEqual(
      calls.map((c) => [
        `${c.verb} ${c.env.CNI_CONTAINERID} ${c.conf.name}`,
        JSON.stringify(c.conf["cni.dev/valid-attachments"]),
      ]),
      [
        ["DEL old-gone old-gone", undefined],
        ["GC undefined first", "[]"],
        ["GC undefined second", "[]"],
        ["GC undefined fresh-gone", '[{"containerID":"fresh-gone","ifname":"eth0"}]'],
        ["GC undefined old-valid", '[{"containerID":"old-valid","ifname":"eth0"}]'],
      ],
    );
    assert.equal(calls[0].env.CNI_IFNAME, "eth0");
    assert.deepEqual((calls[0].conf.prevResult as Result).ips, [{ address: "198.18.5.5/24" }]);
    assert.equal(await readState(ctx.stateDir, "old-gone"), undefined);
    assert.ok(await readState(ctx.stateDir, "old-valid"), "a valid attachment was collected");
    assert.ok(
      await readState(ctx.stateDir, "fresh-gone"),
      "an attachment within the grace period was collected",
    );
  });
});

Deno.test("handleCni: a corrupt state file is a CNI error (code 6) naming it, for DEL and CHECK alike", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    await Deno.mkdir(ctx.stateDir, { recursive: true });
    await Deno.writeTextFile(statePath(ctx.stateDir, "ctr-bad"), "{not json");
    for (const verb of ["DEL", "CHECK"]) {
      const err = errorOf(await call(ctx, verb, { containerId: "ctr-bad" }));
      assert.equal(err.code, 6, err.msg);
      assert.ok(err.msg.includes(statePath(ctx.stateDir, "ctr-bad")), err.msg);
    }
    // A stored list that is no list (a hand-edited or foreign file): a CNI error, not a raw ZodError.
    await writeState(ctx.stateDir, "ctr-list", [{
      NetworkType: "first",
      Args: {},
      Conf: { name: "first", plugins: [{ cniVersion: "1.1.0" }] },
      IfName: "eth0",
    }]);
    const err = errorOf(await call(ctx, "DEL", { containerId: "ctr-list" }));
    assert.equal(err.code, 100, err.msg);
    assert.match(err.msg, /network "first": stored configuration: plugins\.0\.type: /);
    assert.ok(!err.msg.includes("ZodError") && !err.msg.includes('"code"'), err.msg);
    assert.ok(await readState(ctx.stateDir, "ctr-list"), "the state file of a failed DEL is kept");
    assert.deepEqual(await readCalls(record), []);
  });
});

Deno.test("handleCni: with a pod source, the pod's annotation picks networks and network-status is written", async () => {
  const pods = fakePods({
    "default/p1": {
      metadata: {
        namespace: "default",
        name: "p1",
        uid: "uid-1",
        annotations: { "k8s.v1.cni.cncf.io/networks": "second" },
      },
    },
  });
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    const args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1;K8S_POD_UID=uid-1";
    const reply = await call(ctx, "ADD", { args });
    assert.equal(reply.status, 200, reply.body);
    assert.deepEqual((await readCalls(record)).map((c) => `${c.verb} ${c.conf.name} ${c.env.CNI_IFNAME}`), [
      "ADD second eth0",
    ]);
    assert.equal(pods.statuses.length, 1);
    assert.equal(pods.statuses[0].namespace, "default");
    assert.equal(pods.statuses[0].name, "p1");
    assert.deepEqual(JSON.parse(pods.statuses[0].value), [
      { name: "second", interface: "eth0", ips: ["198.18.1.10"], default: true },
    ]);
    assert.equal((await call(ctx, "DEL", { args })).status, 200);
  }, pods);
});

Deno.test("handleCni: a K8S_POD_UID that differs from the pod's UID is refused before anything runs", async () => {
  const pods = fakePods({
    "default/p1": { metadata: { namespace: "default", name: "p1", uid: "uid-server" } },
  });
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    const err = errorOf(
      await call(ctx, "ADD", { args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1;K8S_POD_UID=uid-runtime" }),
    );
    assert.equal(err.code, 100);
    assert.match(err.msg, /uid-runtime/);
    assert.match(err.msg, /uid-server/);
    assert.deepEqual(await readCalls(record), []);
    assert.equal(await readState(ctx.stateDir, "ctr1"), undefined);
    assert.equal(pods.statuses.length, 0);
  }, pods);
});

Deno.test("handleCni: with an apiserver, ADD without K8S_POD_NAME or K8S_POD_NAMESPACE gets code 4 naming the key", async () => {
  const pods = fakePods({ "default/p1": { metadata: { namespace: "default", name: "p1" } } });
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    const noName = errorOf(await call(ctx, "ADD", { args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default" }));
    assert.equal(noName.code, 4);
    assert.match(noName.msg, /K8S_POD_NAME\b/);
    const noNamespace = errorOf(await call(ctx, "ADD", { args: "K8S_POD_NAME=p1" }));
    assert.equal(noNamespace.code, 4);
    assert.match(noNamespace.msg, /K8S_POD_NAMESPACE/);
    assert.deepEqual(await readCalls(record), []);
  }, pods);
});

Deno.test("handleCni: standalone, ADD needs no Kubernetes arguments (runtimes outside Kubernetes)", async () => {
  await withHandler(TWO_NETS, async ({ ctx, record }) => {
    const reply = await call(ctx, "ADD", { args: "IgnoreUnknown=1" });
    assert.equal(reply.status, 200, reply.body);
    assert.ok((await readCalls(record)).length > 0);
    assert.equal((await call(ctx, "DEL", { args: "IgnoreUnknown=1" })).status, 200);
  });
});

Deno.test("handleCni: malformed requests get CNI errors with status 400", async () => {
  await withHandler(TWO_NETS, async ({ ctx }) => {
    const cases: [string, number, RegExp][] = [
      ["{nope", 6, /not JSON/],
      [JSON.stringify({ env: { CNI_COMMAND: "ADD" }, config: 5 }), 6, /config/],
      [JSON.stringify({ env: { CNI_COMMAND: "FROB" } }), 4, /FROB/],
      [JSON.stringify({ env: { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c1" } }), 4, /CNI_IFNAME/],
      [
        JSON.stringify({
          env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "../x", CNI_NETNS: NETNS, CNI_IFNAME: "eth0" },
        }),
        4,
        /CNI_CONTAINERID/,
      ],
      [
        JSON.stringify({
          env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: NETNS, CNI_IFNAME: "eth0" },
          config: "!!",
        }),
        6,
        /base64/,
      ],
    ];
    for (const [body, code, msg] of cases) {
      const reply = await handleCni(ctx, body);
      assert.equal(reply.status, 400, body);
      const err = JSON.parse(reply.body);
      assert.equal(err.code, code, `${body}: ${err.msg}`);
      assert.match(err.msg, msg);
    }
  });
});

// BUG (daemon/handler.ts invokeOptions + daemon/state.ts statePath): the result cache lives in
// `<state-dir>/cache`, in the same folder as the per-container state files, and CNI_CONTAINERID "cache" passes
// validation. Input: any ADD on a daemon with CNI_CONTAINERID=cache after one ADD of another container (so the
// cache folder exists). Expected: 200 like any other ID. Actual: 500 code 100 "Is a directory (os error 21):
// rename '<state-dir>/cache.tmp-…' -> '<state-dir>/cache'"; the container can never get networks.
Deno.test({
  name: 'handleCni: the container ID "cache" does not collide with the daemon\'s result cache',
  ignore: false,
  fn: async () => {
    await withHandler(TWO_NETS, async ({ ctx }) => {
      assert.equal((await call(ctx, "ADD", { containerId: "other" })).status, 200);
      const reply = await call(ctx, "ADD", { containerId: "cache" });
      assert.equal(reply.status, 200, reply.body);
      assert.equal((await call(ctx, "DEL", { containerId: "cache" })).status, 200);
      assert.equal((await call(ctx, "DEL", { containerId: "other" })).status, 200);
    });
  },
});

Deno.test("isStandalone: only without --master, --kubeconfig and the in-cluster environment", () => {
  const none = { master: "", kubeconfig: "" };
  assert.equal(isStandalone(none, {}), true);
  assert.equal(isStandalone(none, { KUBERNETES_SERVICE_HOST: "" }), true);
  assert.equal(isStandalone(none, { KUBERNETES_SERVICE_HOST: "198.18.0.1" }), false);
  assert.equal(isStandalone({ master: "http://198.18.0.1:8080", kubeconfig: "" }, {}), false);
  assert.equal(isStandalone({ master: "", kubeconfig: "/etc/kubernetes/kubelet.conf" }, {}), false);
});
