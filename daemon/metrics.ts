/**
 * Prometheus metrics of the daemon on an optional TCP address (`--metrics-address`): CNI requests by verb
 * and result, their latency, and how many run and wait right now; and labelled counters of the node upkeep
 * (GC removals and errors, sysctl writes, ENI set-up); and the process's resident and JS heap memory.
 * @module
 */
import type { PolicyCounters } from "./policy/engine.ts";

/** Latency buckets in seconds, around what a CNI ADD costs (tens of ms) up to a stuck plugin. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Counters and histograms of CNI requests. */
export class CniMetrics {
  readonly #requests = new Map<string, number>();
  readonly #latency = new Map<string, { buckets: number[]; sum: number; count: number }>();
  readonly #plugins = new Map<string, { buckets: number[]; sum: number; count: number }>();

  /** Records one finished request: its verb, the CNI error code (0 for success) and its duration. */
  observe(verb: string, code: number, seconds: number): void {
    const key = `${verb}\u0000${code}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    let h = this.#latency.get(verb);
    if (!h) this.#latency.set(verb, h = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 });
    BUCKETS.forEach((b, i) => {
      if (seconds <= b) h!.buckets[i]++;
    });
    h.sum += seconds;
    h.count++;
  }

  /** Records one plugin process: its network, plugin type, verb, CNI error code (0 = success) and duration. */
  observePlugin(
    labels: { network: string; plugin: string; verb: string; code: number },
    seconds: number,
  ): void {
    const key = [labels.network, labels.plugin, labels.verb, String(labels.code)].join("\u0000");
    let h = this.#plugins.get(key);
    if (!h) this.#plugins.set(key, h = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 });
    BUCKETS.forEach((b, i) => {
      if (seconds <= b) h!.buckets[i]++;
    });
    h.sum += seconds;
    h.count++;
  }

  /** The Prometheus text exposition, with the current load. */
  render(load: { active: number; queued: number }): string {
    const lines = [
      "# HELP galaxy_cni_requests_total CNI requests handled, by verb and CNI error code (0 = success).",
      "# TYPE galaxy_cni_requests_total counter",
    ];
    for (const [key, n] of [...this.#requests].sort()) {
      const [verb, code] = key.split("\u0000");
      lines.push(`galaxy_cni_requests_total{verb="${verb}",code="${code}"} ${n}`);
    }
    lines.push(
      "# HELP galaxy_cni_request_duration_seconds Time to handle a CNI request, by verb.",
      "# TYPE galaxy_cni_request_duration_seconds histogram",
    );
    for (const [verb, h] of [...this.#latency].sort()) {
      BUCKETS.forEach((b, i) =>
        lines.push(`galaxy_cni_request_duration_seconds_bucket{verb="${verb}",le="${b}"} ${h.buckets[i]}`)
      );
      lines.push(`galaxy_cni_request_duration_seconds_bucket{verb="${verb}",le="+Inf"} ${h.count}`);
      lines.push(`galaxy_cni_request_duration_seconds_sum{verb="${verb}"} ${h.sum}`);
      lines.push(`galaxy_cni_request_duration_seconds_count{verb="${verb}"} ${h.count}`);
    }
    lines.push(
      "# HELP galaxy_cni_plugin_duration_seconds Time one plugin process took, by network, plugin, verb and " +
        "CNI error code (0 = success).",
      "# TYPE galaxy_cni_plugin_duration_seconds histogram",
    );
    for (const [key, h] of [...this.#plugins].sort()) {
      const [network, plugin, verb, code] = key.split("\u0000");
      const l = `network="${escapeLabel(network)}",plugin="${
        escapeLabel(plugin)
      }",verb="${verb}",code="${code}"`;
      BUCKETS.forEach((b, i) =>
        lines.push(`galaxy_cni_plugin_duration_seconds_bucket{${l},le="${b}"} ${h.buckets[i]}`)
      );
      lines.push(`galaxy_cni_plugin_duration_seconds_bucket{${l},le="+Inf"} ${h.count}`);
      lines.push(`galaxy_cni_plugin_duration_seconds_sum{${l}} ${h.sum}`);
      lines.push(`galaxy_cni_plugin_duration_seconds_count{${l}} ${h.count}`);
    }
    lines.push(
      "# HELP galaxy_cni_requests_in_flight CNI requests being handled now.",
      "# TYPE galaxy_cni_requests_in_flight gauge",
      `galaxy_cni_requests_in_flight ${load.active}`,
      "# HELP galaxy_cni_requests_queued CNI requests waiting for a free slot.",
      "# TYPE galaxy_cni_requests_queued gauge",
      `galaxy_cni_requests_queued ${load.queued}`,
    );
    return lines.join("\n") + "\n";
  }
}

/** Labelled counters, e.g. `galaxy_gc_removed_total{kind="ip-file",reason="sandbox gone"}`. */
export class Counters {
  readonly #help = new Map<string, string>();
  readonly #values = new Map<string, Map<string, number>>();

