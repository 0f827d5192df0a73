/**
 * The one registry of the names Galaxy's executable answers to: `main.ts` dispatches on it, the development
 * launchers and `galaxy install` write one file or link per name, and `galaxy help` lists it. Import-free
 * apart from the lazy `import()` of each mode, so the shim and the plugins load only their own module. The
 * imports are literal so that `deno compile` sees every module.
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
    module: "cni/shim.ts",
    load: () => import("../cni/shim.ts"),
    summary: 'the CNI shim that relays to "galaxy serve"',
  },
  "galaxy-veth": {
    module: "cni/plugins/veth.ts",
    load: () => import("../cni/plugins/veth.ts"),
    summary: "a veth pair to the node, the pod on a /32 behind 169.254.1.1",
  },
  "galaxy-k8s-vlan": {
    module: "cni/plugins/k8s_vlan.ts",
    load: () => import("../cni/plugins/k8s_vlan.ts"),
    summary: "pods on the underlay, untagged or in VLANs (bridge, macvlan, ipvlan)",
  },
  "galaxy-underlay-veth": {
    module: "cni/plugins/underlay_veth.ts",
    load: () => import("../cni/plugins/underlay_veth.ts"),
    summary: "an underlay address on a routed veth, answered by proxy ARP",
  },
  "galaxy-k8s-sriov": {
    module: "cni/plugins/k8s_sriov.ts",
    load: () => import("../cni/plugins/k8s_sriov.ts"),
    summary: "an SR-IOV VF of a PF, moved into the pod",
  },
  "tke-route-eni": {
    module: "cni/plugins/tke_route_eni.ts",
    load: () => import("../cni/plugins/tke_route_eni.ts"),
    summary: "a veth named after the pod, routed to an elastic NIC",
  },
  "galaxy-flannel": {
    module: "cni/plugins/flannel.ts",
    load: () => import("../cni/plugins/flannel.ts"),
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
    module: "daemon/main.ts",
    load: () => import("../daemon/main.ts"),
    summary: 'run the node daemon (see "galaxy serve --help")',
  },
  version: {
    module: "cli/version.ts",
    load: () => import("./version.ts"),
    summary: 'print the version (also "galaxy --version")',
  },
  install: {
    module: "cli/install.ts",
    load: () => import("./install.ts"),
    summary: "put the executable, its plugin names and the CNI config in place (--uninstall reverses it)",
  },
  healthcheck: {
    module: "cli/healthcheck.ts",
    load: () => import("./healthcheck.ts"),
    summary: "ask the daemon whether it is ready (exit 0/1), for probes",
  },
  demo: {
    module: "cli/demo.ts",
    load: () => import("./demo.ts"),
    summary: "build two pods in throwaway namespaces and show that they talk",
  },
  plan: {
    module: "cli/plan.ts",
    load: () => import("./plan.ts"),
    summary: "show what an ADD of NAMESPACE/POD would do, without doing it (exit 0/1)",
  },
  audit: {
    module: "cli/audit.ts",
    load: () => import("./audit.ts"),
    summary: "cross-check state files, sandboxes, reservations and kernel objects (--fix releases orphans)",
  },
  help: {
    module: "cli/usage.ts",
    load: () => import("./usage.ts"),
    summary: "print this text",
  },
};
