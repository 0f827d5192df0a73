/**
 * netops/ against the real kernel: batches run inside a lab's node namespace through the setns workers, links
 * moved into pod namespaces, addresses, routes, rules and neighbours read back with our readers and with
 * `ip -j`, traffic across the veth, sysctls that land only in the namespace asked for, worker reuse, and the
 * not-found error for a vanished namespace. Every change happens inside namespaces made by the lab; addresses
 * come from 198.18.0.0/15.
 * @module
 */
import assert from "node:assert/strict";
import { kernelTest, type Lab, type Netns, withLab } from "../helpers/netns.ts";
import {
  configureNetnsWorkers,
  inNetns,
  NetnsError,
  NetnsNotFoundError,
  netnsWorkerStats,
  readNetnsFiles,
  runCommands,
  shutdownNetnsWorkers,
} from "../../netops/netns.ts";
import {
  addrAdd,
  addrDel,
  batchText,
  customOp,
  getLink,
  type IpBatchError,
  type IpOp,
  linkAddBridge,
  linkAddDummy,
  linkAddIpvlan,
  linkAddMacvlan,
  linkAddVeth,
  linkAddVlan,
  linkDel,
  linkSet,
  listAddrs,
  listLinks,
  listNeighbours,
  listRoutes,
  listRules,
  neighAdd,
  neighReplace,
  routeAdd,
  ruleAdd,
  ruleDel,
  runBatch,
  runBatchThenLink,
} from "../../netops/ip.ts";
import { getHostSysctls, getSysctls, setSysctls, SysctlError } from "../../netops/sysctl.ts";
import { sendGratuitousArp } from "../../netops/arping.ts";

// These tests are about the worker pool; processes use nsenter unless they opt in.
configureNetnsWorkers({ executor: "worker" });

const POD_MAC = "02:42:c6:12:00:02";

/** Node end `vh-nt` (198.18.0.1) in the lab's node namespace, pod end `eth0` (198.18.0.2) in `pod`. */
async function wireVeth(lab: Lab, pod: Netns): Promise<string> {
  await runBatch(lab.node.path, [
    linkAddVeth("vh-nt", "vs-nt", { peerNetns: pod.path, mtu: 1400 }),
    linkSet("vh-nt", { up: true }),
    addrAdd("198.18.0.1/32", "vh-nt"),
    routeAdd({ dst: "198.18.0.2/32", dev: "vh-nt", scope: "link", src: "198.18.0.1" }),
  ]);
  const nodeEnd = await getLink(lab.node.path, "vh-nt");
  assert.ok(nodeEnd?.address, "the node end exists and has a MAC");
  await runBatch(pod.path, [
    linkSet("vs-nt", { name: "eth0", address: POD_MAC, up: true }),
    addrAdd("198.18.0.2/32", "eth0"),
    routeAdd({ dst: "198.18.0.1", dev: "eth0", scope: "link" }),
    routeAdd({ dst: "default", gw: "198.18.0.1", dev: "eth0" }),
    neighAdd({ ip: "198.18.0.1", lladdr: nodeEnd.address, dev: "eth0", nud: "permanent" }),
  ]);
  return nodeEnd.address;
}

function errorOf<T extends Error>(cls: abstract new (...args: never[]) => T) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    return true;
  };
}

