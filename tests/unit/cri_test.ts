import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  CriClient,
  CriError,
  criPackageDefinition,
  DEFAULT_RUNTIME_ENDPOINT,
  runtimeEndpoint,
  runtimeTarget,
} from "../../daemon/cri.ts";
import { startFakeCri } from "../helpers/fake_cri.ts";

// grpc-js keeps channel timers alive briefly after close; the tests close everything they open.
const opts = { sanitizeOps: false, sanitizeResources: false };

function field(num: number, wire: number): number {
  return (num << 3) | wire;
}

function lenDelimited(num: number, bytes: number[]): number[] {
  return [field(num, 2), bytes.length, ...bytes];
}

function str(num: number, text: string): number[] {
  return lenDelimited(num, [...new TextEncoder().encode(text)]);
}

Deno.test("cri: the descriptor decodes bytes encoded by hand with CRI v1's field numbers", () => {
  // ListPodSandboxResponse{items(1): PodSandbox{id(1), metadata(2){name(1), uid(2), namespace(3), attempt(4)},
  // state(3)=NOTREADY, created_at(4)=7, labels(5){"k": "v"}}}
  const metadata = [...str(1, "web"), ...str(2, "uid-1"), ...str(3, "default"), field(4, 0), 2];
  const label = [...str(1, "k"), ...str(2, "v")];
  const sandbox = [
    ...str(1, "c0ffee"),
    ...lenDelimited(2, metadata),
    field(3, 0),
    1,
    field(4, 0),
    7,
    ...lenDelimited(5, label),
  ];
  const bytes = Buffer.from(lenDelimited(1, sandbox));
  const def = criPackageDefinition()["runtime.v1.RuntimeService"] as unknown as Record<
    string,
    { responseDeserialize(b: Buffer): unknown; requestSerialize(v: unknown): Buffer }
  >;
  const decoded = def.ListPodSandbox.responseDeserialize(bytes) as {
    items: {
      id: string;
      metadata: Record<string, unknown>;
      state: string;
      createdAt: string;
      labels: unknown;
    }[];
  };
  assert.equal(decoded.items.length, 1);
  assert.equal(decoded.items[0].id, "c0ffee");
  assert.deepEqual(decoded.items[0].metadata, {
    name: "web",
    uid: "uid-1",
    namespace: "default",
    attempt: 2,
  });
  assert.equal(decoded.items[0].state, "SANDBOX_NOTREADY");
  assert.equal(decoded.items[0].createdAt, "7");
  assert.deepEqual(decoded.items[0].labels, { k: "v" });
  // PodSandboxStatusRequest{pod_sandbox_id(1)="x", verbose(2)=true}
  const request = def.PodSandboxStatus.requestSerialize({ podSandboxId: "x", verbose: true });
  assert.deepEqual([...request], [...str(1, "x"), field(2, 0), 1]);
});

Deno.test("cri: endpoints are unix sockets; the flag wins over CONTAINERD_HOST, which wins over the default", () => {
  assert.equal(
    runtimeTarget("unix:///run/containerd/containerd.sock"),
    "unix:///run/containerd/containerd.sock",
  );
  assert.equal(runtimeTarget("/run/crio/crio.sock"), "unix:///run/crio/crio.sock");
  assert.throws(() => runtimeTarget("tcp://10.0.0.1:1234"), /expected unix:\/\/\/path/);
  assert.throws(() => runtimeTarget("relative.sock"), /expected unix:\/\/\/path/);
  assert.equal(runtimeEndpoint("unix:///a.sock", { CONTAINERD_HOST: "/b.sock" }), "unix:///a.sock");
  assert.equal(runtimeEndpoint("", { CONTAINERD_HOST: "/b.sock" }), "/b.sock");
  assert.equal(runtimeEndpoint("", {}), DEFAULT_RUNTIME_ENDPOINT);
});

Deno.test({
  name: "cri: the client lists sandboxes, reads one, and says NOT_FOUND, against a server built from .proto",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "galaxy-cri-" });
    const cri = await startFakeCri(`${dir}/cri.sock`, [
      { id: "aaa111", pod: { namespace: "default", name: "web", uid: "u1" } },
      { id: "bbb222", pod: { namespace: "kube-system", name: "dns", uid: "u2" }, ready: false },
    ]);
    const client = new CriClient(`unix://${dir}/cri.sock`, { timeoutMs: 3000 });
    try {
      const v = await client.version();
      assert.deepEqual(v, {
        version: "0.1.0",
        runtimeName: "fake-cri",
        runtimeVersion: "1.0.0",
        runtimeApiVersion: "v1",
      });
      const list = await client.listSandboxes();
      assert.deepEqual(
        list.map((s) => [s.id, s.state, s.metadata.namespace, s.metadata.name, s.metadata.uid]),
        [
          ["aaa111", "SANDBOX_READY", "default", "web", "u1"],
          ["bbb222", "SANDBOX_NOTREADY", "kube-system", "dns", "u2"],
        ],
      );
      assert.equal(cri.listCalls(), 1);
      assert.equal((await client.sandboxStatus("bbb222")).metadata.name, "dns");
      const err = await client.sandboxStatus("nope").then(() => undefined, (e) => e);
      assert.ok(err instanceof CriError && err.notFound, String(err));
    } finally {
      client.close();
      await cri.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cri: a runtime that is not there fails fast with UNAVAILABLE",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "galaxy-cri-" });
    const client = new CriClient(`unix://${dir}/absent.sock`, { timeoutMs: 5000 });
    try {
      const started = Date.now();
      const err = await client.listSandboxes().then(() => undefined, (e) => e);
      assert.ok(err instanceof CriError, String(err));
      assert.equal(err.code, 14, err.message);
      assert.match(err.message, /ListPodSandbox at unix:\/\/.*absent\.sock/);
      assert.ok(Date.now() - started < 4000, `took ${Date.now() - started} ms`);
    } finally {
      client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
