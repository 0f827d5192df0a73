/**
 * The watches that feed the policy engine, through client-node's list+watch informers: NetworkPolicies and
 * Namespaces of the whole cluster, this node's pods always, and the pods of every node only while some policy
 * has pod peers. The engine is told `ready()` once every informer started has listed. Every handler is
 * wrapped: a malformed object or a throwing callback is logged and skipped, never the daemon's end. A delete
 * whose object comes as a tombstone (`{ obj }` or only a name) is unwrapped. A failed watch is restarted after a
 * pause, and each re-list triggers a full resync of the kernel state.
 * @module
 */
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type { ClientNode } from "../k8s.ts";
import type { EngineLog, PolicyEngine } from "./engine.ts";
import { namespaceFromObject, podFromObject, policyFromObject } from "./model.ts";

/** Pause before a failed informer starts again. */
const RESTART_MS = 5000;

type Obj = Record<string, unknown>;

/** The object of a delete event: client-node passes the last known object; a tombstone wraps it. */
export function unwrapTombstone(obj: unknown): Obj | undefined {
  if (typeof obj !== "object" || obj === null) return undefined;
  const o = obj as Obj;
  if (o.metadata === undefined && typeof o.obj === "object" && o.obj !== null) return o.obj as Obj;
  return o;
}

function meta(obj: Obj | undefined): { namespace: string; name: string } | undefined {
  const m = obj?.metadata as Obj | undefined;
  if (!m || typeof m.name !== "string") return undefined;
  return { namespace: typeof m.namespace === "string" ? m.namespace : "", name: m.name };
}

interface Watched {
  informer: {
    on(verb: string, cb: (obj?: unknown) => void): void;
    start(): Promise<void>;
    stop(): Promise<void>;
  };
  synced: boolean;
  stopped: boolean;
}

/** The informers of one engine. */
export class PolicyWatches {
  readonly #k8s: ClientNode;
  readonly #kc: KubeConfig;
  readonly #engine: PolicyEngine;
  readonly #log: EngineLog;
  readonly #node: string;
  readonly #watched: Watched[] = [];
  #cluster?: Watched;
  #closed = false;

  /** Watches for `engine` through the cluster `kc` points at. */
  constructor(k8s: ClientNode, kc: KubeConfig, engine: PolicyEngine, log: EngineLog) {
    this.#k8s = k8s;
    this.#kc = kc;
    this.#engine = engine;
    this.#log = log;
    this.#node = engine.model.node;
  }

  /** Starts the policy, namespace and local pod informers. */
  start(): void {
    const core = this.#kc.makeApiClient(this.#k8s.CoreV1Api);
    const net = this.#kc.makeApiClient(this.#k8s.NetworkingV1Api);
    this.#watched.push(this.#informer(
      "networkpolicies",
      "/apis/networking.k8s.io/v1/networkpolicies",
      () => net.listNetworkPolicyForAllNamespaces(),
      (obj) => {
        this.#engine.setPolicy(policyFromObject(obj));
        this.#podsNeeded();
      },
      (m) => {
        this.#engine.deletePolicy(m.namespace, m.name);
        this.#podsNeeded();
      },
    ));
    this.#watched.push(this.#informer(
      "namespaces",
      "/api/v1/namespaces",
      () => core.listNamespace(),
      (obj) => {
        const ns = namespaceFromObject(obj);
        if (ns) this.#engine.setNamespace(ns.name, ns.labels);
      },
      (m) => this.#engine.deleteNamespace(m.name),
    ));
    this.#watched.push(this.#podInformer(`spec.nodeName=${this.#node}`));
  }

  #podInformer(fieldSelector?: string): Watched {
    const core = this.#kc.makeApiClient(this.#k8s.CoreV1Api);
    return this.#informer(
      fieldSelector ? "pods of this node" : "pods of every node",
      "/api/v1/pods",
      () => core.listPodForAllNamespaces(fieldSelector ? { fieldSelector } : {}),
      (obj) => {
        const pod = podFromObject(obj);
        if (pod) this.#engine.setPod(pod);
      },
      (m) => this.#engine.deletePod(m.namespace, m.name),
      fieldSelector,
    );
  }

  /** Starts or stops the cluster-wide pod informer as the policies need. */
  #podsNeeded(): void {
    if (this.#closed) return;
    const need = this.#engine.needsClusterPods();
    if (need && !this.#cluster) {
      this.#log.v(2, "network policy: a policy has pod peers; watching the pods of every node");
      this.#cluster = this.#podInformer();
    } else if (!need && this.#cluster) {
      this.#log.v(2, "network policy: no policy has pod peers; watching this node's pods only");
      const w = this.#cluster;
      this.#cluster = undefined;
      w.stopped = true;
      w.informer.stop().catch(() => {});
      this.#engine.dropRemotePods();
    }
  }

  #checkReady(): void {
    const all = this.#cluster ? [...this.#watched, this.#cluster] : this.#watched;
    if (this.#watched.length === 3 && all.every((w) => w.synced)) this.#engine.ready();
  }

  #informer(
    what: string,
    path: string,
    list: () => Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }>,
    upsert: (obj: Obj) => void,
    remove: (m: { namespace: string; name: string }) => void,
    fieldSelector?: string,
  ): Watched {
    const guard = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        this.#log.warn(`network policy: ${what}: ${(e as Error).message}; skipped`);
      }
    };
    let lists = 0;
    const w: Watched = {
      informer: new this.#k8s.ListWatch(
        path,
        new this.#k8s.Watch(this.#kc),
        async () => {
          const result = await list();
          // The informer handles the items right after this resolves; count the list as synced after that.
          setTimeout(() =>
            guard(() => {
              w.synced = true;
              if (lists++ > 0) this.#engine.resync();
              this.#checkReady();
            }), 0);
          return result as never;
        },
        false,
        undefined,
        fieldSelector,
      ) as unknown as Watched["informer"],
      synced: false,
      stopped: false,
    };
    w.informer.on("add", (obj) => guard(() => upsert(obj as Obj)));
    w.informer.on("update", (obj) => guard(() => upsert(obj as Obj)));
    w.informer.on("delete", (obj) =>
      guard(() => {
        const m = meta(unwrapTombstone(obj));
        if (m) remove(m);
      }));
    w.informer.on("error", (err) =>
      guard(() => {
        if (w.stopped || this.#closed) return;
        this.#log.warn(
          `network policy: watch of ${what} failed: ${(err as Error)?.message ?? err}; restarting`,
        );
        setTimeout(() => {
          if (!w.stopped && !this.#closed) w.informer.start().catch(() => {});
        }, RESTART_MS);
      }));
    w.informer.start().catch((e) => this.#log.warn(`network policy: ${what}: ${(e as Error).message}`));
    return w;
  }

  /** Stops every informer. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = this.#cluster ? [...this.#watched, this.#cluster] : [...this.#watched];
    for (const w of all) w.stopped = true;
    await Promise.all(all.map((w) => w.informer.stop().catch(() => {})));
  }
}
