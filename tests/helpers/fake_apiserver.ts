/**
 * A fake Kubernetes apiserver for e2e tests, run as its own process inside a test's node namespace so that the
 * daemon reaches it on that namespace's loopback. It speaks real HTTP to the real client-node: pod list and
 * watch (with `fieldSelector=spec.nodeName=...`), GET and merge PATCH of a pod (a `null` annotation removes it),
 * and Events (POST, merge PATCH).
 *
 * Also list and watch of namespaces and networkpolicies (for `--network-policy`).
 *
 * The test controls it through a unix socket (reachable from any namespace): `PUT /pods` stores a pod,
 * `DELETE /pods/<ns>/<name>` removes one, `PUT /objects/<kind>` and `DELETE /objects/<kind>/<ns>/<name>`
 * (`-` for no namespace) do the same for `namespaces` and `networkpolicies`, `GET /patches` lists the PATCH
 * bodies received, `GET /events` the Events as stored, `GET /requests` the request lines. Usage:
 * `fake_apiserver.ts <control-socket> <port-file>`; the TCP port is written to the file.
 * @module
 */

type Pod = {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  spec?: { nodeName?: string; [k: string]: unknown };
  [k: string]: unknown;
};

const [controlSocket, portFile] = Deno.args;
const pods = new Map<string, Pod>();
const patches: { namespace: string; name: string; body: unknown }[] = [];
const requests: string[] = [];
const events = new Map<string, Record<string, unknown>>();
const watchers = new Set<{ node?: string; kind: string; push: (line: string) => void }>();
/** Other kinds, by kind then `namespace/name`. */
const objects = new Map<string, Map<string, Pod>>([["namespaces", new Map()], [
  "networkpolicies",
  new Map(),
]]);
const KIND_PATHS: Record<string, string> = {
  "/api/v1/namespaces": "namespaces",
  "/apis/networking.k8s.io/v1/networkpolicies": "networkpolicies",
};
let resourceVersion = 1;
const encoder = new TextEncoder();

function nodeOf(url: URL): string | undefined {
  const selector = url.searchParams.get("fieldSelector") ?? "";
  return /spec\.nodeName=([^,]+)/.exec(selector)?.[1];
}

function notify(type: string, pod: Pod, kind = "pods"): void {
  for (const w of watchers) {
    if (w.kind !== kind) continue;
    if (!w.node || pod.spec?.nodeName === w.node) w.push(JSON.stringify({ type, object: pod }) + "\n");
  }
}

