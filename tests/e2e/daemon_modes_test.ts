import assert from "node:assert/strict";
import { requestDaemon } from "../../cni/wire.ts";
import { writeState } from "../../daemon/state.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import { type Daemon, runtimeCall, shimList, startDaemon } from "../helpers/daemon.ts";
import { kernelTest, type Lab, pathExists, withLab } from "../helpers/netns.ts";

function bridgeNet(lab: Lab, name: string, bridge: string, subnet: string) {
  return {
    name,
    type: "bridge",
    bridge,
    isGateway: true,
    ipam: { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[{ subnet }]] },
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

async function until(what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The shim's conflist with a short readiness wait. */
function impatientList(socket: string, timeoutSeconds: number): Record<string, unknown> {
  const list = shimList(socket) as { plugins: Record<string, unknown>[] };
  return { ...list, plugins: [{ ...list.plugins[0], timeoutSeconds }] };
}

/**
 * Standalone mode needs no --master, no --kubeconfig and no in-cluster environment: the daemon inherits this
 * process's environment, so an in-cluster variable is hidden while `fn` runs.
 */
async function withoutInClusterEnv(fn: () => Promise<void>): Promise<void> {
  const saved = Deno.env.get("KUBERNETES_SERVICE_HOST");
  Deno.env.delete("KUBERNETES_SERVICE_HOST");
  try {
    await fn();
  } finally {
    if (saved !== undefined) Deno.env.set("KUBERNETES_SERVICE_HOST", saved);
  }
}

/** Runs `fn` with a daemon and always stops it; asserts a clean SIGTERM exit when `fn` did not stop it. */
async function withDaemon(
  lab: Lab,
  options: Parameters<typeof startDaemon>[1],
  fn: (daemon: Daemon) => Promise<void>,
): Promise<void> {
  const daemon = await startDaemon(lab, options);
  let ok = false;
  try {
    await fn(daemon);
    ok = true;
  } finally {
    const out = await daemon.process.stop(ok ? "SIGTERM" : "SIGKILL");
    if (ok) assert.equal(out.code, 0, `daemon did not exit cleanly on SIGTERM:\n${out.stderr}`);
  }
}

kernelTest("e2e modes: standalone (no apiserver at all): every pod gets DefaultNetworks", async () => {
  await withoutInClusterEnv(() =>
    withLab("standalone", async (lab) => {
      const fakes = await writeFakePlugins(`${lab.dir}/fakes`, ["recorder"]);
      const record = `${lab.dir}/calls.jsonl`;
      const galaxyJson = {
        NetworkConf: [
          bridgeNet(lab, "net", "gtbr10", "198.18.40.0/24"),
          { name: "rec", type: "recorder", recordFile: record, addAddress: "198.18.41.9/32" },
        ],
        DefaultNetworks: ["net", "rec"],
      };
      await withDaemon(lab, { galaxyJson, cniPaths: [fakes] }, async (daemon) => {
        const ready = await requestDaemon(daemon.socket, "/readyz", { timeoutMs: 2000 });
        assert.equal(ready.status, 200, ready.body);

        const p = await lab.pod("p");
        const call = {
          containerId: "ctr-standalone",
          pod: p,
          k8s: { namespace: "default", name: "no-such-pod-anywhere" },
          list: shimList(daemon.socket, "1.0.0"),
        };
        const add = await runtimeCall(lab, "add", call);
        assert.equal(add.code, 0, `ADD failed: ${add.stdout}\n${add.stderr}`);
        const result = JSON.parse(add.stdout);
        assert.equal(result.cniVersion, "1.0.0");
        const byIface = new Map<string, string[]>();
        for (const ip of result.ips) {
          const name = result.interfaces[ip.interface].name;
          byIface.set(name, [...(byIface.get(name) ?? []), ip.address]);
        }
        assert.match(byIface.get("eth0")![0], /^198\.18\.40\.\d+\/24$/);
        assert.deepEqual(byIface.get("eth1"), ["198.18.41.9/32"]);
        assert.deepEqual(await lab.addresses(p, "eth0"), byIface.get("eth0"));
        assert.equal((await reservations(lab, "net")).length, 1);

        const calls = await readCalls(record);
        assert.deepEqual(calls.map((c) => `${c.verb} ${c.env.CNI_IFNAME}`), ["ADD eth1"]);
        assert.ok(calls[0].env.CNI_ARGS.split(";").includes("K8S_POD_NAME=no-such-pod-anywhere"));

        const check = await runtimeCall(lab, "check", call);
        assert.equal(check.code, 0, `CHECK failed: ${check.stdout}`);
        const del = await runtimeCall(lab, "del", call);
        assert.equal(del.code, 0, `DEL failed: ${del.stdout}`);
        assert.ok(!(await lab.linkNames(p)).includes("eth0"));
        assert.deepEqual(await reservations(lab, "net"), []);
        assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-standalone`)), "state file left after DEL");
      });
    })
  );
});

kernelTest(
  "e2e modes: unreachable apiserver: /readyz 503, STATUS 50, ADD 11, but DEL works from state",
  async () => {
    await withLab("noapi", async (lab) => {
      const fakes = await writeFakePlugins(`${lab.dir}/fakes`, ["recorder"]);
      const record = `${lab.dir}/calls.jsonl`;
      // nothing listens on this port in the fresh node namespace
      const kubeconfig = `${lab.dir}/dead-kubeconfig`;
      await Deno.writeTextFile(
        kubeconfig,
        `apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster:
    server: http://127.0.0.1:9
users:
- name: tester
  user:
    token: test-token
contexts:
- name: dead
  context:
    cluster: dead
    user: tester
current-context: dead
`,
      );
      // a container added before the daemon restarted, whose pod the daemon cannot look up now
      await writeState(`${lab.dir}/state`, "ctr-before", [{
        NetworkType: "rec",
        Args: { IgnoreUnknown: "1" },
        Conf: { cniVersion: "1.1.0", name: "rec", type: "recorder", recordFile: record },
        IfName: "eth0",
        Result: { cniVersion: "1.1.0", ips: [{ address: "198.18.43.3/24" }] },
      }]);
      const galaxyJson = {
        NetworkConf: [{ name: "rec", type: "recorder", recordFile: record, addAddress: "198.18.43.4/32" }],
        DefaultNetworks: ["rec"],
      };
      await withDaemon(
        lab,
        { galaxyJson, kubeconfig, cniPaths: [fakes], waitReady: false },
        async (daemon) => {
          await until("the daemon socket", async () => {
            try {
              return (await requestDaemon(daemon.socket, "/healthz", { timeoutMs: 1000 })).status === 200;
            } catch {
              return false;
            }
          });
          const readyz = await requestDaemon(daemon.socket, "/readyz", { timeoutMs: 2000 });
          assert.equal(readyz.status, 503);
          assert.match(readyz.body, /not ready: .*not synced/);

          const p = await lab.pod("p");
          const status = await runtimeCall(lab, "status", {
            containerId: "unused",
            pod: p,
            list: shimList(daemon.socket),
          });
          assert.equal(status.code, 1, status.stdout);
          const statusErr = JSON.parse(status.stdout);
          assert.equal(statusErr.code, 50, statusErr.msg);
          assert.match(statusErr.msg, /not synced/);

          const started = Date.now();
          const add = await runtimeCall(lab, "add", {
            containerId: "ctr-new",
            pod: p,
            k8s: { namespace: "default", name: "p" },
            list: impatientList(daemon.socket, 2),
          });
          assert.ok(Date.now() - started < 15_000, "the shim's readiness wait was not bounded");
          assert.equal(add.code, 1, add.stdout);
          const addErr = JSON.parse(add.stdout);
          assert.equal(addErr.code, 11, addErr.msg);
          assert.match(addErr.msg, /not synced/);
          assert.ok(
            !(await pathExists(`${daemon.stateDir}/ctr-new`)),
            "an ADD ran on a daemon that is not ready",
          );

          const del = await runtimeCall(lab, "del", {
            containerId: "ctr-before",
            pod: p,
            list: shimList(daemon.socket),
          });
          assert.equal(del.code, 0, `DEL without an apiserver failed: ${del.stdout}`);
          const calls = await readCalls(record);
          assert.deepEqual(calls.map((c) => `${c.verb} ${c.env.CNI_CONTAINERID}`), ["DEL ctr-before"]);
          assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-before`)));
        },
      );
    });
  },
);

