/**
 * Failures on the pod: when an ADD fails, the operator sees why with `kubectl describe pod` and
 * `kubectl get pod -o yaml`, not only in the node's log. Each failure becomes a Kubernetes Event (reason
 * `NetworkSetupFailed`) and the annotation `k8s.v1.cni.galaxy.io/network-failure`; the next successful ADD of
 * the pod removes the annotation.
 *
 * The writes run after the reply to the runtime (an apiserver that is slow must not hold up the kubelet's
 * retry), one at a time per pod, so a failure and the success that follows it land in that order.
 * @module
 */
import type { PluginExec } from "../cni/invoke.ts";
import type { CniError } from "../cni/spec.ts";

/** The annotation that describes the pod's last failed ADD. */
export const NETWORK_FAILURE_ANNOTATION = "k8s.v1.cni.galaxy.io/network-failure";
/** The reason of the Event written for a failed ADD. */
export const NETWORK_FAILURE_REASON = "NetworkSetupFailed";
/** How many of the failing plugin's last stderr lines the annotation keeps. */
const STDERR_LINES = 10;
/** At most this many characters of stderr in the annotation. */
const STDERR_CHARS = 2000;

/** What the annotation holds (JSON); documented in the README ("When something is wrong"). */
export interface NetworkFailure {
  /** The network whose set-up failed, or `""` when it failed before any network (e.g. resolution). */
  network: string;
  /** The plugin that failed, or `""` when none ran. */
  plugin: string;
  /** The CNI error code. */
  code: number;
  /** The CNI error message. */
  message: string;
  /** The last lines the failing plugin printed on stderr. */
  stderr: string;
  /** Seconds the ADD took until it failed. */
  durationSeconds: number;
  /** When it failed (RFC 3339). */
  time: string;
  /** The sandbox (CNI_CONTAINERID). */
  containerId: string;
}

/** What the pod source offers for failure reports; `KubePodSource` implements it. */
export interface FailureWriter {
  /** Creates an Event on the pod, or bumps the count of the same event written before. */
  recordPodEvent(
    pod: { namespace: string; name: string; uid?: string },
    event: { reason: string; message: string; type: "Warning" | "Normal" },
  ): Promise<void>;
  /** Sets (a string) or removes (`null`) one annotation of the pod. */
  setAnnotation(namespace: string, name: string, key: string, value: string | null): Promise<void>;
}

/** The last `STDERR_LINES` non-empty lines of `text`, bounded in size. */
export function lastStderrLines(text: string): string {
  const lines = text.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "");
  const tail = lines.slice(-STDERR_LINES).join("\n");
  return tail.length > STDERR_CHARS ? tail.slice(-STDERR_CHARS) : tail;
}

/**
 * The failure of an ADD from its error and the plugin processes it ran: the failing plugin is the last ADD
 * that exited with an error (rollback DELs that ran after it do not count).
 */
export function describeFailure(
  err: CniError,
  execs: readonly PluginExec[],
  context: { containerId: string; seconds: number; now?: Date },
): NetworkFailure {
  const failed = execs.findLast((e) => e.verb === "ADD" && e.code !== 0);
  const network = failed?.network ?? /^network "([^"]+)"/.exec(err.message)?.[1] ?? "";
  return {
    network,
    plugin: failed?.plugin ?? "",
    code: err.code,
    message: err.message,
    stderr: lastStderrLines(failed?.stderr ?? ""),
    durationSeconds: Math.round(context.seconds * 1000) / 1000,
    time: (context.now ?? new Date()).toISOString(),
    containerId: context.containerId,
  };
}

/** The Event message of a failure: network, plugin, CNI code and message. */
export function eventMessage(f: NetworkFailure): string {
  const where = f.network
    ? `network "${f.network}"${f.plugin ? `, plugin ${f.plugin}` : ""}`
    : "before any network";
  return `CNI ADD failed (${where}, code ${f.code}): ${f.message}`.slice(0, 1024);
}

/** Logging as the reporter needs it. */
export interface FailureLog {
  /** Something went wrong but nothing else depends on it. */
  warn(msg: string): void;
}

/** Writes failures to pods and clears them after a success, in order per pod, off the request path. */
export class FailureReporter {
  readonly #writer: FailureWriter;
  readonly #log: FailureLog;
  readonly #queues = new Map<string, Promise<void>>();
  /** Pods this daemon marked and has not cleared yet (the pod cache may not show the annotation yet). */
  readonly #marked = new Set<string>();

  constructor(writer: FailureWriter, log: FailureLog) {
    this.#writer = writer;
    this.#log = log;
  }

  #enqueue(key: string, fn: () => Promise<void>): Promise<void> {
    const run = (this.#queues.get(key) ?? Promise.resolve()).then(fn).catch((e) =>
      this.#log.warn(`pod ${key}: cannot write the network failure: ${(e as Error).message}`)
    );
    this.#queues.set(key, run);
    run.finally(() => {
      if (this.#queues.get(key) === run) this.#queues.delete(key);
    });
    return run;
  }

  /** Records a failed ADD: the Event and the annotation. Resolves when both are written (or failed). */
  report(pod: { namespace: string; name: string; uid?: string }, failure: NetworkFailure): Promise<void> {
    const key = `${pod.namespace}/${pod.name}`;
    this.#marked.add(key);
    return this.#enqueue(key, async () => {
      const results = await Promise.allSettled([
        this.#writer.recordPodEvent(pod, {
          reason: NETWORK_FAILURE_REASON,
          message: eventMessage(failure),
          type: "Warning",
        }),
        this.#writer.setAnnotation(
          pod.namespace,
          pod.name,
          NETWORK_FAILURE_ANNOTATION,
          JSON.stringify(failure),
        ),
      ]);
      const errors = results.filter((r) => r.status === "rejected").map((r) =>
        String(r.reason?.message ?? r.reason)
      );
      if (errors.length) throw new Error(errors.join(" / "));
    });
  }

  /** After a successful ADD: removes the annotation when the pod has it or this daemon set it. */
  clear(pod: { namespace: string; name: string; annotations?: Record<string, string> }): Promise<void> {
    const key = `${pod.namespace}/${pod.name}`;
    const has = pod.annotations?.[NETWORK_FAILURE_ANNOTATION] !== undefined;
    if (!has && !this.#marked.has(key) && !this.#queues.has(key)) return Promise.resolve();
    this.#marked.delete(key);
    return this.#enqueue(
      key,
      () => this.#writer.setAnnotation(pod.namespace, pod.name, NETWORK_FAILURE_ANNOTATION, null),
    );
  }

  /** Waits for every write in progress (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.#queues.size) await Promise.all([...this.#queues.values()]);
  }
}