kernelTest("netops: veth across namespaces by batch, read back, ping", async () => {
  await withLab("netopsveth", async (lab) => {
    const pod = await lab.pod("p1");
    const nodeMac = await wireVeth(lab, pod);

    // node side: our readers and ip -j agree
    const nodeEnd = await getLink(lab.node.path, "vh-nt");
    assert.equal(nodeEnd?.kind, "veth");
    assert.equal(nodeEnd?.mtu, 1400);
    assert.equal(nodeEnd?.up, true);
    assert.equal(typeof nodeEnd?.linkNetnsId, "number", "the peer lives in another namespace");
    assert.deepEqual((await listLinks(lab.node.path)).map((l) => l.name).sort(), ["lo", "vh-nt"]);
    const nodeRoutes = await listRoutes(lab.node.path);
    assert.deepEqual(
      nodeRoutes.map((r) => [r.dst, r.dev, r.scope, r.prefsrc, r.table]),
      [["198.18.0.2", "vh-nt", "link", "198.18.0.1", "main"]],
    );
    assert.deepEqual(
      (await lab.ipJson<{ dst: string; dev: string }[]>(lab.node, ["route", "show"])).map((r) =>
        `${r.dst} ${r.dev}`
      ),
      ["198.18.0.2 vh-nt"],
    );

    // pod side: the peer was created in the pod, renamed, re-addressed and brought up
    assert.equal(await getLink(pod.path, "vs-nt"), undefined);
    const eth0 = await getLink(pod.path, "eth0");
    assert.ok(eth0);
    assert.deepEqual([eth0.kind, eth0.mtu, eth0.address, eth0.up], ["veth", 1400, POD_MAC, true]);
    const raw = await lab.ipJson<{ ifname: string; mtu: number; address: string; flags: string[] }[]>(pod, [
      "link",
      "show",
      "eth0",
    ]);
    assert.deepEqual([raw[0].ifname, raw[0].mtu, raw[0].address, raw[0].flags.includes("UP")], [
      "eth0",
      1400,
      POD_MAC,
      true,
    ]);
    assert.deepEqual(await lab.addresses(pod, "eth0"), ["198.18.0.2/32"]);
    assert.deepEqual(
      (await listAddrs(pod.path, { dev: "eth0", family: 4 })).map((a) => [a.cidr, a.scope, a.dev]),
      [
        ["198.18.0.2/32", "global", "eth0"],
      ],
    );
    const routes = await listRoutes(pod.path);
    assert.deepEqual(routes.map((r) => [r.dst, r.gateway, r.dev, r.scope]).sort(), [
      ["198.18.0.1", undefined, "eth0", "link"],
      ["default", "198.18.0.1", "eth0", undefined],
    ]);
    const neigh = await listNeighbours(pod.path, { dev: "eth0" });
    assert.deepEqual(neigh, [{ ip: "198.18.0.1", dev: "eth0", lladdr: nodeMac, state: ["PERMANENT"] }]);
    const rawNeigh = await lab.ipJson<{ dst: string; lladdr: string; state: string[] }[]>(pod, [
      "neigh",
      "show",
    ]);
    assert.deepEqual(rawNeigh.map((n) => [n.dst, n.lladdr, n.state]), [["198.18.0.1", nodeMac, [
      "PERMANENT",
    ]]]);

    // traffic both ways
    await lab.exec(pod, "ping", ["-c", "1", "-W", "2", "198.18.0.1"]);
    await lab.exec(lab.node, "ping", ["-c", "1", "-W", "2", "198.18.0.2"]);

    // policy routing: a rule and a route in table 100 (onlink), read back, then removed
    await runBatch(pod.path, [
      ruleAdd({ from: "198.18.0.2/32", table: 100, priority: 1000 }),
      ruleAdd({ to: "198.18.8.0/24", table: 100, priority: 1001 }),
      routeAdd({ dst: "198.18.4.0/24", gw: "198.18.0.1", dev: "eth0", onlink: true, table: 100 }),
    ]);
    const rules = await listRules(pod.path);
    assert.deepEqual(rules.filter((r) => r.table === "100"), [
      { priority: 1000, table: "100", from: "198.18.0.2/32" },
      { priority: 1001, table: "100", to: "198.18.8.0/24" },
    ]);
    const t100 = await listRoutes(pod.path, { table: 100 });
    assert.deepEqual(t100.map((r) => [r.dst, r.gateway, r.dev, r.table, r.flags]), [
      ["198.18.4.0/24", "198.18.0.1", "eth0", "100", ["onlink"]],
    ]);
    const rawRules = await lab.ipJson<{ priority: number; table: string }[]>(pod, ["rule", "show"]);
    assert.ok(rawRules.some((r) => r.priority === 1000 && r.table === "100"));
    await runBatch(pod.path, [ruleDel({ from: "198.18.0.2/32", table: 100, priority: 1000 })]);
    assert.deepEqual((await listRules(pod.path)).filter((r) => r.table === "100").map((r) => r.priority), [
      1001,
    ]);

    // a failing line: the batch stops there and the error names the line; -force runs the rest
    await assert.rejects(
      runBatch(pod.path, [addrAdd("198.18.0.2/32", "eth0"), addrAdd("198.18.0.3/32", "eth0")]),
      (err) => {
        const e = err as IpBatchError;
        assert.equal(e.name, "IpBatchError");
        assert.equal(e.netns, pod.path);
        assert.deepEqual(e.failures.map((f) => [f.line, f.command]), [[
          1,
          "addr add 198.18.0.2/32 dev eth0",
        ]]);
        assert.match(
          e.message,
          /line 1 "addr add 198.18.0.2\/32 dev eth0": .*(already assigned|File exists)/,
        );
        return true;
      },
    );
    assert.deepEqual(
      await lab.addresses(pod, "eth0"),
      ["198.18.0.2/32"],
      "nothing after the failed line ran",
    );
    await assert.rejects(
      runBatch(pod.path, [addrAdd("198.18.0.2/32", "eth0"), addrAdd("198.18.0.3/32", "eth0")], {
        force: true,
      }),
      /line 1/,
    );
    assert.deepEqual(
      await lab.addresses(pod, "eth0"),
      ["198.18.0.2/32", "198.18.0.3/32"],
      "-force ran line 2",
    );

    // deleting the node end removes the pair from both namespaces
    await runBatch(lab.node.path, [linkDel("vh-nt")]);
    assert.equal(await getLink(lab.node.path, "vh-nt"), undefined);
    assert.deepEqual(await lab.linkNames(pod), ["lo"]);
  });
});

