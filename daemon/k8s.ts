/**
 * The daemon's view of Kubernetes: a cache of this node's pods (list + watch filtered by `spec.nodeName`), a GET
 * fallback that waits for a pod the cache has not seen yet, and the network-status annotation write.
 * `@kubernetes/client-node` is loaded here only, by dynamic import: it costs ~0.3 s and ~100 MB.
 * @module
 */
import process from "node:process";
import type { CoreV1Api, KubeConfig, V1Pod } from "@kubernetes/client-node";
import { CniError, ErrorCode } from "../cni/spec.ts";
import type { HandlerLog, PodSource } from "./handler.ts";
import { checkPodName } from "./k8s_names.ts";
import { NETWORK_STATUS_ANNOTATION } from "./handler.ts";
import type { FailureWriter } from "./failure.ts";
import { runtimeUidOf } from "./pod_uid.ts";

/** A repeated event (same pod, reason and message) within this long bumps the count of the one written. */
const EVENT_SERIES_MS = 10 * 60_000;

/** How to reach the apiserver: Galaxy's `--master` and `--kubeconfig`. */
export interface ApiserverFlags {
  /** `--master`: the apiserver URL, overriding the kubeconfig's. */
  master: string;
  /** `--kubeconfig`: a kubeconfig file. */
  kubeconfig: string;
}

/** True when no apiserver is configured at all: the daemon then runs standalone. */
export function isStandalone(flags: ApiserverFlags, env: Record<string, string | undefined>): boolean {
  return !flags.master && !flags.kubeconfig && !env.KUBERNETES_SERVICE_HOST;
}

/** The parts of the client-node module the daemon uses. */
export type ClientNode = typeof import("./k8s_client.ts");

/** Loads @kubernetes/client-node (by dynamic import: only the daemon pays for it). */
export async function loadClientNode(): Promise<ClientNode> {
  // client-node pulls in punycode through node-fetch; silence its deprecation warning before it loads.
  (process as unknown as { noDeprecation: boolean }).noDeprecation = true;
  return await import("./k8s_client.ts");
}

/** The KubeConfig of `--kubeconfig` / `--master` / in-cluster. */
export function kubeConfig(k8s: ClientNode, flags: ApiserverFlags): KubeConfig {
  const kc = new k8s.KubeConfig();
  if (flags.kubeconfig) {
    kc.loadFromFile(flags.kubeconfig);
    if (flags.master) {
      const current = kc.getCurrentCluster();
      kc.clusters = kc.clusters.map((c) => c.name === current?.name ? { ...c, server: flags.master } : c);
    }
  } else if (flags.master) {
    kc.loadFromOptions({
      clusters: [{ name: "master", server: flags.master, skipTLSVerify: flags.master.startsWith("http:") }],
      users: [{ name: "anonymous" }],
      contexts: [{ name: "master", cluster: "master", user: "anonymous" }],
      currentContext: "master",
    });
  } else {
    kc.loadFromCluster();
  }
  return kc;
}

