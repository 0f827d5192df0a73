import assert from "node:assert/strict";
import { desiredSysctls, KernelKeeper } from "../../daemon/kernel.ts";
import { Counters } from "../../daemon/metrics.ts";
import { kernelTest, type Lab, pathExists, withLab } from "../helpers/netns.ts";

async function sysctl(lab: Lab, key: string): Promise<string | undefined> {
  const path = `/proc/sys/${key.replaceAll(".", "/")}`;
  const r = await lab.tryExec(lab.node, "cat", [path]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

async function set(lab: Lab, key: string, value: string): Promise<void> {
  await lab.exec(lab.node, "sh", ["-c", `echo ${value} > /proc/sys/${key.replaceAll(".", "/")}`]);
}

function logger() {
  const lines: string[] = [];
  return {
    lines,
    log: { info: (m: string) => lines.push(`I ${m}`), warn: (m: string) => lines.push(`W ${m}`) },
  };
}

Deno.test("kernel: the flags give Galaxy's keys and values; false writes 0", () => {
  assert.deepEqual(desiredSysctls({ ipForward: true, bridgeNfCallIptables: true, routeEni: false }), {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
  });
  assert.deepEqual(desiredSysctls({ ipForward: false, bridgeNfCallIptables: false, routeEni: true }), {
    "net.ipv4.ip_forward": "0",
    "net.bridge.bridge-nf-call-iptables": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.eth0.rp_filter": "0",
    "net.ipv4.conf.eth1.rp_filter": "0",
  });
});

kernelTest(
  "kernel: sysctls reach their values in the namespace, only differing ones are written, and a change is undone",
  async () => {
    await withLab("kernel", async (lab) => {
      // eth0 and eth1 of the "node", for the route-ENI rp_filter keys.
      await lab.ip(lab.node, ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]);
      await set(lab, "net.ipv4.conf.all.rp_filter", "2");
      await set(lab, "net.ipv4.conf.eth1.rp_filter", "1");
      const bridgeKey = "net.bridge.bridge-nf-call-iptables";
      const hasBridge = await pathExists("/proc/sys/net/bridge") &&
        (await sysctl(lab, bridgeKey)) !== undefined;
      if (hasBridge) await set(lab, bridgeKey, "0");

      const counters = new Counters();
      const { lines, log } = logger();
      const flags = { ipForward: true, bridgeNfCallIptables: true, routeEni: true };
      const keeper = new KernelKeeper(flags, log, { counters, netns: lab.node.path, intervalMs: 200 });
      await keeper.reconcile();
      assert.equal(await sysctl(lab, "net.ipv4.ip_forward"), "1");
      assert.equal(await sysctl(lab, "net.ipv4.conf.all.rp_filter"), "0");
      assert.equal(await sysctl(lab, "net.ipv4.conf.eth0.rp_filter"), "0");
      assert.equal(await sysctl(lab, "net.ipv4.conf.eth1.rp_filter"), "0");
      if (hasBridge) {
        assert.equal(await sysctl(lab, bridgeKey), "1");
      } else {
        console.log(
          "skipped kernel part: br_netfilter is not loaded (no net.bridge sysctls in this namespace)",
        );
        assert.ok(
          lines.some((l) => /^W sysctl net\.bridge\.bridge-nf-call-iptables .*br_netfilter/.test(l)),
          lines.join("\n"),
        );
        assert.equal(counters.get("galaxy_sysctl_failures_total", { key: bridgeKey, reason: "missing" }), 1);
      }
      assert.equal(counters.get("galaxy_sysctl_writes_total", { key: "net.ipv4.ip_forward" }), 1);
      // eth0's rp_filter was already 0 in the new namespace? Only what differed was written.
      const writesAfterFirst = counters.render();
      await keeper.reconcile();
      assert.equal(counters.render(), writesAfterFirst, "a second pass with nothing changed wrote something");

      // Someone turns forwarding off: the loop puts it back.
      keeper.start();
      try {
        await set(lab, "net.ipv4.ip_forward", "0");
        await set(lab, "net.ipv4.conf.eth0.rp_filter", "1");
        const deadline = Date.now() + 5000;
        while (Date.now() < deadline && (await sysctl(lab, "net.ipv4.ip_forward")) !== "1") {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal(await sysctl(lab, "net.ipv4.ip_forward"), "1", "ip_forward was not restored");
        assert.equal(await sysctl(lab, "net.ipv4.conf.eth0.rp_filter"), "0", "rp_filter was not restored");
        assert.equal(counters.get("galaxy_sysctl_writes_total", { key: "net.ipv4.ip_forward" }), 2);
      } finally {
        await keeper.stop();
      }

      // --ip-forward=false forces 0, as Galaxy; a missing interface is a counted warning, not a crash.
      await lab.ip(lab.node, ["link", "del", "eth0"]);
      const { lines: l2, log: log2 } = logger();
      const off = new KernelKeeper({ ipForward: false, bridgeNfCallIptables: true, routeEni: true }, log2, {
        counters,
        netns: lab.node.path,
      });
      await off.reconcile();
      assert.equal(await sysctl(lab, "net.ipv4.ip_forward"), "0");
      assert.ok(
        l2.some((l) => /^W sysctl net\.ipv4\.conf\.eth1\.rp_filter .*interface eth1 does not exist/.test(l)),
        l2.join("\n"),
      );
      assert.equal(
        counters.get("galaxy_sysctl_failures_total", {
          key: "net.ipv4.conf.eth1.rp_filter",
          reason: "missing",
        }),
        1,
      );
    });
  },
);
