import assert from "node:assert/strict";
import { launcherDir } from "../helpers/launchers.ts";
import { readCalls, writeFakePlugins } from "../helpers/fake_plugins.ts";
import { kernelTest, type Lab, type Netns, pathExists, type RunResult, withLab } from "../helpers/netns.ts";
import { type CniVersion, resultSchemaFor } from "../../cni/spec.ts";

const STANDARD_PLUGINS = "/usr/lib/cni";
const NETWORK = "gtest-flannel";
const SUBNET_ENV = [
  "FLANNEL_NETWORK=198.18.32.0/20",
  "FLANNEL_SUBNET=198.18.33.1/24",
  "FLANNEL_MTU=1450",
  "FLANNEL_IPMASQ=false",
].join("\n") + "\n";
const ROUTE_WITH_GW = { dst: "198.18.32.0/20", gw: "198.18.33.1" };

/** Where one test keeps its files, and the CNI_PATH its calls get. */
interface Site {
  lab: Lab;
  subnetFile: string;
  dataDir: string;
  ipamDir: string;
  path: string;
}

interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
}

async function site(lab: Lab, options: { fakes?: string[]; subnetEnv?: string } = {}): Promise<Site> {
  const subnetFile = `${lab.dir}/run/flannel/subnet.env`;
  if (options.subnetEnv !== undefined) {
    await Deno.mkdir(`${lab.dir}/run/flannel`, { recursive: true });
    await Deno.writeTextFile(subnetFile, options.subnetEnv);
  }
  const dirs = [await launcherDir(), STANDARD_PLUGINS];
  if (options.fakes) dirs.push(await writeFakePlugins(`${lab.dir}/fakebin`, options.fakes));
  return { lab, subnetFile, dataDir: `${lab.dir}/flannel`, ipamDir: `${lab.dir}/ipam`, path: dirs.join(":") };
}

function flannelConf(s: Site, cniVersion: CniVersion, extra: Record<string, unknown> = {}) {
  return {
    cniVersion,
    name: NETWORK,
    type: "galaxy-flannel",
    subnetFile: s.subnetFile,
    dataDir: s.dataDir,
    ipam: { dataDir: s.ipamDir },
    ...extra,
  };
}

/** Runs the galaxy-flannel launcher inside the lab's node namespace, as a runtime there would. */
async function flannel(
  s: Site,
  verb: string,
  conf: Record<string, unknown>,
  at?: Attachment,
): Promise<RunResult> {
  const env: Record<string, string> = { CNI_COMMAND: verb, CNI_PATH: s.path };
  if (at) Object.assign(env, { CNI_CONTAINERID: at.containerId, CNI_NETNS: at.netns, CNI_IFNAME: at.ifname });
  return await s.lab.tryExec(s.lab.node, `${await launcherDir()}/galaxy-flannel`, [], {
    stdin: JSON.stringify(conf),
    env,
  });
}

function cniError(r: RunResult): { code: number; msg: string; details?: string } {
  assert.equal(r.code, 1, `expected a CNI error, got exit ${r.code}: ${r.stdout} ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch {
    // missing
  }
  return names.sort();
}

function reservation(s: Site, address: string): string {
  return `${s.ipamDir}/${NETWORK}/${address.split("/")[0]}`;
}

async function natRules(lab: Lab): Promise<string> {
  return await lab.exec(lab.node, "iptables", ["-t", "nat", "-S"]);
}

async function requireBridge(): Promise<void> {
  if (!(await pathExists(`${STANDARD_PLUGINS}/bridge`))) {
    throw new Error(`${STANDARD_PLUGINS}/bridge is missing: install Debian's containernetworking-plugins`);
  }
}

function expectedSaved(s: Site, at: Attachment, options: { version: string; routes: unknown[] }) {
  return {
    kind: "galaxyFlannelV1",
    containerID: at.containerId,
    ifname: at.ifname,
    netns: at.netns,
    network: NETWORK,
    delegate: {
      cniVersion: options.version,
      name: NETWORK,
      type: "bridge",
      ipMasq: true,
      mtu: 1450,
      isGateway: true,
      ipam: {
        type: "host-local",
        dataDir: s.ipamDir,
        ranges: [[{ subnet: "198.18.33.0/24" }]],
        routes: options.routes,
      },
    },
  };
}

