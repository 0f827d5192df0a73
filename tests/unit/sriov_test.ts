/**
 * The parts of galaxy-k8s-sriov that need no kernel: reading a (fake) sysfs tree, CPU lists and IRQ spreading,
 * the text of the VF VLAN batch (which cannot run here: there is no SR-IOV PF), the PF's VF VLAN report, the
 * choice of a free VF, the configuration, and the lock and attachment records.
 * @module
 */
import assert from "node:assert/strict";
import { plugin } from "../../cni/plugins/k8s_sriov.ts";
import { withFileLock } from "../../cni/plugins/kit/file_lock.ts";
import { DEFAULT_VF_NUM, parseConf } from "../../cni/plugins/kit/sriov_conf.ts";
import {
  attachmentFileName,
  DEFAULT_LOCK_DIR,
  listAttachments,
  readAttachment,
  removeAttachment,
  type SriovAttachment,
  writeAttachment,
} from "../../cni/plugins/kit/sriov_state.ts";
import { chooseVf } from "../../cni/plugins/kit/sriov_vf.ts";
import { handle } from "../../cni/skel.ts";
import { CniError, ErrorCode } from "../../cni/version.ts";
import { batchText, IfNameError } from "../../netops/ip.ts";
import {
  irqAffinities,
  isPciAddress,
  listVirtFns,
  onlineCpus,
  parseCpuList,
  parseVfVlans,
  pciNetdevs,
  readSriovCounts,
  setIrqAffinities,
  setNumVfs,
  vfIrqs,
  vfVlanOps,
  type VirtFn,
} from "../../netops/sriov.ts";

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-sriov-unit-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A fake sysfs: PF `ens1f0` with virtfn0 (netdev vf0), virtfn1 (none: in a pod), virtfn3 (two netdevs). */
async function fakeTree(root: string): Promise<void> {
  const dev = `${root}/sys/class/net/ens1f0/device`;
  await Deno.mkdir(dev, { recursive: true });
  await Deno.writeTextFile(`${dev}/sriov_totalvfs`, "8\n");
  await Deno.writeTextFile(`${dev}/sriov_numvfs`, "0\n");
  const vfs: [number, string[], number[]][] = [[0, ["vf0"], [100, 9, 10]], [1, [], [11]], [
    3,
    ["b", "a"],
    [],
  ]];
  for (const [i, netdevs, irqs] of vfs) {
    const pci = `${root}/sys/bus/pci/devices/0000:3b:02.${i}`;
    await Deno.mkdir(`${pci}/net`, { recursive: true });
    for (const n of netdevs) await Deno.mkdir(`${pci}/net/${n}`);
    await Deno.mkdir(`${pci}/msi_irqs`);
    for (const irq of irqs) await Deno.writeTextFile(`${pci}/msi_irqs/${irq}`, "msix\n");
    // real sysfs links are relative: virtfn0 -> ../0000:3b:02.0
    await Deno.symlink(`../../../../bus/pci/devices/0000:3b:02.${i}`, `${dev}/virtfn${i}`);
  }
}

// ------------------------------------------------------------------------------------------ sysfs

Deno.test("readSriovCounts / setNumVfs: the PF's counts; undefined without SR-IOV; junk is an error", async () => {
  await withTempDir(async (dir) => {
    await fakeTree(dir);
    const sysfsRoot = `${dir}/sys`;
    assert.deepEqual(await readSriovCounts("ens1f0", { sysfsRoot }), { totalVfs: 8, numVfs: 0 });
    await setNumVfs("ens1f0", 4, { sysfsRoot });
    assert.equal(await Deno.readTextFile(`${sysfsRoot}/class/net/ens1f0/device/sriov_numvfs`), "4");
    assert.deepEqual(await readSriovCounts("ens1f0", { sysfsRoot }), { totalVfs: 8, numVfs: 4 });
    assert.equal(await readSriovCounts("eth9", { sysfsRoot }), undefined);
    await Deno.writeTextFile(`${sysfsRoot}/class/net/ens1f0/device/sriov_totalvfs`, "lots\n");
    await assert.rejects(readSriovCounts("ens1f0", { sysfsRoot }), /sriov_totalvfs: expected a number/);
    await assert.rejects(setNumVfs("eth9", 1, { sysfsRoot }), Deno.errors.NotFound);
    await assert.rejects(readSriovCounts("a/../../etc", { sysfsRoot }), IfNameError);
  });
});

