/**
 * Issue 10's burst: 200 concurrent ADDs, then 200 concurrent DELs, straight to the daemon's socket (the
 * runtime side costs a Deno start per call, which would measure the test machine, not the daemon), with a
 * shell plugin whose effects are files, twice: 0 failures and nothing left. The daemon's RSS is printed, not
 * asserted: "back within 10% of the start" is not met yet.
 * @module
 */
import assert from "node:assert/strict";
import { encodeBase64, requestDaemon } from "../../cni/wire.ts";
import { startDaemon } from "../helpers/daemon.ts";
import { kernelTest, withLab } from "../helpers/netns.ts";
import { writeShellPlugin } from "../helpers/shell_plugin.ts";

const BURST = Number(Deno.env.get("GALAXY_BURST") ?? 200);
const ROUNDS = Number(Deno.env.get("GALAXY_BURST_ROUNDS") ?? 2);

async function rssKiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile) out.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

kernelTest(
  `burst: ${BURST} concurrent ADDs then DELs twice, 0 failures, nothing left (RSS printed)`,
  async () => {
    await withLab("burst", async (lab) => {
      await writeShellPlugin(`${lab.dir}/bin`, `${lab.dir}/held`);
      const daemon = await startDaemon(lab, {
        galaxyJson: {
          NetworkConf: [{ name: "net", type: "shplug", cniVersion: "1.1.0" }],
          DefaultNetworks: ["net"],
        },
        cniPaths: [`${lab.dir}/bin`],
        flags: ["--v=0"],
      });
      try {
        const pod = await lab.pod("pod");
        const body = (verb: string, i: number) =>
          JSON.stringify({
            env: { CNI_COMMAND: verb, CNI_CONTAINERID: `burst${i}`, CNI_NETNS: pod.path, CNI_IFNAME: "eth0" },
            config: encodeBase64(
              new TextEncoder().encode('{"cniVersion":"1.1.0","name":"galaxy-sdn","type":"galaxy-sdn"}'),
            ),
          });
        const send = (verb: string, i: number) =>
          requestDaemon(daemon.socket, "/cni", { method: "POST", body: body(verb, i), timeoutMs: 120_000 });
        // Warm up once (module loading, first plugin exec), then take the baseline.
        assert.equal((await send("ADD", -1)).status, 200);
        assert.equal((await send("DEL", -1)).status, 200);
        await new Promise((r) => setTimeout(r, 500));
        const before = await rssKiB(daemon.process.pid);
        const burst = async (round: number) => {
          const started = Date.now();
          const adds = await Promise.all(Array.from({ length: BURST }, (_, i) => send("ADD", i)));
          const addMs = Date.now() - started;
          assert.deepEqual(adds.filter((r) => r.status !== 200).map((r) => r.body), [], `round ${round} ADD`);
          assert.equal((await files(`${lab.dir}/held`)).length, BURST);
          const dels = await Promise.all(Array.from({ length: BURST }, (_, i) => send("DEL", i)));
          assert.deepEqual(dels.filter((r) => r.status !== 200).map((r) => r.body), [], `round ${round} DEL`);
          assert.deepEqual(await files(`${lab.dir}/held`), []);
          assert.deepEqual(await files(daemon.stateDir), []);
          await new Promise((r) => setTimeout(r, 1000));
          const rss = await rssKiB(daemon.process.pid);
          console.log(
            `burst ${BURST} round ${round}: ADDs in ${addMs} ms, DELs in ${
              Date.now() - started - addMs - 1000
            } ms; ` +
              `RSS ${before} KiB at start, ${rss} KiB after`,
          );
          return rss;
        };
        const rounds: number[] = [];
        for (let round = 1; round <= ROUNDS; round++) rounds.push(await burst(round));
        // Not asserted: issue 10's "RSS back within 10% of the start" is not met yet (see the branch report).
        console.log(`burst RSS KiB: start ${before}, after each round ${rounds.join(", ")}`);
      } finally {
        await daemon.process.stop("SIGTERM", 10_000);
      }
    });
  },
);