/** ADD through bridge, checking the result against the kernel; returns the result and the pod's address. */
async function addWithBridge(s: Site, conf: ReturnType<typeof flannelConf>, at: Attachment, pod: Netns) {
  const version = conf.cniVersion;
  const r = await flannel(s, "ADD", conf, at);
  assert.equal(r.code, 0, `ADD failed: ${r.stdout} ${r.stderr}`);
  const result = JSON.parse(r.stdout);
  const checked = resultSchemaFor(version).safeParse(result);
  assert.ok(checked.success, `ADD printed an invalid ${version} result: ${r.stdout}`);
  assert.equal(result.cniVersion, version);
  assert.equal(result.ips.length, 1, r.stdout);
  const ip = result.ips[0];
  assert.match(ip.address, /^198\.18\.33\.\d+\/24$/);
  assert.equal(ip.gateway, "198.18.33.1");
  if (version === "0.3.1" || version === "0.4.0") assert.equal(ip.version, "4");
  assert.deepEqual(result.interfaces[ip.interface], {
    name: at.ifname,
    mac: result.interfaces[ip.interface].mac,
    sandbox: pod.path,
  });
  assert.ok(result.routes.some((rt: { dst: string }) => rt.dst === "198.18.32.0/20"), r.stdout);
  assert.deepEqual(await s.lab.addresses(pod, at.ifname), [ip.address]);
  return { result, address: ip.address as string };
}

// ---------------------------------------------------------------------------------------------------------

for (const version of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const) {
  const delegateVersion = version === "1.1.0" ? "1.0.0" : version;
  kernelTest(`galaxy-flannel ${version}: ADD, CHECK, DEL and DEL again with Debian's bridge`, async () => {
    await requireBridge();
    await withLab("flannel", async (lab) => {
      const s = await site(lab, { subnetEnv: SUBNET_ENV });
      const pod = await lab.pod("pod");
      const at = {
        containerId: `ctr-flannel-${version.replaceAll(".", "")}`,
        netns: pod.path,
        ifname: "eth0",
      };
      // Debian's bridge (1.1.1) fails CHECK on a route without "gw" (containernetworking/plugins#886, fixed in
      // 1.3.0), and flannel's generated route to the network has none. So this test routes the flannel network
      // itself through the ipam merge, with the gateway host-local would use anyway; the route is not doubled.
      const conf = flannelConf(s, version, { ipam: { dataDir: s.ipamDir, routes: [ROUTE_WITH_GW] } });
      const { result, address } = await addWithBridge(s, conf, at, pod);

      // The kernel: pod address, MTU and route to the flannel network; the node's bridge is the gateway.
      const [link] = await lab.ipJson<{ mtu: number }[]>(pod, ["link", "show", "eth0"]);
      assert.equal(link.mtu, 1450);
      const routes = await lab.ipJson<{ dst: string; gateway?: string }[]>(pod, ["route", "show"]);
      assert.ok(
        routes.some((r) => r.dst === "198.18.32.0/20" && r.gateway === "198.18.33.1"),
        JSON.stringify(routes),
      );
      assert.deepEqual(await lab.addresses(lab.node, "cni0"), ["198.18.33.1/24"]);
      const ping = await lab.tryExec(lab.node, "ping", ["-c", "1", "-W", "2", address.split("/")[0]]);
      assert.equal(ping.code, 0, `node → pod ping failed: ${ping.stdout}`);
      // FLANNEL_IPMASQ=false → the delegate masquerades (in the node namespace).
      assert.match(await natRules(lab), new RegExp(`id: \\\\?"${at.containerId}\\\\?"`));

      // The saved file: the exact delegate configuration, at the version the bridge supports.
      const savedFile = `${s.dataDir}/${at.containerId}`;
      assert.deepEqual(
        JSON.parse(await Deno.readTextFile(savedFile)),
        expectedSaved(s, at, { version: delegateVersion, routes: [ROUTE_WITH_GW] }),
      );
      assert.equal((await Deno.stat(savedFile)).mode! & 0o777, 0o600);
      assert.equal((await Deno.readTextFile(reservation(s, address))).split(/\s/)[0], at.containerId);

      const withPrev = { ...conf, prevResult: result };
      if (version === "0.3.1") {
        assert.equal(cniError(await flannel(s, "CHECK", conf, at)).code, 1);
      } else {
        const check = await flannel(s, "CHECK", withPrev, at);
        assert.equal(check.code, 0, `CHECK failed: ${check.stdout} ${check.stderr}`);
      }

      const del = await flannel(s, "DEL", version === "0.3.1" ? conf : withPrev, at);
      assert.equal(del.code, 0, `DEL failed: ${del.stdout} ${del.stderr}`);
      assert.equal(del.stdout, "");
      assert.ok(!(await lab.linkNames(pod)).includes("eth0"), "eth0 is still in the pod after DEL");
      assert.ok(!(await pathExists(reservation(s, address))), "host-local reservation left after DEL");
      assert.ok(!(await pathExists(savedFile)), "saved file left after DEL");
      assert.doesNotMatch(await natRules(lab), new RegExp(at.containerId));

      const again = await flannel(s, "DEL", conf, at);
      assert.equal(again.code, 0, `second DEL failed: ${again.stdout} ${again.stderr}`);
    });
  });
}