  /** Declares a counter with its help line; counters appear in the order declared. */
  declare(name: string, help: string): void {
    this.#help.set(name, help);
    if (!this.#values.has(name)) this.#values.set(name, new Map());
  }

  /** Adds `n` (default 1) to the counter `name` with `labels`. */
  inc(name: string, labels: Record<string, string> = {}, n = 1): void {
    let series = this.#values.get(name);
    if (!series) this.#values.set(name, series = new Map());
    const key = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
    series.set(key, (series.get(key) ?? 0) + n);
  }

  /** The current value of one series (0 when never counted). */
  get(name: string, labels: Record<string, string> = {}): number {
    const key = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
    return this.#values.get(name)?.get(key) ?? 0;
  }

  /** The Prometheus text exposition of every counter. */
  render(): string {
    const lines: string[] = [];
    for (const [name, series] of this.#values) {
      lines.push(`# HELP ${name} ${this.#help.get(name) ?? name}`, `# TYPE ${name} counter`);
      for (const [key, n] of [...series].sort()) lines.push(`${name}${key ? `{${key}}` : ""} ${n}`);
    }
    return lines.length ? lines.join("\n") + "\n" : "";
  }
}

function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** The verb and error code of a wire request and its reply, for {@linkcode CniMetrics.observe}. */
export function describeExchange(
  body: string,
  reply: { status: number; body: string },
): { verb: string; code: number } {
  let verb = "unknown";
  try {
    const command = JSON.parse(body)?.env?.CNI_COMMAND;
    if (typeof command === "string" && /^[A-Z]{2,8}$/.test(command)) verb = command;
  } catch {
    // not JSON: counted as unknown
  }
  let code = 0;
  if (reply.status !== 200) {
    try {
      code = Number(JSON.parse(reply.body)?.code) || 100;
    } catch {
      code = 100;
    }
  }
  return { verb, code };
}

/** The Prometheus text of the network policy counters (`--network-policy`). */
export function renderPolicyMetrics(c: PolicyCounters): string {
  const metric = (
    name: string,
    type: string,
    help: string,
    value: number,
  ) => [
    `# HELP galaxy_network_policy_${name} ${help}`,
    `# TYPE galaxy_network_policy_${name} ${type}`,
    `galaxy_network_policy_${name} ${value}`,
  ];
  return [
    ...metric("full_syncs_total", "counter", "Full compiles applied to the kernel.", c.fullSyncs),
    ...metric(
      "incremental_syncs_total",
      "counter",
      "Pod events applied member by member.",
      c.incrementalSyncs,
    ),
    ...metric(
      "sync_errors_total",
      "counter",
      "Compiles or applies that failed; the last good state stayed.",
      c.errors,
    ),
    ...metric(
      "last_full_sync_seconds",
      "gauge",
      "Duration of the last full compile and apply.",
      c.lastFullSeconds,
    ),
    ...metric(
      "last_incremental_sync_seconds",
      "gauge",
      "Duration of the last incremental apply.",
      c.lastIncrementalSeconds,
    ),
    ...metric("chains", "gauge", "GLX- chains in force.", c.chains),
    ...metric("sets", "gauge", "GLX- ipsets in force.", c.sets),
  ].join("\n") + "\n";
}

/**
 * The Prometheus text of this process's memory: its resident set (from `/proc/self/statm`, or
 * `Deno.memoryUsage()` where that is not readable) and the JS heap and external memory of V8.
 */
export function renderProcessMetrics(): string {
  const usage = Deno.memoryUsage();
  let rss = usage.rss;
  try {
    const resident = Number(Deno.readTextFileSync("/proc/self/statm").split(" ")[1]);
    if (resident > 0) rss = resident * 4096;
  } catch {
    // no procfs: V8's figure
  }
  const gauge = (name: string, help: string, value: number) => [
    `# HELP ${name} ${help}`,
    `# TYPE ${name} gauge`,
    `${name} ${value}`,
  ];
  return [
    ...gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss),
    ...gauge("galaxy_js_heap_used_bytes", "V8 heap in use, in bytes.", usage.heapUsed),
    ...gauge("galaxy_js_heap_total_bytes", "V8 heap reserved, in bytes.", usage.heapTotal),
    ...gauge(
      "galaxy_js_external_bytes",
      "Memory of JS objects held outside the V8 heap (buffers), in bytes.",
      usage.external,
    ),
  ].join("\n") + "\n";
}

/** Serves `/metrics` on `hostname:port` until the returned server is shut down. */
export function serveMetrics(
  metrics: CniMetrics,
  address: { hostname: string; port: number },
  options: { load: () => { active: number; queued: number }; counters?: Counters; extra?: () => string },
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: address.hostname || "0.0.0.0", port: address.port, onListen: () => {} },
    (req) => {
      if (new URL(req.url).pathname !== "/metrics") return new Response("not found\n", { status: 404 });
      const text = metrics.render(options.load()) + (options.counters?.render() ?? "") +
        (options.extra?.() ?? "");
      return new Response(text, {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    },
  );
}
