/**
 * daemon/portmap.ts against the real kernel, run as a process inside a lab node namespace
 * (tests/helpers/portmap_scenarios.ts): a failed annotation write leaves nothing, hostIP binds and jumps,
 * route_localnet only on the pod's device, the masquerade bit, double ADD and new sandboxes, the periodic
 * repair, random ports, empty port files.
 * @module
 */
import assert from "node:assert/strict";
import { REPO_ROOT } from "../helpers/launchers.ts";
import { kernelTest, withLab } from "../helpers/netns.ts";

kernelTest(
  "portmap: failure leaves nothing, hostIP, localnet, double ADD, repair, random ports",
  async () => {
    await withLab("portmapu", async (lab) => {
      await lab.ip(lab.node, ["link", "add", "gtpm0", "type", "veth", "peer", "name", "gtpm1"]);
      await lab.ip(lab.node, ["addr", "add", "198.18.40.1/24", "dev", "gtpm0"]);
      await lab.ip(lab.node, ["link", "set", "gtpm0", "up"]);
      await lab.ip(lab.node, ["link", "set", "gtpm1", "up"]);
      await lab.ip(lab.node, ["link", "add", "gtother0", "type", "veth", "peer", "name", "gtother1"]);
      const r = await lab.tryExec(lab.node, Deno.execPath(), [
        "run",
        "-A",
        "--quiet",
        `${REPO_ROOT}/tests/helpers/portmap_scenarios.ts`,
        `${lab.dir}/ports`,
      ]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      const done = r.stdout.trim().split("\n");
      assert.equal(done.length, 8, r.stdout);
      assert.equal(done.at(-1), "ok all released");
    });
  },
);