kernelTest("galaxy-flannel 0.1.0 and 0.2.0: ADD prints a legacy result, DEL removes everything", async () => {
  await requireBridge();
  await withLab("flannellegacy", async (lab) => {
    const s = await site(lab, { subnetEnv: SUBNET_ENV });
    for (const version of ["0.1.0", "0.2.0"] as const) {
      const pod = await lab.pod(`pod${version.replaceAll(".", "")}`);
      const at = {
        containerId: `ctr-legacy-${version.replaceAll(".", "")}`,
        netns: pod.path,
        ifname: "eth0",
      };
      const add = await flannel(s, "ADD", flannelConf(s, version), at);
      assert.equal(add.code, 0, `ADD failed: ${add.stdout} ${add.stderr}`);
      const result = JSON.parse(add.stdout);
      assert.ok(resultSchemaFor(version).safeParse(result).success, add.stdout);
      assert.equal(result.cniVersion, version);
      assert.match(result.ip4.ip, /^198\.18\.33\.\d+\/24$/);
      assert.equal(result.ip4.gateway, "198.18.33.1");
      assert.deepEqual(await lab.addresses(pod, "eth0"), [result.ip4.ip]);
      const saved = JSON.parse(await Deno.readTextFile(`${s.dataDir}/${at.containerId}`));
      assert.equal(saved.delegate.cniVersion, version);

      const del = await flannel(s, "DEL", flannelConf(s, version), at);
      assert.equal(del.code, 0, `DEL failed: ${del.stdout} ${del.stderr}`);
      assert.ok(!(await lab.linkNames(pod)).includes("eth0"));
      assert.ok(!(await pathExists(reservation(s, result.ip4.ip))));
    }
    assert.deepEqual(await listDir(s.dataDir), []);
  });
});

kernelTest(
  "galaxy-flannel: DEL releases everything when the netns is gone or the saved file was lost",
  async () => {
    await requireBridge();
    await withLab("flanneldel", async (lab) => {
      const s = await site(lab, { subnetEnv: SUBNET_ENV });
      const lost = await lab.pod("lost");
      const lostAt = { containerId: "ctr-lost-file", netns: lost.path, ifname: "eth0" };
      const lostAdd = await addWithBridge(s, flannelConf(s, "1.0.0"), lostAt, lost);
      // The default configuration's saved file: the generated route to the flannel network has no gateway.
      assert.deepEqual(
        JSON.parse(await Deno.readTextFile(`${s.dataDir}/${lostAt.containerId}`)),
        expectedSaved(s, lostAt, { version: "1.0.0", routes: [{ dst: "198.18.32.0/20" }] }),
      );
      await Deno.remove(`${s.dataDir}/${lostAt.containerId}`);
      const del1 = await flannel(s, "DEL", flannelConf(s, "1.0.0"), lostAt);
      assert.equal(del1.code, 0, `DEL without a saved file failed: ${del1.stdout} ${del1.stderr}`);
      assert.ok(
        !(await pathExists(reservation(s, lostAdd.address))),
        "DEL without a saved file did not release IPAM",
      );
      assert.ok(!(await lab.linkNames(lost)).includes("eth0"), "DEL without a saved file left eth0");

      const gone = await lab.pod("gone");
      const goneAt = { containerId: "ctr-gone-netns", netns: gone.path, ifname: "eth0" };
      const goneAdd = await addWithBridge(s, flannelConf(s, "1.0.0"), goneAt, gone);
      await lab.removeNetns(gone);
      const del2 = await flannel(s, "DEL", flannelConf(s, "1.0.0"), goneAt);
      assert.equal(del2.code, 0, `DEL with a vanished netns failed: ${del2.stdout} ${del2.stderr}`);
      assert.ok(
        !(await pathExists(reservation(s, goneAdd.address))),
        "DEL with a vanished netns did not release IPAM",
      );
      assert.deepEqual(await listDir(s.dataDir), []);
      const del3 = await flannel(s, "DEL", flannelConf(s, "1.0.0"), { ...goneAt, netns: "" });
      assert.equal(del3.code, 0, `DEL without CNI_NETNS failed: ${del3.stdout} ${del3.stderr}`);
    });
  },
);

