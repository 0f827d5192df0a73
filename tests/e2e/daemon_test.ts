import assert from "node:assert/strict";
import { requestDaemon } from "../../cni/wire.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import {
  type Daemon,
  type FakeApiserver,
  runtimeCall,
  shimList,
  startDaemon,
  startFakeApiserver,
} from "../helpers/daemon.ts";
import { kernelTest, type Lab, pathExists, withLab } from "../helpers/netns.ts";

const NODE = "node-a";

function bridgeNet(lab: Lab, name: string, bridge: string, subnet: string) {
  return {
    name,
    type: "bridge",
    bridge,
    isGateway: true,
    ipam: { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[{ subnet }]] },
  };
}

function pod(name: string, annotations: Record<string, string> = {}, requests: Record<string, string> = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", annotations },
    spec: { nodeName: NODE, containers: [{ name: "app", image: "x", resources: { requests } }] },
  };
}

async function reservations(lab: Lab, network: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(`${lab.dir}/ipam/${network}`)) {
      if (/^\d/.test(e.name)) found.push(e.name);
    }
  } catch {
    // no folder: nothing reserved
  }
  return found.sort();
}

/** A lab with a fake apiserver and a daemon, both stopped (by PID) when the test ends. */
async function withCluster(
  label: string,
  setup: (lab: Lab) => Promise<{ galaxyJson: unknown; cniPaths?: string[] }>,
  fn: (lab: Lab, api: FakeApiserver, daemon: Daemon) => Promise<void>,
): Promise<void> {
  await withLab(label, async (lab) => {
    const api = await startFakeApiserver(lab);
    let daemon: Daemon | undefined;
    try {
      const { galaxyJson, cniPaths } = await setup(lab);
      daemon = await startDaemon(lab, { galaxyJson, kubeconfig: api.kubeconfig, cniPaths });
      await fn(lab, api, daemon);
      const out = await daemon.process.stop("SIGTERM");
      assert.equal(out.code, 0, `daemon did not exit cleanly on SIGTERM:\n${out.stderr}`);
      daemon = undefined;
    } finally {
      if (daemon) await daemon.process.stop("SIGKILL");
      await api.process.stop("SIGTERM");
    }
  });
}

