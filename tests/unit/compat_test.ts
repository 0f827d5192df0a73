/**
 * A node switched in place from the Go Galaxy, and every runtime in use: the daemon answers in the request's
 * own `cniVersion` (errors too), `""` is 0.1.0, galaxy.json networks keep their name (none stays none), state
 * files of the Go daemon are DEL-ed from the file alone, and static pods are matched by their mirror UID.
 * The daemon's handler is called directly, with fake plugins (no root).
 * @module
 */
import assert from "node:assert/strict";
import { unnamedHostLocal } from "../../cni/plugins/kit/ipam.ts";
import { ALL_VERSIONS, checkResult, type CniVersion } from "../../cni/spec.ts";
import { encodeBase64 } from "../../cni/wire.ts";
import { parseGalaxyConfig } from "../../daemon/config.ts";
import { parseStateFile } from "../../daemon/go_state.ts";
import { handleCni, type HandlerContext, type HandlerReply, type PodSource } from "../../daemon/handler.ts";
import type { PodLike } from "../../daemon/networks.ts";
import { MIRROR_ANNOTATION } from "../../daemon/pod_uid.ts";
import { readState, statePath } from "../../daemon/state.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import { pathExists } from "../helpers/netns.ts";

const NETNS = "/var/run/netns/compat-test-does-not-exist";