Deno.test("listVirtFns: PCI address from the virtfn link, netdevs in byte order, missing virtfns left out", async () => {
  await withTempDir(async (dir) => {
    await fakeTree(dir);
    const sysfsRoot = `${dir}/sys`;
    assert.deepEqual(await listVirtFns("ens1f0", 8, { sysfsRoot }), [
      { index: 0, pciAddress: "0000:3b:02.0", netdevs: ["vf0"] },
      { index: 1, pciAddress: "0000:3b:02.1", netdevs: [] },
      { index: 3, pciAddress: "0000:3b:02.3", netdevs: ["a", "b"] },
    ]);
    assert.deepEqual((await listVirtFns("ens1f0", 1, { sysfsRoot })).map((v) => v.index), [0]);
    assert.deepEqual(await pciNetdevs("0000:3b:02.3", { sysfsRoot }), ["a", "b"]);
    assert.deepEqual(await pciNetdevs("0000:3b:02.7", { sysfsRoot }), []);
    await assert.rejects(pciNetdevs("../../etc", { sysfsRoot }), /not a PCI address/);
    await Deno.symlink(`${dir}/elsewhere`, `${sysfsRoot}/class/net/ens1f0/device/virtfn5`);
    await assert.rejects(
      listVirtFns("ens1f0", 8, { sysfsRoot }),
      /virtfn5 points to .*elsewhere, which is not a PCI/,
    );
  });
});

Deno.test("isPciAddress: domain:bus:device.function", () => {
  assert.ok(isPciAddress("0000:3b:02.0"));
  assert.ok(isPciAddress("10000:00:1f.7"));
  assert.ok(!isPciAddress("0000:3b:02.8"));
  assert.ok(!isPciAddress("3b:02.0"));
  assert.ok(!isPciAddress("0000:3b:02.0/../x"));
});

Deno.test("vfIrqs: numeric order; none when msi_irqs is missing", async () => {
  await withTempDir(async (dir) => {
    await fakeTree(dir);
    const sysfsRoot = `${dir}/sys`;
    assert.deepEqual(await vfIrqs("ens1f0", 0, { sysfsRoot }), [9, 10, 100]);
    assert.deepEqual(await vfIrqs("ens1f0", 3, { sysfsRoot }), []);
    assert.deepEqual(await vfIrqs("ens1f0", 2, { sysfsRoot }), []);
  });
});

Deno.test("parseCpuList: ranges and singles; junk and reversed ranges are errors", () => {
  assert.deepEqual(parseCpuList("0-3\n"), [0, 1, 2, 3]);
  assert.deepEqual(parseCpuList("0-1,4,6-7"), [0, 1, 4, 6, 7]);
  assert.deepEqual(parseCpuList("2"), [2]);
  assert.deepEqual(parseCpuList(" \n"), []);
  assert.throws(() => parseCpuList("0-"), /invalid CPU list/);
  assert.throws(() => parseCpuList("3-1"), /invalid CPU range 3-1/);
});

Deno.test("irqAffinities: IRQ N goes to CPU N % numCPU, as an index into the online CPUs", () => {
  assert.deepEqual(irqAffinities([40, 41, 42], [0, 1, 2]), [
    { irq: 40, cpu: 1 },
    { irq: 41, cpu: 2 },
    { irq: 42, cpu: 0 },
  ]);
  // with holes in the list an offline CPU is never named
  assert.deepEqual(irqAffinities([42, 43], [0, 1, 8, 9]), [{ irq: 42, cpu: 8 }, { irq: 43, cpu: 9 }]);
  assert.throws(() => irqAffinities([1], []), RangeError);
});