kernelTest(
  "e2e: a pod with two networks (bridge from galaxy.json, macvlan conflist from the conf dir)",
  async () => {
    await withCluster("twonets", async (lab) => {
      await lab.ip(lab.node, ["link", "add", "gtup0", "type", "veth", "peer", "name", "gtup1"]);
      await lab.ip(lab.node, ["link", "set", "gtup0", "up"]);
      await lab.ip(lab.node, ["link", "set", "gtup1", "up"]);
      await Deno.mkdir(`${lab.dir}/net.d`);
      await Deno.writeTextFile(
        `${lab.dir}/net.d/10-macnet.conflist`,
        JSON.stringify({
          cniVersion: "1.0.0",
          name: "macnet",
          plugins: [{
            type: "macvlan",
            master: "gtup0",
            mode: "bridge",
            ipam: {
              type: "host-local",
              dataDir: `${lab.dir}/ipam`,
              ranges: [[{ subnet: "198.18.21.0/24" }]],
            },
          }],
        }),
      );
      return {
        galaxyJson: {
          NetworkConf: [bridgeNet(lab, "bridge-net", "gtbr0", "198.18.20.0/24")],
          DefaultNetworks: ["bridge-net"],
        },
      };
    }, async (lab, api, daemon) => {
      const p1 = await lab.pod("p1");
      const created = await api.putPod(
        pod("p1", { "k8s.v1.cni.cncf.io/networks": "bridge-net, macnet@net1" }),
      );
      const call = {
        containerId: "ctr-two-nets",
        pod: p1,
        k8s: { namespace: "default", name: "p1", uid: (created.metadata as { uid: string }).uid },
        list: shimList(daemon.socket),
      };
      const add = await runtimeCall(lab, "add", call);
      assert.equal(add.code, 0, `ADD failed: ${add.stdout}\n${add.stderr}`);
      const result = JSON.parse(add.stdout);
      const byIface = new Map<string, string[]>();
      for (const ip of result.ips) {
        const name = result.interfaces[ip.interface].name;
        byIface.set(name, [...(byIface.get(name) ?? []), ip.address]);
      }
      assert.match(byIface.get("eth0")![0], /^198\.18\.20\.\d+\/24$/);
      assert.match(byIface.get("net1")![0], /^198\.18\.21\.\d+\/24$/);
      assert.deepEqual(await lab.addresses(p1, "eth0"), byIface.get("eth0"));
      assert.deepEqual(await lab.addresses(p1, "net1"), byIface.get("net1"));

      const patches = await api.patches();
      assert.equal(patches.length, 1);
      const status = JSON.parse(patches[0].body.metadata.annotations["k8s.v1.cni.cncf.io/network-status"]);
      assert.deepEqual(
        status.map((
          s: { name: string; interface: string; default: boolean },
        ) => [s.name, s.interface, s.default]),
        [
          ["bridge-net", "eth0", true],
          ["macnet", "net1", false],
        ],
      );
      assert.deepEqual(status[0].ips, [byIface.get("eth0")![0].split("/")[0]]);
      assert.match(status[1].mac, /^[0-9a-f:]{17}$/);

      const state = JSON.parse(await Deno.readTextFile(`${daemon.stateDir}/ctr-two-nets`));
      assert.deepEqual(state.map((n: { NetworkType: string; IfName: string }) => [n.NetworkType, n.IfName]), [
        ["bridge-net", "eth0"],
        ["macnet", "net1"],
      ]);

      const check = await runtimeCall(lab, "check", call);
      assert.equal(check.code, 0, `CHECK failed: ${check.stdout}`);

      const del = await runtimeCall(lab, "del", call);
      assert.equal(del.code, 0, `DEL failed: ${del.stdout}`);
      const links = await lab.linkNames(p1);
      assert.ok(!links.includes("eth0") && !links.includes("net1"), `links left: ${links}`);
      assert.deepEqual(await reservations(lab, "bridge-net"), []);
      assert.deepEqual(await reservations(lab, "macnet"), []);
      assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-two-nets`)), "state file left after DEL");
    });
  },
);

kernelTest("e2e: default networks, ENIIPNetwork, galaxy args and result versions", async () => {
  await withCluster("select", async (lab) => {
    const fakes = await writeFakePlugins(`${lab.dir}/fakes`, ["recorder"]);
    return {
      cniPaths: [fakes],
      galaxyJson: {
        networkconf: [
          bridgeNet(lab, "default-net", "gtbr1", "198.18.22.0/24"),
          bridgeNet(lab, "eni-net", "gtbr2", "198.18.23.0/24"),
          {
            name: "recorded",
            type: "recorder",
            recordFile: `${lab.dir}/calls.jsonl`,
            addAddress: "198.18.24.9/32",
          },
        ],
        defaultNetworks: ["default-net"],
        eniipNetwork: "eni-net",
      },
    };
  }, async (lab, api, daemon) => {
    const plain = await lab.pod("plain");
    await api.putPod(pod("plain"));
    const plainCall = { containerId: "ctr-plain", pod: plain, k8s: { namespace: "default", name: "plain" } };
    const add = await runtimeCall(lab, "add", { ...plainCall, list: shimList(daemon.socket) });
    assert.equal(add.code, 0, add.stdout);
    assert.match((await lab.addresses(plain, "eth0"))[0], /^198\.18\.22\./);

    const eni = await lab.pod("eni");
    await api.putPod(pod("eni", {}, { "tke.cloud.tencent.com/eni-ip": "1" }));
    const eniCall = { containerId: "ctr-eni", pod: eni, k8s: { namespace: "default", name: "eni" } };
    const eniAdd = await runtimeCall(lab, "add", { ...eniCall, list: shimList(daemon.socket) });
    assert.equal(eniAdd.code, 0, eniAdd.stdout);
    assert.match((await lab.addresses(eni, "eth0"))[0], /^198\.18\.23\./);

    const ipinfos = `[{"ip": "198.18.24.9/24", "vlan": 0,  "gateway":"198.18.24.1"}]`;
    const args = await lab.pod("args");
    await api.putPod(pod("args", {
      "k8s.v1.cni.cncf.io/networks": "recorded",
      "k8s.v1.cni.galaxy.io/args": `{"common": {"ipinfos": ${ipinfos}}}`,
    }));
    const argsCall = { containerId: "ctr-args", pod: args, k8s: { namespace: "default", name: "args" } };
    for (const version of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
      const r = await runtimeCall(lab, "add", { ...argsCall, list: shimList(daemon.socket, version) });
      assert.equal(r.code, 0, `${version}: ${r.stdout}`);
      const result = JSON.parse(r.stdout);
      assert.equal(result.cniVersion, version);
      assert.equal(result.ips[0].address, "198.18.24.9/32");
      assert.equal(result.ips[0].version, version.startsWith("0.") ? "4" : undefined);
      const del = await runtimeCall(lab, "del", { ...argsCall, list: shimList(daemon.socket, version) });
      assert.equal(del.code, 0, del.stdout);
    }
    const calls = await readCalls(`${lab.dir}/calls.jsonl`);
    const firstAdd = calls.find((c) => c.verb === "ADD")!;
    const cniArgs = firstAdd.env.CNI_ARGS.split(";");
    assert.ok(cniArgs.includes("IgnoreUnknown=1"), firstAdd.env.CNI_ARGS);
    assert.ok(
      cniArgs.includes(`ipinfos=${ipinfos}`),
      `ipinfos not passed byte for byte: ${firstAdd.env.CNI_ARGS}`,
    );
    assert.ok(cniArgs.includes("K8S_POD_NAME=args"));
    assert.equal(firstAdd.conf.name, "recorded");
    assert.equal(firstAdd.conf.cniVersion, "1.1.0", "negotiated version should be the highest both support");

    for (const call of [plainCall, eniCall]) {
      const del = await runtimeCall(lab, "del", { ...call, list: shimList(daemon.socket) });
      assert.equal(del.code, 0, del.stdout);
    }
    assert.deepEqual(await reservations(lab, "default-net"), []);
    assert.deepEqual(await reservations(lab, "eni-net"), []);
  });
});

kernelTest("e2e: a failing second network rolls back the first", async () => {
  await withCluster("rollback", async (lab) => {
    const fakes = await writeFakePlugins(`${lab.dir}/fakes`, ["broken"]);
    return {
      cniPaths: [fakes],
      galaxyJson: {
        NetworkConf: [
          bridgeNet(lab, "first", "gtbr3", "198.18.25.0/24"),
          { name: "second", type: "broken", fail: { code: 120, msg: "no addresses left" }, failOn: ["ADD"] },
        ],
        DefaultNetworks: ["first", "second"],
      },
    };
  }, async (lab, api, daemon) => {
    const p = await lab.pod("p");
    await api.putPod(pod("p"));
    const call = {
      containerId: "ctr-rollback",
      pod: p,
      k8s: { namespace: "default", name: "p" },
      list: shimList(daemon.socket),
    };
    const add = await runtimeCall(lab, "add", call);
    assert.equal(add.code, 1);
    const err = JSON.parse(add.stdout);
    assert.equal(err.code, 120);
    assert.match(err.msg, /network "second": plugin broken: no addresses left/);
    assert.ok(!(await lab.linkNames(p)).includes("eth0"), "first network left behind");
    assert.deepEqual(await reservations(lab, "first"), []);
    assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-rollback`)));
  });
});

