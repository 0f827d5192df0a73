/**
 * The parts of `@kubernetes/client-node` the daemon uses, by name: `daemon/k8s.ts` loads this module instead of
 * the whole package, so that the compiled executable's bundle of client-node carries only these and what they
 * need (`tools/compile.ts` bundles the names the sources import).
 * @module
 */
export {
  CoreV1Api,
  KubeConfig,
  ListWatch,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
