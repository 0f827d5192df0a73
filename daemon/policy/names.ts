/**
 * Names of the kernel objects, keeping Galaxy's `GLX-` prefix and its hash (the first 16 characters of the
 * standard base32 of SHA-256 over `<name>_<namespace>`), so the Go engine's leftovers are recognised. Chains
 * are split by direction (Galaxy had one for both, its [BUG] 1).
 * @module
 */
import { chainHash16 } from "../../netops/iptables.ts";

/** Every chain and set of the engine starts with this. */
export const PREFIX = "GLX-";
/** Where FORWARD sends traffic from pods (their egress). */
export const EGRESS_CHAIN = "GLX-EGRESS";
/** Where FORWARD sends traffic to pods (their ingress). */
export const INGRESS_CHAIN = "GLX-INGRESS";
/**
 * The packet mark bit a policy chain sets when it does NOT allow a packet; the pod chain clears it again
 * before the next policy and on the allowed path, so accepted packets leave with the bit clear.
 */
export const DENY_MARK = "0x2000000";

/** Hashes already computed: compiles repeat them for every pod event of this node. Bounded by clearing. */
const hashCache = new Map<string, string>();
const HASH_CACHE_MAX = 100_000;

/** The first 16 characters of the base32 SHA-256 of `text` (cached). */
export function hash16(text: string): string {
  let h = hashCache.get(text);
  if (h === undefined) {
    if (hashCache.size >= HASH_CACHE_MAX) hashCache.clear();
    h = chainHash16(text);
    hashCache.set(text, h);
  }
  return h;
}

/** Galaxy's 16-character hash of `<name>_<namespace>`. */
export function glxHash(name: string, namespace: string): string {
  return hash16(`${name}_${namespace}`);
}

/** The ingress or egress chain of a policy (`GLX-PLCY-I-<hash>` / `GLX-PLCY-E-<hash>`). */
export function policyChain(hash: string, dir: "I" | "E"): string {
  return `GLX-PLCY-${dir}-${hash}`;
}

/**
 * The ingress or egress chain shared by the pods of this node that one list of policies selects
 * (`GLX-POD-I-<hash>` / `GLX-POD-E-<hash>`; Galaxy had one `GLX-POD-<hash of the pod>` per pod).
 */
export function podChain(hash: string, dir: "I" | "E"): string {
  return `GLX-POD-${dir}-${hash}`;
}

/**
 * The set holding what `definition` (a canonical text of a peer, a port name scope or a CIDR list) selects:
 * `GLX-pods-H`, `GLX-ports-H` or `GLX-nets-H` with H the 16-character hash of the definition. Galaxy named
 * sets per policy rule (`GLX-sip-<i>-H`, ...); those are recognised as ours by the prefix and removed.
 */
export function contentSet(kind: "pods" | "ports" | "nets", definition: string): string {
  return `GLX-${kind}-${hash16(`${kind}:${definition}`)}`;
}
