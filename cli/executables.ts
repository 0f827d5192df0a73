/**
 * The one registry of the names Galaxy's executable answers to: `main.ts` dispatches on it, the development
 * launchers and `galaxy install` write one file or link per name, and `galaxy help` lists it. Import-free
 * apart from the lazy `import()` of each mode, so the shim and the plugins load only their own module.
 *
 * The `import()` specifiers are computed, not literal: Deno builds the graph of every literal dynamic import
 * before a program starts (~100 modules here, all of them for a pod's shim), and the compiled executable pays
 * for the same graph at its first `import()`. So no deno sees the modes through this file: `tools/compile.ts`
 * embeds each one with `--include`, and {@linkcode ModeModules} keeps them in `deno check`'s graph.
 * @module
 */

import type { Plugin } from "../cni/skel.ts";

/** What a mode's module exports. */
export interface ModeModule {
  /** Runs the mode with the arguments after the name or subcommand; resolves to the exit code. */
  main(args: string[]): Promise<number>;
  /** A built-in CNI plugin's functions, which the daemon calls in its own process. */
  plugin?: Plugin;
}

/**
 * The type of every mode's module: type-only, so `deno check` follows each mode from here while nothing is
 * loaded at run time.
 */
export type ModeModules = [
  typeof import("../cni/shim.ts"),
  typeof import("../cni/plugins/veth.ts"),
  typeof import("../cni/plugins/k8s_vlan.ts"),
  typeof import("../cni/plugins/underlay_veth.ts"),
  typeof import("../cni/plugins/k8s_sriov.ts"),
  typeof import("../cni/plugins/tke_route_eni.ts"),
  typeof import("../cni/plugins/flannel.ts"),
  typeof import("../daemon/main.ts"),
  typeof import("./version.ts"),
  typeof import("./install.ts"),
  typeof import("./healthcheck.ts"),
  typeof import("./demo.ts"),
  typeof import("./plan.ts"),
  typeof import("./audit.ts"),
  typeof import("./usage.ts"),
];

/** The repository root of this file, which every `module` is relative to. */
const ROOT = new URL("../", import.meta.url);

/** Loads a mode's module by its path from the repository root (computed, see the module doc). */
function lazy(module: string): Pick<Executable, "module" | "load"> {
  return { module, load: () => import(new URL(module, ROOT).href) };
}

/** One executable name (argv[0]) that selects a mode by itself. */
export interface Executable {
  /** The module that implements it, relative to the repository root. */
  module: string;
  /** Loads that module. */
  load: () => Promise<ModeModule>;
  /** One line for `galaxy help`. */
  summary: string;
}

/** The CNI executables, in the order help lists them; `galaxy` itself is not one of them. */
export const CNI_EXECUTABLES: Readonly<Record<string, Executable>> = {
  "galaxy-sdn": {
    ...lazy("cni/shim.ts"),
    summary: 'the CNI shim that relays to "galaxy serve"',
  },
  "galaxy-veth": {
    ...lazy("cni/plugins/veth.ts"),
    summary: "a veth pair to the node, the pod on a /32 behind 169.254.1.1",
  },
  "galaxy-k8s-vlan": {
    ...lazy("cni/plugins/k8s_vlan.ts"),
    summary: "pods on the underlay, untagged or in VLANs (bridge, macvlan, ipvlan)",
  },
  "galaxy-underlay-veth": {
    ...lazy("cni/plugins/underlay_veth.ts"),
    summary: "an underlay address on a routed veth, answered by proxy ARP",
  },
  "galaxy-k8s-sriov": {
    ...lazy("cni/plugins/k8s_sriov.ts"),
    summary: "an SR-IOV VF of a PF, moved into the pod",
  },
  "tke-route-eni": {
    ...lazy("cni/plugins/tke_route_eni.ts"),
    summary: "a veth named after the pod, routed to an elastic NIC",
  },
  "galaxy-flannel": {
    ...lazy("cni/plugins/flannel.ts"),
    summary: "the node's flannel subnet through a delegate (bridge)",
  },
};

/** The executable name of the CNI shim, the one CNI executable that is not a plugin. */
export const SHIM_NAME = "galaxy-sdn";

/**
 * Loaders of the built-in plugins' functions, by executable name (every CNI executable but the shim), for
 * the daemon to call them in process (`cni/in_process.ts`).
 */
export function builtinPluginLoaders(): Record<string, () => Promise<Plugin>> {
  const loaders: Record<string, () => Promise<Plugin>> = {};
  for (const [name, exe] of Object.entries(CNI_EXECUTABLES)) {
    if (name === SHIM_NAME) continue;
    loaders[name] = async () => {
      const plugin = (await exe.load()).plugin;
      if (!plugin) throw new Error(`${exe.module} exports no plugin`);
      return plugin;
    };
  }
  return loaders;
}

/** The name of the executable itself, which takes a subcommand. */
export const MAIN_NAME = "galaxy";

/** Every name the one executable answers to: `galaxy` first, then the CNI executables. */
export const EXECUTABLE_NAMES: readonly string[] = [MAIN_NAME, ...Object.keys(CNI_EXECUTABLES)];

/** The subcommands of `galaxy`, each with its module. */
export const SUBCOMMANDS: Readonly<Record<string, Executable>> = {
  serve: {
    ...lazy("daemon/main.ts"),
    summary: 'run the node daemon (see "galaxy serve --help")',
  },
  version: {
    ...lazy("cli/version.ts"),
    summary: 'print the version (also "galaxy --version")',
  },
  install: {
    ...lazy("cli/install.ts"),
    summary: "put the executable, its plugin names and the CNI config in place (--uninstall reverses it)",
  },
  healthcheck: {
    ...lazy("cli/healthcheck.ts"),
    summary: "ask the daemon whether it is ready (exit 0/1), for probes",
  },
  demo: {
    ...lazy("cli/demo.ts"),
    summary: "build two pods in throwaway namespaces and show that they talk",
  },
  plan: {
    ...lazy("cli/plan.ts"),
    summary: "show what an ADD of NAMESPACE/POD would do, without doing it (exit 0/1)",
  },
  audit: {
    ...lazy("cli/audit.ts"),
    summary: "cross-check state files, sandboxes, reservations and kernel objects (--fix releases orphans)",
  },
  help: {
    ...lazy("cli/usage.ts"),
    summary: "print this text",
  },
};
