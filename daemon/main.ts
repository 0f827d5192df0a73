/**
 * `galaxy serve`: the node daemon. Start-up order: flags, logging, galaxy.json, the pod source (or standalone
 * mode), the node upkeep (kernel settings, route-ENI, the GC with the container runtime), then the socket.
 * SIGTERM/SIGINT stop accepting, let in-flight requests finish (bounded), stop the upkeep loops and exit 0.
 * @module
 */
import { versionLine } from "../cli/version.ts";
import { loadGalaxyConfig } from "./config.ts";
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
import { isStandalone, KubePodSource } from "./k8s.ts";
import { configureLogging, getLog } from "./log.ts";
import { CniMetrics, Counters, describeExchange, serveMetrics } from "./metrics.ts";
import { startServer } from "./server.ts";
import { configureNetnsWorkers, shutdownNetnsWorkers } from "../netops/netns.ts";
import { configureInProcessPlugins } from "../cni/in_process.ts";
import { builtinPluginLoaders } from "../cli/executables.ts";
import { Iptables } from "../netops/iptables.ts";
import { PortMapper } from "./portmap.ts";

/** How long the start-up port-mapping restore waits for the pod cache before it trusts the port files alone. */
const RESTORE_SYNC_WAIT_MS = 10_000;

/** How long in-flight requests may take to finish after SIGTERM. */
const SHUTDOWN_GRACE_MS = 20_000;

/** The node name: `--hostname-override`, else `MY_NODE_NAME`, else the hostname; trimmed and lower-cased. */
export function nodeName(flags: Pick<ServeFlags, "hostnameOverride">): string {
  return (flags.hostnameOverride || Deno.env.get("MY_NODE_NAME") || Deno.hostname()).trim().toLowerCase();
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
  configureInProcessPlugins(builtinPluginLoaders());
  const log = getLog("daemon");
  log.info(`starting ${versionLine()}`);
  const notInEffect = notInEffectWarning(flags);
  if (notInEffect) log.warn(notInEffect);

  let ctx: HandlerContext;
  let pods: KubePodSource | undefined;
  let portmap: PortMapper | undefined;
  try {
    const config = await loadGalaxyConfig(flags.jsonConfigPath);
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
    const iptables = await Iptables.open({ backend: flags.iptablesBackend });
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
    ctx = {
      portmap,
      config,
      confDir: flags.networkConfDir,
      cniPaths: flags.cniPaths,
      stateDir: flags.stateDir,
      pods,
      log: getLog("cni"),
      pluginEnv: Deno.env.toObject(),
      gcGraceMs: flags.gcGracePeriodMs,
    };
  } catch (e) {
    log.error(`cannot start: ${(e as Error).message}`);
    await portmap?.close();
    await pods?.close();
    return 1;
  }

  const counters = new Counters();
  const upkeep = startUpkeep(flags, ctx, pods, counters);

  let stopping = false;
  ctx.shuttingDown = () => stopping;
  const metrics = new CniMetrics();
  const server = startServer({
    cni: async (body) => {
      const started = performance.now();
      const reply = await handleCni(ctx, body);
      const { verb, code } = describeExchange(body, reply);
      metrics.observe(verb, code, (performance.now() - started) / 1000);
      return reply;
    },
    notReadyReason: () => pods?.notReadyReason() ?? portmap?.notReadyReason(),
  }, { socketPath: flags.socketPath, maxConcurrent: flags.maxConcurrentRequests });
  log.info(`listening on ${flags.socketPath} (at most ${flags.maxConcurrentRequests} requests at once)`);
  const metricsServer = flags.metricsAddress
    ? serveMetrics(metrics, splitHostPort(flags.metricsAddress), { load: () => server.load(), counters })
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
  await upkeep.stop();
  await metricsServer?.shutdown();
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
): { stop(): Promise<void> } {
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
    async stop() {
      const started = await gcStarted;
      await Promise.all([started?.gc.stop(), kernel.stop(), eni?.stop()]);
      started?.cri.close();
    },
  };
}
