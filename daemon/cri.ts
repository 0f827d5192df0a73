/**
 * A CRI v1 client over the container runtime's unix socket (`npm:@grpc/grpc-js`): the few `RuntimeService`
 * calls the GC needs to know which pod sandboxes live. The messages are described below as a protobufjs JSON
 * descriptor (no .proto file to ship beside the executable), with the field numbers of CRI v1's `api.proto`
 * (package `runtime.v1`); fields the GC does not read are left out, which protobuf decoding skips.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";

/** kubelet's default runtime endpoint (containerd). */
export const DEFAULT_RUNTIME_ENDPOINT = "unix:///run/containerd/containerd.sock";

/** How long one CRI call may take. */
export const CRI_TIMEOUT_MS = 10_000;

const string = (id: number) => ({ type: "string", id });
const map = (id: number) => ({ keyType: "string", type: "string", id });

/**
 * The subset of CRI v1 (`k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`) this client speaks; field numbers as
 * there. Exported so tests can check it against bytes encoded by hand from the upstream numbering.
 */
export const CRI_V1_DESCRIPTOR = {
  nested: {
    runtime: {
      nested: {
        v1: {
          nested: {
            RuntimeService: {
              methods: {
                Version: { requestType: "VersionRequest", responseType: "VersionResponse" },
                PodSandboxStatus: {
                  requestType: "PodSandboxStatusRequest",
                  responseType: "PodSandboxStatusResponse",
                },
                ListPodSandbox: {
                  requestType: "ListPodSandboxRequest",
                  responseType: "ListPodSandboxResponse",
                },
              },
            },
            VersionRequest: { fields: { version: string(1) } },
            VersionResponse: {
              fields: {
                version: string(1),
                runtimeName: string(2),
                runtimeVersion: string(3),
                runtimeApiVersion: string(4),
              },
            },
            PodSandboxState: { values: { SANDBOX_READY: 0, SANDBOX_NOTREADY: 1 } },
            PodSandboxMetadata: {
              fields: {
                name: string(1),
                uid: string(2),
                namespace: string(3),
                attempt: { type: "uint32", id: 4 },
              },
            },
            PodSandboxStateValue: { fields: { state: { type: "PodSandboxState", id: 1 } } },
            PodSandboxFilter: {
              fields: {
                id: string(1),
                state: { type: "PodSandboxStateValue", id: 2 },
                labelSelector: map(3),
              },
            },
            ListPodSandboxRequest: { fields: { filter: { type: "PodSandboxFilter", id: 1 } } },
            PodSandbox: {
              fields: {
                id: string(1),
                metadata: { type: "PodSandboxMetadata", id: 2 },
                state: { type: "PodSandboxState", id: 3 },
                createdAt: { type: "int64", id: 4 },
                labels: map(5),
                annotations: map(6),
                runtimeHandler: string(7),
              },
            },
            ListPodSandboxResponse: { fields: { items: { rule: "repeated", type: "PodSandbox", id: 1 } } },
            PodSandboxStatusRequest: {
              fields: { podSandboxId: string(1), verbose: { type: "bool", id: 2 } },
            },
            PodSandboxStatus: {
              fields: {
                id: string(1),
                metadata: { type: "PodSandboxMetadata", id: 2 },
                state: { type: "PodSandboxState", id: 3 },
                createdAt: { type: "int64", id: 4 },
                labels: map(7),
                annotations: map(8),
                runtimeHandler: string(9),
              },
            },
            PodSandboxStatusResponse: {
              fields: { status: { type: "PodSandboxStatus", id: 1 }, info: map(2) },
            },
          },
        },
      },
    },
  },
};

/** Decoding options: enums as names, 64-bit numbers as decimal strings, absent fields as defaults. */
const LOAD_OPTIONS = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true };

/** The gRPC package definition of {@linkcode CRI_V1_DESCRIPTOR}, for a client or (in tests) a server. */
export function criPackageDefinition(): ReturnType<typeof fromJSON> {
  return fromJSON(CRI_V1_DESCRIPTOR as Parameters<typeof fromJSON>[0], LOAD_OPTIONS);
}

/** One pod sandbox as the runtime lists it. */
export interface Sandbox {
  /** The sandbox ID: the CNI container ID of the pod's network. */
  id: string;
  /** READY while its network is in use; NOTREADY once stopped. */
  state: "SANDBOX_READY" | "SANDBOX_NOTREADY";
  /** The pod it belongs to. */
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  /** Creation time in nanoseconds since the epoch, as a decimal string. */
  createdAt: string;
}

