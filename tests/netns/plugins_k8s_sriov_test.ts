/**
 * galaxy-k8s-sriov as a real executable inside a lab's node namespace, against a fake SR-IOV tree: there is no
 * SR-IOV hardware here, so `sysfsRoot`/`procRoot` point at a tree under the lab folder (PF `gtpf0` with
 * `sriov_totalvfs`, `sriov_numvfs`, `virtfn<i>` → `bus/pci/devices/0000:00:01.<i>/` with `net/vf<i>/` and
 * `msi_irqs/<N>`, `irq/<N>/smp_affinity_list`), and each "VF" is a veth `vf<i>` in the node namespace whose
 * peer `vf<i>w` stays there as the wire. The PF is a veth too, so the kernel refuses to set a VF VLAN through
 * it: the tests that move VFs use `vfVlan: "none"`, the batch text of the VLAN step is asserted in
 * tests/unit/sriov_test.ts, and one test runs the default `vfVlan: "pf"` to see the kernel refuse it and the
 * ADD roll back. Addresses come from 198.18.0.0/15; nothing touches the host namespace.
 * @module
 */
import assert from "node:assert/strict";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import { kernelTest, type Lab, type Netns, withLab } from "../helpers/netns.ts";
import {
  assertFails,
  assertOk,
  hostLocalIpam,
  nodeLinks,
  ping,
  reservations,
  routes,
  runBuiltin,
  TEST_VERSIONS,
  withPrevResult,
} from "../helpers/plugin_harness.ts";

const PLUGIN = "galaxy-k8s-sriov";
const NETWORK = "gtest-sriov";
const PF = "gtpf0";
/** The fake tree's online CPUs: 3, so that the expected affinity differs from this machine's CPU count. */
const CPUS = 3;
const SKIPPED = "skipped kernel part: no SR-IOV PF on this machine (vf vlan via the PF)";

/** The fake SR-IOV tree of one lab. */
interface FakeSriov {
  sysfsRoot: string;
  procRoot: string;
  lockDir: string;
  /** The VFs: node netdev, wire, PCI address and interrupts. */
  vfs: { name: string; wire: string; pci: string; irqs: number[] }[];
}

function pciOf(i: number): string {
  return `0000:00:01.${i}`;
}

/** Builds a PF with `total` VFs (veth stand-ins) and the sysfs/procfs entries around them. */
async function fakeSriov(lab: Lab, total: number): Promise<FakeSriov> {
  const sysfsRoot = `${lab.dir}/sys`;
  const procRoot = `${lab.dir}/proc`;
  const dev = `${sysfsRoot}/class/net/${PF}/device`;
  await Deno.mkdir(dev, { recursive: true });
  await Deno.writeTextFile(`${dev}/sriov_totalvfs`, `${total}\n`);
  await Deno.writeTextFile(`${dev}/sriov_numvfs`, "0\n");
  await Deno.mkdir(`${sysfsRoot}/devices/system/cpu`, { recursive: true });
  await Deno.writeTextFile(`${sysfsRoot}/devices/system/cpu/online`, `0-${CPUS - 1}\n`);
  await lab.ip(lab.node, ["link", "add", PF, "type", "veth", "peer", "name", `${PF}w`]);
  await lab.ip(lab.node, ["link", "set", PF, "up"]);
  const vfs: FakeSriov["vfs"] = [];
  for (let i = 0; i < total; i++) {
    const vf = { name: `vf${i}`, wire: `vf${i}w`, pci: pciOf(i), irqs: [40 + 2 * i, 41 + 2 * i] };
    const pciDir = `${sysfsRoot}/bus/pci/devices/${vf.pci}`;
    await Deno.mkdir(`${pciDir}/net/${vf.name}`, { recursive: true });
    await Deno.mkdir(`${pciDir}/msi_irqs`, { recursive: true });
    for (const irq of vf.irqs) {
      await Deno.writeTextFile(`${pciDir}/msi_irqs/${irq}`, "msix\n");
      await Deno.mkdir(`${procRoot}/irq/${irq}`, { recursive: true });
      await Deno.writeTextFile(`${procRoot}/irq/${irq}/smp_affinity_list`, "0-63\n");
    }
    await Deno.symlink(pciDir, `${dev}/virtfn${i}`);
    await lab.ip(lab.node, ["link", "add", vf.name, "type", "veth", "peer", "name", vf.wire]);
    vfs.push(vf);
  }
  return { sysfsRoot, procRoot, lockDir: `${lab.dir}/sriov`, vfs };
}

