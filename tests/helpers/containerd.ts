/**
 * A private containerd (Debian 12's 1.6, with its CRI plugin) inside a lab's node namespace, so that CNI is
 * driven by a real container runtime: a port of `../shared/tools/containerd-lab/containerd_lab.sh` start/stop
 * into the test harness (namespaces `gtest-*`, every file under the lab's folder). From the lab it takes only
 * its CRI client (`cri/cri.js`, on @grpc/grpc-js) and its image writer (`cri/mkimage.py`); without the lab the
 * tests that use this skip.
 *
 * The lab's workarounds for this machine, kept here: containerd is started with `nsenter --net` (not
 * `ip netns exec`, whose fresh sysfs hides the cgroup v1 mounts from runc); `restrict_oom_score_adj` (no
 * CAP_SYS_RESOURCE for the sandbox's -998); runc with cgroupfs (no systemd; crun refuses the hybrid layout);
 * the CRI-wide `no_pivot` is not used (runc.v2 refuses it); pod netns under the state folder; one `bin_dir`
 * holding links to every plugin folder's executables (containerd 1.6 takes one, and execs `loopback` from
 * it); configs at most 1.0.0 (containerd 1.6.20's libcni cannot parse 1.1.0 results). libcni's cache
 * (`/var/lib/cni/results/<network>-<sandbox>-<ifname>`, not configurable in 1.6) is emptied by DEL; what a
 * failed test leaves of it for this containerd's sandboxes is removed by {@linkcode Containerd.stop}.
 * @module
 */
import { containerdLab } from "./shared_tools.ts";
import { type Lab, runCommand, type RunResult } from "./netns.ts";

/** containerd did not come up here (its CRI never answered, or the pause image could not be made). */
export class ContainerdUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ContainerdUnavailable";
  }
}

/** A running containerd of one lab. */
export interface Containerd {
  /** Its CRI socket. */
  socket: string;
  /** Its folder (config, root, state, log). */
  dir: string;
  /** Runs the CRI client (`cri.js`): `runp` gets the lab's cgroup parent. Output is JSON on stdout. */
  cri(args: string[]): Promise<RunResult>;
  /** The containerd log, for failure messages. */
  log(): Promise<string>;
  /** Removes every pod through CRI (CNI DEL runs), stops containerd and its shims by PID, cleans up. */
  stop(): Promise<void>;
}

const NEEDED = ["containerd", "ctr", "runc", "gcc", "node", "npm", "nsenter", "python3"];

