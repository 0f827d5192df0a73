/**
 * The one entry point. It only decides which mode runs, then loads that mode with a dynamic `import()` so that
 * the shim and the plugins never load the daemon's dependencies. The names come from `cli/executables.ts`.
 * @module
 */
import { CNI_EXECUTABLES, SUBCOMMANDS } from "./cli/executables.ts";

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
  const name = basename(argv0());
  if (Object.hasOwn(CNI_EXECUTABLES, name)) return (await CNI_EXECUTABLES[name].load()).main(args);

  const [first, ...rest] = args;
  if (first === "--version" || first === "-version") return (await SUBCOMMANDS.version.load()).main(rest);
  if (first === "--help" || first === "-h") return (await SUBCOMMANDS.help.load()).main(rest);
  if (first !== undefined && Object.hasOwn(SUBCOMMANDS, first)) {
    return (await SUBCOMMANDS[first].load()).main(rest);
  }
  // Galaxy's own manifests run the daemon as `galaxy --logtostderr=true --v=3 ...`: flags alone mean serve.
  if (first?.startsWith("-")) return (await SUBCOMMANDS.serve.load()).main(args);
  // A runtime that execs us under a name we do not know (a copy, a renamed link) still gets the shim.
  if (first === undefined && Deno.env.get("CNI_COMMAND")) {
    return (await CNI_EXECUTABLES["galaxy-sdn"].load()).main(args);
  }

  const { usage } = await import("./cli/usage.ts");
  console.error(
    first === undefined ? "galaxy: missing subcommand" : `galaxy: unknown subcommand or flag "${first}"`,
  );
  console.error(usage());
  return 2;
}

Deno.exit(await dispatch());
