/**
 * Host ports held open by the daemon (TCP listen, UDP bind) so that no other process on the node can take a
 * port a pod maps; port 0 lets the kernel choose. The sockets never carry traffic: packets to a mapped port are
 * DNATed before they reach them.
 * @module
 */
import dgram from "node:dgram";

/** A held port: the number bound and how to let it go. */
export interface HeldPort {
  /** The port bound (the kernel's choice when 0 was asked). */
  port: number;
  /** Closes the socket (idempotent). */
  close(): void;
}

/** The port is taken, or the address is not local; the message names port, protocol and address. */
export class HostPortError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HostPortError";
  }
}

function describe(port: number, protocol: string, address: string): string {
  return `hostPort ${port === 0 ? "(random)" : port}/${protocol} on ${address}`;
}

async function holdUdp(address: string, port: number): Promise<HeldPort> {
  const socket = dgram.createSocket({ type: "udp4", reuseAddr: false });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off("error", reject);
      resolve();
    });
  }).catch((e) => {
    try {
      socket.close();
    } catch {
      // never bound
    }
    throw e;
  });
  // A held port must not keep the process alive by itself, and a late error must not crash it.
  socket.on("error", () => {});
  socket.unref();
  let closed = false;
  return {
    port: socket.address().port,
    close() {
      if (closed) return;
      closed = true;
      socket.close();
    },
  };
}

/**
 * Binds `protocol` (`TCP` or `UDP`) `port` on `hostIP` (every IPv4 address when absent) and keeps the socket.
 * Throws a {@linkcode HostPortError} saying whether the port is in use or the address is not on this node.
 */
export async function holdHostPort(protocol: string, port: number, hostIP?: string): Promise<HeldPort> {
  const address = hostIP ?? "0.0.0.0";
  try {
    if (protocol === "UDP") return await holdUdp(address, port);
    const listener = Deno.listen({ hostname: address, port, transport: "tcp" });
    let closed = false;
    return {
      port: (listener.addr as Deno.NetAddr).port,
      close() {
        if (closed) return;
        closed = true;
        listener.close();
      },
    };
  } catch (e) {
    const code = (e as { code?: string }).code;
    const msg = (e as Error).message;
    if (e instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
      throw new HostPortError(
        `${describe(port, protocol, address)} is already in use (by another pod or process)`,
      );
    }
    if (e instanceof Deno.errors.AddrNotAvailable || code === "EADDRNOTAVAIL") {
      throw new HostPortError(
        `${describe(port, protocol, address)}: ${address} is not an address of this node`,
      );
    }
    throw new HostPortError(`${describe(port, protocol, address)} cannot be opened: ${msg}`);
  }
}
