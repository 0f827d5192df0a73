import assert from "node:assert/strict";
import {
  CniMetrics,
  Counters,
  describeExchange,
  renderProcessMetrics,
  serveMetrics,
} from "../../daemon/metrics.ts";

Deno.test("metrics: requests are counted by verb and code, with latency histograms and load gauges", async () => {
  const m = new CniMetrics();
  m.observe("ADD", 0, 0.02);
  m.observe("ADD", 0, 0.2);
  m.observe("ADD", 7, 0.001);
  m.observe("DEL", 0, 0.03);
  const server = serveMetrics(m, { hostname: "127.0.0.1", port: 0 }, {
    load: () => ({ active: 2, queued: 5 }),
  });
  try {
    const res = await fetch(`http://127.0.0.1:${server.addr.port}/metrics`);
    const text = await res.text();
    assert.equal(res.status, 200);
    assert.match(text, /^galaxy_cni_requests_total\{verb="ADD",code="0"\} 2$/m);
    assert.match(text, /^galaxy_cni_requests_total\{verb="ADD",code="7"\} 1$/m);
    assert.match(text, /^galaxy_cni_request_duration_seconds_bucket\{verb="ADD",le="0.025"\} 2$/m);
    assert.match(text, /^galaxy_cni_request_duration_seconds_bucket\{verb="ADD",le="\+Inf"\} 3$/m);
    assert.match(text, /^galaxy_cni_request_duration_seconds_count\{verb="DEL"\} 1$/m);
    assert.match(text, /^galaxy_cni_requests_in_flight 2$/m);
    assert.match(text, /^galaxy_cni_requests_queued 5$/m);
    const other = await fetch(`http://127.0.0.1:${server.addr.port}/other`);
    await other.body?.cancel();
    assert.equal(other.status, 404);
  } finally {
    await server.shutdown();
  }
});

Deno.test("metrics: the verb and code of an exchange come from the request and the error object", () => {
  const body = JSON.stringify({ env: { CNI_COMMAND: "DEL" } });
  assert.deepEqual(describeExchange(body, { status: 200, body: "" }), { verb: "DEL", code: 0 });
  assert.deepEqual(describeExchange(body, { status: 500, body: '{"code":11,"msg":"x"}' }), {
    verb: "DEL",
    code: 11,
  });
  assert.deepEqual(describeExchange("{nope", { status: 400, body: "x" }), { verb: "unknown", code: 100 });
  assert.deepEqual(
    describeExchange(JSON.stringify({ env: { CNI_COMMAND: 'A"B' } }), { status: 200, body: "" }),
    {
      verb: "unknown",
      code: 0,
    },
  );
});

Deno.test("metrics: the upkeep counters are served after the request metrics, labels escaped", async () => {
  const counters = new Counters();
  counters.declare("galaxy_gc_removed_total", "Leftovers removed.");
  counters.declare("galaxy_gc_errors_total", "Removals that failed.");
  counters.inc("galaxy_gc_removed_total", {
    kind: "ip-file",
    reason: "the runtime no longer lists its sandbox",
  });
  counters.inc("galaxy_gc_removed_total", {
    kind: "ip-file",
    reason: "the runtime no longer lists its sandbox",
  });
  counters.inc("galaxy_gc_removed_total", { kind: "veth", reason: 'a "quoted"\nreason' });
  assert.equal(
    counters.get("galaxy_gc_removed_total", {
      kind: "ip-file",
      reason: "the runtime no longer lists its sandbox",
    }),
    2,
  );
  const server = serveMetrics(new CniMetrics(), { hostname: "127.0.0.1", port: 0 }, {
    load: () => ({ active: 0, queued: 0 }),
    counters,
  });
  try {
    const text = await (await fetch(`http://127.0.0.1:${server.addr.port}/metrics`)).text();
    assert.match(text, /^# TYPE galaxy_gc_removed_total counter$/m);
    assert.match(
      text,
      /^galaxy_gc_removed_total\{kind="ip-file",reason="the runtime no longer lists its sandbox"\} 2$/m,
    );
    assert.match(text, /^galaxy_gc_removed_total\{kind="veth",reason="a \\"quoted\\"\\nreason"\} 1$/m);
    assert.match(text, /^# HELP galaxy_gc_errors_total Removals that failed\.$/m);
    assert.ok(text.indexOf("galaxy_cni_requests_in_flight") < text.indexOf("galaxy_gc_removed_total"));
  } finally {
    await server.shutdown();
  }
});

Deno.test("metrics: the process's resident memory and JS heap are gauges with positive values", () => {
  const text = renderProcessMetrics();
  for (
    const name of [
      "process_resident_memory_bytes",
      "galaxy_js_heap_used_bytes",
      "galaxy_js_heap_total_bytes",
      "galaxy_js_external_bytes",
    ]
  ) {
    assert.match(text, new RegExp(`^# HELP ${name} \\S`, "m"));
    assert.match(text, new RegExp(`^# TYPE ${name} gauge$`, "m"));
    const value = text.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1];
    assert.ok(value !== undefined, `${name} has a sample`);
    assert.ok(Number.isFinite(Number(value)) && Number(value) > 0, `${name} ${value} is a positive number`);
  }
  const rss = Number(text.match(/^process_resident_memory_bytes (\d+)$/m)?.[1]);
  assert.ok(rss > 1024 * 1024, `a Deno process has more than 1 MiB resident (${rss})`);
  assert.equal(rss % 4096, 0);
});