kernelTest("netops: sysctls are written inside the pod namespace only", async () => {
  await withLab("netopssysctl", async (lab) => {
    const pod = await lab.pod("p1");
    await runBatch(pod.path, [linkAddVeth("vx.5", "vy.5")]);
    const files = ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/ip_local_port_range"];
    const keys = ["net.ipv4.ip_forward", "net.ipv4.ip_local_port_range", "net.ipv4.conf.all.rp_filter"];
    const nodeBefore = await lab.exec(lab.node, "cat", files);
    const hostBefore = await getHostSysctls(keys); // read-only look at the test process's own namespace

    const skipped = await setSysctls(pod.path, {
      "net.ipv4.ip_forward": "1",
      "net.ipv4.ip_local_port_range": "40000 50000",
      "net.ipv4.conf.vx/5.rp_filter": "2",
    });
    assert.deepEqual(skipped, []);
    assert.equal(
      await lab.exec(pod, "cat", [...files, "/proc/sys/net/ipv4/conf/vx.5/rp_filter"]),
      "1\n40000\t50000\n2\n",
    );
    assert.equal(await lab.exec(lab.node, "cat", files), nodeBefore, "the node namespace did not change");
    assert.notEqual(nodeBefore, "1\n40000\t50000\n");
    assert.deepEqual(await getHostSysctls(keys), hostBefore, "the process's own namespace did not change");

    assert.deepEqual(
      await getSysctls(pod.path, [
        "net.ipv4.ip_forward",
        "net.ipv4.conf.vx/5.rp_filter",
        "net.ipv4.conf.nope0.rp_filter",
      ]),
      {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.vx/5.rp_filter": "2",
        "net.ipv4.conf.nope0.rp_filter": undefined,
      },
    );

    // a sysctl that does not exist: an error naming it, or skipped on request
    await assert.rejects(setSysctls(pod.path, { "net.ipv4.conf.nope0.rp_filter": "0" }), (err) => {
      assert.ok(err instanceof SysctlError);
      assert.equal(err.key, "net.ipv4.conf.nope0.rp_filter");
      assert.equal(err.missing, true);
      assert.match(err.message, /nope0.*does not exist/);
      return true;
    });
    assert.deepEqual(
      await setSysctls(
        pod.path,
        { "net.ipv4.conf.nope0.rp_filter": "0", "net.ipv4.conf.all.rp_filter": "1" },
        {
          ignoreMissing: true,
        },
      ),
      ["net.ipv4.conf.nope0.rp_filter"],
    );
    assert.equal(await lab.exec(pod, "cat", ["/proc/sys/net/ipv4/conf/all/rp_filter"]), "1\n");

    // /proc/net and /sys as the pod sees them (both would otherwise show the host's)
    const vx = await getLink(pod.path, "vx.5");
    const [dev, mtu, mac, absent, gone] = await readNetnsFiles(pod.path, [
      "/proc/net/dev",
      "/sys/class/net/vx.5/mtu",
      "/sys/class/net/vx.5/address",
      "/sys/class/net/vh-nt/mtu",
      "/proc/sys/net/ipv4/conf/nope0/rp_filter",
    ]);
    assert.match(dev ?? "", /^\s*vx\.5:/m);
    assert.equal(mtu, "1500\n");
    assert.equal(mac, `${vx?.address}\n`);
    assert.equal(absent, undefined);
    assert.equal(gone, undefined);
  });
});

