/**
 * Which containers still live, as the GC sees it at the start of a pass. The container runtime is the truth:
 * one `ListPodSandbox` per pass, and a container ID it does not list is gone. Without a reachable runtime the
 * GC falls back to the apiserver's pods on this node and to whether the pod's network namespace still exists.
 * Whatever cannot be decided counts as alive.
 * @module
 */
import type { CriClient, Sandbox } from "./cri.ts";
import type { StoredNetwork } from "./state.ts";

/** The pods of this node, as the daemon's pod cache has them. */
export interface NodePods {
  /** `namespace/name` → UID, or `undefined` while the cache is not synced. */
  nodePodUids(): Map<string, { uid?: string }> | undefined;
}

/** What the GC knows about a container from its files. */
export interface ContainerFacts {
  /** The container ID, or the 9-character prefix a veth name carries. */
  id: string;
  /** The pod it was made for (from the state file's CNI_ARGS). */
  pod?: { namespace: string; name: string; uid?: string };
  /** Its network namespace path (from the state file). */
  netns?: string;
  /** True when a newer state file names the same pod: a later sandbox replaced this one. */
  replaced?: boolean;
  /** True when its ADD came without K8S_POD_NAME: not a pod, so neither the CRI nor the apiserver knows it. */
  notAPod?: boolean;
}

/** The facts a state file gives about its container (the CNI_ARGS and netns its ADD had). */
export function factsFromState(id: string, networks: StoredNetwork[] | undefined): ContainerFacts {
  const runtime = networks?.find((n) => n.Runtime)?.Runtime;
  const facts: ContainerFacts = { id };
  const a = runtime?.args ?? {};
  if (a.K8S_POD_NAMESPACE && a.K8S_POD_NAME) {
    facts.pod = { namespace: a.K8S_POD_NAMESPACE, name: a.K8S_POD_NAME, uid: a.K8S_POD_UID || undefined };
  } else if (runtime) {
    // A runtime outside Kubernetes (standalone mode): the CRI does not list its containers.
    facts.notAPod = true;
  }
  if (runtime?.netns) facts.netns = runtime.netns;
  return facts;
}

/** The GC's judgement of one container. */
export interface Verdict {
  /** True only when the container is known to be gone. */
  dead: boolean;
  /** Why, for the log and the metrics. */
  reason: string;
}

/** Where the verdicts of a pass come from. */
export type LivenessSource = "runtime" | "apiserver" | "none";

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** One pass's view of which containers live. */
export class Liveness {
  /** Where the verdicts come from. */
  readonly source: LivenessSource;
  /** Why the runtime could not be used, when it could not. */
  readonly runtimeError?: string;
  readonly #sandboxes: Sandbox[];
  readonly #pods?: Map<string, { uid?: string }>;

  private constructor(
    source: LivenessSource,
    sandboxes: Sandbox[],
    pods: Map<string, { uid?: string }> | undefined,
    runtimeError?: string,
  ) {
    this.source = source;
    this.#sandboxes = sandboxes;
    this.#pods = pods;
    this.runtimeError = runtimeError;
  }

  /** Asks the runtime once (if there is one); falls back to the pod cache when it cannot be reached. */
  static async take(cri: CriClient | undefined, pods: NodePods | undefined): Promise<Liveness> {
    const podMap = pods?.nodePodUids();
    if (cri) {
      try {
        return new Liveness("runtime", await cri.listSandboxes(), podMap);
      } catch (e) {
        const why = (e as Error).message;
        return new Liveness(podMap ? "apiserver" : "none", [], podMap, why);
      }
    }
    return new Liveness(podMap ? "apiserver" : "none", [], podMap, "no container runtime configured");
  }

  /** The sandboxes the runtime listed (empty unless the source is the runtime). */
  get sandboxes(): readonly Sandbox[] {
    return this.#sandboxes;
  }

  /** The pods of this node, when the pod cache is synced. */
  get pods(): ReadonlyMap<string, { uid?: string }> | undefined {
    return this.#pods;
  }

  #podGone(pod: { namespace: string; name: string; uid?: string }): boolean | undefined {
    if (!this.#pods) return undefined;
    const found = this.#pods.get(`${pod.namespace}/${pod.name}`);
    if (!found) return true;
    return Boolean(pod.uid && found.uid && pod.uid !== found.uid);
  }

  /** Whether the container is known to be gone. */
  async judge(facts: ContainerFacts): Promise<Verdict> {
    if (facts.notAPod) return { dead: false, reason: "not a Kubernetes pod (no K8S_POD_NAME at its ADD)" };
    if (this.source === "runtime") return this.#judgeByRuntime(facts);
    if (this.source === "none") return { dead: false, reason: "no runtime and no pod cache to ask" };
    // The apiserver fallback: the pod must be gone from this node (or replaced by a newer sandbox), and its
    // network namespace, when known, must be gone too.
    if (!facts.pod) return { dead: false, reason: "no pod recorded for it" };
    const gone = this.#podGone(facts.pod);
    if (gone === undefined) return { dead: false, reason: "pod cache not synced" };
    if (!gone && !facts.replaced) return { dead: false, reason: "its pod is still on this node" };
    if (facts.netns && await pathExists(facts.netns)) {
      return { dead: false, reason: `its network namespace ${facts.netns} still exists` };
    }
    const who = `${facts.pod.namespace}/${facts.pod.name}`;
    return {
      dead: true,
      reason: gone ? `pod ${who} is no longer on this node` : `pod ${who} has a newer sandbox`,
    };
  }

  #judgeByRuntime(facts: ContainerFacts): Verdict {
    const matching = this.#sandboxes.filter((s) => s.id === facts.id || s.id.startsWith(facts.id));
    if (matching.length === 0) return { dead: true, reason: "the runtime no longer lists its sandbox" };
    if (matching.some((s) => s.state === "SANDBOX_READY")) return { dead: false, reason: "sandbox ready" };
    // NOTREADY: stopped, normally after its DEL. It is dead once its pod is gone (by the sandbox's own
    // metadata; Galaxy read annotations the CRI does not return, so it never collected these).
    for (const s of matching) {
      const gone = this.#podGone({
        namespace: s.metadata.namespace,
        name: s.metadata.name,
        uid: s.metadata.uid,
      });
      if (gone !== true) return { dead: false, reason: "sandbox not ready but its pod may still need it" };
    }
    return { dead: true, reason: "sandbox not ready and its pod is gone" };
  }
}
