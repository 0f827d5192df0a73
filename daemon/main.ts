/**
 * `galaxy serve`: the node daemon. Start-up order: flags, logging, galaxy.json, the pod source (or standalone
 * mode), the node upkeep (kernel settings, route-ENI, the GC with the container runtime), then the socket.
 * SIGTERM/SIGINT stop accepting, let in-flight requests finish (bounded), stop the upkeep loops and exit 0.
 * @module
 */
import { versionLine } from "../cli/version.ts";
import { loadGalaxyConfig, unnamedNetworkWarnings } from "./config.ts";
import {
  FlagError,
  notInEffectWarning,
  parseServeFlags,
  type ServeFlags,
  serveHelp,
  splitHostPort,
} from "./flags.ts";
import { EniKeeper } from "./eni.ts";
import { GarbageCollector } from "./gc.ts";
import {
  busyContainers,
  handleCni,
  type HandlerContext,
  isContainerBusy,
  releaseFromState,
  withContainerLock,
} from "./handler.ts";
import { KernelKeeper } from "./kernel.ts";
import { isStandalone, kubeConfig, KubePodSource, loadClientNode } from "./k8s.ts";
import { configureLogging, getLog } from "./log.ts";
import {
  CniMetrics,
  Counters,
  describeExchange,
  renderPolicyMetrics,
  renderProcessMetrics,
  serveMetrics,
} from "./metrics.ts";
import type { NetworkPolicyHandle } from "./policy/mod.ts";
import { runQueuedDels } from "./queued_dels.ts";
import { startServer } from "./server.ts";
import { configureNetnsWorkers, shutdownNetnsWorkers } from "../netops/netns.ts";
import { configureInProcessPlugins } from "../cni/in_process.ts";
import { builtinPluginLoaders } from "../cli/executables.ts";
import { Iptables } from "../netops/iptables.ts";
import { PortMapper } from "./portmap.ts";
import {
  type AuditContext,
  auditMetrics,
  type AuditReport,
  type PolicyInventory,
  runAudit,
} from "./audit.ts";
import { FailureReporter } from "./failure.ts";
import { planPod } from "./plan.ts";
import { DEFAULT_LOCK_DIR } from "../cni/plugins/kit/sriov_state.ts";
import type { CriClient } from "./cri.ts";
import type { GalaxyConfig } from "./config.ts";

/** How often the daemon audits the node by itself, for the `galaxy_audit_*` metrics (report only). */
const AUDIT_INTERVAL_MS = 5 * 60_000;

/** How long the start-up port-mapping restore waits for the pod cache before it trusts the port files alone. */
const RESTORE_SYNC_WAIT_MS = 10_000;

/** How long in-flight requests may take to finish after SIGTERM. */
const SHUTDOWN_GRACE_MS = 20_000;

/** The node name: `--hostname-override`, else `MY_NODE_NAME`, else the hostname; trimmed and lower-cased. */
export function nodeName(flags: Pick<ServeFlags, "hostnameOverride">): string {
  return (flags.hostnameOverride || Deno.env.get("MY_NODE_NAME") || Deno.hostname()).trim().toLowerCase();
}

/**
 * `--network-policy`: starts enforcement (it needs the apiserver). Without the flag, removes whatever `GLX-`
 * chains and sets a previous run (ours or Go Galaxy's) left, best effort: a node without iptables or ipset
 * has nothing to remove. Either way, also what the audit should take as owned `GLX-` state.
 */
