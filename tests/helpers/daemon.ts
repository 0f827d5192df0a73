/**
 * E2e helpers: a fake apiserver and `galaxy serve` started as processes inside a lab's node namespace, and a
 * runtime-style driver that executes the `galaxy-sdn` launcher through `cni/invoke.ts` (tests/helpers/cnitool.ts).
 * @module
 */
import { requestDaemon } from "../../cni/wire.ts";
import { launcherDir, REPO_ROOT } from "./launchers.ts";
import type { Lab, Netns, RunResult } from "./netns.ts";

/** A process the test started, with its stderr collected. */
export class Started {
  readonly #child: Deno.ChildProcess;
  readonly #stderr: Promise<string>;
  readonly #stdout: Promise<string>;
  #status?: Promise<Deno.CommandStatus>;

  constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#stderr = new Response(child.stderr).text();
    this.#stdout = new Response(child.stdout).text();
  }

  /** The process ID. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Sends a signal to this process only. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** Waits for exit and returns the exit code and what it printed. */
  async wait(): Promise<RunResult> {
    this.#status ??= this.#child.status;
    const status = await this.#status;
    return { code: status.code, stdout: await this.#stdout, stderr: await this.#stderr };
  }

  /** Waits up to `ms` for it to exit by itself, then kills it. */
  async exited(ms: number): Promise<RunResult> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((r) => timer = setTimeout(r, ms));
    this.#status ??= this.#child.status;
    await Promise.race([this.#status, timeout]);
    clearTimeout(timer);
    this.kill("SIGKILL");
    return await this.wait();
  }

  /** Stops it with `signal` (if still running) and waits, bounded by `ms`, then SIGKILL. */
  stop(signal: Deno.Signal = "SIGTERM", ms = 15_000): Promise<RunResult> {
    this.kill(signal);
    return this.exited(ms);
  }
}

function spawnIn(
  ns: Netns,
  cmd: string,
  args: string[],
  env?: Record<string, string>,
  netOnly = false,
): Started {
  // `ip netns exec` also gives the process a mount namespace of its own, which does not see bind mounts made
  // later outside it (a container runtime's pod netns files); `nsenter --net` switches the network only.
  const prefix = netOnly ? ["nsenter", `--net=${ns.path}`] : ["ip", "netns", "exec", ns.name];
  const child = new Deno.Command(prefix[0], {
    args: [...prefix.slice(1), cmd, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new Started(child);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** A fake apiserver running in the lab's node namespace. */
export interface FakeApiserver {
  /** The kubeconfig file that points at it. */
  kubeconfig: string;
  /** Stores (creates or replaces) a pod. */
  putPod(pod: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Stores a namespace or a networkpolicy. */
  putObject(kind: "namespaces" | "networkpolicies", obj: Record<string, unknown>): Promise<unknown>;
  /** Deletes a namespace (`namespace` "-") or a networkpolicy. */
  deleteObject(kind: "namespaces" | "networkpolicies", namespace: string, name: string): Promise<unknown>;
  /** Removes a pod (watchers get DELETED). */
  deletePod(namespace: string, name: string): Promise<unknown>;
  /** The PATCH bodies it received. */
  patches(): Promise<
    { namespace: string; name: string; body: { metadata: { annotations: Record<string, string> } } }[]
  >;
  /** The Events it stores (created, then merge-patched). */
  events(): Promise<Record<string, unknown>[]>;
  /** The process. */
  process: Started;
}

/** Starts the fake apiserver in `lab.node` and writes a kubeconfig for it. */
export async function startFakeApiserver(lab: Lab): Promise<FakeApiserver> {
  const control = `${lab.dir}/apiserver.sock`;
  const portFile = `${lab.dir}/apiserver.port`;
  const process = spawnIn(lab.node, Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    `${REPO_ROOT}/tests/helpers/fake_apiserver.ts`,
    control,
    portFile,
  ]);
  const port = await waitFor("the fake apiserver", async () => {
    try {
      return (await Deno.readTextFile(portFile)).trim() || undefined;
    } catch {
      return undefined;
    }
  });
  const kubeconfig = `${lab.dir}/kubeconfig`;
  await Deno.writeTextFile(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:${port}
    insecure-skip-tls-verify: true
users:
- name: tester
  user:
    token: test-token
contexts:
- name: fake
  context:
    cluster: fake
    user: tester
current-context: fake
`,
  );
  async function call(method: string, path: string, body?: unknown) {
    const r = await requestDaemon(control, path, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      timeoutMs: 5000,
    });
    if (r.status !== 200) throw new Error(`fake apiserver ${method} ${path}: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }
  return {
    kubeconfig,
    process,
    putPod: (pod) => call("PUT", "/pods", pod),
    putObject: (kind, obj) => call("PUT", `/objects/${kind}`, obj),
    deleteObject: (kind, ns, name) => call("DELETE", `/objects/${kind}/${ns}/${name}`),
    deletePod: (namespace, name) => call("DELETE", `/pods/${namespace}/${name}`),
    patches: () => call("GET", "/patches"),
    events: () => call("GET", "/events"),
  };
}

/** A running `galaxy serve`. */
export interface Daemon {
  /** Its socket. */
  socket: string;
  /** Its state folder. */
  stateDir: string;
  /** The process. */
  process: Started;
}

/** Flags and files for {@linkcode startDaemon}. */
export interface DaemonOptions {
  /** galaxy.json content. */
  galaxyJson: unknown;
  /** `--kubeconfig`; standalone when absent. */
  kubeconfig?: string;
  /** `--network-conf-dir`. */
  confDir?: string;
  /** Extra `--cni-paths` entries (the launcher folder and /usr/lib/cni are always there). */
  cniPaths?: string[];
  /** More flags. */
  flags?: string[];
  /** Wait for /readyz (default true). */
  waitReady?: boolean;
  /**
   * Enter the node namespace with `nsenter --net` only (default: `ip netns exec`), so that the daemon sees
   * netns files a container runtime bind-mounts after it started.
   */
  netOnly?: boolean;
  /** The state folder (default `<lab>/state`; a restarted daemon passes the same). */
  stateDir?: string;
  /** Extra environment (e.g. `XTABLES_LOCKFILE` for a legacy-iptables daemon). */
  env?: Record<string, string>;
}

/** Starts `galaxy serve` (through its launcher) in `lab.node` and waits until it is ready. */
export async function startDaemon(lab: Lab, options: DaemonOptions): Promise<Daemon> {
  const configPath = `${lab.dir}/galaxy.json`;
  await Deno.writeTextFile(configPath, JSON.stringify(options.galaxyJson));
  const socket = `${lab.dir}/run/galaxy.sock`;
  const stateDir = options.stateDir ?? `${lab.dir}/state`;
  const bin = await launcherDir();
  const args = [
    "serve",
    `--json-config-path=${configPath}`,
    `--network-conf-dir=${options.confDir ?? `${lab.dir}/net.d`}`,
    `--cni-paths=${[bin, "/usr/lib/cni", ...(options.cniPaths ?? [])].join(",")}`,
    `--socket-path=${socket}`,
    `--state-dir=${stateDir}`,
    "--hostname-override=node-a",
    "--v=3",
    ...(options.kubeconfig ? [`--kubeconfig=${options.kubeconfig}`] : []),
    ...(options.flags ?? []),
  ];
  // The GC's folders and the runtime socket default to the node's real ones: keep them inside the lab.
  const labDefaults: Record<string, string> = {
    "gc-dirs": `${lab.dir}/gc`,
    "flannel-allocated-ip-dir": `${lab.dir}/gc-ipam`,
    "container-runtime-endpoint": `unix://${lab.dir}/no-runtime.sock`,
  };
  for (const [flag, value] of Object.entries(labDefaults)) {
    if (!args.some((a) => a.startsWith(`--${flag}=`))) args.push(`--${flag}=${value}`);
  }
  const process = spawnIn(lab.node, `${bin}/galaxy`, args, options.env, options.netOnly);
  const daemon = { socket, stateDir, process };
  if (options.waitReady ?? true) {
    try {
      await waitFor("galaxy serve to become ready", async () => {
        const r = await requestDaemon(socket, "/readyz", { timeoutMs: 1000 });
        return r.status === 200 ? true : undefined;
      });
    } catch (e) {
      const out = await process.stop("SIGKILL");
      throw new Error(`${(e as Error).message}\ndaemon stderr:\n${out.stderr}`);
    }
  }
  return daemon;
}

/** What a runtime passes for one pod. */
export interface PodCall {
  /** Container (sandbox) ID. */
  containerId: string;
  /** The pod's namespace. */
  pod: Netns;
  /** Pod namespace and name for CNI_ARGS. */
  k8s?: { namespace: string; name: string; uid?: string };
  /** The runtime's interface name (default eth0). */
  ifname?: string;
  /** Capability arguments (libcni puts them in `runtimeConfig`), e.g. `portMappings`. */
  capabilityArgs?: Record<string, unknown>;
}

/** The runtime's conflist for the shim, as `galaxy install` writes it. */
export function shimList(socket: string, cniVersion = "1.1.0"): Record<string, unknown> {
  return {
    cniVersion,
    name: "galaxy-sdn",
    plugins: [{ type: "galaxy-sdn", socketPath: socket, capabilities: { portMappings: true } }],
  };
}

/**
 * Runs one verb through the shim exactly as a runtime would (libcni semantics, in the node namespace). `path`
 * folders come before the launchers in the runtime's CNI_PATH.
 */
export async function runtimeCall(
  lab: Lab,
  verb: "add" | "del" | "check" | "status" | "gc",
  call: PodCall & { list: Record<string, unknown>; valid?: unknown[]; path?: string[] },
): Promise<RunResult> {
  const args: [string, string][] = [["IgnoreUnknown", "1"]];
  if (call.k8s) {
    args.push(["K8S_POD_NAMESPACE", call.k8s.namespace], ["K8S_POD_NAME", call.k8s.name]);
    args.push(["K8S_POD_INFRA_CONTAINER_ID", call.containerId]);
    if (call.k8s.uid) args.push(["K8S_POD_UID", call.k8s.uid]);
  }
  const request = {
    list: call.list,
    rt: {
      containerId: call.containerId,
      netns: call.pod.path,
      ifname: call.ifname ?? "eth0",
      args,
      capabilityArgs: call.capabilityArgs,
    },
    path: [...(call.path ?? []), await launcherDir()],
    cacheDir: `${lab.dir}/runtime-cache`,
    valid: call.valid,
  };
  return await lab.tryExec(lab.node, Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    `${REPO_ROOT}/tests/helpers/cnitool.ts`,
    verb,
  ], { stdin: JSON.stringify(request) });
}