Deno.test("onlineCpus: from devices/system/cpu/online, else 0..n-1 for this process", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/devices/system/cpu`, { recursive: true });
    await Deno.writeTextFile(`${dir}/devices/system/cpu/online`, "0-2,5\n");
    assert.deepEqual(await onlineCpus({ sysfsRoot: dir }), [0, 1, 2, 5]);
    const fallback = await onlineCpus({ sysfsRoot: `${dir}/none` });
    assert.deepEqual(fallback, Array.from({ length: navigator.hardwareConcurrency }, (_, i) => i));
  });
});

Deno.test("setIrqAffinities: writes smp_affinity_list under procRoot; a missing IRQ names its file", async () => {
  await withTempDir(async (dir) => {
    for (const irq of [9, 10]) {
      await Deno.mkdir(`${dir}/irq/${irq}`, { recursive: true });
      await Deno.writeTextFile(`${dir}/irq/${irq}/smp_affinity_list`, "0-63\n");
    }
    await setIrqAffinities([{ irq: 9, cpu: 0 }, { irq: 10, cpu: 1 }], { procRoot: dir });
    assert.equal(await Deno.readTextFile(`${dir}/irq/9/smp_affinity_list`), "0");
    assert.equal(await Deno.readTextFile(`${dir}/irq/10/smp_affinity_list`), "1");
    await assert.rejects(
      setIrqAffinities([{ irq: 11, cpu: 2 }], { procRoot: dir }),
      new RegExp(`write 2 to ${dir}/irq/11/smp_affinity_list`),
    );
  });
});

// ------------------------------------------------------------------------------------------ VF VLAN

Deno.test("vfVlanOps: `link set dev <pf> vf <i> vlan <v>` (the kernel part cannot run without a PF)", () => {
  console.log("skipped kernel part: no SR-IOV PF on this machine (vf vlan via the PF)");
  assert.equal(batchText(vfVlanOps("ens1f0", { vf: 3, vlan: 100 })), "link set dev ens1f0 vf 3 vlan 100\n");
  assert.equal(batchText(vfVlanOps("ens1f0", { vf: 0, vlan: 0 })), "link set dev ens1f0 vf 0 vlan 0\n");
  assert.throws(() => vfVlanOps("ens1f0", { vf: 0, vlan: 4095 }), /VLAN must be 0–4094/);
  assert.throws(() => vfVlanOps("ens1f0", { vf: -1, vlan: 1 }), /VF index/);
  assert.throws(() => vfVlanOps("a name", { vf: 0, vlan: 1 }), IfNameError);
});

Deno.test("parseVfVlans: vlan_list, the older vlan key, untagged VFs, devices without VFs", () => {
  const json = [{
    ifname: "ens1f0",
    vfinfo_list: [
      { vf: 0, address: "02:00:00:00:00:01", vlan_list: [{ vlan: 100 }] },
      { vf: 1, address: "02:00:00:00:00:02", vlan: 200 },
      { vf: 2, address: "02:00:00:00:00:03" },
    ],
  }];
  assert.deepEqual([...parseVfVlans(json)], [[0, 100], [1, 200], [2, 0]]);
  assert.deepEqual([...parseVfVlans([{ ifname: "veth0" }])], []);
  assert.deepEqual([...parseVfVlans(null)], []);
});

// ------------------------------------------------------------------------------------------ choosing

function attachment(overrides: Partial<SriovAttachment> = {}): SriovAttachment {
  return {
    network: "sriov",
    containerId: "c1",
    ifname: "eth0",
    netns: "/var/run/netns/p1",
    pf: "ens1f0",
    vf: 0,
    pciAddress: "0000:3b:02.0",
    vfName: "vf0",
    mac: "02:00:00:00:00:01",
    vlan: 0,
    vlanViaPf: true,
    addresses: ["198.18.0.2/24"],
    routes: [{ dst: "0.0.0.0/0", gw: "198.18.0.1" }],
    ...overrides,
  };
}

const VFS: VirtFn[] = [
  { index: 0, pciAddress: "0000:3b:02.0", netdevs: [] },
  { index: 1, pciAddress: "0000:3b:02.1", netdevs: ["vf1"] },
  { index: 2, pciAddress: "0000:3b:02.2", netdevs: ["vf2", "x"] },
  { index: 3, pciAddress: "0000:3b:02.3", netdevs: ["vf3"] },
  { index: 4, pciAddress: "0000:3b:02.4", netdevs: ["vf4"] },
];

Deno.test("chooseVf: the first VF with exactly one netdev that is in the node namespace", () => {
  const { choice } = chooseVf(VFS, { nodeLinks: new Set(["vf3", "vf4", "eth0"]), attachments: [] });
  assert.deepEqual(choice, { vf: VFS[3], name: "vf3", stale: [] });
});

Deno.test("chooseVf: a VF a record names but that is back on the node comes last, with its records", () => {
  const stale = attachment({ containerId: "dead", pciAddress: "0000:3b:02.3", vf: 3 });
  const nodeLinks = new Set(["vf3", "vf4"]);
  assert.equal(chooseVf(VFS, { nodeLinks, attachments: [stale] }).choice?.name, "vf4");
  const only = chooseVf(VFS, { nodeLinks: new Set(["vf3"]), attachments: [stale] }).choice;
  assert.deepEqual(only, { vf: VFS[3], name: "vf3", stale: [stale] });
});

Deno.test("chooseVf: no free VF gives a reason for every VF", () => {
  const { choice, reasons } = chooseVf(VFS, { nodeLinks: new Set(["eth0"]), attachments: [] });
  assert.equal(choice, undefined);
  assert.deepEqual(reasons, [
    "virtfn0 (0000:3b:02.0): no netdev on the node, in use",
    "virtfn1 (0000:3b:02.1): vf1 is not in the node namespace, in use",
    "virtfn2 (0000:3b:02.2): 2 netdevs (vf2, x)",
    "virtfn3 (0000:3b:02.3): vf3 is not in the node namespace, in use",
    "virtfn4 (0000:3b:02.4): vf4 is not in the node namespace, in use",
  ]);
  assert.deepEqual(chooseVf([], { nodeLinks: new Set(), attachments: [] }).reasons, ["no virtfn entries"]);
});

// ------------------------------------------------------------------------------------------ configuration

Deno.test("parseConf: defaults (vf_num 256, vfVlan pf, /sys, /proc, the lock folder)", () => {
  assert.deepEqual(parseConf({ type: "galaxy-k8s-sriov", device: "ens1f0" }), {
    device: "ens1f0",
    vfNum: DEFAULT_VF_NUM,
    vfVlan: "pf",
    sysfsRoot: "/sys",
    procRoot: "/proc",
    lockDir: DEFAULT_LOCK_DIR,
  });
  assert.equal(DEFAULT_VF_NUM, 256);
  assert.equal(DEFAULT_LOCK_DIR, "/var/lib/cni/galaxy/sriov");
  const conf = parseConf({
    device: "ens1f0",
    vf_num: 0,
    vfVlan: "none",
    sysfsRoot: "/tmp/sys/",
    procRoot: "/tmp/proc",
    lockDir: "/run/x",
    dns: { nameservers: ["198.18.0.53"] },
  });
  assert.equal(conf.vfNum, 256, "vf_num ≤ 0 means the default, as in Galaxy");
  assert.equal(conf.sysfsRoot, "/tmp/sys");
  assert.equal(conf.vfVlan, "none");
  assert.deepEqual(conf.dns, { nameservers: ["198.18.0.53"] });
  assert.equal(parseConf({ device: "ens1f0", vf_num: 4 }).vfNum, 4);
});

Deno.test("parseConf: every problem named, code 7", () => {
  assert.throws(
    () =>
      parseConf({
        device: "a-name-longer-than-15",
        vf_num: 1.5,
        vfVlan: true,
        sysfsRoot: "sys",
        procRoot: 7,
        lockDir: "",
        dns: [],
      }),
    (e) => {
      assert.ok(e instanceof CniError);
      assert.equal(e.code, ErrorCode.InvalidNetworkConfig);
      assert.match(
        e.message,
        /^galaxy-k8s-sriov: invalid config: device: interface name "a-name-longer-than-15"/,
      );
      for (const key of ["vf_num", "vfVlan", "sysfsRoot", "procRoot", "lockDir", "dns"]) {
        assert.match(e.message, new RegExp(`; ${key}: `));
      }
      return true;
    },
  );
  assert.throws(() => parseConf({}), /device: required/);
});

Deno.test("plugin: galaxy-k8s-sriov speaks every version and has every verb", () => {
  assert.equal(plugin.name, "galaxy-k8s-sriov");
  assert.equal(plugin.supportedVersions, undefined, "all seven versions");
  for (const verb of ["add", "del", "check", "status", "gc"] as const) {
    assert.equal(typeof plugin[verb], "function");
  }
});

Deno.test("plugin: GC without cni.dev/valid-attachments is code 7 before any record is looked at", async () => {
  await withTempDir(async (dir) => {
    const config = {
      cniVersion: "1.1.0",
      name: "sriov-net",
      type: "galaxy-k8s-sriov",
      device: "ens1f0",
      lockDir: dir,
    };
    const out = await handle(
      plugin,
      { CNI_COMMAND: "GC", CNI_PATH: "/nonexistent" },
      new TextEncoder().encode(JSON.stringify(config)),
    );
    assert.equal(out.exitCode, 1);
    const err = JSON.parse(out.stdout);
    assert.equal(err.code, 7, err.msg);
    assert.match(err.msg, /cni\.dev\/valid-attachments/);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "GC took the lock or touched records");
  });
});

// ------------------------------------------------------------------------------------------ records, lock

Deno.test("attachment records: written atomically, read back, listed, removed; corrupt ones reported", async () => {
  await withTempDir(async (dir) => {
    const lockDir = `${dir}/state/sriov`;
    assert.equal(attachmentFileName("abc_1.x", "net1"), "abc_1.x@net1.json");
    assert.throws(() => attachmentFileName("a@b", "eth0"), /CNI_CONTAINERID/);
    assert.equal(await readAttachment(lockDir, { containerId: "c1", ifname: "eth0" }), undefined);
    assert.deepEqual(await listAttachments(lockDir), { attachments: [], corrupt: [] });
    const a = attachment();
    const b = attachment({ containerId: "c2", vf: 1, pciAddress: "0000:3b:02.1", vfName: "vf1" });
    await writeAttachment(lockDir, a);
    await writeAttachment(lockDir, b);
    assert.deepEqual(await readAttachment(lockDir, a), a);
    const names = [];
    for await (const e of Deno.readDir(lockDir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["c1@eth0.json", "c2@eth0.json"], "a temporary file was left");
    assert.equal((await Deno.stat(`${lockDir}/c1@eth0.json`)).mode! & 0o777, 0o600);
    await Deno.writeTextFile(`${lockDir}/c3@eth0.json`, '{"containerId": 3}');
    assert.deepEqual(await listAttachments(lockDir), {
      attachments: [a, b],
      corrupt: [`${lockDir}/c3@eth0.json`],
    });
    await assert.rejects(readAttachment(lockDir, { containerId: "c3", ifname: "eth0" }), /corrupt .*network/);
    await removeAttachment(lockDir, a);
    await removeAttachment(lockDir, a);
    assert.equal(await readAttachment(lockDir, a), undefined);
  });
});

Deno.test("withFileLock: one holder at a time; a waiter times out with code 11 naming the holder", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/locks/lock`;
    const order: string[] = [];
    await withFileLock(path, async () => {
      order.push("outer");
      // flock is per open file: a second open of the same file, even in this process, has to wait
      await assert.rejects(
        withFileLock(path, () => Promise.resolve(order.push("inner")), { timeoutMs: 60 }),
        (e) => {
          assert.ok(e instanceof CniError);
          assert.equal(e.code, ErrorCode.TryAgainLater);
          assert.match(e.message, new RegExp(`lock ${path} still held by pid ${Deno.pid} after 60 ms`));
          return true;
        },
      );
    });
    // released: the next one gets it at once, and a throwing body releases it too
    await assert.rejects(withFileLock(path, () => Promise.reject(new Error("boom"))), /boom/);
    assert.equal(await withFileLock(path, () => Promise.resolve("free"), { timeoutMs: 60 }), "free");
    assert.deepEqual(order, ["outer"]);
  });
});

Deno.test("withFileLock: a waiter gets the lock once the holder lets go", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/lock`;
    const events: string[] = [];
    let waiter: Promise<void> | undefined;
    await withFileLock(path, async () => {
      events.push("first in");
      waiter = withFileLock(path, () => Promise.resolve(void events.push("second in")), { timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 50));
      events.push("first out");
    });
    await waiter;
    assert.deepEqual(events, ["first in", "first out", "second in"]);
  });
});