/**
 * Plays the kernel handing a dead pod's VF back to the node: a namespace is torn down asynchronously, so
 * wait until the old stand-in's wire is gone, then make a new stand-in `name` whose wire is the VF's.
 */
async function handBack(lab: Lab, fake: FakeSriov, i: number, name: string): Promise<void> {
  const wire = fake.vfs[i].wire;
  for (let tries = 0; (await link(lab, lab.node, wire)) !== undefined; tries++) {
    if (tries === 100) throw new Error(`${wire} outlived its namespace for 5 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await lab.ip(lab.node, ["link", "add", name, "type", "veth", "peer", "name", wire]);
  await renameInSysfs(fake, i, fake.vfs[i].name, name);
}

/** Tells the fake sysfs that VF `i`'s netdev is now called `name` (the kernel does this by itself). */
async function renameInSysfs(fake: FakeSriov, i: number, from: string, to: string): Promise<void> {
  const net = `${fake.sysfsRoot}/bus/pci/devices/${fake.vfs[i].pci}/net`;
  await Deno.rename(`${net}/${from}`, `${net}/${to}`);
}

function sriovConf(version: string, fake: FakeSriov, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: version,
    name: NETWORK,
    type: PLUGIN,
    device: PF,
    sysfsRoot: fake.sysfsRoot,
    procRoot: fake.procRoot,
    lockDir: fake.lockDir,
    vfVlan: "none",
    ...extra,
  };
}

function ipinfos(ip: string, options: { vlan?: number; gateway?: string } = {}): Record<string, string> {
  const info: Record<string, unknown> = { ip, vlan: options.vlan ?? 0 };
  if (options.gateway) info.gateway = options.gateway;
  return { IgnoreUnknown: "1", ipinfos: JSON.stringify([info]) };
}

type JsonLink = { ifname: string; address: string; flags: string[]; linkinfo?: { info_kind?: string } };

async function link(lab: Lab, ns: Netns, name: string): Promise<JsonLink | undefined> {
  const r = await lab.tryExec(ns, "ip", ["-j", "-d", "link", "show", "dev", name]);
  return r.code === 0 ? (JSON.parse(r.stdout) as JsonLink[])[0] : undefined;
}

/** The attachment records in the lab's lockDir, as `<containerId>@<ifname>`. */
async function records(fake: FakeSriov): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(fake.lockDir)) {
      if (e.name.endsWith(".json")) found.push(e.name.slice(0, -".json".length));
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return found.sort();
}

async function record(fake: FakeSriov, id: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(`${fake.lockDir}/${id}.json`));
}

/** Every VF is on the node under its own name, no record is left, and the pods hold only `lo`. */
async function assertAllHome(lab: Lab, fake: FakeSriov, pods: Netns[]): Promise<void> {
  assert.deepEqual(
    (await nodeLinks(lab, "vf")).filter((n) => !n.endsWith("w")).sort(),
    fake.vfs.map((v) => v.name),
    "not every VF is back on the node under its name",
  );
  assert.deepEqual(await records(fake), [], "an attachment record is left");
  for (const pod of pods) assert.deepEqual(await lab.linkNames(pod), ["lo"], `${pod.name} is not back to lo`);
}

async function numVfs(fake: FakeSriov): Promise<string> {
  return (await Deno.readTextFile(`${fake.sysfsRoot}/class/net/${PF}/device/sriov_numvfs`)).trim();
}

async function affinity(fake: FakeSriov, irq: number): Promise<string> {
  return (await Deno.readTextFile(`${fake.procRoot}/irq/${irq}/smp_affinity_list`)).trim();
}

// ------------------------------------------------------------------------------------------ version table

for (const version of TEST_VERSIONS) {
  const rich = !version.startsWith("0.1") && !version.startsWith("0.2");
  const canCheck = version >= "0.4.0";
  // Both address sources: three rows take ipinfos (as Galaxy passes them), the rest host-local.
  const viaIpinfos = ["0.1.0", "0.2.0", "1.1.0"].includes(version);
  const net = 30 + TEST_VERSIONS.indexOf(version);

  kernelTest(
    `galaxy-k8s-sriov ${version}: ADD moves a VF in, IRQs, ping, CHECK, DEL gives it back`,
    async () => {
      console.log(SKIPPED);
      await withLab(`sriov${version.replaceAll(".", "")}`, async (lab) => {
        const fake = await fakeSriov(lab, 4);
        const pod = await lab.pod("pod");
        const gw = `198.18.${net}.1`;
        const containerId = `c${version.replaceAll(".", "")}sriov0001`;
        const ipam = viaIpinfos ? undefined : {
          ...hostLocalIpam(lab, `198.18.${net}.0/24`),
          routes: [{ dst: "0.0.0.0/0" }],
        };
        const conf = sriovConf(version, fake, {
          dns: { nameservers: ["198.18.0.53"] },
          ...(ipam ? { ipam } : {}),
        });
        const args = viaIpinfos ? ipinfos(`198.18.${net}.7/24`, { gateway: gw }) : undefined;
        const call = { containerId, netns: pod, args };
        const vf0 = (await link(lab, lab.node, "vf0"))!;

        const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call });
        assertOk(add, "ADD");
        const out = add.output!;
        const address = add.result!.ips![0].address;
        const ip = address.split("/")[0];
        if (viaIpinfos) assert.equal(address, `198.18.${net}.7/24`);
        else assert.match(address, new RegExp(`^198\\.18\\.${net}\\.\\d+/24$`));
        if (rich) {
          const iface = out.interfaces as Record<string, unknown>[];
          const expected: Record<string, unknown> = { name: "eth0", mac: vf0.address, sandbox: pod.path };
          if (version === "1.1.0") expected.pciID = pciOf(0);
          assert.deepEqual(iface, [expected]);
          const ips = out.ips as Record<string, unknown>[];
          assert.deepEqual(ips.map((i) => [i.address, i.gateway, i.interface]), [[address, gw, 0]]);
          if (version < "1.0.0") assert.equal(ips[0].version, "4");
          assert.deepEqual(out.routes, [{ dst: "0.0.0.0/0", gw }]);
        } else {
          assert.deepEqual(out.ip4, { ip: address, gateway: gw, routes: [{ dst: "0.0.0.0/0", gw }] });
        }
        assert.deepEqual(out.dns, { nameservers: ["198.18.0.53"] });

        // kernel: vf0 left the node and is eth0 in the pod, up, with its own MAC, address and default route
        assert.equal(await link(lab, lab.node, "vf0"), undefined, "vf0 is still on the node");
        const eth0 = (await link(lab, pod, "eth0"))!;
        assert.ok(eth0, "eth0 is missing in the pod");
        assert.equal(eth0.linkinfo?.info_kind, "veth");
        assert.equal(eth0.address, vf0.address, "eth0 is not the VF that was vf0");
        assert.ok(eth0.flags.includes("UP"));
        assert.deepEqual(await lab.addresses(pod, "eth0"), [address]);
        assert.ok(
          (await routes(lab, pod)).some((r) => r.dst === "default" && r.gateway === gw && r.dev === "eth0"),
          "no default route via the gateway",
        );
        // sysfs/procfs: VFs enabled (numvfs was 0), IRQ N → CPU N % 3, and the record names the VF
        assert.equal(await numVfs(fake), "4");
        for (const irq of fake.vfs[0].irqs) assert.equal(await affinity(fake, irq), String(irq % CPUS));
        assert.equal(await affinity(fake, fake.vfs[1].irqs[0]), "0-63", "another VF's IRQ was touched");
        assert.deepEqual(await records(fake), [`${containerId}@eth0`]);
        const rec = await record(fake, `${containerId}@eth0`);
        assert.deepEqual([rec.pf, rec.vf, rec.pciAddress, rec.vfName], [PF, 0, pciOf(0), "vf0"]);
        if (!viaIpinfos) assert.deepEqual(await reservations(lab, NETWORK), [ip]);

        // traffic through the "VF": the wire on the node plays the gateway
        await lab.ip(lab.node, ["addr", "add", `${gw}/24`, "dev", "vf0w"]);
        await lab.ip(lab.node, ["link", "set", "vf0w", "up"]);
        assert.ok(await ping(lab, pod, gw), "pod → gateway ping through the VF failed");

        const withPrev = rich ? withPrevResult(conf, add.result!) : conf;
        if (canCheck) {
          assertOk(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK");
          await lab.ip(pod, ["route", "del", "default"]);
          assertFails(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK", {
            msg: new RegExp(`route 0\\.0\\.0\\.0/0 via ${gw.replaceAll(".", "\\.")} is missing`),
          });
          await lab.ip(pod, ["addr", "del", address, "dev", "eth0"]);
          assertFails(await runBuiltin(lab, PLUGIN, { verb: "CHECK", conf: withPrev, ...call }), "CHECK", {
            msg: new RegExp(`address ${address.replaceAll(".", "\\.")} is missing on eth0`),
          });
        }

        const del = await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call });
        assertOk(del, "DEL");
        assert.match(del.stderr, /moved from .* back to the node as vf0/);
        const back = (await link(lab, lab.node, "vf0"))!;
        assert.equal(back?.address, vf0.address, "vf0 is not back on the node under its name");
        await assertAllHome(lab, fake, [pod]);
        assert.deepEqual(await reservations(lab, NETWORK), []);
        assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrev, ...call }), "second DEL");
        await assertAllHome(lab, fake, [pod]);
      });
    },
  );
}

// ------------------------------------------------------------------------------------------ the lock

kernelTest(
  "galaxy-k8s-sriov: four ADDs at once get four different VFs; four DELs give them back",
  async () => {
    console.log(SKIPPED);
    await withLab("sriovconc", async (lab) => {
      const fake = await fakeSriov(lab, 4);
      const pods = await Promise.all([0, 1, 2, 3].map((i) => lab.pod(`p${i}`)));
      const conf = sriovConf("1.1.0", fake);
      const calls = pods.map((pod, i) => ({
        containerId: `concurrent${i}`,
        netns: pod,
        args: ipinfos(`198.18.40.${10 + i}/24`, { gateway: "198.18.40.1" }),
      }));
      const adds = await Promise.all(
        calls.map((call) => runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...call })),
      );
      adds.forEach((a, i) => assertOk(a, `ADD ${i}`));
      const pcis = adds.map((a) => a.result!.interfaces![0].pciID as string);
      assert.deepEqual([...pcis].sort(), [0, 1, 2, 3].map(pciOf), `VFs handed out twice: ${pcis}`);
      for (const [i, pod] of pods.entries()) {
        assert.deepEqual(await lab.addresses(pod, "eth0"), [`198.18.40.${10 + i}/24`]);
      }
      assert.deepEqual((await nodeLinks(lab, "vf")).filter((n) => !n.endsWith("w")), []);
      assert.equal((await records(fake)).length, 4);
      const dels = await Promise.all(
        calls.map((call, i) =>
          runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrevResult(conf, adds[i].result!), ...call })
        ),
      );
      dels.forEach((d, i) => assertOk(d, `DEL ${i}`));
      await assertAllHome(lab, fake, pods);
    });
  },
);

kernelTest(
  "galaxy-k8s-sriov: vf_num limits the VFs; no free VF is a clear error that leaks nothing",
  async () => {
    console.log(SKIPPED);
    await withLab("sriovfull", async (lab) => {
      const fake = await fakeSriov(lab, 4);
      const pods = [await lab.pod("a"), await lab.pod("b"), await lab.pod("c")];
      const conf = sriovConf("1.0.0", fake, { vf_num: 2, ipam: hostLocalIpam(lab, "198.18.41.0/24") });
      for (const [i, pod] of pods.slice(0, 2).entries()) {
        assertOk(
          await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: `full${i}`, netns: pod }),
          "ADD",
        );
      }
      assert.equal(await numVfs(fake), "2", "sriov_numvfs is not min(total, vf_num)");
      const third = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "full2",
        netns: pods[2],
      });
      assertFails(third, "ADD with no free VF", {
        msg:
          /no free VF on gtpf0 \(2 usable\): virtfn0 \(0000:00:01\.0\): vf0 is not in the node namespace, in use; virtfn1 .*vf1 is not in the node namespace/,
      });
      assert.deepEqual(await lab.linkNames(pods[2]), ["lo"]);
      assert.deepEqual(await records(fake), ["full0@eth0", "full1@eth0"]);
      assert.equal((await reservations(lab, NETWORK)).length, 2, "the failed ADD kept its address");
      assert.ok(await link(lab, lab.node, "vf2"), "vf2 (beyond vf_num) was used");
      // once a VF comes back, the next ADD gets it
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "full0", netns: pods[0] }),
        "DEL",
      );
      const again = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "full2",
        netns: pods[2],
      });
      assertOk(again, "ADD after DEL");
      assert.equal((await record(fake, "full2@eth0")).pciAddress, pciOf(0));
      for (const [i, pod] of pods.entries()) {
        if (i === 0) continue;
        assertOk(
          await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: `full${i}`, netns: pod }),
          "DEL",
        );
      }
      await assertAllHome(lab, fake, pods);
      assert.deepEqual(await reservations(lab, NETWORK), []);
    });
  },
);

// ------------------------------------------------------------------------------------------ faults

kernelTest(
  'galaxy-k8s-sriov: vfVlan "pf" runs `ip link set <pf> vf <i> vlan <v>`; the veth PF refuses',
  async () => {
    console.log(`${SKIPPED}: a veth PF refuses the VLAN, so this ADD must fail and roll back`);
    await withLab("sriovvlan", async (lab) => {
      const fake = await fakeSriov(lab, 2);
      const pod = await lab.pod("pod");
      const conf = sriovConf("1.1.0", fake, { vfVlan: "pf" });
      const add = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "vlanpf001",
        netns: pod,
        args: ipinfos("198.18.42.5/24", { vlan: 100 }),
      });
      assertFails(add, "ADD through a veth PF", {
        msg: /set VLAN 100 of gtpf0 vf 0: .*"link set dev gtpf0 vf 0 vlan 100": .*Operation not supported/,
      });
      await assertAllHome(lab, fake, [pod]);
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "vlanpf001", netns: pod }),
        "DEL",
      );
      // with vfVlan "none" a tagged address cannot be honoured: refused, nothing touched
      const none = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf: sriovConf("1.1.0", fake),
        containerId: "vlanno001",
        netns: pod,
        args: ipinfos("198.18.42.6/24", { vlan: 100 }),
      });
      assertFails(none, "ADD of VLAN 100 with vfVlan none", {
        msg: /needs VLAN 100, but vfVlan is "none"/,
        code: 7,
      });
      await assertAllHome(lab, fake, [pod]);
    });
  },
);

kernelTest("galaxy-k8s-sriov: a failure after the move gives the VF back and releases IPAM", async () => {
  console.log(SKIPPED);
  await withLab("sriovrollback", async (lab) => {
    const fake = await fakeSriov(lab, 2);
    const pod = await lab.pod("pod");
    await lab.ip(pod, ["route", "add", "blackhole", "default"]);
    const ipam = { ...hostLocalIpam(lab, "198.18.43.0/24"), routes: [{ dst: "0.0.0.0/0" }] };
    const conf = sriovConf("1.0.0", fake, { ipam });
    const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "rollback1", netns: pod });
    assertFails(add, "ADD", {
      msg: /configure eth0 .*route add 0\.0\.0\.0\/0 via 198\.18\.43\.1 dev eth0.*File exists/,
    });
    assert.match(add.stderr, /rollback: VF 0000:00:01\.0 moved from .* back to the node as vf0/);
    await assertAllHome(lab, fake, []);
    assert.deepEqual(await lab.linkNames(pod), ["lo"]);
    assert.deepEqual(await reservations(lab, NETWORK), []);

    // the last step fails: an interrupt of the VF has no smp_affinity_list
    await lab.ip(pod, ["route", "del", "blackhole", "default"]);
    await Deno.remove(`${fake.procRoot}/irq/${fake.vfs[0].irqs[1]}`, { recursive: true });
    const irq = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "rollback2", netns: pod });
    assertFails(irq, "ADD with a missing IRQ", {
      msg: new RegExp(`IRQ affinity of gtpf0 vf 0: write 2 to ${fake.procRoot}/irq/41/smp_affinity_list`),
    });
    await assertAllHome(lab, fake, [pod]);
    assert.deepEqual(await reservations(lab, NETWORK), []);
  });
});

kernelTest("galaxy-k8s-sriov: failing IPAM leaves nothing and is asked to release", async () => {
  await withLab("sriovipamfail", async (lab) => {
    const fake = await fakeSriov(lab, 2);
    const pod = await lab.pod("pod");
    const fakeDir = await writeFakePlugins(`${lab.dir}/fake`, ["fake-ipam"]);
    const recordFile = `${lab.dir}/calls.jsonl`;
    const conf = sriovConf("1.0.0", fake, {
      ipam: { type: "fake-ipam" },
      recordFile,
      fail: { code: 11, msg: "pool is busy" },
      failOn: ["ADD"],
    });
    const add = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf,
      containerId: "ipamfail1",
      netns: pod,
      extraPath: [fakeDir],
    });
    assertFails(add, "ADD", { msg: /ipam fake-ipam: pool is busy/, code: 11 });
    await assertAllHome(lab, fake, [pod]);
    assert.equal(await numVfs(fake), "0", "VFs were enabled although IPAM failed first");
    assert.deepEqual((await readCalls(recordFile)).map((c) => c.verb), ["ADD", "DEL"]);
  });
});

kernelTest(
  "galaxy-k8s-sriov: DEL after the netns vanished finds the VF on the node by its PCI address",
  async () => {
    console.log(SKIPPED);
    await withLab("sriovvanish", async (lab) => {
      const fake = await fakeSriov(lab, 2);
      const conf = sriovConf("0.4.0", fake, { ipam: hostLocalIpam(lab, "198.18.44.0/24") });
      // 1: the pod namespace dies; a real VF returns to the node under its pod name (eth0)
      const pod = await lab.pod("pod");
      const add = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, containerId: "vanish001", netns: pod });
      assertOk(add, "ADD");
      await lab.removeNetns(pod); // the veth stand-in dies with it, so the kernel's hand-back is played here:
      await handBack(lab, fake, 0, "eth0");
      const del = await runBuiltin(lab, PLUGIN, {
        verb: "DEL",
        conf: withPrevResult(conf, add.result!),
        containerId: "vanish001",
        netns: pod.path,
      });
      assertOk(del, "DEL with a vanished netns");
      assert.match(del.stderr, /found on the node as eth0, renamed vf0/);
      assert.ok(await link(lab, lab.node, "vf0"), "vf0 is not back under its name");
      assert.equal(await link(lab, lab.node, "eth0"), undefined);
      await renameInSysfs(fake, 0, "eth0", "vf0");
      assert.deepEqual(await records(fake), []);
      assert.deepEqual(await reservations(lab, NETWORK), []);
      // 2: the VF does not come back at all, and the runtime passes no netns
      const pod2 = await lab.pod("pod2");
      const add2 = await runBuiltin(lab, PLUGIN, {
        verb: "ADD",
        conf,
        containerId: "vanish002",
        netns: pod2,
      });
      assertOk(add2, "ADD 2");
      assert.equal(add2.result!.interfaces![0].name, "eth0");
      await lab.removeNetns(pod2);
      const del2 = await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "vanish002", netns: "" });
      assertOk(del2, "DEL with an empty netns");
      assert.match(del2.stderr, /not found/);
      assert.deepEqual(await records(fake), []);
      assert.deepEqual(await reservations(lab, NETWORK), []);
      assertOk(
        await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "vanish002", netns: "" }),
        "DEL again",
      );
    });
  },
);

kernelTest("galaxy-k8s-sriov: DEL removes only its own VF; a missing interface is fine", async () => {
  console.log(SKIPPED);
  await withLab("sriovown", async (lab) => {
    const fake = await fakeSriov(lab, 3);
    const pod = await lab.pod("pod");
    await lab.ip(pod, ["link", "add", "net9", "type", "veth", "peer", "name", "net9peer"]);
    const conf = sriovConf("1.1.0", fake);
    const eth0 = { containerId: "own000001", netns: pod, ifname: "eth0", args: ipinfos("198.18.45.2/24") };
    const net1 = { containerId: "own000001", netns: pod, ifname: "net1", args: ipinfos("198.18.46.2/24") };
    const a0 = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...eth0 });
    assertOk(a0, "ADD eth0");
    const a1 = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...net1 });
    assertOk(a1, "ADD net1");
    assert.deepEqual(a1.result!.routes ?? [], [], "a route was added without a gateway");
    assert.deepEqual([a0, a1].map((a) => a.result!.interfaces![0].pciID), [pciOf(0), pciOf(1)]);
    const again = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...net1 });
    assertFails(again, "ADD of an existing interface", { msg: /interface net1 already exists/ });
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "DEL", conf: withPrevResult(conf, a1.result!), ...net1 }),
      "DEL",
    );
    assert.deepEqual((await lab.linkNames(pod)).sort(), ["eth0", "lo", "net9", "net9peer"]);
    assert.ok(await link(lab, lab.node, "vf1"), "vf1 is not back");
    assert.equal(await link(lab, lab.node, "vf0"), undefined, "vf0 left the pod with the other attachment");
    // the interface vanished from a live pod (here: deleted); DEL still succeeds and forgets the VF
    await lab.ip(pod, ["link", "del", "eth0"]);
    const del = await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...eth0 });
    assertOk(del, "DEL of a missing interface");
    assert.deepEqual(await records(fake), []);
    assert.deepEqual((await lab.linkNames(pod)).sort(), ["lo", "net9", "net9peer"]);
  });
});

kernelTest(
  "galaxy-k8s-sriov: a VF recorded for a dead pod is taken over; that pod's DEL leaves it",
  async () => {
    console.log(SKIPPED);
    await withLab("sriovstale", async (lab) => {
      const fake = await fakeSriov(lab, 1);
      const [podA, podB] = [await lab.pod("a"), await lab.pod("b")];
      const conf = sriovConf("1.1.0", fake);
      const a = { containerId: "staleaaaa", netns: podA, args: ipinfos("198.18.47.2/24") };
      const b = { containerId: "stalebbbb", netns: podB, args: ipinfos("198.18.47.3/24") };
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...a }), "ADD A");
      // pod A's namespace dies before its DEL: the VF comes back to the node as eth0
      await lab.removeNetns(podA);
      await handBack(lab, fake, 0, "eth0");
      const addB = await runBuiltin(lab, PLUGIN, { verb: "ADD", conf, ...b });
      assertOk(addB, "ADD B");
      assert.match(addB.stderr, /recorded for staleaaaa\/eth0 but is back on the node .*taking it/);
      assert.deepEqual(await records(fake), ["stalebbbb@eth0"]);
      assert.equal((await record(fake, "stalebbbb@eth0")).vfName, "eth0");
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...a, netns: podA.path }), "late DEL A");
      assert.ok(await link(lab, podB, "eth0"), "A's late DEL took B's VF");
      assertOk(await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, ...b }), "DEL B");
      assert.ok(await link(lab, lab.node, "eth0"), "the VF is not back under the name it had at B's ADD");
      assert.deepEqual(await records(fake), []);
    });
  },
);

kernelTest("galaxy-k8s-sriov: GC gives back the VFs of attachments no longer valid", async () => {
  console.log(SKIPPED);
  await withLab("sriovgc", async (lab) => {
    const fake = await fakeSriov(lab, 2);
    const [podA, podB] = [await lab.pod("a"), await lab.pod("b")];
    const conf = sriovConf("1.1.0", fake);
    for (
      const [cid, pod, ip] of [["gckeep001", podA, "198.18.48.2/24"], ["gcdrop001", podB, "198.18.48.3/24"]]
    ) {
      assertOk(
        await runBuiltin(lab, PLUGIN, {
          verb: "ADD",
          conf,
          containerId: cid as string,
          netns: pod as Netns,
          args: ipinfos(ip as string),
        }),
        `ADD ${cid}`,
      );
    }
    const gcConf = { ...conf, "cni.dev/valid-attachments": [{ containerID: "gckeep001", ifname: "eth0" }] };
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "GC", conf: gcConf }), "GC");
    assert.deepEqual(await records(fake), ["gckeep001@eth0"]);
    assert.deepEqual(await lab.linkNames(podB), ["lo"], "the stale attachment's VF is still in its pod");
    assert.ok(await link(lab, lab.node, "vf1"));
    assert.ok(await link(lab, podA, "eth0"), "GC touched a valid attachment");
    // another network's GC does not touch this network's records
    assertOk(
      await runBuiltin(lab, PLUGIN, {
        verb: "GC",
        conf: { ...gcConf, name: "other", "cni.dev/valid-attachments": [] },
      }),
      "GC other",
    );
    assert.deepEqual(await records(fake), ["gckeep001@eth0"]);
    assertOk(
      await runBuiltin(lab, PLUGIN, { verb: "DEL", conf, containerId: "gckeep001", netns: podA }),
      "DEL",
    );
    await assertAllHome(lab, fake, [podA, podB]);
  });
});

kernelTest("galaxy-k8s-sriov: bad config, a missing PF, a non-SR-IOV device and STATUS", async () => {
  await withLab("sriovbad", async (lab) => {
    const fake = await fakeSriov(lab, 1);
    const pod = await lab.pod("pod");
    const call = { containerId: "badconf01", netns: pod, args: ipinfos("198.18.49.2/24") };
    const bad = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: sriovConf("1.0.0", fake, {
        device: undefined,
        vf_num: "two",
        sysfsRoot: "sys",
        vfVlan: "switch",
      }),
      ...call,
    });
    assertFails(bad, "ADD with bad config", {
      msg:
        /device: required.*vf_num: must be an integer.*vfVlan: must be "pf" or "none".*sysfsRoot: must be an absolute path/,
      code: 7,
    });
    const missing = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: sriovConf("1.0.0", fake, { device: "gtnope" }),
      ...call,
    });
    assertFails(missing, "ADD with a missing PF", { msg: /PF gtnope \(device\) does not exist/ });
    const plain = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: sriovConf("1.0.0", fake, { device: "vf0w" }),
      ...call,
    });
    assertFails(plain, "ADD on a device without SR-IOV", {
      msg: /vf0w is not an SR-IOV PF: .*sriov_totalvfs is missing/,
    });
    const gone = await runBuiltin(lab, PLUGIN, {
      verb: "ADD",
      conf: sriovConf("1.0.0", fake),
      ...call,
      netns: `${pod.path}-missing`,
    });
    assertFails(gone, "ADD into a missing netns", { msg: /does not exist/, code: 3 });
    await assertAllHome(lab, fake, [pod]);
    assertOk(await runBuiltin(lab, PLUGIN, { verb: "STATUS", conf: sriovConf("1.1.0", fake) }), "STATUS");
    const down = await runBuiltin(lab, PLUGIN, {
      verb: "STATUS",
      conf: sriovConf("1.1.0", fake, { device: "gtnope" }),
    });
    assertFails(down, "STATUS without the PF", { msg: /gtnope/, code: 50 });
    const version = await runBuiltin(lab, PLUGIN, { verb: "VERSION", conf: {} });
    assert.deepEqual(JSON.parse(version.stdout).supportedVersions, [
      "0.1.0",
      "0.2.0",
      "0.3.0",
      "0.3.1",
      "0.4.0",
      "1.0.0",
      "1.1.0",
    ]);
  });
});
