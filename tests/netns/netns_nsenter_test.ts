import assert from "node:assert/strict";
import {
  configureNetnsWorkers,
  inNetns,
  NetnsError,
  NetnsNotFoundError,
  netnsWorkerStats,
  readNetnsFiles,
  runCommands,
  writeNetnsFiles,
} from "../../netops/netns.ts";
import { kernelTest, withLab } from "../helpers/netns.ts";

kernelTest(
  "netns (nsenter executor): commands, sysctl writes and /proc + /sys reads act on the pod only",
  async () => {
    configureNetnsWorkers({ executor: "nsenter" });
    try {
      await withLab("nsenter", async (lab) => {
        const pod = await lab.pod("pod");
        const before = netnsWorkerStats().created;
        await lab.ip(pod, ["link", "add", "gta0", "type", "veth", "peer", "name", "gta1"]);

        const [batch, ls] = await runCommands(pod.path, [
          {
            argv: ["ip", "-batch", "/dev/stdin"],
            stdin: "addr add 198.18.77.2/24 dev gta0\nlink set gta0 up\n",
          },
          { argv: ["ip", "-br", "link"] },
        ]);
        assert.equal(batch.code, 0, batch.stderr);
        assert.match(ls.stdout, /^gta0@gta1/m);
        assert.deepEqual(await lab.addresses(pod, "gta0"), ["198.18.77.2/24"]);

        await writeNetnsFiles(pod.path, { "/proc/sys/net/ipv4/conf/gta0/rp_filter": "2" });
        assert.equal((await lab.exec(pod, "cat", ["/proc/sys/net/ipv4/conf/gta0/rp_filter"])).trim(), "2");
        assert.notEqual(
          (await lab.exec(lab.node, "cat", ["/proc/sys/net/ipv4/conf/all/rp_filter"])).trim(),
          undefined,
        );
        const [missing] = await inNetns(pod.path, [{
          op: "write",
          path: "/proc/sys/net/ipv4/conf/nosuch/rp_filter",
          value: "0",
        }]);
        assert.deepEqual(missing, {
          op: "write",
          path: "/proc/sys/net/ipv4/conf/nosuch/rp_filter",
          error: "No such file",
          missing: true,
        });

        const [rp, dev, sysMtu, absent] = await readNetnsFiles(pod.path, [
          "/proc/sys/net/ipv4/conf/gta0/rp_filter",
          "/proc/net/dev",
          "/sys/class/net/gta0/mtu",
          "/sys/class/net/nosuch/mtu",
        ]);
        assert.equal(rp?.trim(), "2");
        assert.match(dev ?? "", /gta0:/, "/proc/net must show the pod's interfaces");
        assert.equal(sysMtu?.trim(), "1500", "/sys must show the pod's interfaces");
        assert.equal(absent, undefined);

        await assert.rejects(
          runCommands(`${lab.dir}/no-such-netns`, [{ argv: ["true"] }]),
          NetnsNotFoundError,
        );
        await Deno.writeTextFile(`${lab.dir}/plain-file`, "");
        await assert.rejects(runCommands(`${lab.dir}/plain-file`, [{ argv: ["true"] }]), NetnsError);
        assert.equal(netnsWorkerStats().created, before, "the nsenter executor must not start workers");
      });
    } finally {
      configureNetnsWorkers({ executor: "nsenter" });
    }
  },
);