async function startPolicy(
  flags: ServeFlags,
  options: { node: string; haveApiserver: boolean; iptables: Iptables },
): Promise<{ handle?: NetworkPolicyHandle; inventory: PolicyInventory }> {
  const log = getLog("policy");
  const { removePolicyState, startNetworkPolicy, unownedInventory } = await import("./policy/mod.ts");
  if (!flags.networkPolicy) {
    const inventory = unownedInventory(options.iptables, "--network-policy is off: no policy engine owns it");
    try {
      const removed = await removePolicyState(options.iptables);
      if (removed.chainsDeleted || removed.setsDestroyed) {
        log.info(
          `--network-policy is off: removed ${removed.chainsDeleted} GLX- chains and ${removed.setsDestroyed} sets`,
        );
      }
    } catch (e) {
      log.v(2, `--network-policy is off; no policy state removed: ${(e as Error).message}`);
    }
    return { inventory };
  }
  if (!options.haveApiserver) {
    log.warn("--network-policy needs the apiserver: not enforced in standalone mode");
    return {
      inventory: unownedInventory(options.iptables, "standalone mode: no policy engine runs to own it"),
    };
  }
  const k8s = await loadClientNode();
  const handle = await startNetworkPolicy(k8s, kubeConfig(k8s, flags), {
    node: options.node,
    log,
    iptables: options.iptables,
  });
  log.info("network policy: enforcing; the rules in force stay until the first sync after the watches list");
  return { handle, inventory: handle.inventory };
}