kernelTest(
  "galaxy-flannel: a failing delegate ADD is undone (delegate DEL, saved file removed)",
  async () => {
    await withLab("flannelfail", async (lab) => {
      const s = await site(lab, { subnetEnv: SUBNET_ENV, fakes: ["fake-delegate"] });
      const pod = await lab.pod("pod");
      const at = { containerId: "ctr-fail", netns: pod.path, ifname: "eth0" };
      const record = `${lab.dir}/calls.jsonl`;
      for (const fail of [{ code: 11, msg: "boom: no room" }, "crash"]) {
        await Deno.remove(record).catch(() => {});
        const conf = flannelConf(s, "1.1.0", {
          delegate: { type: "fake-delegate", recordFile: record, fail, failOn: ["ADD"] },
        });
        const err = cniError(await flannel(s, "ADD", conf, at));
        if (typeof fail === "object") {
          assert.equal(err.code, 11);
          assert.match(err.msg, /delegate fake-delegate ADD: boom: no room/);
        } else {
          assert.equal(err.code, 101);
          assert.match(err.msg, /simulated crash/);
        }
        const calls = await readCalls(record);
        assert.deepEqual(calls.map((c) => c.verb), ["ADD", "DEL"]);
        assert.deepEqual(calls[1].conf, calls[0].conf, "the undoing DEL got another configuration than ADD");
        assert.equal(calls[1].env.CNI_CONTAINERID, "ctr-fail");
        assert.equal(calls[1].env.CNI_IFNAME, "eth0");
        assert.equal(calls[0].conf.cniVersion, "1.1.0");
        assert.equal(calls[0].conf.mtu, 1450);
        assert.equal(calls[0].conf.ipMasq, true);
        assert.equal(Object.hasOwn(calls[0].conf, "isGateway"), false);
        assert.deepEqual(await listDir(s.dataDir), [], "a failed ADD left a saved file");
        assert.deepEqual(await lab.linkNames(pod), ["lo"]);
      }

      // When the undoing DEL fails too, the saved file stays, so the runtime's DEL can finish the job.
      await Deno.remove(record).catch(() => {});
      const stuck = flannelConf(s, "1.1.0", {
        delegate: { type: "fake-delegate", recordFile: record, fail: { code: 11, msg: "busy" } },
      });
      const err = cniError(await flannel(s, "ADD", stuck, at));
      assert.match(err.details ?? "", /is kept for DEL/);
      assert.deepEqual(await listDir(s.dataDir), ["ctr-fail"]);
    });
  },
);

kernelTest(
  "galaxy-flannel: the saved file exists before the delegate runs; DEL finishes a crashed ADD",
  async () => {
    await withLab("flannelcrash", async (lab) => {
      const s = await site(lab, { subnetEnv: SUBNET_ENV, fakes: ["fake-delegate"] });
      const pod = await lab.pod("pod");
      const at = { containerId: "ctr-crash", netns: pod.path, ifname: "eth0" };
      const record = `${lab.dir}/calls.jsonl`;
      const started = `${lab.dir}/delegate-started`;
      const conf = flannelConf(s, "1.0.0", {
        delegate: { type: "fake-delegate", recordFile: record, startedFile: started, sleepMs: 1500 },
      });
      const launcher = `${await launcherDir()}/galaxy-flannel`;
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", lab.node.name, launcher],
        env: {
          CNI_COMMAND: "ADD",
          CNI_PATH: s.path,
          CNI_CONTAINERID: at.containerId,
          CNI_NETNS: at.netns,
          CNI_IFNAME: at.ifname,
        },
        stdin: "piped",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(JSON.stringify(conf)));
      await writer.close();
      const savedFile = `${s.dataDir}/${at.containerId}`;
      const deadline = Date.now() + 20_000;
      // Kill only once the delegate runs: between writing the saved file and starting the delegate there is a
      // window (wide on a loaded machine) in which a kill would leave no delegate ADD at all.
      while (!(await pathExists(started)) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(await pathExists(started), "the delegate ADD never started");
      assert.ok(await pathExists(savedFile), "no saved file while the delegate ADD was running");
      assert.equal(JSON.parse(await Deno.readTextFile(savedFile)).delegate.type, "fake-delegate");
      child.kill("SIGKILL");
      // Killed, not exited: the plugin was still inside its delegate ADD when the saved file was already there.
      assert.equal((await child.status).signal, "SIGKILL");
      // The orphaned delegate finishes its ADD on its own.
      while ((await readCalls(record)).length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }

      const del = await flannel(s, "DEL", flannelConf(s, "1.0.0"), at);
      assert.equal(del.code, 0, `DEL failed: ${del.stdout} ${del.stderr}`);
      const calls = await readCalls(record);
      assert.deepEqual(calls.map((c) => c.verb), ["ADD", "DEL"]);
      assert.deepEqual(calls[1].conf, calls[0].conf);
      assert.ok(!(await pathExists(savedFile)));
    });
  },
);