kernelTest("netops: workers are reused, return home, and keep namespaces apart", async () => {
  await withLab("netopsworkers", async (lab) => {
    const [a, b] = [await lab.pod("a"), await lab.pod("b")];
    await runBatch(a.path, [linkAddVeth("va0", "va1")]);
    await runBatch(b.path, [linkAddVeth("vb0", "vb1")]);
    const expected = new Map([[a.path, ["lo", "va0", "va1"]], [b.path, ["lo", "vb0", "vb1"]], [
      lab.node.path,
      ["lo"],
    ]]);
    const myNetns = Deno.readLinkSync("/proc/thread-self/ns/net");

    async function namesIn(path: string): Promise<string[]> {
      const [r] = await runCommands(path, [{ argv: ["ip", "-j", "link", "show"] }]);
      return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
    }

    await shutdownNetnsWorkers();
    const before = netnsWorkerStats();
    assert.equal(before.workers, 0);
    const order = [a.path, b.path, lab.node.path, b.path, a.path, lab.node.path];
    for (const path of order) assert.deepEqual(await namesIn(path), expected.get(path), path);
    let stats = netnsWorkerStats();
    assert.equal(stats.created - before.created, 1, "sequential jobs reuse one worker");
    assert.equal(stats.jobs - before.jobs, order.length);
    assert.equal(stats.dropped, before.dropped, "every worker got back to its home namespace");

    // concurrent jobs in different namespaces never see each other's links
    const many = Array.from({ length: 12 }, (_, i) => order[i % order.length]);
    const seen = await Promise.all(many.map(namesIn));
    many.forEach((path, i) => assert.deepEqual(seen[i], expected.get(path), path));
    stats = netnsWorkerStats();
    assert.ok(stats.workers <= 4 && stats.workers >= 1, `pool stays bounded (${stats.workers})`);
    assert.equal(stats.dropped, before.dropped);
    assert.equal(Deno.readLinkSync("/proc/thread-self/ns/net"), myNetns, "the calling thread never moved");

    // several steps in one round trip: stdin, a failing command (reported, not thrown), a write and a read
    const results = await inNetns(a.path, [
      { op: "run", argv: ["cat"], stdin: "hello from a\n" },
      { op: "run", argv: ["ip", "link", "show", "dev", "vb0"] },
      { op: "write", path: "/proc/sys/net/ipv4/conf/va0/forwarding", value: "1" },
      { op: "read", paths: ["/proc/sys/net/ipv4/conf/va0/forwarding"] },
    ]);
    assert.deepEqual(results[0], { op: "run", code: 0, stdout: "hello from a\n", stderr: "" });
    assert.equal(results[1].op === "run" && results[1].code, 1);
    assert.deepEqual(results[2], { op: "write", path: "/proc/sys/net/ipv4/conf/va0/forwarding" });
    assert.deepEqual(results[3], { op: "read", values: ["1\n"] });

    // null means this process's own namespace (a read-only batch: the host is never changed)
    const [here] = await runCommands(null, [{
      argv: ["ip", "-batch", "/dev/stdin"],
      stdin: "link show dev lo\n",
    }]);
    assert.equal(here.code, 0);
    assert.match(here.stdout, /: lo: <LOOPBACK/);
    await runBatch(null, [customOp(["link", "show", "dev", "lo"])]);
    assert.ok((await listLinks(null)).some((l) => l.name === "lo"));

    // cost of a batch in a namespace through a warm worker, and of the nsenter alternative
    const ops: IpOp[] = Array.from({ length: 20 }, (_, i) => addrAdd(`198.18.1.${i + 1}/32`, "va0"));
    const undo: IpOp[] = Array.from({ length: 20 }, (_, i) => addrDel(`198.18.1.${i + 1}/32`, "va0"));
    const rounds = 20;
    let t = performance.now();
    for (let i = 0; i < rounds; i++) await runBatch(a.path, [linkSet("va0", { mtu: 1500 - (i % 2) })]);
    const one = (performance.now() - t) / rounds;
    t = performance.now();
    for (let i = 0; i < rounds; i++) {
      await runBatch(a.path, ops);
      await runBatch(a.path, undo);
    }
    const twenty = (performance.now() - t) / (2 * rounds);
    await runBatch(a.path, ops);
    assert.equal(
      (await listAddrs(a.path, { dev: "va0", family: 4 })).length,
      20,
      "a 20-line batch added 20 addresses",
    );
    await runBatch(a.path, undo);
    assert.deepEqual(await listAddrs(a.path, { dev: "va0", family: 4 }), []);
    t = performance.now();
    for (let i = 0; i < rounds; i++) {
      const child = new Deno.Command("nsenter", {
        args: [`--net=${a.path}`, "ip", "-batch", "-"],
        stdin: "piped",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(batchText([linkSet("va0", { mtu: 1500 - (i % 2) })])));
      await w.close();
      await child.status;
    }
    const nsenter = (performance.now() - t) / rounds;
    console.log(
      `cost: 1-op batch in netns via worker ${one.toFixed(2)} ms; 20-op batch ${twenty.toFixed(2)} ms; ` +
        `nsenter + ip -batch (1 op) ${nsenter.toFixed(2)} ms`,
    );

    // shutdown ends every worker; the next job starts a fresh one
    await shutdownNetnsWorkers();
    assert.equal(netnsWorkerStats().workers, 0);
    assert.deepEqual(await namesIn(b.path), expected.get(b.path));
    assert.equal(netnsWorkerStats().created, stats.created + 1);
    await shutdownNetnsWorkers();
  });
});

kernelTest("netops: a missing namespace gives NetnsNotFoundError", async () => {
  await withLab("netopsmissing", async (lab) => {
    const absent = `/var/run/netns/${lab.prefix}-absent`;
    await assert.rejects(runBatch(absent, [linkSet("eth0", { up: true })]), (err) => {
      assert.ok(err instanceof NetnsNotFoundError);
      assert.equal(err.path, absent);
      assert.equal(err.code, 3);
      assert.match(err.message, /does not exist/);
      return true;
    });
    assert.equal(await Deno.stat(absent).catch(() => "gone"), "gone", "nothing was created at the path");

    // a namespace that existed and vanished (what DEL sees after the runtime removed it)
    const pod = await lab.pod("p1");
    await runBatch(pod.path, [linkAddVeth("v0", "v1")]);
    await lab.removeNetns(pod);
    await assert.rejects(getLink(pod.path, "v0"), errorOf(NetnsNotFoundError));
    await assert.rejects(setSysctls(pod.path, { "net.ipv4.ip_forward": "1" }), errorOf(NetnsNotFoundError));
    await assert.rejects(readNetnsFiles(pod.path, ["/proc/net/dev"]), errorOf(NetnsNotFoundError));
    await assert.rejects(
      runCommands("/proc/4194305/ns/net", [{ argv: ["true"] }]),
      errorOf(NetnsNotFoundError),
    );

    // a path that exists but is no namespace, and a relative path: NetnsError, not "not found"
    const plain = `${lab.dir}/not-a-netns`;
    await Deno.writeTextFile(plain, "");
    await assert.rejects(runCommands(plain, [{ argv: ["true"] }]), (err) => {
      assert.ok(err instanceof NetnsError && !(err instanceof NetnsNotFoundError));
      assert.match(err.message, /Invalid argument/);
      return true;
    });
    await assert.rejects(runCommands("cni-1234", [{ argv: ["true"] }]), /absolute path/);
    assert.equal(netnsWorkerStats().queued, 0);
    await shutdownNetnsWorkers();
  });
});

/** Tries `op` in the node namespace; on "Unknown device type" prints the skip and asserts the batch text. */
async function tryLinkType(lab: Lab, kind: string, op: IpOp, text: string): Promise<boolean> {
  assert.equal(batchText([op]), text);
  try {
    await runBatch(lab.node.path, [op]);
    return true;
  } catch (err) {
    const e = err as IpBatchError;
    if (e.name !== "IpBatchError" || !/Unknown device type|not supported/i.test(e.message)) throw err;
    console.log(
      `skipped kernel part: link type ${kind} is not available in this kernel (${e.failures[0]?.message})`,
    );
    return false;
  }
}

kernelTest("netops: bridge, macvlan, and dummy/vlan/ipvlan where the kernel has them", async () => {
  await withLab("netopslinks", async (lab) => {
    const pod = await lab.pod("p1");
    const node = lab.node.path;
    await runBatch(node, [
      linkAddBridge("br-nt", { mtu: 1450 }),
      linkAddVeth("vb0", "vb1"),
      linkSet("vb0", { master: "br-nt", up: true }),
      linkSet("br-nt", { up: true }),
      linkAddMacvlan("mv-nt", "vb1"),
      linkSet("mv-nt", { address: "02:42:c6:12:00:07", netns: pod.path }),
    ]);
    assert.equal((await getLink(node, "br-nt"))?.kind, "bridge");
    assert.equal((await getLink(node, "vb0"))?.master, "br-nt");
    const bridged = await lab.ipJson<{ master?: string }[]>(lab.node, ["link", "show", "vb0"]);
    assert.equal(bridged[0].master, "br-nt");
    await runBatch(node, [linkSet("vb0", { master: null })]);
    assert.equal((await getLink(node, "vb0"))?.master, undefined);

    await runBatch(pod.path, [
      linkSet("mv-nt", { name: "eth1", up: true }),
      addrAdd("198.18.2.2/24", "eth1"),
    ]);
    const mv = await getLink(pod.path, "eth1");
    assert.deepEqual([mv?.kind, mv?.mode, mv?.address], ["macvlan", "bridge", "02:42:c6:12:00:07"]);
    assert.equal(await getLink(node, "mv-nt"), undefined, "the macvlan moved out of the node namespace");

    if (
      await tryLinkType(
        lab,
        "dummy",
        linkAddDummy("dm-nt", { mtu: 1400 }),
        "link add name dm-nt mtu 1400 type dummy\n",
      )
    ) {
      const dm = await getLink(node, "dm-nt");
      assert.deepEqual([dm?.kind, dm?.mtu], ["dummy", 1400]);
    }
    if (
      await tryLinkType(
        lab,
        "vlan",
        linkAddVlan("vb1.5", "vb1", { id: 5 }),
        "link add link vb1 name vb1.5 type vlan id 5\n",
      )
    ) {
      const vl = await getLink(node, "vb1.5");
      assert.deepEqual([vl?.kind, vl?.vlanId, vl?.parent], ["vlan", 5, "vb1"]);
    }
    await runBatch(node, [linkAddVeth("vp0", "vp1")]);
    if (
      await tryLinkType(
        lab,
        "ipvlan",
        linkAddIpvlan("iv-nt", "vp0", { mode: "l2" }),
        "link add link vp0 name iv-nt type ipvlan mode l2\n",
      )
    ) {
      const iv = await getLink(node, "iv-nt");
      assert.deepEqual([iv?.kind, iv?.mode], ["ipvlan", "l2"]);
    }
    await shutdownNetnsWorkers();
  });
});

kernelTest("netops: gratuitous ARP from the pod updates the node's neighbour entry", async () => {
  await withLab("netopsarp", async (lab) => {
    const pod = await lab.pod("p1");
    await wireVeth(lab, pod);
    const staleWrong = (mac: string) =>
      runBatch(lab.node.path, [neighReplace({ ip: "198.18.0.2", lladdr: mac, dev: "vh-nt", nud: "stale" })]);
    const nodeEntry = async () =>
      (await listNeighbours(lab.node.path, { dev: "vh-nt" })).find((n) => n.ip === "198.18.0.2");

    await staleWrong("02:00:00:00:00:99");
    assert.equal((await nodeEntry())?.lladdr, "02:00:00:00:00:99");
    assert.equal(await sendGratuitousArp("eth0", "198.18.0.2", { netns: pod.path, useRequest: true }), true);
    assert.equal((await nodeEntry())?.lladdr, POD_MAC, "arping -U corrected the node's entry");

    await staleWrong("02:00:00:00:00:98");
    assert.equal(await sendGratuitousArp("eth0", "198.18.0.2", { netns: pod.path }), true);
    assert.equal((await nodeEntry())?.lladdr, POD_MAC, "arping -A corrected the node's entry");

    // detached: returns at once, and the announcement still arrives
    await staleWrong("02:00:00:00:00:97");
    const started = performance.now();
    assert.equal(await sendGratuitousArp("eth0", "198.18.0.2", { netns: pod.path, detach: true }), true);
    assert.ok(performance.now() - started < 500, "a detached arping must not be waited for");
    let lladdr;
    for (let i = 0; i < 40 && lladdr !== POD_MAC; i++) {
      await new Promise((r) => setTimeout(r, 100));
      lladdr = (await nodeEntry())?.lladdr;
    }
    assert.equal(lladdr, POD_MAC, "the detached arping corrected the node's entry");
    await new Promise((r) => setTimeout(r, 1500)); // let it finish before the lab goes away

    // failures are logged, never thrown
    const logged: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => logged.push(args.join(" "));
    try {
      assert.equal(await sendGratuitousArp("nope0", "198.18.0.2", { netns: pod.path }), false);
      assert.equal(
        await sendGratuitousArp("eth0", "198.18.0.2", { netns: `/var/run/netns/${lab.prefix}-gone` }),
        false,
      );
    } finally {
      console.error = original;
    }
    assert.equal(logged.length, 2);
    assert.match(logged[0], /arping -c 2 -A -I nope0 198\.18\.0\.2 failed/);
    assert.match(logged[1], /nsenter .*-gone/);
    await shutdownNetnsWorkers();
  });
});

kernelTest("netops: a batch and the read-back of its link share one ip process", async () => {
  await withLab("thenlink", async (lab) => {
    const pod = await lab.pod("a");
    const link = await runBatchThenLink(pod.path, [
      linkAddVeth("tl0", "tl1"),
      linkSet("tl0", { up: true, mtu: 1400 }),
    ], "tl0");
    assert.equal(link?.name, "tl0");
    assert.equal(link?.kind, "veth");
    assert.equal(link?.mtu, 1400);
    const [kernel] = await lab.ipJson<{ address: string; mtu: number }[]>(pod, [
      "link",
      "show",
      "dev",
      "tl0",
    ]);
    assert.equal(link?.address, kernel.address, "the read-back is not the kernel's link");
    // The batch went through but the link it reads is gone: undefined, and the change is made.
    assert.equal(await runBatchThenLink(pod.path, [linkDel("tl0")], "tl0"), undefined);
    assert.deepEqual(await lab.linkNames(pod), ["lo"]);
    // A failing change is the batch's error, on its line; the read is not reached.
    await assert.rejects(
      runBatchThenLink(pod.path, [linkSet("nosuch0", { up: true })], "nosuch0"),
      (e: unknown) => (e as IpBatchError).failures?.[0]?.line === 1,
    );
  });
});
