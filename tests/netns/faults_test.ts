/**
 * Issue 10's reproducers on the real kernel, inside a lab's namespaces: the fork bomb (a plugin whose IPAM is
 * itself) ends at once with nothing created, and DEL converges for a pod netns that was unmounted but not
 * removed (the host veth, host route and host-local reservation go; what was inside is skipped).
 * @module
 */
import assert from "node:assert/strict";
import { kernelTest, runCommand, withLab } from "../helpers/netns.ts";
import {
  assertOk,
  hostLocalIpam,
  nodeLinks,
  reservations,
  routes,
  runBuiltin,
  withPrevResult,
} from "../helpers/plugin_harness.ts";

const NETWORK = "gtest-faults";

kernelTest(
  "fork bomb: galaxy-veth with ipam galaxy-veth fails with code 7 at once; no process, no link",
  async () => {
    await withLab("forkbomb", async (lab) => {
      const pod = await lab.pod("pod");
      const started = Date.now();
      const run = await runBuiltin(lab, "galaxy-veth", {
        verb: "ADD",
        conf: { cniVersion: "1.0.0", name: NETWORK, type: "galaxy-veth", ipam: { type: "galaxy-veth" } },
        containerId: "forkbomb01",
        netns: pod,
      });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.equal(run.error?.code, 7, run.stdout);
      assert.match(run.error!.msg, /galaxy-veth.*own type|delegation loop/);
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      assert.deepEqual(await nodeLinks(lab, "v-"), []);
      assert.deepEqual(await lab.linkNames(pod), ["lo"]);
      const ps = await runCommand("pgrep", ["-f", "forkbomb01"]);
      assert.equal(ps.stdout.trim(), "", "a plugin process of the loop is still running");
    });
  },
);

kernelTest(
  "DEL converges for a netns unmounted but not removed: host veth, route and reservation go",
  async () => {
    await withLab("unmounted", async (lab) => {
      const pod = await lab.pod("pod");
      const conf = {
        cniVersion: "1.0.0",
        name: NETWORK,
        type: "galaxy-veth",
        ipam: hostLocalIpam(lab, "198.18.21.0/24"),
      };
      const call = { containerId: "unmnt0001beef", netns: pod };
      const add = await runBuiltin(lab, "galaxy-veth", { verb: "ADD", conf, ...call });
      assertOk(add, "ADD");
      const ip = add.result!.ips![0].address.split("/")[0];
      assert.deepEqual(await reservations(lab, NETWORK), [ip]);
      // What a runtime that crashed between umount and rm leaves: an empty file where the netns was.
      const um = await runCommand("umount", [pod.path]);
      assert.equal(um.code, 0, um.stderr);
      assert.equal((await Deno.stat(pod.path)).isFile, true);
      for (let attempt = 0; attempt < 2; attempt++) {
        const del = await runBuiltin(lab, "galaxy-veth", {
          verb: "DEL",
          conf: withPrevResult(conf, add.result!),
          ...call,
        });
        assertOk(del, `DEL #${attempt + 1}`);
      }
      assert.deepEqual(await nodeLinks(lab, "v-"), [], "host veth left");
      assert.ok(!(await routes(lab, lab.node)).some((r) => r.dst === ip), `host route to ${ip} left`);
      assert.deepEqual(await reservations(lab, NETWORK), [], "host-local reservation left");
      await Deno.remove(pod.path).catch(() => {});
      await lab.removeNetns(pod);
    });
  },
);
