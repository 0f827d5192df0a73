/**
 * The one entry point. It only decides which mode runs, then loads that mode with a dynamic `import()` so that
 * the shim and the plugins never load the daemon's dependencies.
 * @module
 */
type Main = (args: string[]) => Promise<number>;

/** Executable names that select a mode by themselves, with the module that implements each. */
const BY_NAME: Record<string, () => Promise<{ main: Main }>> = {
  "galaxy-sdn": () => import("./cni/shim.ts"),
  "galaxy-veth": () => import("./cni/plugins/veth.ts"),
  "galaxy-k8s-vlan": () => import("./cni/plugins/k8s_vlan.ts"),
  "galaxy-underlay-veth": () => import("./cni/plugins/underlay_veth.ts"),
  "galaxy-k8s-sriov": () => import("./cni/plugins/k8s_sriov.ts"),
  "tke-route-eni": () => import("./cni/plugins/tke_route_eni.ts"),
  "galaxy-flannel": () => import("./cni/plugins/flannel.ts"),
};

/** Subcommands of `galaxy`. */
const SUBCOMMANDS: Record<string, () => Promise<{ main: Main }>> = {
  serve: () => import("./daemon/main.ts"),
  version: () => import("./cli/version.ts"),
  install: () => import("./cli/install.ts"),
  healthcheck: () => import("./cli/healthcheck.ts"),
  demo: () => import("./cli/demo.ts"),
  plan: () => import("./cli/plan.ts"),
  audit: () => import("./cli/audit.ts"),
  help: () => import("./cli/usage.ts"),
};

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * argv[0] as the process was started (a link name, or `exec -a NAME`). Read from /proc: importing
 * `node:process` for `process.argv0` would cost ~15 ms on every CNI call.
 */
function argv0(): string {
  try {
    const cmdline = Deno.readFileSync("/proc/self/cmdline");
    const end = cmdline.indexOf(0);
    return new TextDecoder().decode(end < 0 ? cmdline : cmdline.subarray(0, end));
  } catch {
    return "";
  }
}

async function dispatch(): Promise<number> {
  const args = Deno.args;
  const byName = BY_NAME[basename(argv0())];
  if (byName) return (await byName()).main(args);

  const [first, ...rest] = args;
  if (first === "--version" || first === "-version") return (await SUBCOMMANDS.version()).main(rest);
  if (first === "--help" || first === "-h") return (await SUBCOMMANDS.help()).main(rest);
  if (first !== undefined && Object.hasOwn(SUBCOMMANDS, first)) {
    return (await SUBCOMMANDS[first]()).main(rest);
  }
  // Galaxy's own manifests run the daemon as `galaxy --logtostderr=true --v=3 ...`: flags alone mean serve.
  if (first?.startsWith("-")) return (await SUBCOMMANDS.serve()).main(args);
  // A runtime that execs us under a name we do not know (a copy, a renamed link) still gets the shim.
  if (first === undefined && Deno.env.get("CNI_COMMAND")) return (await BY_NAME["galaxy-sdn"]()).main(args);

  const { usage } = await import("./cli/usage.ts");
  console.error(
    first === undefined ? "galaxy: missing subcommand" : `galaxy: unknown subcommand or flag "${first}"`,
  );
  console.error(usage());
  return 2;
}

Deno.exit(await dispatch());
