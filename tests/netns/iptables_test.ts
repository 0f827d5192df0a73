/**
 * netops/iptables.ts on the real kernel, inside a lab namespace, for both backends: a batch lands as one
 * transaction and reads back through the save parser, a failing line leaves the whole table untouched, a
 * missing chain deletes cleanly, and `auto` picks the backend that holds the rules. The xtables lock file is
 * the lab's own (`XTABLES_LOCKFILE`).
 * @module
 */
import assert from "node:assert/strict";
import { kernelTest, withLab } from "../helpers/netns.ts";
import { detectIptablesBackend, Iptables, IptablesError, RestoreBatch } from "../../netops/iptables.ts";

for (const backend of ["legacy", "nft"] as const) {
  kernelTest(`iptables ${backend}: one restore per transaction, read back, atomic on failure`, async () => {
    await withLab(`ipt${backend}`, async (lab) => {
      const env = { XTABLES_LOCKFILE: `${lab.dir}/xtables.lock` };
      const ipt = await Iptables.open({ backend, netns: lab.node.path, env });
      assert.equal(ipt.backend, backend);
      await ipt.restore(
        new RestoreBatch()
          .declareChain("nat", "GTEST-A")
          .append("nat", "GTEST-A", ["-m", "comment", "--comment", "two words", "-p", "tcp", "-j", "RETURN"])
          .append("nat", "PREROUTING", ["-j", "GTEST-A"])
          .declareChain("filter", "GTEST-F"),
      );
      const nat = await ipt.save("nat");
      assert.deepEqual(nat.chains.get("GTEST-A")?.rules.map((r) => r.args), [
        ["-p", "tcp", "-m", "comment", "--comment", "two words", "-j", "RETURN"],
      ]);
      const jump = nat.chains.get("PREROUTING")!.rules.find((r) => r.args.includes("GTEST-A"))!;
      assert.ok(jump, "jump from PREROUTING");
      assert.ok((await ipt.save("filter")).chains.has("GTEST-F"));

      // A bad line fails the table: the chain declared before it in the same batch is not created.
      await assert.rejects(
        () =>
          ipt.restore(
            new RestoreBatch().declareChain("nat", "GTEST-B").append("nat", "GTEST-B", [
              "-j",
              "GTEST-MISSING",
            ]),
          ),
        IptablesError,
      );
      assert.ok(!(await ipt.save("nat")).chains.has("GTEST-B"), "nothing of a failed transaction remains");

      // Delete by the saved text, and a missing chain deletes without error.
      await ipt.restore(
        new RestoreBatch().delete("nat", "PREROUTING", jump).deleteChain("nat", "GTEST-A").deleteChain(
          "nat",
          "GTEST-NEVER",
        ),
      );
      const after = await ipt.save("nat");
      assert.ok(!after.chains.has("GTEST-A") && !after.chains.has("GTEST-NEVER"));
      assert.equal(after.chains.get("PREROUTING")!.rules.length, 0);
    });
  });
}

kernelTest("iptables auto: the backend holding the rules, or the kubelet's hint", async () => {
  await withLab("iptauto", async (lab) => {
    const env = { XTABLES_LOCKFILE: `${lab.dir}/xtables.lock` };
    const opts = { netns: lab.node.path, env };
    assert.equal((await detectIptablesBackend(opts)).backend, "nft", "an empty node goes to nft");
    const legacy = await lab.tryExec(lab.node, "iptables-legacy", [
      "-t",
      "nat",
      "-A",
      "POSTROUTING",
      "-j",
      "RETURN",
    ], {
      env,
    });
    assert.equal(legacy.code, 0, legacy.stderr);
    assert.equal((await detectIptablesBackend(opts)).backend, "legacy");
    assert.equal((await Iptables.open(opts)).backend, "legacy");
    await lab.exec(lab.node, "iptables-nft", ["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]); // nft takes no lock
    assert.equal((await detectIptablesBackend(opts)).backend, "nft", "the hint wins over the rule count");
  });
});
