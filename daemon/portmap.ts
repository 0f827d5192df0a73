/**
 * Port mapping for pods (`hostPort`, and random host ports with the `tkestack.io/portmapping` annotation):
 * the host ports held open by the daemon, the port file `<port-dir>/<containerID>` (Galaxy's format, written
 * atomically before the rules), the nat rules in one `iptables-restore` per change, the chosen random ports
 * written back to the annotation, the restore at start and the base rules every minute.
 *
 * Every iptables change rebuilds `KUBE-HOSTPORTS` from the mappings this daemon holds, so a jump is never
 * there twice and none outlives its pod; all changes go through one queue, so two pods never race on it.
 * Release works from the port file alone (DEL without pod or apiserver, and the GC).
 * @module
 */
import { CniError, ErrorCode } from "../cni/spec.ts";
import { writeFileAtomic } from "../netops/fs_atomic.ts";
import { type Iptables, RestoreBatch, type SavedTable } from "../netops/iptables.ts";
import { routeGet } from "../netops/ip.ts";
import { setHostSysctls } from "../netops/sysctl.ts";
import { type HeldPort, holdHostPort, HostPortError } from "./host_ports.ts";
import {
  ensureBaseRules,
  hostportChainName,
  hostportChains,
  HOSTPORTS_CHAIN,
  mappingBatch,
  masqueradeMark,
  mergePorts,
  parsePortList,
  type PodPorts,
  type Port,
  PORTMAPPING_ANNOTATION,
  runtimePorts,
  specPorts,
  wantsRandomPorts,
} from "./portmap_rules.ts";

/** How often the base rules and KUBE-HOSTPORTS are checked and repaired. */
export const BASE_RULES_INTERVAL_MS = 60_000;

/** Logging as port mapping needs it (the handler's logger fits). */
export interface PortmapLog {
  /** Informational message. */
  info(msg: string): void;
  /** Something went wrong but the work goes on. */
  warn(msg: string): void;
  /** Verbose message at glog level `level`. */
  v(level: number, msg: string): void;
}

/** What port mapping needs from the apiserver side. */
export interface PortmapPods {
  /** Merge-patches one annotation of a pod (retrying conflicts). */
  setAnnotation(namespace: string, name: string, key: string, value: string): Promise<void>;
}

/** A pod as the start-up restore reads it. */
export interface RestorePod extends PodPorts {
  /** Phase and address. */
  status?: { podIP?: string; phase?: string };
}

/** Settings of a {@linkcode PortMapper}. */
export interface PortMapperOptions {
  /** The port-file folder (`--port-dir`, else `<state-dir>/port`). */
  portDir: string;
  /** The iptables to use (backend chosen at start). */
  iptables: Iptables;
  /** kube-proxy's masquerade bit (`--masquerade-bit`, default 14 = 0x4000). */
  masqueradeBit: number;
  /** The logger. */
  log: PortmapLog;
  /** The apiserver side; absent in standalone mode (no random-port write-back). */
  pods?: PortmapPods;
}

/** What ADD hands to port mapping. */
export interface PortmapRequest {
  /** The sandbox ID. */
  containerId: string;
  /** The pod (name, namespace, annotations, containers' ports). */
  pod: PodPorts;
  /** The pod's IPv4 address from the merged result, if it has one. */
  podIP?: string;
  /** The runtime's `runtimeConfig` (its `portMappings`). */
  runtimeConfig?: Record<string, unknown>;
}

interface Mapping {
  /** Container ID, or `pod:<ns>/<name>` for a pod restored without a port file. */
  key: string;
  /** `<ns>/<name>` when known. */
  pod: string;
  ports: Port[];
  sockets: HeldPort[];
}

function overlaps(a: Port, b: Port): boolean {
  return a.hostPort === b.hostPort && a.protocol === b.protocol &&
    (a.hostIP === undefined || b.hostIP === undefined || a.hostIP === b.hostIP);
}

/** The host-port mappings of this node's pods. */
export class PortMapper {
  readonly #opts: PortMapperOptions;
  readonly #mark: string;
  readonly #mappings = new Map<string, Mapping>();
  #queue: Promise<unknown> = Promise.resolve();
  #timer?: ReturnType<typeof setInterval>;
  #restored = false;
  #closed = false;

  constructor(options: PortMapperOptions) {
    this.#opts = options;
    this.#mark = masqueradeMark(options.masqueradeBit);
  }

  /** The port file of a container. */
  portFile(containerId: string): string {
    return `${this.#opts.portDir.replace(/\/+$/, "")}/${containerId}`;
  }

