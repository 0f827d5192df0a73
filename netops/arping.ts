/**
 * Gratuitous ARP with iputils `arping`, as Galaxy's `SendGratuitousARP`: `arping -c 2 -U -I <dev> <ip>`
 * (an unsolicited ARP request, `useRequest`) or `arping -c 2 -A -I <dev> <ip>` (an ARP reply, the default),
 * in this process's namespace or inside a pod's. Failures are logged to stderr and never thrown: Galaxy's
 * callers ignore them too.
 *
 * Inside a namespace arping runs as `nsenter --net=<path> arping ...`, not in a netns worker: arping sleeps
 * about a second between its packets, and holding a pooled worker that long would stall every other pod's
 * namespace work. nsenter forks a fresh process, accepts any path, and is awaited asynchronously.
 * @module
 */
import { childOutput } from "./child_output.ts";
import { isIP } from "./ip_address.ts";
import { validateIfName } from "./ip.ts";

/** Options for {@linkcode sendGratuitousArp}. */
export interface ArpingOptions {
  /** The namespace to send from (a path); this process's namespace when absent or `null`. */
  netns?: string | null;
  /** Send ARP requests (`-U`) instead of replies (`-A`). Galaxy's `gratuitous_arp_request`. */
  useRequest?: boolean;
  /** Packets to send (Galaxy: 2). */
  count?: number;
  /** Kill arping after this many seconds (default 5). */
  timeoutSeconds?: number;
  /**
   * Do not wait: arping goes on by itself (bounded by `timeoutSeconds`) and may outlive this process, so that a
   * pod's start does not wait for the ~1 s arping sleeps between packets. Its outcome is then not reported.
   */
  detach?: boolean;
}

/** The argv Galaxy uses: `[nsenter --net=<path>] arping -c <count> -U|-A -I <dev> <ip>`. */
export function arpingArgv(dev: string, ip: string, options: ArpingOptions = {}): string[] {
  validateIfName(dev);
  if (isIP(ip) !== 4) throw new TypeError(`arping needs an IPv4 address, got ${JSON.stringify(ip)}`);
  const count = options.count ?? 2;
  if (!Number.isInteger(count) || count < 1) {
    throw new TypeError(`arping count must be a positive integer, got ${count}`);
  }
  const argv = ["arping", "-c", String(count), options.useRequest ? "-U" : "-A", "-I", dev, ip];
  const netns = options.netns ?? null;
  if (netns !== null) {
    if (!netns.startsWith("/")) {
      throw new TypeError(`netns must be an absolute path, got ${JSON.stringify(netns)}`);
    }
    return ["nsenter", `--net=${netns}`, ...argv];
  }
  return argv;
}

/**
 * Announces `ip` on `dev` with gratuitous ARP. Resolves `true` when arping succeeded and `false` otherwise
 * (the reason is logged with console.error); never rejects.
 */
export async function sendGratuitousArp(
  dev: string,
  ip: string,
  options: ArpingOptions = {},
): Promise<boolean> {
  let argv: string[];
  try {
    argv = arpingArgv(dev, ip, options);
  } catch (err) {
    console.error(`arping ${dev} ${ip}: ${(err as Error).message}`);
    return false;
  }
  if (options.detach) {
    // A shell puts arping in the background and exits at once, so arping is nobody's child here and no pipe
    // of ours is handed down: whoever reads this plugin's stdout does not wait for it.
    const script = 'timeout -k 1 "$0" "$@" </dev/null >/dev/null 2>&1 &';
    try {
      const out = await childOutput(
        new Deno.Command("sh", {
          args: ["-c", script, String(options.timeoutSeconds ?? 5), ...argv],
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).spawn(),
      );
      if (out.success) return true;
      console.error(`${argv.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
    } catch (err) {
      console.error(`${argv.join(" ")}: ${(err as Error).message}`);
    }
    return false;
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    })
      .spawn();
  } catch (err) {
    console.error(`${argv.join(" ")}: ${(err as Error).message}`);
    return false;
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, (options.timeoutSeconds ?? 5) * 1000);
  try {
    const out = await childOutput(child);
    if (out.success) return true;
    const why = timedOut
      ? "timed out"
      : `exit code ${out.code}: ${new TextDecoder().decode(out.stderr).trim()}`;
    console.error(`${argv.join(" ")} failed (${why})`);
    return false;
  } finally {
    clearTimeout(timer);
  }
}