kernelTest(
  "galaxy-flannel: a missing or invalid subnet.env gives a clear error and creates nothing",
  async () => {
    await withLab("flannelenv", async (lab) => {
      const s = await site(lab);
      const pod = await lab.pod("pod");
      const at = { containerId: "ctr-noenv", netns: pod.path, ifname: "eth0" };
      const missing = cniError(await flannel(s, "ADD", flannelConf(s, "1.0.0"), at));
      assert.equal(missing.code, 5);
      assert.match(missing.msg, new RegExp(`cannot read subnet file ${s.subnetFile}`));
      assert.ok(!(await pathExists(s.dataDir)), "a failed ADD created the dataDir");
      assert.deepEqual(await lab.linkNames(pod), ["lo"]);
      assert.deepEqual(await lab.linkNames(lab.node), ["lo"]);

      const status = cniError(await flannel(s, "STATUS", flannelConf(s, "1.1.0")));
      assert.equal(status.code, 50);
      assert.match(status.msg, /subnet file/);
      const del = await flannel(s, "DEL", flannelConf(s, "1.0.0"), at);
      assert.equal(del.code, 0, `DEL without subnet.env or saved file failed: ${del.stdout}`);

      await Deno.mkdir(`${lab.dir}/run/flannel`, { recursive: true });
      await Deno.writeTextFile(s.subnetFile, SUBNET_ENV.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=jumbo"));
      const bad = cniError(await flannel(s, "ADD", flannelConf(s, "1.0.0"), at));
      assert.equal(bad.code, 7);
      assert.match(bad.msg, /FLANNEL_MTU: "jumbo"/);
      assert.equal(cniError(await flannel(s, "STATUS", flannelConf(s, "1.1.0"))).code, 50);

      await Deno.writeTextFile(s.subnetFile, SUBNET_ENV);
      const ok = await flannel(s, "STATUS", flannelConf(s, "1.1.0"));
      assert.equal(ok.code, 0, `STATUS failed: ${ok.stdout} ${ok.stderr}`);
      assert.equal(ok.stdout, "");
    });
  },
);

kernelTest(
  "galaxy-flannel: GC deletes attachments the runtime no longer lists, only of its own network",
  async () => {
    await requireBridge();
    await withLab("flannelgc", async (lab) => {
      const s = await site(lab, { subnetEnv: SUBNET_ENV });
      const keep = await lab.pod("keep");
      const stale = await lab.pod("stale");
      const keepAt = { containerId: "ctr-keep", netns: keep.path, ifname: "eth0" };
      const staleAt = { containerId: "ctr-stale", netns: stale.path, ifname: "eth0" };
      const kept = await addWithBridge(s, flannelConf(s, "1.1.0"), keepAt, keep);
      const gone = await addWithBridge(s, flannelConf(s, "1.1.0"), staleAt, stale);
      const foreign = {
        kind: "galaxyFlannelV1",
        containerID: "ctr-other-net",
        ifname: "eth0",
        netns: "",
        network: "other-network",
        delegate: { cniVersion: "1.0.0", name: "other-network", type: "bridge" },
      };
      await Deno.writeTextFile(`${s.dataDir}/ctr-other-net`, JSON.stringify(foreign));

      const conf = {
        ...flannelConf(s, "1.1.0"),
        "cni.dev/valid-attachments": [{ containerID: "ctr-keep", ifname: "eth0" }],
      };
      const gc = await flannel(s, "GC", conf);
      assert.equal(gc.code, 0, `GC failed: ${gc.stdout} ${gc.stderr}`);
      assert.deepEqual(await listDir(s.dataDir), ["ctr-keep", "ctr-other-net"]);
      assert.ok(!(await lab.linkNames(stale)).includes("eth0"), "the stale attachment kept its eth0");
      assert.ok(!(await pathExists(reservation(s, gone.address))), "the stale reservation survived GC");
      assert.deepEqual(await lab.addresses(keep, "eth0"), [kept.address]);
      assert.ok(await pathExists(reservation(s, kept.address)));

      const del = await flannel(s, "DEL", flannelConf(s, "1.1.0"), keepAt);
      assert.equal(del.code, 0, del.stdout);
      assert.deepEqual(await listDir(s.dataDir), ["ctr-other-net"]);
    });
  },
);