function storeObject(kind: string, obj: Pod): Pod {
  obj.metadata.resourceVersion = String(++resourceVersion);
  obj.metadata.uid ??= crypto.randomUUID();
  const key = `${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
  const existed = objects.get(kind)!.has(key);
  objects.get(kind)!.set(key, obj);
  notify(existed ? "MODIFIED" : "ADDED", obj, kind);
  return obj;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

function notFound(name: string): Response {
  return json(404, {
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    message: `pods "${name}" not found`,
    reason: "NotFound",
    code: 404,
  });
}

function store(pod: Pod): Pod {
  pod.metadata.resourceVersion = String(++resourceVersion);
  pod.metadata.uid ??= crypto.randomUUID();
  const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
  const existed = pods.has(key);
  pods.set(key, pod);
  notify(existed ? "MODIFIED" : "ADDED", pod);
  return pod;
}

function watch(url: URL, signal: AbortSignal, kind = "pods"): Response {
  let watcher: { node?: string; kind: string; push: (line: string) => void };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      watcher = { node: nodeOf(url), kind, push: (line) => controller.enqueue(encoder.encode(line)) };
      watchers.add(watcher);
      signal.addEventListener("abort", () => {
        watchers.delete(watcher);
        try {
          controller.close();
        } catch {
          // already closed
        }
      });
    },
    cancel() {
      watchers.delete(watcher);
    },
  });
  return new Response(body, { headers: { "content-type": "application/json" } });
}

async function apiserver(req: Request): Promise<Response> {
  const url = new URL(req.url);
  requests.push(`${req.method} ${url.pathname}${url.search}`);
  if (url.pathname === "/api/v1/pods" && req.method === "GET") {
    if (url.searchParams.get("watch") === "true") return watch(url, req.signal);
    const node = nodeOf(url);
    const items = [...pods.values()].filter((p) => !node || p.spec?.nodeName === node);
    return json(200, {
      kind: "PodList",
      apiVersion: "v1",
      metadata: { resourceVersion: String(resourceVersion) },
      items,
    });
  }
  const kind = KIND_PATHS[url.pathname];
  if (kind && req.method === "GET") {
    if (url.searchParams.get("watch") === "true") return watch(url, req.signal, kind);
    return json(200, {
      kind: "List",
      apiVersion: "v1",
      metadata: { resourceVersion: String(resourceVersion) },
      items: [...objects.get(kind)!.values()],
    });
  }
  const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname);
  if (m) {
    const [, namespace, name] = m;
    const pod = pods.get(`${namespace}/${name}`);
    if (!pod) return notFound(name);
    if (req.method === "GET") return json(200, pod);
    if (req.method === "PATCH") {
      const body = await req.json();
      patches.push({ namespace, name, body });
      const annotations: Record<string, string | null> = body?.metadata?.annotations ?? {};
      const merged: Record<string, string> = { ...(pod.metadata.annotations ?? {}) };
      for (const [k, v] of Object.entries(annotations)) {
        if (v === null) delete merged[k];
        else merged[k] = v;
      }
      pod.metadata.annotations = merged;
      return json(200, store(pod));
    }
  }
  const ev = /^\/api\/v1\/namespaces\/([^/]+)\/events(?:\/([^/]+))?$/.exec(url.pathname);
  if (ev && req.method === "POST" && !ev[2]) {
    const body = await req.json();
    const key = `${ev[1]}/${body?.metadata?.name}`;
    if (events.has(key)) {
      return json(409, { kind: "Status", status: "Failure", reason: "AlreadyExists", code: 409 });
    }
    events.set(key, body);
    return json(201, body);
  }
  if (ev && req.method === "PATCH" && ev[2]) {
    const stored = events.get(`${ev[1]}/${ev[2]}`);
    if (!stored) return notFound(ev[2]);
    Object.assign(stored, await req.json());
    return json(200, stored);
  }
  return json(404, { kind: "Status", status: "Failure", message: `no route ${url.pathname}`, code: 404 });
}

async function control(req: Request): Promise<Response> {
  const url = new URL(req.url);
  if (url.pathname === "/pods" && req.method === "PUT") return json(200, store(await req.json()));
  const m = /^\/pods\/([^/]+)\/([^/]+)$/.exec(url.pathname);
  if (m && req.method === "DELETE") {
    const pod = pods.get(`${m[1]}/${m[2]}`);
    if (pod) {
      pods.delete(`${m[1]}/${m[2]}`);
      notify("DELETED", pod);
    }
    return json(200, {});
  }
  const put = /^\/objects\/([a-z]+)$/.exec(url.pathname);
  if (put && req.method === "PUT" && objects.has(put[1])) {
    return json(200, storeObject(put[1], await req.json()));
  }
  const del = /^\/objects\/([a-z]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
  if (del && req.method === "DELETE" && objects.has(del[1])) {
    const key = `${del[2] === "-" ? "" : del[2]}/${del[3]}`;
    const obj = objects.get(del[1])!.get(key);
    if (obj) {
      objects.get(del[1])!.delete(key);
      notify("DELETED", obj, del[1]);
    }
    return json(200, {});
  }
  if (url.pathname === "/patches") return json(200, patches);
  if (url.pathname === "/requests") return json(200, requests);
  if (url.pathname === "/events") return json(200, [...events.values()]);
  return json(404, {});
}

const api = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, apiserver);
Deno.serve({ path: controlSocket, onListen: () => {} }, control);
await Deno.writeTextFile(`${portFile}.tmp`, String(api.addr.port));
await Deno.rename(`${portFile}.tmp`, portFile);