async function withHandler(
  galaxyJson: unknown,
  fn: (ctx: HandlerContext, record: string) => Promise<void>,
  pods?: PodSource,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-compat-test-" });
  try {
    const bin = await writeFakePlugins(`${dir}/bin`, ["recorder"]);
    const text = JSON.stringify(galaxyJson).replaceAll("RECORD", `${dir}/calls.jsonl`);
    const ctx: HandlerContext = {
      config: parseGalaxyConfig(text, "galaxy.json"),
      confDir: `${dir}/net.d`,
      cniPaths: [bin],
      stateDir: `${dir}/state`,
      pods,
      log: { info: () => {}, warn: () => {}, v: () => {} },
      pluginEnv: Deno.env.toObject(),
      pluginTimeoutMs: 30_000,
    };
    await fn(ctx, `${dir}/calls.jsonl`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function call(
  ctx: HandlerContext,
  command: string,
  options: { cniVersion?: string; args?: string; containerId?: string } = {},
): Promise<HandlerReply> {
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: options.containerId ?? "ctr1",
    CNI_NETNS: NETNS,
    CNI_IFNAME: "eth0",
    CNI_ARGS: options.args ?? "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1",
  };
  const config: Record<string, unknown> = { name: "galaxy-sdn", type: "galaxy-sdn" };
  if (options.cniVersion !== undefined) config.cniVersion = options.cniVersion;
  const body = JSON.stringify({
    env,
    config: encodeBase64(new TextEncoder().encode(JSON.stringify(config))),
  });
  return handleCni(ctx, body);
}

const ONE_NET = {
  NetworkConf: [{ name: "net", type: "recorder", recordFile: "RECORD", addAddress: "198.18.0.10/24" }],
  DefaultNetworks: ["net"],
};

Deno.test('compat: the daemon answers ADD in the request\'s cniVersion, "" and none as 0.1.0', async () => {
  await withHandler(ONE_NET, async (ctx) => {
    const cases: [string | undefined, CniVersion][] = [
      ...ALL_VERSIONS.map((v): [string, CniVersion] => [v, v]),
      ["", "0.1.0"],
      [undefined, "0.1.0"],
    ];
    for (const [asked, expected] of cases) {
      const reply = await call(ctx, "ADD", { cniVersion: asked });
      assert.equal(reply.status, 200, `${asked}: ${reply.body}`);
      const result = JSON.parse(reply.body);
      assert.equal(result.cniVersion, expected, `asked ${JSON.stringify(asked)}`);
      checkResult(result, expected);
      if (expected === "0.1.0" || expected === "0.2.0") assert.equal(result.ip4.ip, "198.18.0.10/24");
      else assert.equal(result.ips[0].address, "198.18.0.10/24");
      if (expected.startsWith("0.3") || expected === "0.4.0") assert.equal(result.ips[0].version, "4");
      assert.equal((await call(ctx, "DEL", { cniVersion: asked })).status, 200);
    }
  });
});

Deno.test("compat: errors are CNI error objects in the request's version and keep their code", async () => {
  await withHandler({ ...ONE_NET, DefaultNetworks: ["missing"] }, async (ctx) => {
    for (const [asked, expected] of [["0.3.1", "0.3.1"], ["1.0.0", "1.0.0"], ["", "0.1.0"]]) {
      const reply = await call(ctx, "ADD", { cniVersion: asked });
      assert.equal(reply.status, 500);
      const err = JSON.parse(reply.body);
      assert.equal(err.cniVersion, expected);
      assert.equal(err.code, 7);
      assert.match(err.msg, /network "missing"/);
    }
  });
});

Deno.test("compat: a malformed request is refused in its config's version when that is readable", async () => {
  await withHandler(ONE_NET, async (ctx) => {
    const config = encodeBase64(
      new TextEncoder().encode('{"cniVersion":"0.3.1","name":"x","type":"galaxy-sdn"}'),
    );
    const reply = await handleCni(ctx, JSON.stringify({ env: { CNI_COMMAND: "ADD" }, config }));
    assert.equal(reply.status, 400);
    assert.deepEqual([JSON.parse(reply.body).cniVersion, JSON.parse(reply.body).code], ["0.3.1", 4]);
    const garbage = await handleCni(ctx, "{not json");
    assert.equal(JSON.parse(garbage.body).cniVersion, "1.1.0");
  });
});

Deno.test("compat: a result a legacy version cannot hold fails the ADD and removes what was added", async () => {
  const noIp = {
    NetworkConf: [{ name: "net", type: "recorder", recordFile: "RECORD" }],
    DefaultNetworks: ["net"],
  };
  await withHandler(noIp, async (ctx, record) => {
    const reply = await call(ctx, "ADD", { cniVersion: "0.2.0" });
    assert.equal(reply.status, 500);
    const err = JSON.parse(reply.body);
    assert.equal(err.code, 1);
    assert.equal(err.cniVersion, "0.2.0");
    assert.deepEqual((await readCalls(record)).map((c) => c.verb), ["ADD", "DEL"]);
    assert.equal(await readState(ctx.stateDir, "ctr1"), undefined);
  });
});

Deno.test("compat: a galaxy.json network without a name reaches its plugin unnamed, on ADD, CHECK and DEL", async () => {
  const unnamed = {
    NetworkConf: [{ type: "recorder", recordFile: "RECORD" }],
    DefaultNetworks: ["recorder"],
  };
  await withHandler(unnamed, async (ctx, record) => {
    assert.equal((await call(ctx, "ADD", { cniVersion: "1.0.0" })).status, 200);
    const state = (await readState(ctx.stateDir, "ctr1"))!;
    assert.equal(state[0].NetworkType, "recorder");
    assert.equal(Object.hasOwn(state[0].Conf, "name"), false, "the state file keeps it unnamed, as Go's");
    assert.equal((await call(ctx, "CHECK", { cniVersion: "1.0.0" })).status, 200);
    assert.equal((await call(ctx, "DEL", { cniVersion: "1.0.0" })).status, 200);
    const calls = await readCalls(record);
    assert.deepEqual(calls.map((c) => c.verb), ["ADD", "CHECK", "DEL"]);
    for (const c of calls) assert.equal(Object.hasOwn(c.conf, "name"), false, `${c.verb} got a name`);
  });
});

Deno.test("compat: DEL of a pod the Go daemon added works from its state file alone", async () => {
  await withHandler({ NetworkConf: [], DefaultNetworks: [] }, async (ctx, record) => {
    // Galaxy's Go daemon: the conf as the plugin got it (no name, no cniVersion), Args a Go map, no Result.
    const goState = [{
      NetworkType: "galaxy-flannel",
      Args: { ipinfos: '[{"ip":"198.18.0.3/24","vlan":0}]' },
      Conf: { type: "recorder", recordFile: record, delegate: { type: "galaxy-veth" } },
      IfName: "eth0",
    }, {
      NetworkType: "extra",
      Args: null,
      Conf: { name: "extra", type: "recorder", recordFile: record },
      IfName: "eth1",
    }];
    await Deno.mkdir(ctx.stateDir, { recursive: true });
    await Deno.writeTextFile(statePath(ctx.stateDir, "goctr"), JSON.stringify(goState));
    // The Go Galaxy kept no results and had no CHECK: there is nothing to check, and nothing runs.
    const check = await call(ctx, "CHECK", { containerId: "goctr", cniVersion: "0.4.0" });
    assert.equal(check.status, 200, check.body);
    assert.deepEqual(await readCalls(record), []);
    const reply = await call(ctx, "DEL", { containerId: "goctr", cniVersion: "0.3.1" });
    assert.equal(reply.status, 200, reply.body);
    const calls = await readCalls(record);
    assert.deepEqual(calls.map((c) => `${c.verb} ${c.conf.name ?? "(unnamed)"} ${c.env.CNI_IFNAME}`), [
      "DEL extra eth1",
      "DEL (unnamed) eth0",
    ]);
    assert.match(calls[1].env.CNI_ARGS, /(^|;)ipinfos=\[\{"ip":"198\.18\.0\.3\/24","vlan":0\}\](;|$)/);
    assert.ok(!(await pathExists(statePath(ctx.stateDir, "goctr"))));
  });
});

Deno.test('compat: a Go state file from before "fix missing ifName" is DEL-ed on the runtime\'s interface', async () => {
  await withHandler({ NetworkConf: [], DefaultNetworks: [] }, async (ctx, record) => {
    await Deno.mkdir(ctx.stateDir, { recursive: true });
    const old = [{
      NetworkType: "net",
      Args: {},
      Conf: { name: "net", type: "recorder", recordFile: record },
    }];
    await Deno.writeTextFile(statePath(ctx.stateDir, "oldctr"), JSON.stringify(old));
    assert.equal((await call(ctx, "DEL", { containerId: "oldctr", cniVersion: "0.3.1" })).status, 200);
    assert.deepEqual((await readCalls(record)).map((c) => `${c.verb} ${c.env.CNI_IFNAME}`), ["DEL eth0"]);
    assert.ok(!(await pathExists(statePath(ctx.stateDir, "oldctr"))));
  });
});

function fakePods(pods: Record<string, PodLike & { metadata?: { uid?: string } }>): PodSource {
  return {
    getPod(namespace, name) {
      const pod = pods[`${namespace}/${name}`];
      return pod ? Promise.resolve(pod) : Promise.reject(new Error(`pod ${namespace}/${name} not found`));
    },
    setNetworkStatus: () => Promise.resolve(),
    notReadyReason: () => undefined,
  };
}

Deno.test("compat: a static pod is matched by its mirror annotation's UID; a really different UID is refused", async () => {
  const pods = fakePods({
    "kube-system/etcd-node-a": {
      metadata: {
        namespace: "kube-system",
        name: "etcd-node-a",
        uid: "mirror-uid-from-the-apiserver",
        annotations: { [MIRROR_ANNOTATION]: "static-uid-the-kubelet-uses" },
      },
    },
  });
  await withHandler(ONE_NET, async (ctx, record) => {
    const pod = "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=etcd-node-a";
    const ok = await call(ctx, "ADD", {
      cniVersion: "1.0.0",
      args: `${pod};K8S_POD_UID=static-uid-the-kubelet-uses`,
    });
    assert.equal(ok.status, 200, ok.body);
    assert.equal((await call(ctx, "DEL", { args: pod })).status, 200);
    const before = (await readCalls(record)).length;
    for (const uid of ["mirror-uid-from-the-apiserver", "someone-else"]) {
      const refused = await call(ctx, "ADD", { cniVersion: "1.0.0", args: `${pod};K8S_POD_UID=${uid}` });
      assert.equal(refused.status, 500);
      assert.match(JSON.parse(refused.body).msg, new RegExp(`asked for UID ${uid}.*${MIRROR_ANNOTATION}`));
    }
    assert.equal((await readCalls(record)).length, before, "a refused ADD runs nothing");
  }, pods);
});

Deno.test("compat: an unnamed host-local config is handed over so that every version uses the same folder", () => {
  assert.deepEqual(unnamedHostLocal({ type: "galaxy-veth", ipam: { type: "host-local" } }), {
    type: "galaxy-veth",
    name: "networks",
    ipam: { type: "host-local", dataDir: "/var/lib/cni" },
  });
  assert.deepEqual(
    unnamedHostLocal({ type: "x", name: "", ipam: { type: "host-local", dataDir: "/tmp/t/ipam/" } }),
    { type: "x", name: "ipam", ipam: { type: "host-local", dataDir: "/tmp/t" } },
  );
  const named = { type: "x", name: "net", ipam: { type: "host-local" } };
  assert.equal(unnamedHostLocal(named), named);
});

Deno.test("compat: state files of either daemon parse; an entry DEL cannot run is an error naming it", () => {
  const parsed = parseStateFile(
    '[{"NetworkType":"n","Args":null,"Conf":{"type":"t"},"IfName":"eth0"}]',
    "/s/c1",
  );
  assert.deepEqual(parsed, [{ NetworkType: "n", Args: {}, Conf: { type: "t" }, IfName: "eth0" }]);
  assert.throws(() => parseStateFile("{}", "/s/c1"), /\/s\/c1 is not a JSON array/);
  assert.throws(() => parseStateFile('[{"NetworkType":"n","Conf":{},"IfName":"eth0"}]', "/s/c1"), /entry 0/);
  assert.equal(parseStateFile('[{"NetworkType":"n","Conf":{"type":"t"}}]', "/s/c1")[0].IfName, "");
  assert.throws(
    () => parseStateFile('[{"NetworkType":"n","Conf":{"type":"t"},"IfName":5}]', "/s/c1"),
    /IfName/,
  );
});
