/**
 * The one recursion guard of plugin execution. Every plugin call — a process started by `invoke.ts` or a
 * built-in run in-process — goes through {@linkcode delegationEnv}, which carries the chain of plugin types
 * in the callee's environment ({@linkcode DELEGATION_CHAIN_ENV}, comma-separated, outermost first). The chain
 * survives both paths because it is request state (the environment), not process state: a built-in run
 * in-process gets the same environment its executable would have.
 *
 * Refused (code 7, before anything runs): a type already in the chain (a plugin delegating to its own type, or
 * any loop), and a chain longer than {@linkcode MAX_DELEGATION_DEPTH}. Without this a configuration such as
 * `{"type":"galaxy-veth","ipam":{"type":"galaxy-veth"}}` makes each process start the next, without end.
 * Dependency-free but for the core's errors.
 * @module
 */
import { CniError, ErrorCode } from "./version.ts";

/** The environment variable that carries the chain of plugin types of one request. */
export const DELEGATION_CHAIN_ENV = "GALAXY_DELEGATION_CHAIN";
/**
 * The longest chain: the daemon's plugin, its delegate, the delegate's IPAM (galaxy-flannel → bridge →
 * host-local is 3), and one more for a wrapper.
 */
export const MAX_DELEGATION_DEPTH = 4;

/** The chain of plugin types recorded in `env`, outermost first. */
export function delegationChain(env: Readonly<Record<string, string | undefined>> | undefined): string[] {
  const raw = env?.[DELEGATION_CHAIN_ENV];
  return raw ? raw.split(",").filter((t) => t !== "") : [];
}

/**
 * The environment for a call of plugin `callee` made with `env` (the caller's): `env` with `callee` appended to
 * the chain. Throws code 7 when `callee` is already in the chain or the chain would exceed
 * {@linkcode MAX_DELEGATION_DEPTH}. `env` is not changed.
 */
export function delegationEnv(
  callee: string,
  env: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const chain = delegationChain(env);
  if (chain.includes(callee)) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `plugin ${callee} may not be delegated to from ${chain.join(" → ")}: a plugin cannot run its own ` +
        `type (delegation loop ${[...chain, callee].join(" → ")})`,
    );
  }
  if (chain.length >= MAX_DELEGATION_DEPTH) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `delegation deeper than ${MAX_DELEGATION_DEPTH} plugins refused: ${[...chain, callee].join(" → ")}`,
    );
  }
  return { ...env, [DELEGATION_CHAIN_ENV]: [...chain, callee].join(",") };
}

/**
 * The environment a plugin of type `self` works with, as its entry (`skel.ts`) sees it: `env` with `self` at
 * the end of the chain. A plugin a runtime started directly has no chain; from here on its delegates see it.
 */
export function asRunningPlugin(
  self: string,
  env: Readonly<Record<string, string>>,
): Record<string, string> {
  const chain = delegationChain(env);
  if (chain.at(-1) === self) return { ...env };
  return delegationEnv(self, env);
}

/**
 * Throws code 7 when the chain `env` carries repeats a type or is longer than {@linkcode MAX_DELEGATION_DEPTH}:
 * the check of the one path every plugin call takes (`invoke.ts` runPluginFile, in process or not).
 */
export function checkDelegationChain(env: Readonly<Record<string, string | undefined>>): void {
  const chain = delegationChain(env);
  const repeated = chain.find((t, i) => chain.indexOf(t) !== i);
  if (repeated !== undefined) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `plugin ${repeated} may not run its own type again (delegation loop ${chain.join(" → ")})`,
    );
  }
  if (chain.length > MAX_DELEGATION_DEPTH) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `delegation deeper than ${MAX_DELEGATION_DEPTH} plugins refused: ${chain.join(" → ")}`,
    );
  }
}