  /** The ports mapped now, per container (or `pod:<ns>/<name>`); for tests and logs. */
  active(): Map<string, Port[]> {
    return new Map([...this.#mappings].map(([k, m]) => [k, m.ports.map((p) => ({ ...p }))]));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #allPorts(): Port[] {
    return [...this.#mappings.values()].flatMap((m) => m.ports.filter((p) => p.hostPort > 0));
  }

  async #apply(remove: Iterable<string>, nat?: SavedTable): Promise<void> {
    const ipt = this.#opts.iptables;
    const saved = nat ?? await ipt.save("nat");
    const batch = ensureBaseRules(new RestoreBatch(), saved, { mark: this.#mark });
    await ipt.restore(mappingBatch(batch, this.#allPorts(), remove));
  }

  /**
   * Maps the ports of one ADD: spec and runtimeConfig merged, host ports held, port file, rules, and the
   * random ports written back to the annotation before it returns. Returns the final ports (empty when the
   * pod maps none). On failure nothing of this container is left (sockets, file, rules).
   */
  async setUp(req: PortmapRequest): Promise<Port[]> {
    const requests = mergePorts(specPorts(req.pod), runtimePorts(req.runtimeConfig));
    const namespace = req.pod.metadata?.namespace ?? "";
    const name = req.pod.metadata?.name ?? "";
    const podKey = `${namespace}/${name}`;
    // A second ADD of the container, or a new sandbox of the pod, replaces what the earlier one held.
    const earlier = [...this.#mappings.values()].filter((m) =>
      m.key === req.containerId || (m.pod === podKey && name !== "")
    );
    for (const m of earlier) await this.releasePortMappings(m.key);
    if (requests.length === 0) return [];
    if (!req.podIP) {
      throw new CniError(ErrorCode.PluginFailure, "port mapping: the pod's networks gave it no IPv4 address");
    }
    const podIP = req.podIP;
    const ports = await this.#serial(async () => {
      const held: HeldPort[] = [];
      const ports: Port[] = [];
      let fileWritten = false;
      try {
        for (const r of requests) {
          const taken = this.#allPorts().find((p) =>
            r.hostPort > 0 && overlaps(p, { ...r, podName: "", podIP: "" })
          );
          if (taken) {
            throw new HostPortError(
              `hostPort ${r.hostPort}/${r.protocol} on ${
                r.hostIP ?? "0.0.0.0"
              } is already in use by pod ${taken.podName}`,
            );
          }
          const socket = await holdHostPort(r.protocol, r.hostPort, r.hostIP);
          held.push(socket);
          const port: Port = { ...r, hostPort: socket.port, podName: name, podIP };
          ports.push(port);
        }
        fileWritten = true;
        await writeFileAtomic(this.portFile(req.containerId), JSON.stringify(ports));
        this.#mappings.set(req.containerId, { key: req.containerId, pod: podKey, ports, sockets: held });
        await this.#apply([]);
      } catch (e) {
        this.#mappings.delete(req.containerId);
        for (const s of held) s.close();
        // Before the port file nothing reached the kernel but the sockets, already closed.
        if (fileWritten) await this.#cleanupAfterFailure(req.containerId, ports);
        throw new CniError(ErrorCode.PluginFailure, `port mapping: ${(e as Error).message}`);
      }
      return ports;
    });
    await this.#localnet([podIP]);
    if (wantsRandomPorts(req.pod) && this.#opts.pods) {
      try {
        await this.#opts.pods.setAnnotation(namespace, name, PORTMAPPING_ANNOTATION, JSON.stringify(ports));
      } catch (e) {
        await this.releasePortMappings(req.containerId).catch(() => {});
        throw new CniError(
          ErrorCode.TryAgainLater,
          `port mapping: cannot write ${PORTMAPPING_ANNOTATION} of pod ${podKey}: ${(e as Error).message}`,
        );
      }
    }
    this.#opts.log.info(
      `port mapping for ${podKey} (${req.containerId}): ${
        ports.map((p) => `${p.hostIP ?? ""}:${p.hostPort}/${p.protocol}->${p.podIP}:${p.containerPort}`).join(
          ", ",
        )
      }`,
    );
    return ports;
  }

  async #cleanupAfterFailure(containerId: string, ports: Port[]): Promise<void> {
    await Deno.remove(this.portFile(containerId)).catch(() => {});
    try {
      await this.#apply(ports.filter((p) => p.hostPort > 0).map(hostportChainName));
    } catch (e) {
      this.#opts.log.warn(
        `port mapping: cleanup after a failed ADD of ${containerId}: ${(e as Error).message}`,
      );
    }
  }