/** What the runtime says about itself. */
export interface RuntimeVersion {
  /** The CRI version the runtime answered with. */
  version: string;
  /** e.g. `containerd`. */
  runtimeName: string;
  /** The runtime's own version. */
  runtimeVersion: string;
  /** e.g. `v1`. */
  runtimeApiVersion: string;
}

/** A CRI call that failed; `notFound` for gRPC NOT_FOUND. */
export class CriError extends Error {
  /** The gRPC status code (14 = unavailable, 4 = deadline exceeded, 5 = not found, ...). */
  readonly code: number;

  constructor(message: string, code: number) {
    super(message);
    this.name = "CriError";
    this.code = code;
  }

  /** True when the runtime said the object does not exist. */
  get notFound(): boolean {
    return this.code === grpc.status.NOT_FOUND;
  }
}

/**
 * The gRPC target of a runtime endpoint: `unix:///path` or a bare absolute path (Galaxy's `CONTAINERD_HOST`
 * takes both). Other schemes are refused: the runtime is always a local unix socket.
 */
export function runtimeTarget(endpoint: string): string {
  const path = endpoint.startsWith("unix://") ? endpoint.slice("unix://".length) : endpoint;
  if (!path.startsWith("/") || /[\s]/.test(path)) {
    throw new Error(
      `container runtime endpoint ${
        JSON.stringify(endpoint)
      }: expected unix:///path/to/socket or an absolute path`,
    );
  }
  return `unix://${path}`;
}

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;
interface RuntimeServiceClient extends grpc.Client {
  Version(req: unknown, options: grpc.CallOptions, cb: Callback<RuntimeVersion>): void;
  ListPodSandbox(req: unknown, options: grpc.CallOptions, cb: Callback<{ items: Sandbox[] }>): void;
  PodSandboxStatus(
    req: unknown,
    options: grpc.CallOptions,
    cb: Callback<{ status: Sandbox | null; info: Record<string, string> }>,
  ): void;
}

/** A client of one runtime's `RuntimeService`; connects lazily and reconnects by itself. */
export class CriClient {
  /** The endpoint as configured. */
  readonly endpoint: string;
  readonly #client: RuntimeServiceClient;
  readonly #timeoutMs: number;

  constructor(endpoint: string, options: { timeoutMs?: number } = {}) {
    this.endpoint = endpoint;
    this.#timeoutMs = options.timeoutMs ?? CRI_TIMEOUT_MS;
    // deno-lint-ignore no-explicit-any
    const pkg = grpc.loadPackageDefinition(criPackageDefinition()) as any;
    const Service = pkg.runtime.v1.RuntimeService as grpc.ServiceClientConstructor;
    this.#client = new Service(runtimeTarget(endpoint), grpc.credentials.createInsecure(), {
      // A runtime that is down should fail the call quickly rather than queue it for the deadline.
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 5000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    }) as unknown as RuntimeServiceClient;
  }

  #call<T>(name: string, fn: (options: grpc.CallOptions, cb: Callback<T>) => void): Promise<T> {
    return new Promise((resolve, reject) => {
      fn({ deadline: Date.now() + this.#timeoutMs }, (err, value) => {
        if (err) {
          reject(new CriError(`CRI ${name} at ${this.endpoint}: ${err.details || err.message}`, err.code));
        } else resolve(value as T);
      });
    });
  }

  /** The runtime's name and versions. */
  version(): Promise<RuntimeVersion> {
    return this.#call("Version", (o, cb) => this.#client.Version({ version: "v1" }, o, cb));
  }

  /** Every pod sandbox the runtime knows, ready or not: one call, however many there are. */
  async listSandboxes(): Promise<Sandbox[]> {
    const reply = await this.#call<{ items: Sandbox[] }>(
      "ListPodSandbox",
      (o, cb) => this.#client.ListPodSandbox({}, o, cb),
    );
    return reply.items ?? [];
  }

  /** One sandbox's status; throws a {@linkcode CriError} whose `notFound` is true when it does not exist. */
  async sandboxStatus(id: string): Promise<Sandbox> {
    const reply = await this.#call<{ status: Sandbox | null }>(
      "PodSandboxStatus",
      (o, cb) => this.#client.PodSandboxStatus({ podSandboxId: id, verbose: false }, o, cb),
    );
    if (!reply.status) throw new CriError(`CRI PodSandboxStatus ${id}: empty status`, grpc.status.UNKNOWN);
    return reply.status;
  }

  /** Closes the channel. */
  close(): void {
    this.#client.close();
  }
}

/** The runtime endpoint: `--container-runtime-endpoint` when given, else `CONTAINERD_HOST`, else the default. */
export function runtimeEndpoint(flag: string, env: Record<string, string | undefined>): string {
  return flag || env.CONTAINERD_HOST || DEFAULT_RUNTIME_ENDPOINT;
}