kernelTest("e2e: DEL after the daemon was killed with SIGKILL and restarted removes everything", async () => {
  await withLab("restart", async (lab) => {
    const api = await startFakeApiserver(lab);
    const galaxyJson = {
      NetworkConf: [bridgeNet(lab, "net", "gtbr4", "198.18.26.0/24")],
      DefaultNetworks: ["net"],
    };
    let daemon: Daemon | undefined;
    try {
      daemon = await startDaemon(lab, { galaxyJson, kubeconfig: api.kubeconfig });
      const p = await lab.pod("p");
      await api.putPod(pod("p"));
      const call = {
        containerId: "ctr-restart",
        pod: p,
        k8s: { namespace: "default", name: "p" },
        list: shimList(daemon.socket),
      };
      const add = await runtimeCall(lab, "add", call);
      assert.equal(add.code, 0, add.stdout);
      await daemon.process.stop("SIGKILL");
      daemon = await startDaemon(lab, { galaxyJson, kubeconfig: api.kubeconfig });
      const del = await runtimeCall(lab, "del", call);
      assert.equal(del.code, 0, del.stdout);
      assert.ok(!(await lab.linkNames(p)).includes("eth0"));
      assert.deepEqual(await reservations(lab, "net"), []);
      assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-restart`)));
    } finally {
      if (daemon) await daemon.process.stop("SIGTERM");
      await api.process.stop("SIGTERM");
    }
  });
});

kernelTest("e2e: 20 pods at once all succeed; requests for one container are serialized", async () => {
  await withCluster("burst", async (lab) => {
    const fakes = await writeFakePlugins(`${lab.dir}/fakes`, ["slow"]);
    return {
      cniPaths: [fakes],
      galaxyJson: {
        NetworkConf: [
          bridgeNet(lab, "net", "gtbr5", "198.18.27.0/24"),
          {
            name: "slow",
            type: "slow",
            sleepMs: 400,
            recordFile: `${lab.dir}/slow.jsonl`,
            addAddress: "198.18.28.1/32",
          },
        ],
        DefaultNetworks: ["net"],
      },
    };
  }, async (lab, api, daemon) => {
    const calls = [];
    for (let i = 0; i < 20; i++) {
      const ns = await lab.pod(`b${i}`);
      await api.putPod(pod(`b${i}`));
      calls.push({
        containerId: `ctr-burst-${i}`,
        pod: ns,
        k8s: { namespace: "default", name: `b${i}` },
        list: shimList(daemon.socket),
      });
    }
    const adds = await Promise.all(calls.map((c) => runtimeCall(lab, "add", c)));
    adds.forEach((r, i) => assert.equal(r.code, 0, `pod ${i}: ${r.stdout}`));
    const addresses = new Set<string>();
    for (const c of calls) addresses.add((await lab.addresses(c.pod, "eth0"))[0]);
    assert.equal(addresses.size, 20, "every pod has its own address");
    const dels = await Promise.all(calls.map((c) => runtimeCall(lab, "del", c)));
    dels.forEach((r, i) => assert.equal(r.code, 0, `pod ${i}: ${r.stdout}`));
    assert.deepEqual(await reservations(lab, "net"), []);

    const slowPod = await lab.pod("slow");
    await api.putPod(pod("slowpod", { "k8s.v1.cni.cncf.io/networks": "slow" }));
    const slowCall = {
      containerId: "ctr-serial",
      pod: slowPod,
      k8s: { namespace: "default", name: "slowpod" },
      list: shimList(daemon.socket),
    };
    const [a, d] = await Promise.all([
      runtimeCall(lab, "add", slowCall),
      new Promise((r) => setTimeout(r, 100)).then(() => runtimeCall(lab, "del", slowCall)),
    ]);
    assert.equal(a.code, 0, a.stdout);
    assert.equal(d.code, 0, d.stdout);
    const recorded = (await readCalls(`${lab.dir}/slow.jsonl`)).sort((x, y) => x.start - y.start);
    assert.deepEqual(recorded.map((c) => c.verb), ["ADD", "DEL"]);
    assert.ok(recorded[1].start >= recorded[0].end, "ADD and DEL of one container overlapped");
  });
});

kernelTest("e2e: bad input gets CNI errors naming the culprit and the daemon keeps serving", async () => {
  await withCluster("badinput", (lab) =>
    Promise.resolve({
      galaxyJson: {
        NetworkConf: [bridgeNet(lab, "net", "gtbr6", "198.18.29.0/24")],
        DefaultNetworks: ["net"],
      },
    }), async (lab, api, daemon) => {
    const post = (body: string) =>
      requestDaemon(daemon.socket, "/cni", { method: "POST", body, timeoutMs: 10_000 });
    const notJson = await post("{nope");
    assert.equal(notJson.status, 400);
    assert.equal(JSON.parse(notJson.body).code, 6);

    const missingEnv = await post(
      JSON.stringify({ env: { CNI_COMMAND: "ADD", CNI_NETNS: "/x", CNI_IFNAME: "eth0" } }),
    );
    assert.equal(JSON.parse(missingEnv.body).code, 4);
    assert.match(JSON.parse(missingEnv.body).msg, /CNI_CONTAINERID/);

    const p = await lab.pod("p");
    const base = { pod: p, list: shimList(daemon.socket) };
    await api.putPod(pod("bad-annot", { "k8s.v1.cni.cncf.io/networks": "net@@eth1" }));
    const badAnnot = await runtimeCall(lab, "add", {
      ...base,
      containerId: "c-bad1",
      k8s: { namespace: "default", name: "bad-annot" },
    });
    assert.equal(badAnnot.code, 1);
    assert.equal(JSON.parse(badAnnot.stdout).code, 7);
    assert.match(JSON.parse(badAnnot.stdout).msg, /net@@eth1/);

    await api.putPod(pod("unknown-net", { "k8s.v1.cni.cncf.io/networks": "nosuchnet" }));
    const unknown = await runtimeCall(lab, "add", {
      ...base,
      containerId: "c-bad2",
      k8s: { namespace: "default", name: "unknown-net" },
    });
    assert.equal(JSON.parse(unknown.stdout).code, 7);
    assert.match(JSON.parse(unknown.stdout).msg, /nosuchnet/);

    const noPodArgs = await runtimeCall(lab, "add", { ...base, containerId: "c-bad3" });
    assert.equal(JSON.parse(noPodArgs.stdout).code, 4);
    assert.match(JSON.parse(noPodArgs.stdout).msg, /K8S_POD_NAMESPACE/);

    const health = await requestDaemon(daemon.socket, "/healthz", { timeoutMs: 2000 });
    assert.equal(health.status, 200);
    await api.putPod(pod("fine"));
    const fine = await runtimeCall(lab, "add", {
      ...base,
      containerId: "c-fine",
      k8s: { namespace: "default", name: "fine" },
    });
    assert.equal(fine.code, 0, fine.stdout);
    const del = await runtimeCall(lab, "del", {
      ...base,
      containerId: "c-fine",
      k8s: { namespace: "default", name: "fine" },
    });
    assert.equal(del.code, 0, del.stdout);
  });
});

kernelTest(
  "e2e: a broken galaxy.json stops the daemon at start with a message naming the entry",
  async () => {
    await withLab("badconfig", async (lab) => {
      const daemon = await startDaemon(lab, {
        galaxyJson: { NetworkConf: [{ name: "a", type: "bridge" }, { name: "a", type: "bridge" }] },
        waitReady: false,
      });
      const out = await daemon.process.exited(20_000);
      assert.notEqual(out.code, 0);
      assert.match(out.stderr, /"a"/);
    });
  },
);
