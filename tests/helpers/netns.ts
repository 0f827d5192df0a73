/**
 * Test harness for the real kernel: a "lab" of network namespaces with a unique name prefix per test (one
 * "node", any number of "pods"), commands run inside them, kernel state read back as JSON with `ip -j`, and
 * everything removed in `finally`, also when the test fails. The host namespace is never touched.
 * @module
 */

const decoder = new TextDecoder();

/** True when the tests run as root (needed for namespaces). */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

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

/** Why kernel tests cannot run here, or `undefined` when they can. */
export function kernelSkipReason(): string | undefined {
  if (!isRoot()) return "not running as root (network namespaces need root)";
  if (!hasCommand("ip")) return "iproute2's ip is not installed";
  return undefined;
}

/**
 * Registers a test that needs root and iproute2. Where they are missing the test is ignored and the reason
 * printed, so a skipped kernel test is never silent.
 */
export function kernelTest(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void>,
  options: { otherSkipReason?: string } = {},
): void {
  const reason = kernelSkipReason() ?? options.otherSkipReason;
  if (reason) console.log(`skipping "${name}": ${reason}`);
  Deno.test({ name, ignore: reason !== undefined, fn });
}

/** The outcome of a command. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** Runs a command and returns its outcome without throwing on a non-zero exit. */
export async function runCommand(
  cmd: string,
  args: string[],
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
    await writer.close().catch(() => {});
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Runs a command and returns its stdout, throwing with its stderr when it fails. */
export async function mustRun(
  cmd: string,
  args: string[],
  options: { stdin?: string } = {},
): Promise<string> {
  const r = await runCommand(cmd, args, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** A network namespace made by the lab. */
export interface Netns {
  /** The name under /var/run/netns. */
  name: string;
  /** The path plugins get as CNI_NETNS. */
  path: string;
}

/** A set of namespaces and a scratch folder owned by one test. */
export class Lab {
  /** The unique prefix of every name this lab makes. */
  readonly prefix: string;
  /** The "node" namespace, where runtimes and daemons of the test run. */
  readonly node: Netns;
  /** A scratch folder removed with the lab. */
  readonly dir: string;
  readonly #namespaces: Netns[] = [];

  private constructor(prefix: string, node: Netns, dir: string) {
    this.prefix = prefix;
    this.node = node;
    this.dir = dir;
    this.#namespaces.push(node);
  }

  /** Makes a lab with a fresh node namespace whose loopback is up. */
  static async create(label: string): Promise<Lab> {
    const rand = crypto.randomUUID().slice(0, 6);
    const prefix = `gtest-${label.replace(/[^a-z0-9]/gi, "").slice(0, 12)}-${Deno.pid}-${rand}`;
    const dir = await Deno.makeTempDir({ prefix: `${prefix}-` });
    const node: Netns = { name: `${prefix}-node`, path: `/var/run/netns/${prefix}-node` };
    await mustRun("ip", ["netns", "add", node.name]);
    const lab = new Lab(prefix, node, dir);
    await lab.ip(node, ["link", "set", "lo", "up"]);
    return lab;
  }

  /** Makes a pod namespace named `<prefix>-<name>` with loopback up. */
  async pod(name: string): Promise<Netns> {
    const ns: Netns = { name: `${this.prefix}-${name}`, path: `/var/run/netns/${this.prefix}-${name}` };
    await mustRun("ip", ["netns", "add", ns.name]);
    this.#namespaces.push(ns);
    await this.ip(ns, ["link", "set", "lo", "up"]);
    return ns;
  }

  /** Removes a pod namespace early (to test a vanished netns). */
  async removeNetns(ns: Netns): Promise<void> {
    await runCommand("ip", ["netns", "del", ns.name]);
    const i = this.#namespaces.indexOf(ns);
    if (i >= 0) this.#namespaces.splice(i, 1);
  }

  /** Runs a command inside `ns`, throwing when it fails. */
  exec(ns: Netns, cmd: string, args: string[], options: { stdin?: string } = {}): Promise<string> {
    return mustRun("ip", ["netns", "exec", ns.name, cmd, ...args], options);
  }

  /** Runs a command inside `ns` and returns its outcome whatever it is. */
  tryExec(
    ns: Netns,
    cmd: string,
    args: string[],
    options: { stdin?: string; env?: Record<string, string> } = {},
  ): Promise<RunResult> {
    return runCommand("ip", ["netns", "exec", ns.name, cmd, ...args], options);
  }

  /** Runs `ip -n <ns> <args>`. */
  ip(ns: Netns, args: string[]): Promise<string> {
    return mustRun("ip", ["-n", ns.name, ...args]);
  }

  /** Reads kernel state with `ip -j -n <ns> <args>` and parses it. */
  async ipJson<T = Record<string, unknown>[]>(ns: Netns, args: string[]): Promise<T> {
    const out = await mustRun("ip", ["-j", "-n", ns.name, ...args]);
    return JSON.parse(out.trim() || "[]") as T;
  }

  /** The links in `ns` by name. */
  async linkNames(ns: Netns): Promise<string[]> {
    const links = await this.ipJson<{ ifname: string }[]>(ns, ["link", "show"]);
    return links.map((l) => l.ifname);
  }

  /**
   * The global-scope addresses (`addr/prefix`) of one interface in `ns`, or `[]` when it does not exist;
   * kernel-made link-local IPv6 addresses are left out.
   */
  async addresses(ns: Netns, ifname: string): Promise<string[]> {
    const r = await runCommand("ip", ["-j", "-n", ns.name, "addr", "show", "dev", ifname]);
    if (r.code !== 0) return [];
    type AddrInfo = { local: string; prefixlen: number; scope: string };
    const links = JSON.parse(r.stdout.trim() || "[]") as { addr_info: AddrInfo[] }[];
    return links.flatMap((l) =>
      l.addr_info.filter((a) => a.scope !== "link").map((a) => `${a.local}/${a.prefixlen}`)
    );
  }

  /** Removes every namespace and the scratch folder; safe to call twice. */
  async dispose(): Promise<void> {
    for (const ns of this.#namespaces.splice(0).reverse()) {
      await runCommand("ip", ["netns", "del", ns.name]);
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Runs `fn` with a fresh lab and always disposes of it, whatever `fn` does. */
export async function withLab(label: string, fn: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = await Lab.create(label);
  try {
    await fn(lab);
  } finally {
    await lab.dispose();
  }
}

/** Namespaces whose name starts with `prefix` (to prove a test left none behind). */
export async function namespacesWithPrefix(prefix: string): Promise<string[]> {
  const out = await mustRun("ip", ["-j", "netns", "list"]);
  const list = JSON.parse(out.trim() || "[]") as { name: string }[];
  return list.map((n) => n.name).filter((n) => n.startsWith(prefix));
}

/** True when something exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