  /** Reads a port file: the ports, `[]` for an empty file, `undefined` when there is none. */
  async readPortFile(containerId: string): Promise<Port[] | undefined> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.portFile(containerId));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    if (text.trim() === "") return [];
    try {
      return parsePortList(text, `port file ${this.portFile(containerId)}`);
    } catch (e) {
      this.#opts.log.warn(
        `port mapping: ${(e as Error).message}; removing it (start-up cleans stale chains)`,
      );
      return [];
    }
  }

  /**
   * Removes the port mappings of one container: sockets closed, its jumps and chains removed, its port file
   * removed. Works from the port file alone (DEL after a restart, the GC); idempotent; a container without
   * ports costs one failed file read.
   */
  releasePortMappings(containerId: string): Promise<void> {
    return this.#serial(async () => {
      const mapping = this.#mappings.get(containerId);
      const fromFile = /^pod:/.test(containerId) ? [] : await this.readPortFile(containerId);
      if (!mapping && fromFile === undefined) return;
      const chains = new Set(
        [...(mapping?.ports ?? []), ...(fromFile ?? [])].filter((p) => p.hostPort > 0).map(
          hostportChainName,
        ),
      );
      if (mapping) {
        this.#mappings.delete(containerId);
        for (const s of mapping.sockets) s.close();
      }
      if (chains.size > 0 || mapping) await this.#apply(chains);
      if (fromFile !== undefined) {
        await Deno.remove(this.portFile(containerId)).catch((e) => {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        });
      }
    });
  }

  /**
   * Deletes `KUBE-HP-*` chains no mapping held now uses, in the same restore that rebuilds KUBE-HOSTPORTS
   * (as the start-up restore does); a chain a live mapping uses is kept whatever the caller thought.
   */
  removeStaleChains(chains: string[]): Promise<void> {
    return this.#serial(() => this.#apply(chains));
  }

  /** The `KUBE-HP-*` chains of the mappings held now. */
  liveChains(): Set<string> {
    return new Set(this.#allPorts().map(hostportChainName));
  }

  /** Releases what a pod restored without a port file holds (`pod:<ns>/<name>`), if anything. */
  releasePod(namespace: string, name: string): Promise<void> {
    const key = `pod:${namespace}/${name}`;
    return this.#mappings.has(key) ? this.releasePortMappings(key) : Promise.resolve();
  }

  /**
   * Start-up: the mappings of the pods on this node come back (sockets and rules) without a new ADD, and
   * every `KUBE-HP-*` chain no live mapping owns (a removed pod's, the Go Galaxy's) goes, all in one restore.
   * A port file counts when a live pod has its name and address (all files count when `pods` is `undefined`,
   * i.e. no apiserver); a live pod without a port file (e.g. mapped by a Galaxy that wrote none) is restored
   * from its annotation when that holds ports, else from its spec. Files of pods gone are left to DEL and GC.
   */
  async restore(pods: RestorePod[] | undefined | (() => Promise<RestorePod[] | undefined>)): Promise<void> {
    // The wait for the pod cache happens outside the queue: DELs (which work from port files in any order
    // with the restore) are not held up by an apiserver that does not answer; ADDs need the pod anyway.
    const list = typeof pods === "function" ? await pods() : pods;
    return this.#serial(async () => {
      if (this.#closed) return;
      try {
        await this.#restore(list);
      } finally {
        this.#restored = true;
      }
    });
  }

  /** Why the mapper is not ready (its start-up restore has not run yet), or `undefined`. */
  notReadyReason(): string | undefined {
    return this.#restored ? undefined : "port mappings not restored yet";
  }

  async #restore(pods: RestorePod[] | undefined): Promise<void> {
    const files = await this.#portFiles();
    const live = pods?.filter((p) =>
      !p.spec?.hostNetwork && p.status?.podIP && p.status.phase !== "Succeeded" &&
      p.status.phase !== "Failed"
    );
    const wanted: { key: string; pod: string; ports: Port[] }[] = [];
    const covered = new Set<RestorePod>();
    for (const [containerId, ports] of files) {
      if (!live) {
        wanted.push({ key: containerId, pod: "", ports });
        continue;
      }
      const owner = live.find((p) =>
        ports.every((port) => port.podName === p.metadata?.name && port.podIP === p.status?.podIP)
      );
      if (!owner) {
        this.#opts.log.v(
          2,
          `port mapping: port file of ${containerId} belongs to no live pod; left to DEL/GC`,
        );
        continue;
      }
      covered.add(owner);
      wanted.push({ key: containerId, pod: `${owner.metadata?.namespace}/${owner.metadata?.name}`, ports });
    }
    for (const pod of live ?? []) {
      if (covered.has(pod)) continue;
      const ports = this.#podPorts(pod);
      if (ports.length) {
        const podKey = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
        wanted.push({ key: `pod:${podKey}`, pod: podKey, ports });
      }
    }
    for (const w of wanted) {
      const sockets: HeldPort[] = [];
      for (const p of w.ports) {
        try {
          sockets.push(await holdHostPort(p.protocol, p.hostPort, p.hostIP));
        } catch (e) {
          this.#opts.log.warn(
            `port mapping restore of ${w.key}: ${(e as Error).message}; rules restored anyway`,
          );
        }
      }
      this.#mappings.get(w.key)?.sockets.forEach((s) => s.close());
      this.#mappings.set(w.key, { ...w, sockets });
    }
    const nat = await this.#opts.iptables.save("nat");
    await this.#apply(hostportChains(nat), nat);
    await this.#localnet([...new Set(this.#allPorts().map((p) => p.podIP))]);
    this.#opts.log.info(
      `port mapping restored: ${wanted.length} pod(s), ${this.#allPorts().length} port(s); ` +
        `${
          hostportChains(nat).filter((c) => !this.#allPorts().some((p) => hostportChainName(p) === c))
            .length
        } stale chain(s) removed`,
    );
  }

  #podPorts(pod: RestorePod): Port[] {
    const name = pod.metadata?.name ?? "";
    const podIP = pod.status?.podIP ?? "";
    const value = pod.metadata?.annotations?.[PORTMAPPING_ANNOTATION];
    try {
      if (value) {
        return parsePortList(value, `annotation ${PORTMAPPING_ANNOTATION} of ${name}`)
          .filter((p) => p.hostPort > 0)
          .map((p) => ({ ...p, podName: p.podName || name, podIP: p.podIP || podIP }));
      }
      // Random ports never chosen (empty annotation) stay unmapped: Galaxy wrote `--dport 0` rules here.
      return specPorts(pod).filter((p) => p.hostPort > 0).map((p) => ({ ...p, podName: name, podIP }));
    } catch (e) {
      this.#opts.log.warn(
        `port mapping restore: pod ${pod.metadata?.namespace}/${name}: ${(e as Error).message}`,
      );
      return [];
    }
  }

  async #portFiles(): Promise<Map<string, Port[]>> {
    const out = new Map<string, Port[]>();
    try {
      for await (const e of Deno.readDir(this.#opts.portDir)) {
        if (!e.isFile || e.name.startsWith(".")) continue;
        const ports = await this.readPortFile(e.name).catch(() => undefined);
        if (ports?.length) out.set(e.name, ports.filter((p) => p.hostPort > 0));
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out;
  }

  /**
   * Localhost → hostPort: the kernel drops a packet from 127.0.0.0/8 leaving a non-loopback device unless
   * that device has `route_localnet`, so it is set on the host device that routes to each mapped pod only.
   */
  async #localnet(podIPs: string[]): Promise<void> {
    for (const ip of podIPs) {
      try {
        const dev = (await routeGet(null, ip))?.dev;
        if (dev && dev !== "lo") await setHostSysctls({ [`net/ipv4/conf/${dev}/route_localnet`]: "1" });
      } catch (e) {
        this.#opts.log.warn(`port mapping: route_localnet for ${ip}: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Checks the base rules and KUBE-HOSTPORTS against the mappings held and repairs them in one restore when
   * something is missing (another tool flushed a chain); nothing runs when all is in place.
   */
  ensureRules(): Promise<void> {
    return this.#serial(async () => {
      const nat = await this.#opts.iptables.save("nat");
      const base = ensureBaseRules(new RestoreBatch(), nat, { mark: this.#mark });
      const want = new Set(this.#allPorts().map(hostportChainName));
      const have = (nat.chains.get(HOSTPORTS_CHAIN)?.rules ?? []).map((r) =>
        r.args[r.args.indexOf("-j") + 1]
      );
      const complete = have.length === want.size && have.every((c) => want.has(c) && nat.chains.has(c));
      if (complete && base.isEmpty()) return;
      await this.#apply([], nat);
    });
  }

  /** Runs {@linkcode PortMapper.ensureRules} every `intervalMs` until {@linkcode PortMapper.close}. */
  startPeriodic(intervalMs = BASE_RULES_INTERVAL_MS): void {
    this.#timer = setInterval(() => {
      this.ensureRules().catch((e) =>
        this.#opts.log.warn(`port mapping base rules: ${(e as Error).message}`)
      );
    }, intervalMs);
    Deno.unrefTimer(this.#timer);
  }

  /** Stops the periodic check and closes every held socket; rules stay for the next start to restore. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await this.#queue;
    for (const m of this.#mappings.values()) for (const s of m.sockets) s.close();
    this.#mappings.clear();
  }
}

/** The IPv4 address of a merged CNI result (the first `ips` entry that is IPv4), without prefix length. */
export function firstIPv4(result: { ips?: { address: string }[] }): string | undefined {
  for (const ip of result.ips ?? []) {
    const addr = ip.address.split("/")[0];
    if (/^\d+\.\d+\.\d+\.\d+$/.test(addr)) return addr;
  }
  return undefined;
}
