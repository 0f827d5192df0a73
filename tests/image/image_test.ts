/**
 * The DaemonSet image: `deploy/image/build.sh` builds it from the compiled executable (`GALAXY_BINARY`), a
 * containerd of the test's own (its own network namespace, root, state and socket in a temp folder) imports it
 * with `ctr -n k8s.io images import`, and the commands Galaxy needs run inside the root filesystem containerd
 * unpacked (mounted in a private mount namespace, entered with `chroot`). The archive's size is printed.
 * @module
 */
import assert from "node:assert/strict";
import { compiledBinary, REPO_ROOT } from "../helpers/launchers.ts";
import { isRoot, type Lab, runCommand, withLab } from "../helpers/netns.ts";
import { EXECUTABLE_NAMES } from "../../cli/launchers.ts";

const BINARY = compiledBinary();
const IMAGE = "docker.io/library/galaxy:0.1.0";

function which(cmd: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

function skipReason(): string | undefined {
  if (BINARY === undefined) return "needs GALAXY_BINARY (the compiled run of tools/test_compiled.sh sets it)";
  if (!isRoot()) return "needs root (mmdebstrap, chroot)";
  if (!which("mmdebstrap")) return "mmdebstrap is not installed (apt-get install mmdebstrap)";
  return undefined;
}

const SKIP = skipReason();
if (SKIP) console.log(`image: skipped: ${SKIP}`);

/** A containerd of the test's own inside `lab.node`, without the CRI plugin (nothing but images here). */
async function startContainerd(lab: Lab): Promise<{ socket: string; stop: () => Promise<void> }> {
  const dir = `${lab.dir}/containerd`;
  await Deno.mkdir(dir, { recursive: true });
  const socket = `${dir}/containerd.sock`;
  await Deno.writeTextFile(
    `${dir}/config.toml`,
    [
      "version = 2",
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", ' +
      '"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", ' +
      '"io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", ' +
      '"io.containerd.internal.v1.tracing"]',
      "[grpc]",
      `  address = "${socket}"`,
      "[ttrpc]",
      `  address = "${socket}.ttrpc"`,
      "[debug]",
      `  address = "${dir}/debug.sock"`,
      `[plugins."io.containerd.internal.v1.opt"]`,
      `  path = "${dir}/opt"`,
      "",
    ].join("\n"),
  );
  // nsenter --net switches only the network namespace (containerd_lab.sh explains why not `ip netns exec`).
  const child = new Deno.Command("nsenter", {
    args: [`--net=${lab.node.path}`, "containerd", "--config", `${dir}/config.toml`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await child.status;
    await stderr;
  };
  for (let i = 0; i < 100; i++) {
    const r = await runCommand("ctr", ["-a", socket, "version"]);
    if (r.code === 0) return { socket, stop };
    await new Promise((ok) => setTimeout(ok, 100));
  }
  await stop();
  throw new Error(`containerd did not come up:\n${(await stderr).slice(-2000)}`);
}

Deno.test({
  name:
    "image: builds from the executable, imports into containerd, and its tools run in its root filesystem",
  ignore: SKIP !== undefined,
  sanitizeResources: false,
  async fn() {
    await withLab("image", async (lab) => {
      const archive = `${lab.dir}/galaxy-image.tar`;
      const build = await runCommand("bash", [
        `${REPO_ROOT}/deploy/image/build.sh`,
        "--binary",
        BINARY!,
        "--output",
        archive,
      ]);
      assert.equal(build.code, 0, `build.sh failed:\n${build.stdout}\n${build.stderr}`);
      const size = (await Deno.stat(archive)).size;
      console.log(`image: ${archive} is ${(size / 1e6).toFixed(1)} MB (${build.stdout.trim()})`);
      assert.ok(
        size < (await Deno.stat(BINARY!)).size,
        "the compressed image is smaller than the executable",
      );

      if (!which("containerd") || !which("ctr")) {
        console.log(
          "image: skipped containerd part: containerd is not installed (apt-get install containerd)",
        );
        return;
      }
      const ctrd = await startContainerd(lab);
      try {
        const ctr = ["-a", ctrd.socket, "-n", "k8s.io"];
        const imported = await runCommand("ctr", [
          ...ctr,
          "images",
          "import",
          "--snapshotter",
          "native",
          archive,
        ]);
        assert.equal(imported.code, 0, imported.stderr);
        const list = await runCommand("ctr", [...ctr, "images", "ls", "-q"]);
        assert.deepEqual(
          list.stdout.trim().split("\n"),
          [IMAGE],
          "imported under the name deploy/galaxy.yaml uses",
        );
        const yaml = await Deno.readTextFile(`${REPO_ROOT}/deploy/galaxy.yaml`);
        assert.match(yaml, /image: galaxy:0\.1\.0/);

        // The snapshot containerd unpacked, mounted in a mount namespace that ends with this shell.
        const mnt = `${lab.dir}/rootfs`;
        await Deno.mkdir(mnt);
        const script = [
          "set -e",
          `ctr ${ctr.join(" ")} images mount --snapshotter native ${IMAGE} "$1" >/dev/null`,
          'mount -t proc proc "$1/proc"',
          'echo "== galaxy"; chroot "$1" galaxy --version',
          'echo "== iptables"; chroot "$1" iptables --version',
          'echo "== iptables-legacy"; chroot "$1" iptables-legacy --version',
          'echo "== ip"; chroot "$1" ip -V',
          'echo "== ipset"; chroot "$1" ipset --version',
          'echo "== arping"; chroot "$1" arping -V',
          'echo "== nsenter"; chroot "$1" nsenter --version',
          'echo "== plugins"; chroot "$1" ls /opt/cni/galaxy/bin /usr/lib/cni',
          'echo "== sdn"; chroot "$1" env CNI_COMMAND=VERSION /opt/cni/galaxy/bin/galaxy-sdn',
          'echo "== host-local"; chroot "$1" env CNI_COMMAND=VERSION /usr/lib/cni/host-local </dev/null',
          'echo "== same file"; chroot "$1" stat -c %i /usr/bin/galaxy /opt/cni/galaxy/bin/galaxy',
          'umount "$1/proc"',
          `ctr ${ctr.join(" ")} images unmount "$1" >/dev/null`,
        ].join("\n");
        const r = await runCommand("unshare", [
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          script,
          "-",
          mnt,
        ]);
        console.log(r.stdout);
        assert.equal(r.code, 0, `inside the image:\n${r.stdout}\n${r.stderr}`);
        const section = (name: string) => r.stdout.split(`== ${name}\n`)[1].split("\n== ")[0].trim();
        assert.match(section("galaxy"), /^galaxy \d+\.\d+\.\d+ \(commit [0-9a-f]+/);
        assert.match(section("iptables"), /^iptables v1\.8\.\d+ \((nf_tables|legacy)\)/);
        assert.match(section("iptables-legacy"), /^iptables v1\.8\.\d+ \(legacy\)/);
        assert.match(section("ip"), /^ip utility, iproute2-/);
        assert.match(section("ipset"), /^ipset v\d/);
        assert.match(section("arping"), /arping from iputils/);
        const plugins = section("plugins");
        for (const name of EXECUTABLE_NAMES) assert.match(plugins, new RegExp(`^${name}$`, "m"));
        assert.match(plugins, /^host-local$/m);
        assert.match(plugins, /^loopback$/m);
        assert.doesNotMatch(plugins, /^bridge$/m, "only host-local and loopback of Debian's plugins");
        assert.ok(JSON.parse(section("sdn")).supportedVersions.includes("1.1.0"));
        assert.ok(JSON.parse(section("host-local")).supportedVersions.length > 0);
        const [a, b] = section("same file").split("\n");
        assert.equal(a, b, "/usr/bin/galaxy is a hard link, not a second copy");
      } finally {
        await ctrd.stop();
      }
    });
  },
});