/** Runs the daemon until a signal stops it; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let flags: ServeFlags;
  try {
    const parsed = parseServeFlags(args);
    if (parsed === "help") {
      console.log(serveHelp());
      return 0;
    }
    flags = parsed;
  } catch (e) {
    if (!(e instanceof FlagError)) throw e;
    console.error(`galaxy serve: ${e.message}`);
    console.error(serveHelp());
    return 2;
  }
  if (flags.version) {
    console.log(versionLine());
    return 0;
  }
  configureLogging(flags);
  // A long-lived process: namespace work goes to pooled setns workers, not an nsenter child per step.
  configureNetnsWorkers({ executor: "worker" });
  // Built-in plugins (and a built-in's delegate) run as functions here, not as a Deno process each.
  await configureInProcessPlugins(builtinPluginLoaders());
  const log = getLog("daemon");
  log.info(`starting ${versionLine()}`);
  const notInEffect = notInEffectWarning(flags);
  if (notInEffect) log.warn(notInEffect);

  let ctx: HandlerContext;
  let pods: KubePodSource | undefined;
  let policy: NetworkPolicyHandle | undefined;
  let portmap: PortMapper | undefined;
  let iptables: Iptables | undefined;
  let policyInventory: PolicyInventory | undefined;
  const metrics = new CniMetrics();
  try {
    const config = await loadGalaxyConfig(flags.jsonConfigPath);
    for (const warning of unnamedNetworkWarnings(config)) log.warn(warning);
    const node = nodeName(flags);
    if (isStandalone(flags, Deno.env.toObject())) {
      log.info(
        "no --master, --kubeconfig or in-cluster environment: standalone mode, every pod gets DefaultNetworks",
      );
    } else {
      pods = await KubePodSource.start(
        { master: flags.master, kubeconfig: flags.kubeconfig },
        node,
        getLog("k8s"),
      );
    }
    iptables = await Iptables.open({ backend: flags.iptablesBackend });
    log.info(`iptables backend: ${iptables.backend} (${iptables.commands.restore}; ${iptables.reason})`);
    portmap = new PortMapper({
      portDir: flags.portDir || `${flags.stateDir.replace(/\/+$/, "")}/port`,
      iptables,
      masqueradeBit: flags.masqueradeBit,
      log: getLog("portmap"),
      pods,
    });
    // The pods' host ports come back before any port-mapping request runs (they queue behind it); the socket
    // serves everything else at once. A failure is logged, never fatal.
    const source = pods;
    portmap.restore(async () => {
      if (!source) return undefined;
      const nodePods = await source.nodePods(RESTORE_SYNC_WAIT_MS);
      if (!nodePods) log.warn("pod cache not synced: port mappings restored from the port files alone");
      return nodePods;
    }).catch((e) => log.error(`port mapping restore: ${(e as Error).message}`));
    portmap.startPeriodic();
    ({ handle: policy, inventory: policyInventory } = await startPolicy(flags, {
      node,
      haveApiserver: pods !== undefined,
      iptables,
    }));
    ctx = {
      portmap,
      config,
      confDir: flags.networkConfDir,
      cniPaths: flags.cniPaths,
      stateDir: flags.stateDir,
      // With policy on, a new pod's ADD returns once its rules are in the kernel.
      pods: pods && policy ? policy.podSource(pods) : pods,
      log: getLog("cni"),
      pluginEnv: Deno.env.toObject(),
      gcGraceMs: flags.gcGracePeriodMs,
      pluginMetrics: metrics,
      failures: pods ? new FailureReporter(pods, getLog("cni")) : undefined,
    };
  } catch (e) {
    log.error(`cannot start: ${(e as Error).message}`);
    await policy?.close();
    await portmap?.close();
    await pods?.close();
    return 1;
  }

  const counters = new Counters();
  const upkeep = startUpkeep(flags, ctx, pods, counters);

  let stopping = false;
  ctx.shuttingDown = () => stopping;
  // DELs queued by shims during the outage run before the socket exists (an ADD meanwhile gets code 11 and
  // is retried), then once more for those queued while this one ran; /readyz waits for both.
  await runQueued(ctx, log);
  let drainingQueue = true;
  let lastAudit: AuditReport | undefined;
  const auditContext = async (): Promise<AuditContext> => ({
    stateDir: flags.stateDir,
    ipDirs: flags.flannelAllocatedIpDir,
    graceMs: flags.gcGracePeriodMs,
    cri: await upkeep.cri,
    pods,
    iptables,
    portmap,
    portDir: flags.portDir || `${flags.stateDir.replace(/\/+$/, "")}/port`,
    sriovDirs: sriovRecordDirs(ctx.config),
    policies: policyInventory,
    isBusy: isContainerBusy,
    busyContainers,
    withLock: withContainerLock,
    releaseState: (id) => releaseFromState(ctx, id),
  });
  const audit = async (fix: boolean) => lastAudit = await runAudit(await auditContext(), { fix });
  const auditTimer = setInterval(() => {
    audit(false).catch((e) => log.warn(`audit: ${(e as Error).message}`));
  }, AUDIT_INTERVAL_MS);
  Deno.unrefTimer(auditTimer);
  const server = startServer({
    cni: async (body) => {
      const started = performance.now();
      const reply = await handleCni(ctx, body);
      const { verb, code } = describeExchange(body, reply);
      metrics.observe(verb, code, (performance.now() - started) / 1000);
      return reply;
    },
    notReadyReason: () =>
      (drainingQueue ? "running queued DELs" : undefined) ?? pods?.notReadyReason() ??
        portmap?.notReadyReason(),
    plan: (namespace, name, ifname) =>
      planPod({ ...ctx, policies: policy?.selector }, namespace, name, ifname),
    audit,
  }, { socketPath: flags.socketPath, maxConcurrent: flags.maxConcurrentRequests });
  runQueued(ctx, log).finally(() => drainingQueue = false);
  log.info(`listening on ${flags.socketPath} (at most ${flags.maxConcurrentRequests} requests at once)`);
  const metricsServer = flags.metricsAddress
    ? serveMetrics(metrics, splitHostPort(flags.metricsAddress), {
      load: () => server.load(),
      counters,
      extra: () =>
        auditMetrics(lastAudit) + (policy ? renderPolicyMetrics(policy.engine.counters) : "") +
        renderProcessMetrics(),
    })
    : undefined;
  if (metricsServer) log.info(`metrics on http://${flags.metricsAddress}/metrics`);

  const stop = new Promise<string>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      Deno.addSignalListener(signal, () => resolve(signal));
    }
  });
  const signal = await stop;
  stopping = true;
  log.info(`${signal}: finishing in-flight requests (up to ${SHUTDOWN_GRACE_MS / 1000} s)`);
  await server.shutdown(SHUTDOWN_GRACE_MS);
  clearInterval(auditTimer);
  await upkeep.stop();
  await ctx.failures?.idle();
  await metricsServer?.shutdown();
  await policy?.close();
  await portmap?.close();
  await pods?.close();
  // The setns workers end with the daemon rather than with Deno.exit, so none is killed in the middle of a step.
  await shutdownNetnsWorkers();
  log.info("stopped");
  return 0;
}

/** The node upkeep loops: kernel settings, route-ENI tables and the GC; `stop` ends them all. */
function startUpkeep(
  flags: ServeFlags,
  ctx: HandlerContext,
  pods: KubePodSource | undefined,
  counters: Counters,
): { stop(): Promise<void>; cri: Promise<CriClient | undefined> } {
  const kernel = new KernelKeeper(flags, getLog("kernel"), { counters });
  kernel.start();
  const eni = flags.routeEni
    ? new EniKeeper(getLog("eni"), { metadataUrl: flags.eniMetadataUrl, counters })
    : undefined;
  eni?.start();

  // grpc-js costs ~0.25 s and ~28 MB to load: it is loaded beside the socket's start, not before it.
  const log = getLog("gc");
  const gcStarted = import("./cri.ts").then(({ CriClient, runtimeEndpoint }) => {
    const endpoint = runtimeEndpoint(flags.containerRuntimeEndpoint, Deno.env.toObject());
    const cri = new CriClient(endpoint);
    cri.version().then(
      (v) =>
        log.info(
          `container runtime ${v.runtimeName} ${v.runtimeVersion} (CRI ${v.runtimeApiVersion}) at ${endpoint}`,
        ),
      (e) =>
        log.warn(
          `container runtime at ${endpoint} not reachable (${
            (e as Error).message
          }): until it is, the GC decides ` +
            "from the apiserver's pods of this node and their network namespaces",
        ),
    );
    const gc = new GarbageCollector({
      stateDir: flags.stateDir,
      ipDirs: flags.flannelAllocatedIpDir,
      gcDirs: flags.gcDirs,
      intervalMs: flags.flannelGcIntervalMs,
      graceMs: flags.gcGracePeriodMs,
      cri,
      pods,
      releaseState: (id) => releaseFromState(ctx, id),
      // Works from the port file alone; the DEL from the state file has usually released them already.
      releasePorts: ctx.portmap ? (id) => ctx.portmap!.releasePortMappings(id) : undefined,
      isBusy: isContainerBusy,
      busyContainers,
      withLock: withContainerLock,
      counters,
      log,
    });
    gc.start();
    return { gc, cri };
  }).catch((e) => {
    log.error(`the GC cannot start: ${(e as Error).message}`);
    return undefined;
  });
  return {
    cri: gcStarted.then((s) => s?.cri),
    async stop() {
      const started = await gcStarted;
      await Promise.all([started?.gc.stop(), kernel.stop(), eni?.stop()]);
      started?.cri.close();
    },
  };
}

/** Runs the queued DELs, logging what stays; never throws. */
async function runQueued(ctx: HandlerContext, log: { info(m: string): void; warn(m: string): void }) {
  try {
    const { done, kept } = await runQueuedDels(ctx);
    if (done.length || kept.length) log.info(`queued DELs: ${done.length} done, ${kept.length} kept`);
  } catch (e) {
    log.warn(`queued DELs: ${(e as Error).message}`);
  }
}

/** Where galaxy-k8s-sriov keeps its VF records for the networks of galaxy.json (read by the audit). */
function sriovRecordDirs(config: GalaxyConfig): string[] {
  const dirs = new Set<string>();
  for (const conf of config.networks.values()) {
    const c = conf as Record<string, unknown>;
    if (c.type !== "galaxy-k8s-sriov") continue;
    dirs.add(typeof c.lockDir === "string" && c.lockDir ? c.lockDir : DEFAULT_LOCK_DIR);
  }
  return [...dirs];
}