function hasCommand(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Why containerd cannot be started here, or `undefined` when it can. */
export function containerdSkipReason(): string | undefined {
  if (!containerdLab()) return "the containerd lab (../shared/tools/containerd-lab) is not present";
  const missing = NEEDED.filter((c) => !hasCommand(c));
  try {
    Deno.statSync("/usr/lib/x86_64-linux-gnu/libc.a");
  } catch {
    missing.push("libc6-dev (libc.a)");
  }
  if (missing.length) {
    return `missing ${missing.join(", ")} (packages containerd runc gcc libc6-dev nodejs npm)`;
  }
  return undefined;
}

function criDir(): string {
  const lab = containerdLab()!;
  return `${lab.slice(0, lab.lastIndexOf("/"))}/cri`;
}

/** The CRI client's npm packages, installed once per machine where the lab script puts them too. */
async function ensureClient(): Promise<string> {
  const deps = Deno.env.get("CRI_LAB_NODE_DEPS") ?? "/tmp/cri-lab-node";
  try {
    Deno.statSync(`${deps}/node_modules/@grpc/grpc-js`);
    Deno.statSync(`${deps}/node_modules/@grpc/proto-loader`);
    return deps;
  } catch {
    // install below
  }
  await Deno.mkdir(deps, { recursive: true });
  for (const f of ["package.json", "package-lock.json"]) {
    await Deno.copyFile(`${criDir()}/${f}`, `${deps}/${f}`);
  }
  const r = await runCommand("sh", ["-c", `cd '${deps}' && npm ci --silent --no-audit --no-fund`]);
  if (r.code !== 0) throw new Error(`npm ci for the CRI client failed in ${deps}: ${r.stderr}`);
  return deps;
}

function configToml(dir: string): string {
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[debug]
  address = "${dir}/debug.sock"
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "lab.local/pause:1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${dir}/cni-bin"
    conf_dir = "${dir}/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "lab"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.lab]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.lab.options]
        BinaryName = "runc"
        Root = "${dir}/state/runc-root"
        SystemdCgroup = false
`;
}

const PAUSE_C = `#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void quit(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
  for (;;) pause();
}
`;

async function must(cmd: string, args: string[], what: string): Promise<string> {
  const r = await runCommand(cmd, args);
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

async function linkPlugins(binDirs: string[], dest: string): Promise<void> {
  await Deno.mkdir(dest, { recursive: true });
  for (const dir of binDirs) {
    for await (const e of Deno.readDir(dir)) {
      const target = `${dir}/${e.name}`;
      const st = await Deno.stat(target).catch(() => undefined);
      if (!st?.isFile || !((st.mode ?? 0) & 0o111)) continue;
      await Deno.symlink(target, `${dest}/${e.name}`).catch(() => {}); // the first folder wins
    }
  }
}

function pidsWithArg(needle: string): number[] {
  const found: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      if (cmdline.includes(needle)) found.push(Number(e.name));
    } catch {
      // gone
    }
  }
  return found;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts containerd in `lab.node` with CNI configs from `confDir` (copied to its own `net.d`) and plugins
 * linked from `binDirs` (first folder wins), builds and imports the pause image, and waits for its CRI.
 * Throws {@linkcode ContainerdUnavailable} when containerd cannot start here.
 */
export async function startContainerd(
  lab: Lab,
  options: { confDir: string; binDirs: string[] },
): Promise<Containerd> {
  const dir = `${lab.dir}/ctrd`;
  for (const d of ["root", "state", "opt", "images", "net.d"]) {
    await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  }
  for await (const e of Deno.readDir(options.confDir)) {
    if (e.isFile) await Deno.copyFile(`${options.confDir}/${e.name}`, `${dir}/net.d/${e.name}`);
  }
  await linkPlugins(options.binDirs, `${dir}/cni-bin`);
  await Deno.writeTextFile(`${dir}/config.toml`, configToml(dir));
  const deps = await ensureClient().catch((e) => {
    throw new ContainerdUnavailable(`no CRI client: ${(e as Error).message}`);
  });
  const socket = `${dir}/containerd.sock`;
  const cgroupParent = `/${lab.prefix}`;

  // Fixed host folders of containerd 1.6 (libcni's cache, the shim sockets): removed at stop when this
  // containerd made them and they are empty again.
  const made = ["/var/lib/cni", "/var/lib/cni/results", "/run/containerd", "/run/containerd/s"].filter((d) =>
    !exists(d)
  );
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `exec nsenter --net='${lab.node.path}' containerd --config '${dir}/config.toml' >'${dir}/containerd.log' 2>&1`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pid = child.pid;
  const status = child.status;

  function cri(args: string[]): Promise<RunResult> {
    const extra = args[0] === "runp" ? ["runp", "--cgroup-parent", cgroupParent, ...args.slice(1)] : args;
    return runCommand("node", [`${criDir()}/cri.js`, "--socket", socket, "--timeout", "60", ...extra], {
      env: { ...Deno.env.toObject(), NODE_PATH: `${deps}/node_modules` },
    });
  }
  const log = () => Deno.readTextFile(`${dir}/containerd.log`).catch(() => "");

  async function stop(): Promise<void> {
    const pods = await cri(["pods"]);
    if (pods.code === 0) {
      for (const p of (JSON.parse(pods.stdout).items ?? []) as { id: string }[]) {
        await cri(["stopp", p.id]);
        await cri(["rmp", p.id]);
      }
    }
    const sandboxes: string[] = [];
    try {
      for await (const e of Deno.readDir(`${dir}/root/io.containerd.grpc.v1.cri/sandboxes`)) {
        sandboxes.push(e.name);
      }
    } catch {
      // none
    }
    for (const m of (await log()).matchAll(/sandbox id \\?"([0-9a-f]{64})/g)) sandboxes.push(m[1]);
    if (alive(pid)) {
      Deno.kill(pid, "SIGTERM");
      for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      if (alive(pid)) Deno.kill(pid, "SIGKILL");
    }
    await status;
    // The shims this containerd started (they outlive it by design), found by their -address argument.
    for (const shim of pidsWithArg(`-address ${socket} `)) Deno.kill(shim, "SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    // Mounts under the folder (rootfs, shm, pod netns), deepest first.
    const mounts = Deno.readTextFileSync("/proc/self/mountinfo").split("\n").map((l) => l.split(" ")[4])
      .filter((m) => m?.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
    for (const m of mounts) {
      if ((await runCommand("umount", [m])).code !== 0) await runCommand("umount", ["-l", m]);
    }
    const ids = new Set(sandboxes);
    try {
      for (const e of Deno.readDirSync("/var/lib/cni/results")) {
        if ([...ids].some((id) => e.name.includes(`-${id}-`))) {
          await Deno.remove(`/var/lib/cni/results/${e.name}`).catch(() => {});
        }
      }
    } catch {
      // no cache folder
    }
    for await (const c of Deno.readDir("/sys/fs/cgroup")) {
      const cgroup = `/sys/fs/cgroup/${c.name}${cgroupParent}`;
      // Leaves first: a cgroup folder can only be removed once its children are.
      await runCommand("sh", [
        "-c",
        '[ -d "$1" ] && find "$1" -depth -type d -exec rmdir {} \\; ; true',
        "sh",
        cgroup,
      ]);
    }
    for (const d of [...made].reverse()) await Deno.remove(d).catch(() => {});
  }

  try {
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = (await cri(["--timeout", "2", "version"]).catch(() => undefined))?.code === 0;
      if (!up) await new Promise((r) => setTimeout(r, 200));
    }
    if (!up) {
      throw new ContainerdUnavailable(
        `containerd's CRI did not come up:\n${(await log()).split("\n").slice(-15).join("\n")}`,
      );
    }
    await Deno.writeTextFile(`${dir}/images/pause.c`, PAUSE_C);
    await must(
      "gcc",
      ["-static", "-O2", "-s", "-o", `${dir}/images/pause`, `${dir}/images/pause.c`],
      "gcc pause",
    );
    await must("python3", [
      `${criDir()}/mkimage.py`,
      "lab.local/pause:1",
      `${dir}/images/pause.tar`,
      "--entrypoint",
      "/pause",
      `${dir}/images/pause:/pause`,
    ], "mkimage pause");
    await must("ctr", [
      "-a",
      socket,
      "-n",
      "k8s.io",
      "images",
      "import",
      "--snapshotter",
      "overlayfs",
      `${dir}/images/pause.tar`,
    ], "ctr images import");
  } catch (e) {
    await stop();
    throw e instanceof ContainerdUnavailable ? e : new ContainerdUnavailable((e as Error).message);
  }
  return { socket, dir, cri, log, stop };
}
