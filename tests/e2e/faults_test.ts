/**
 * Issue 10's fault test: ADD/DEL cycles of a galaxy-veth + host-local pod through the real shim and daemon,
 * with the daemon SIGKILLed at random points (during ADD, between ADD and DEL, during DEL), DEL retried as the
 * kubelet does and queued by the shim while the daemon is down. Every DEL converges, and at the end no veth,
 * host route, host-local reservation, state file or queued DEL is left. Fixed seed; inside a lab's namespaces.
 * @module
 */
import assert from "node:assert/strict";
import { type Daemon, runtimeCall, shimList, startDaemon } from "../helpers/daemon.ts";
import { kernelTest, withLab } from "../helpers/netns.ts";
import { nodeLinks, reservations, routes } from "../helpers/plugin_harness.ts";

const CYCLES = Number(Deno.env.get("GALAXY_FAULT_CYCLES") ?? 50);

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile && !e.name.startsWith(".")) out.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

kernelTest(
  `faults: ${CYCLES} ADD/DEL cycles with the daemon SIGKILLed at random points; every DEL converges`,
  async () => {
    await withLab("faults", async (lab) => {
      const rand = rng(0xfa17);
      const galaxyJson = {
        NetworkConf: [{
          name: "overlay",
          type: "galaxy-veth",
          ipam: { type: "host-local", dataDir: `${lab.dir}/ipam`, ranges: [[{ subnet: "198.18.40.0/24" }]] },
        }],
        DefaultNetworks: ["overlay"],
      };
      let daemon: Daemon | undefined;
      const running = async (): Promise<Daemon> => daemon ??= await startDaemon(lab, { galaxyJson });
      const kill = async () => {
        const d = daemon;
        daemon = undefined;
        if (d) await d.process.stop("SIGKILL", 5000);
      };
      const stats = { killedInAdd: 0, killedBeforeDel: 0, killedInDel: 0, addFailed: 0, delRetries: 0 };
      try {
        const first = await running();
        // The runtime's conflist, with the shim's DEL queue inside the lab.
        const list = {
          ...shimList(first.socket),
          plugins: [{ type: "galaxy-sdn", socketPath: first.socket, stateDir: first.stateDir }],
        };
        for (let i = 0; i < CYCLES; i++) {
          const pod = await lab.pod(`p${i}`);
          const call = { containerId: `fault${i}cafe`, pod, list };
          await running();
          const add = runtimeCall(lab, "add", call);
          if (rand() < 0.35) {
            await new Promise((r) => setTimeout(r, rand() * 400));
            stats.killedInAdd++;
            await kill();
          }
          if ((await add).code !== 0) stats.addFailed++;
          if (daemon && rand() < 0.25) {
            stats.killedBeforeDel++;
            await kill(); // an outage: the shim queues the DEL
          }
          for (let attempt = 0;; attempt++) {
            assert.ok(attempt < 10, `DEL of cycle ${i} did not converge`);
            const del = runtimeCall(lab, "del", call);
            if (daemon && rand() < 0.15) {
              await new Promise((r) => setTimeout(r, rand() * 300));
              stats.killedInDel++;
              await kill();
            }
            const r = await del;
            if (r.code === 0) break;
            stats.delRetries++;
            await running(); // kubelet retries; the daemon comes back meanwhile
          }
          // The daemon comes back (running queued DELs before it is ready), then the runtime removes the netns.
          await running();
          await lab.removeNetns(pod);
        }
        const d = await running();
        console.log(`fault test: ${CYCLES} cycles ${JSON.stringify(stats)}`);
        assert.deepEqual(await nodeLinks(lab, "v-"), [], "a host veth is left");
        const left = (await routes(lab, lab.node)).filter((r) => String(r.dst).startsWith("198.18.40."));
        assert.deepEqual(left, [], "a host route is left");
        assert.deepEqual(await reservations(lab, "overlay"), [], "a host-local reservation is left");
        assert.deepEqual(await files(d.stateDir), [], "a state file is left");
        assert.deepEqual(await files(`${d.stateDir}/del-queue`), [], "a queued DEL is left");
      } finally {
        await kill();
      }
    });
  },
);