kernelTest(
  "e2e modes: SIGTERM during a slow ADD: the ADD completes, new ADDs get 11, the daemon exits 0",
  async () => {
    await withoutInClusterEnv(() =>
      withLab("sigterm", async (lab) => {
        const fakes = await writeFakePlugins(`${lab.dir}/fakes`, ["slow"]);
        const record = `${lab.dir}/slow.jsonl`;
        const galaxyJson = {
          NetworkConf: [{
            name: "slow",
            type: "slow",
            sleepMs: 1500,
            recordFile: record,
            addAddress: "198.18.44.7/32",
          }],
          DefaultNetworks: ["slow"],
        };
        const daemon = await startDaemon(lab, { galaxyJson, cniPaths: [fakes] });
        try {
          const p = await lab.pod("p");
          const call = { containerId: "ctr-slow", pod: p, k8s: { namespace: "default", name: "p" } };
          const add = runtimeCall(lab, "add", { ...call, list: shimList(daemon.socket) });
          // the state file is written just before the plugin starts
          await until("the slow ADD to start", () => pathExists(`${daemon.stateDir}/ctr-slow`));
          const signalled = Date.now();
          daemon.process.kill("SIGTERM");
          await new Promise((r) => setTimeout(r, 200));
          const late = await runtimeCall(lab, "add", {
            ...call,
            containerId: "ctr-late",
            list: impatientList(daemon.socket, 1),
          });
          assert.equal(late.code, 1, late.stdout);
          assert.equal(JSON.parse(late.stdout).code, 11, late.stdout);

          const done = await add;
          assert.equal(done.code, 0, `the in-flight ADD failed: ${done.stdout}\n${done.stderr}`);
          assert.equal(JSON.parse(done.stdout).ips[0].address, "198.18.44.7/32");
          const out = await daemon.process.exited(20_000);
          assert.equal(out.code, 0, `daemon exit code ${out.code}:\n${out.stderr}`);
          const calls = await readCalls(record);
          assert.deepEqual(calls.map((c) => `${c.verb} ${c.env.CNI_CONTAINERID}`), ["ADD ctr-slow"]);
          assert.ok(calls[0].end > signalled, "setup: the plugin had finished before SIGTERM");
          assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-late`)));
        } finally {
          await daemon.process.stop("SIGKILL");
        }
      })
    );
  },
);

kernelTest("e2e modes: DEL with a vanished or empty netns still releases host-local IPAM", async () => {
  await withoutInClusterEnv(() =>
    withLab("vanished", async (lab) => {
      const galaxyJson = {
        NetworkConf: [bridgeNet(lab, "net", "gtbr11", "198.18.45.0/24")],
        DefaultNetworks: ["net"],
      };
      await withDaemon(lab, { galaxyJson }, async (daemon) => {
        const gone = await lab.pod("gone");
        const kept = await lab.pod("kept");
        const calls = [
          {
            containerId: "ctr-gone",
            pod: gone,
            k8s: { namespace: "default", name: "gone" },
            list: shimList(daemon.socket),
          },
          {
            containerId: "ctr-nons",
            pod: kept,
            k8s: { namespace: "default", name: "kept" },
            list: shimList(daemon.socket),
          },
        ];
        for (const c of calls) {
          const add = await runtimeCall(lab, "add", c);
          assert.equal(add.code, 0, `ADD failed: ${add.stdout}\n${add.stderr}`);
        }
        assert.equal((await reservations(lab, "net")).length, 2);

        await lab.removeNetns(gone);
        assert.ok(!(await pathExists(gone.path)), "setup: the namespace is still there");
        const delGone = await runtimeCall(lab, "del", calls[0]);
        assert.equal(
          delGone.code,
          0,
          `DEL with a vanished netns failed: ${delGone.stdout}\n${delGone.stderr}`,
        );
        assert.equal(
          (await reservations(lab, "net")).length,
          1,
          "the vanished pod's address was not released",
        );
        assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-gone`)));

        const delEmpty = await runtimeCall(lab, "del", { ...calls[1], pod: { name: kept.name, path: "" } });
        assert.equal(
          delEmpty.code,
          0,
          `DEL with an empty netns failed: ${delEmpty.stdout}\n${delEmpty.stderr}`,
        );
        assert.deepEqual(await reservations(lab, "net"), []);
        assert.ok(!(await pathExists(`${daemon.stateDir}/ctr-nons`)));
      });
    })
  );
});