function statusCode(e: unknown): number | undefined {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "number" ? code : undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** A {@linkcode PodSource} backed by the apiserver. */
export class KubePodSource implements PodSource, FailureWriter {
  readonly #api: CoreV1Api;
  readonly #kc: KubeConfig;
  readonly #k8s: ClientNode;
  readonly #node: string;
  readonly #log: HandlerLog;
  readonly #pods = new Map<string, V1Pod>();
  readonly #stop = new AbortController();
  #synced = false;
  #lastError = "";
  #watch?: AbortController;
  #loop?: Promise<void>;
  readonly #events = new Map<string, { name: string; count: number; last: number }>();
  /** How long a missing pod is waited for. */
  notFoundWaitMs = 5000;

  private constructor(k8s: ClientNode, kc: KubeConfig, node: string, log: HandlerLog) {
    this.#k8s = k8s;
    this.#kc = kc;
    this.#api = kc.makeApiClient(k8s.CoreV1Api);
    this.#node = node;
    this.#log = log;
  }

  /** Connects to the apiserver and starts syncing this node's pods in the background. */
  static async start(flags: ApiserverFlags, node: string, log: HandlerLog): Promise<KubePodSource> {
    const k8s = await loadClientNode();
    const source = new KubePodSource(k8s, kubeConfig(k8s, flags), node, log);
    source.#loop = source.#run();
    return source;
  }

  /** Why the cache is not usable yet. */
  notReadyReason(): string | undefined {
    if (this.#synced) return undefined;
    return `pod cache of node ${this.#node} not synced${this.#lastError ? ` (${this.#lastError})` : ""}`;
  }

  /** The pods of this node by `namespace/name`, with their UIDs; `undefined` until the cache has synced. */
  nodePodUids(): Map<string, { uid?: string }> | undefined {
    if (!this.#synced) return undefined;
    return new Map([...this.#pods].map(([key, pod]) => [key, { uid: pod.metadata?.uid }]));
  }

  async #run(): Promise<void> {
    const fieldSelector = `spec.nodeName=${this.#node}`;
    while (!this.#stop.signal.aborted) {
      try {
        const list = await this.#api.listPodForAllNamespaces({ fieldSelector });
        this.#pods.clear();
        for (const pod of list.items) this.#pods.set(`${pod.metadata?.namespace}/${pod.metadata?.name}`, pod);
        this.#synced = true;
        this.#lastError = "";
        this.#log.v(2, `pod cache synced: ${list.items.length} pod(s) on node ${this.#node}`);
        await this.#watchFrom(list.metadata?.resourceVersion ?? "", fieldSelector);
      } catch (e) {
        this.#lastError = (e as Error).message;
        this.#log.warn(`pod cache: ${this.#lastError}; retrying`);
      }
      await sleep(1000, this.#stop.signal);
    }
  }

  #watchFrom(resourceVersion: string, fieldSelector: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const watch = new this.#k8s.Watch(this.#kc);
      watch.watch(
        "/api/v1/pods",
        { fieldSelector, resourceVersion, allowWatchBookmarks: true },
        (type: string, pod: V1Pod) => {
          const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
          if (type === "ADDED" || type === "MODIFIED") this.#pods.set(key, pod);
          else if (type === "DELETED") this.#pods.delete(key);
        },
        (err: unknown) => {
          this.#watch = undefined;
          if (err && !this.#stop.signal.aborted) reject(err);
          else resolve();
        },
      ).then((controller: AbortController) => {
        this.#watch = controller;
        if (this.#stop.signal.aborted) controller.abort();
      }, reject);
    });
  }

  /** The pod from the cache, else from the apiserver, waiting up to 5 s while it is not found. */
  async getPod(namespace: string, name: string, options: { uid?: string } = {}): Promise<V1Pod> {
    checkPodName(namespace, name);
    const cached = this.#pods.get(`${namespace}/${name}`);
    if (cached && (!options.uid || runtimeUidOf(cached) === options.uid)) return cached;
    const deadline = Date.now() + this.notFoundWaitMs;
    while (true) {
      try {
        return await this.#api.readNamespacedPod({ name, namespace });
      } catch (e) {
        const code = statusCode(e);
        if (code !== 404) {
          throw new CniError(
            ErrorCode.TryAgainLater,
            `cannot get pod ${namespace}/${name}: ${(e as Error).message}`,
          );
        }
        if (Date.now() >= deadline) {
          throw new CniError(
            ErrorCode.PluginFailure,
            `pod ${namespace}/${name} not found (waited ${this.notFoundWaitMs} ms)`,
          );
        }
      }
      await sleep(250, this.#stop.signal);
    }
  }

  /** Merge-patches the network-status annotation, retrying conflicts and server errors a few times. */
  setNetworkStatus(namespace: string, name: string, value: string): Promise<void> {
    return this.setAnnotation(namespace, name, NETWORK_STATUS_ANNOTATION, value);
  }

  /** This node's pods as the cache holds them, once it has synced (waiting up to `timeoutMs`); else `undefined`. */
  async nodePods(timeoutMs: number): Promise<V1Pod[] | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#synced && Date.now() < deadline && !this.#stop.signal.aborted) {
      await sleep(100, this.#stop.signal);
    }
    return this.#synced ? [...this.#pods.values()] : undefined;
  }

  /**
   * Writes an Event on the pod (source `galaxy` on this node). The same reason and message again within ten
   * minutes patches the count and time of the Event already written, as the kubelet's recorder does.
   */
  async recordPodEvent(
    pod: { namespace: string; name: string; uid?: string },
    event: { reason: string; message: string; type: "Warning" | "Normal" },
  ): Promise<void> {
    const now = new Date();
    const key = `${pod.namespace}/${pod.name}\u0000${event.reason}\u0000${event.message}`;
    const earlier = this.#events.get(key);
    if (earlier && now.getTime() - earlier.last < EVENT_SERIES_MS) {
      earlier.count++;
      earlier.last = now.getTime();
      const options = this.#k8s.setHeaderOptions("Content-Type", this.#k8s.PatchStrategy.MergePatch);
      try {
        await this.#api.patchNamespacedEvent({
          name: earlier.name,
          namespace: pod.namespace,
          body: { count: earlier.count, lastTimestamp: now.toISOString() },
        }, options);
        return;
      } catch (e) {
        if (statusCode(e) !== 404) throw e;
        // the Event expired meanwhile: write a new one
      }
    }
    const name = `${pod.name}.${now.getTime().toString(16)}${
      Math.floor(Math.random() * 0x1000).toString(16)
    }`;
    await this.#api.createNamespacedEvent({
      namespace: pod.namespace,
      body: {
        metadata: { name, namespace: pod.namespace },
        involvedObject: {
          apiVersion: "v1",
          kind: "Pod",
          namespace: pod.namespace,
          name: pod.name,
          uid: pod.uid,
        },
        reason: event.reason,
        message: event.message,
        type: event.type,
        source: { component: "galaxy", host: this.#node },
        reportingComponent: "galaxy",
        reportingInstance: this.#node,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
    this.#events.set(key, { name, count: 1, last: now.getTime() });
    for (const [k, v] of this.#events) if (now.getTime() - v.last >= EVENT_SERIES_MS) this.#events.delete(k);
  }

  /**
   * Merge-patches one annotation (no resourceVersion, so nothing else is clobbered), retrying conflicts and
   * server errors; `null` removes it.
   */
  async setAnnotation(namespace: string, name: string, key: string, value: string | null): Promise<void> {
    checkPodName(namespace, name);
    const body = { metadata: { annotations: { [key]: value } } };
    const options = this.#k8s.setHeaderOptions("Content-Type", this.#k8s.PatchStrategy.MergePatch);
    for (let attempt = 1;; attempt++) {
      try {
        await this.#api.patchNamespacedPod({ name, namespace, body }, options);
        return;
      } catch (e) {
        const code = statusCode(e) ?? 0;
        if (attempt >= 5 || !(code === 409 || code === 429 || code >= 500)) throw e;
        await sleep(100 * attempt, this.#stop.signal);
      }
    }
  }

  /** Stops the watch and the sync loop. */
  async close(): Promise<void> {
    this.#stop.abort();
    this.#watch?.abort();
    await this.#loop;
  }
}
