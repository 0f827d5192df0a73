/**
 * A fake container runtime for tests: a gRPC server (grpc-js) on a unix socket that speaks CRI v1's
 * `RuntimeService` (Version, ListPodSandbox, PodSandboxStatus) from `cri_v1_subset.proto`, with the sandboxes
 * the test sets. It runs in the test process; the socket is a file, so a daemon in another network namespace
 * reaches it too.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

/** A sandbox the fake runtime lists. */
export interface FakeSandbox {
  /** Sandbox (CNI container) ID. */
  id: string;
  /** Pod name, namespace and UID. */
  pod?: { namespace: string; name: string; uid?: string };
  /** Default ready. */
  ready?: boolean;
}

/** A running fake runtime. */
export interface FakeCri {
  /** Its socket path. */
  socket: string;
  /** Replaces the list of sandboxes. */
  set(sandboxes: FakeSandbox[]): void;
  /** How many ListPodSandbox calls it served. */
  listCalls(): number;
  /** Stops the server and removes the socket. */
  stop(): Promise<void>;
}

const PROTO = new URL("./cri_v1_subset.proto", import.meta.url).pathname;

function toWire(s: FakeSandbox) {
  return {
    id: s.id,
    metadata: {
      name: s.pod?.name ?? "",
      namespace: s.pod?.namespace ?? "",
      uid: s.pod?.uid ?? "",
      attempt: 0,
    },
    state: s.ready === false ? "SANDBOX_NOTREADY" : "SANDBOX_READY",
    created_at: String(Date.now() * 1e6),
  };
}

/** Starts a fake runtime on `socket`. */
export async function startFakeCri(socket: string, sandboxes: FakeSandbox[] = []): Promise<FakeCri> {
  const definition = loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true });
  // deno-lint-ignore no-explicit-any
  const pkg = grpc.loadPackageDefinition(definition) as any;
  let current = sandboxes;
  let lists = 0;
  const server = new grpc.Server();
  server.addService(pkg.runtime.v1.RuntimeService.service, {
    Version: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, {
        version: "0.1.0",
        runtime_name: "fake-cri",
        runtime_version: "1.0.0",
        runtime_api_version: "v1",
      }),
    ListPodSandbox: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      lists++;
      cb(null, { items: current.map(toWire) });
    },
    PodSandboxStatus: (call: { request: { pod_sandbox_id: string } }, cb: grpc.sendUnaryData<unknown>) => {
      const found = current.find((s) => s.id === call.request.pod_sandbox_id);
      if (!found) {
        cb({ code: grpc.status.NOT_FOUND, details: "sandbox not found" } as grpc.ServiceError, null);
      } else cb(null, { status: toWire(found), info: {} });
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(
      `unix://${socket}`,
      grpc.ServerCredentials.createInsecure(),
      (e) => e ? reject(e) : resolve(),
    )
  );
  return {
    socket,
    set: (list) => current = list,
    listCalls: () => lists,
    async stop() {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      server.forceShutdown();
      await Deno.remove(socket).catch(() => {});
    },
  };
}