kernelTest("e2e modes: --max-concurrent-requests=1 queues a second pod's ADD; SIGINT exits 0", async () => {
  await withoutInClusterEnv(() =>
    withLab("maxconc", async (lab) => {
      const fakes = await writeFakePlugins(`${lab.dir}/fakes`, ["slow"]);
      const record = `${lab.dir}/slow.jsonl`;
      const galaxyJson = {
        NetworkConf: [{
          name: "slow",
          type: "slow",
          sleepMs: 700,
          recordFile: record,
          addAddress: "198.18.46.1/32",
        }],
        DefaultNetworks: ["slow"],
      };
      const daemon = await startDaemon(lab, {
        galaxyJson,
        cniPaths: [fakes],
        flags: ["--max-concurrent-requests=1"],
      });
      try {
        const p = await lab.pod("p");
        const adds = await Promise.all(["a", "b"].map((name) =>
          runtimeCall(lab, "add", {
            containerId: `ctr-${name}`,
            pod: p,
            k8s: { namespace: "default", name },
            list: shimList(daemon.socket),
          })
        ));
        adds.forEach((r) => assert.equal(r.code, 0, r.stdout));
        const calls = (await readCalls(record)).sort((x, y) => x.start - y.start);
        assert.deepEqual(calls.map((c) => c.verb), ["ADD", "ADD"]);
        assert.notEqual(calls[0].env.CNI_CONTAINERID, calls[1].env.CNI_CONTAINERID);
        assert.ok(calls[1].start >= calls[0].end, "two ADDs ran at once with --max-concurrent-requests=1");
        const out = await daemon.process.stop("SIGINT");
        assert.equal(out.code, 0, `daemon exit code ${out.code} on SIGINT:\n${out.stderr}`);
      } finally {
        await daemon.process.stop("SIGKILL");
      }
    })
  );
});
