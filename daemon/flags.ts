/**
 * The command line of `galaxy serve`: Galaxy's flags with the same names, defaults and meanings, the klog
 * logging flags, and the flags new in this port.
 *
 * The syntax is pflag's, as Galaxy parses it (pflag with the component-base normaliser and Go's `flag` set
 * merged in): `--f=v`, `--f v`, `--b` (a bool flag alone means true; it takes a value only with `=`),
 * `_` for `-` in names, `-v`/`-h` as the only single-dash forms (`-v=3`, `-v 3`, `-v3`), comma-separated
 * string slices (the first use replaces the default, later uses append) and Go durations.
 *
 * `node:util` `parseArgs` is not used: it cannot take `--b=false`, `_` in names or `-v=3`, so a layer over it
 * would be longer than this small scanner.
 *
 * Every default is written once, in {@link FLAG_TABLE}'s specs, as command-line text that goes through the
 * same parser as the user's value.
 *
 * Its length: a table of some thirty flags, each with its default, meaning and parser, and pflag's syntax;
 * one table is what keeps --help, the README and the parser from disagreeing.
 * @module
 */

/** A `--vmodule` entry: files whose name matches the glob `pattern` log at verbosity up to `level`. */
export interface VModuleRule {
  /** A Go `filepath.Match` glob over the file name without its extension, or over the path with a `/`. */
  pattern: string;
  /** The verbosity for matching files (> 0). */
  level: number;
}

/** A `--log-backtrace-at` location: a log line emitted at `file:line` also prints a stack trace. */
export interface TraceLocation {
  /** The file's base name, e.g. `server.ts`. */
  file: string;
  /** The line number (> 0). */
  line: number;
}

/** The parsed flags of `galaxy serve`. Durations are in milliseconds. */
export interface ServeFlags {
  /** `--master`: apiserver URL, overrides the kubeconfig's. */
  master: string;
  /** `--kubeconfig`: kubeconfig path; both this and master empty means in-cluster config. */
  kubeconfig: string;
  /** `--json-config-path`: path of galaxy.json. */
  jsonConfigPath: string;
  /** `--network-conf-dir`: directory with extra network configs. */
  networkConfDir: string;
  /** `--cni-paths`: plugin directories appended to the runtime's CNI_PATH. */
  cniPaths: string[];
  /** `--network-policy`: enforce Kubernetes network policies. */
  networkPolicy: boolean;
  /** `--bridge-nf-call-iptables`: force net.bridge.bridge-nf-call-iptables to 1 (true) or 0 (false). */
  bridgeNfCallIptables: boolean;
  /** `--ip-forward`: force net.ipv4.ip_forward to 1 (true) or 0 (false). */
  ipForward: boolean;
  /** `--route-eni`: rp_filter=0 on all/eth0/eth1 and ENI route tables. */
  routeEni: boolean;
  /** `--flannel-allocated-ip-dir`: host-local IPAM directories that the flannel GC cleans. */
  flannelAllocatedIpDir: string[];
  /** `--flannel-gc-interval`: flannel GC period (the veth GC runs at 3× this). */
  flannelGcIntervalMs: number;
  /** `--gc-dirs`: container-ID keyed state directories that the GC cleans. */
  gcDirs: string[];
  /** `--container-runtime-endpoint`: the CRI socket the GC asks which sandboxes live ("" = default). */
  containerRuntimeEndpoint: string;
  /** `--gc-grace-period`: the GC never touches anything younger than this. */
  gcGracePeriodMs: number;
  /** `--eni-metadata-url`: base URL of the instance metadata service for --route-eni. */
  eniMetadataUrl: string;
  /** `--hostname-override`: node name (else MY_NODE_NAME, else the hostname). */
  hostnameOverride: string;
  /** `--version`: print the version and exit. */
  version: boolean;
  /** `--pprof`: accepted for compatibility; no effect. */
  pprof: boolean;
  /** `--socket-path`: the unix socket the daemon serves galaxy-sdn on. */
  socketPath: string;
  /** `--state-dir`: the daemon's state directory. */
  stateDir: string;
  /** `--max-concurrent-requests`: CNI requests handled at once (≥ 1). */
  maxConcurrentRequests: number;
  /** `--metrics-address`: `host:port` for /metrics, or "" for none. */
  metricsAddress: string;
  /** `--port-dir`: folder of the port files; "" means `<state-dir>/port`. */
  portDir: string;
  /** `--iptables-backend`: `auto` (detect), `legacy` or `nft`. */
  iptablesBackend: "auto" | "legacy" | "nft";
  /** `--masquerade-bit`: the fwmark bit that asks for masquerading (kube-proxy's, 0-31). */
  masqueradeBit: number;
  /** `-v`/`--v`: log verbosity (≥ 0). */
  v: number;
  /** `--logtostderr`: log to stderr instead of files. */
  logtostderr: boolean;
  /** `--alsologtostderr`: log to stderr as well as files. */
  alsologtostderr: boolean;
  /** `--log-dir`: directory for log files ("" = the temp directory). */
  logDir: string;
  /** `--log-file`: a single log file; overrides log-dir. */
  logFile: string;
  /** `--stderrthreshold`: with file logging, severities at or above this also go to stderr (0=INFO..3=FATAL). */
  stderrthreshold: number;
  /** `--vmodule`: per-file verbosity. */
  vmodule: VModuleRule[];
  /** `--log-backtrace-at`: emit a stack trace when logging at this location, or null. */
  logBacktraceAt: TraceLocation | null;
  /** `--log-flush-frequency`: kept for compatibility; log files are written unbuffered. */
  logFlushFrequencyMs: number;
}

/** The kinds of flag value; shown as the flag's type in the help and the README. */
export type FlagType =
  | "string"
  | "strings"
  | "bool"
  | "int"
  | "duration"
  | "severity"
  | "pattern=N,..."
  | "file:line"
  | "host:port";

/** The help section a flag is listed in. */
export type FlagGroup = "galaxy" | "new" | "logging";

/** One row of the flag table: what the help and the README show for a flag. */
export interface FlagInfo {
  /** The long name without dashes, e.g. `json-config-path`. */
  name: string;
  /** The one-letter form, if any (only `v`). */
  short?: string;
  /** The value type. */
  type: FlagType;
  /** The help section. */
  group: FlagGroup;
  /** The default as the help shows it: `""`, `[a,b]` for slices, else the command-line text. */
  default: string;
  /** A one-line meaning. */
  usage: string;
}

interface FlagSpec<T> {
  name: string;
  short?: string;
  type: FlagType;
  group: FlagGroup;
  /** Command-line text, parsed by `parse` like the user's. */
  default: string;
  usage: string;
  /** Converts command-line text; throws an Error whose message says why the text is wrong. */
  parse(text: string): T;
}

/** Error for a bad command line; the message names the flag. The caller prints it with the usage, exit 2. */
export class FlagError extends Error {
  /** The flag (or argument) at fault, as `--name`, `-v` or the argument itself. */
  readonly flag: string;

  /** Makes a FlagError for `flag`. */
  constructor(message: string, flag: string) {
    super(message);
    this.name = "FlagError";
    this.flag = flag;
  }
}

/** The longest duration a JavaScript timer can wait: 2^31-1 ms (about 24.8 days). */
export const MAX_TIMER_MS = 2_147_483_647;

const SEVERITY_NAMES = ["INFO", "WARNING", "ERROR", "FATAL"];

const SPECS: { [K in keyof ServeFlags]: FlagSpec<ServeFlags[K]> } = {
  master: {
    name: "master",
    type: "string",
    group: "galaxy",
    default: "",
    usage: "address of the Kubernetes API server; overrides the kubeconfig's",
    parse: parseString,
  },
  kubeconfig: {
    name: "kubeconfig",
    type: "string",
    group: "galaxy",
    default: "",
    usage: "path to a kubeconfig; with --master also empty, the in-cluster config is used",
    parse: parseString,
  },
  jsonConfigPath: {
    name: "json-config-path",
    type: "string",
    group: "galaxy",
    default: "/etc/galaxy/galaxy.json",
    usage: "path to galaxy.json (networks, default networks, ENI network); required",
    parse: parseNonEmpty,
  },
  networkConfDir: {
    name: "network-conf-dir",
    type: "string",
    group: "galaxy",
    default: "/etc/cni/net.d/",
    usage: "directory of extra network configs, looked up by network name",
    parse: parseString,
  },
  cniPaths: {
    name: "cni-paths",
    type: "strings",
    group: "galaxy",
    default: "/opt/cni/galaxy/bin",
    usage: "plugin directories appended to the runtime's CNI_PATH",
    parse: parseStrings,
  },
  networkPolicy: {
    name: "network-policy",
    type: "bool",
    group: "galaxy",
    default: "false",
    usage: "enforce Kubernetes network policies with iptables and ipset",
    parse: parseBool,
  },
  bridgeNfCallIptables: {
    name: "bridge-nf-call-iptables",
    type: "bool",
    group: "galaxy",
    default: "true",
    usage: "keep net.bridge.bridge-nf-call-iptables at 1 (true) or 0 (false)",
    parse: parseBool,
  },
  ipForward: {
    name: "ip-forward",
    type: "bool",
    group: "galaxy",
    default: "true",
    usage: "keep net.ipv4.ip_forward at 1 (true) or 0 (false)",
    parse: parseBool,
  },
  routeEni: {
    name: "route-eni",
    type: "bool",
    group: "galaxy",
    default: "false",
    usage: "set rp_filter=0 on all, eth0 and eth1 and keep ENI route tables",
    parse: parseBool,
  },
  flannelAllocatedIpDir: {
    name: "flannel-allocated-ip-dir",
    type: "strings",
    group: "galaxy",
    default: "/var/lib/cni/networks,/var/lib/cni/networks/galaxy-flannel",
    usage: "host-local IPAM directories whose stale IPs the flannel GC releases",
    parse: parseStrings,
  },
  flannelGcIntervalMs: {
    name: "flannel-gc-interval",
    type: "duration",
    group: "galaxy",
    default: "10s",
    usage: "period of the flannel IP GC; the veth GC runs at 3x this",
    parse: parseInterval,
  },
  gcDirs: {
    name: "gc-dirs",
    type: "strings",
    group: "galaxy",
    default: "/var/lib/cni/flannel,/var/lib/cni/galaxy,/var/lib/cni/galaxy/port",
    usage: "container-ID keyed state directories whose stale entries the GC removes",
    parse: parseStrings,
  },
  containerRuntimeEndpoint: {
    name: "container-runtime-endpoint",
    type: "string",
    group: "new",
    default: "",
    usage: "CRI socket the GC asks which pod sandboxes live (kubelet's flag); empty: $CONTAINERD_HOST, " +
      "else unix:///run/containerd/containerd.sock",
    parse: parseRuntimeEndpoint,
  },
  gcGracePeriodMs: {
    name: "gc-grace-period",
    type: "duration",
    group: "new",
    default: "2m",
    usage: "the GC leaves alone every file, veth and container younger than this",
    parse: parseInterval,
  },
  eniMetadataUrl: {
    name: "eni-metadata-url",
    type: "string",
    group: "new",
    default: "http://metadata.tencentyun.com/latest/meta-data/",
    usage: "base URL of the instance metadata service that --route-eni reads the ENIs from",
    parse: parseHttpUrl,
  },
  hostnameOverride: {
    name: "hostname-override",
    type: "string",
    group: "galaxy",
    default: "",
    usage: "node name to use; else $MY_NODE_NAME, else the hostname (lower-cased)",
    parse: parseString,
  },
  version: {
    name: "version",
    type: "bool",
    group: "galaxy",
    default: "false",
    usage: "print the version and exit",
    parse: parseBool,
  },
  pprof: {
    name: "pprof",
    type: "bool",
    group: "galaxy",
    default: "false",
    usage: "accepted for compatibility with Galaxy; has no effect",
    parse: parseBool,
  },
  socketPath: {
    name: "socket-path",
    type: "string",
    group: "new",
    default: "/var/run/galaxy/galaxy.sock",
    usage: "unix socket on which galaxy-sdn reaches the daemon",
    parse: parseNonEmpty,
  },
  stateDir: {
    name: "state-dir",
    type: "string",
    group: "new",
    default: "/var/lib/cni/galaxy",
    usage: "directory of the daemon's per-container state",
    parse: parseNonEmpty,
  },
  maxConcurrentRequests: {
    name: "max-concurrent-requests",
    type: "int",
    group: "new",
    // Plugins are CPU-bound processes of ~10 MB each: 8 keep a 2-CPU node busy without crowding its memory.
    default: "8",
    usage: "CNI requests handled at once (at least 1); requests for one container never overlap",
    parse: parsePositiveInt,
  },
  metricsAddress: {
    name: "metrics-address",
    type: "host:port",
    group: "new",
    default: "",
    usage: "TCP address for Prometheus /metrics, e.g. 127.0.0.1:9100; empty turns metrics off",
    parse: parseHostPortFlag,
  },
  portDir: {
    name: "port-dir",
    type: "string",
    group: "new",
    default: "",
    usage: "folder of the host-port files <containerID> (Galaxy's format); empty: <state-dir>/port",
    parse: parseString,
  },
  iptablesBackend: {
    name: "iptables-backend",
    type: "string",
    group: "new",
    default: "auto",
    usage: "iptables backend: auto (detect as kube-proxy's iptables-wrapper does), legacy or nft",
    parse: parseIptablesBackend,
  },
  masqueradeBit: {
    name: "masquerade-bit",
    type: "int",
    group: "new",
    default: "14",
    usage: "fwmark bit for masquerading hairpin and localhost host-port traffic, as kube-proxy's (0-31)",
    parse: parseMasqueradeBit,
  },
  v: {
    name: "v",
    short: "v",
    type: "int",
    group: "logging",
    default: "0",
    usage: "log verbosity: V(n) lines are logged when n <= v",
    parse: parseLevel,
  },
  logtostderr: {
    name: "logtostderr",
    type: "bool",
    group: "logging",
    default: "true",
    usage: "log to standard error instead of files",
    parse: parseBool,
  },
  alsologtostderr: {
    name: "alsologtostderr",
    type: "bool",
    group: "logging",
    default: "false",
    usage: "log to standard error as well as files",
    parse: parseBool,
  },
  logDir: {
    name: "log-dir",
    type: "string",
    group: "logging",
    default: "",
    usage: "write log files in this directory (empty: the temp directory); needs --logtostderr=false",
    parse: parseString,
  },
  logFile: {
    name: "log-file",
    type: "string",
    group: "logging",
    default: "",
    usage: "write all logs to this one file instead of --log-dir; needs --logtostderr=false",
    parse: parseString,
  },
  stderrthreshold: {
    name: "stderrthreshold",
    type: "severity",
    group: "logging",
    default: "2",
    usage:
      "with log files, lines at or above this severity also go to stderr (INFO/WARNING/ERROR/FATAL or 0-3)",
    parse: parseSeverity,
  },
  vmodule: {
    name: "vmodule",
    type: "pattern=N,...",
    group: "logging",
    default: "",
    usage: "per-file verbosity, e.g. server=3,k8s*=5 (globs over file names without extension)",
    parse: parseVModule,
  },
  logBacktraceAt: {
    name: "log-backtrace-at",
    type: "file:line",
    group: "logging",
    default: "",
    usage: "when logging at this source line, e.g. server.ts:120, also log a stack trace",
    parse: parseTraceLocation,
  },
  logFlushFrequencyMs: {
    name: "log-flush-frequency",
    type: "duration",
    group: "logging",
    default: "5s",
    usage: "accepted for compatibility; log files are written unbuffered, so every line is flushed at once",
    parse: parseInterval,
  },
};

const KEYS = Object.keys(SPECS) as (keyof ServeFlags)[];

const BY_LONG = new Map<string, keyof ServeFlags>(KEYS.map((k) => [SPECS[k].name, k]));

const BY_SHORT = new Map<string, keyof ServeFlags>(
  KEYS.filter((k) => SPECS[k].short !== undefined).map((k) => [SPECS[k].short as string, k]),
);

/**
 * Flags that are accepted (Galaxy's manifests pass them) but whose feature has not landed yet, each with the
 * feature it waits for. Their help says "not in effect yet" and the daemon warns at start. The one list to
 * shrink: a feature that lands removes its flags here.
 */
export const NOT_IN_EFFECT: Readonly<Partial<Record<keyof ServeFlags, string>>> = {};

/** What the help and the README add to the meaning of a flag of {@link NOT_IN_EFFECT}. */
export const NOT_IN_EFFECT_NOTE = "NOT IN EFFECT YET";

/** Every flag of `galaxy serve`, in help order; the help text and the README flags table are built from it. */
export const FLAG_TABLE: readonly FlagInfo[] = KEYS.map((key) => {
  const spec = SPECS[key];
  const waiting = NOT_IN_EFFECT[key];
  const info: FlagInfo = {
    name: spec.name,
    type: spec.type,
    group: spec.group,
    default: displayDefault(spec.type, spec.default),
    usage: waiting ? `${NOT_IN_EFFECT_NOTE} (${waiting}): ${spec.usage}` : spec.usage,
  };
  if (spec.short !== undefined) info.short = spec.short;
  return info;
});

/** The defaults of every flag, parsed from the flag table. */
export function defaultServeFlags(): ServeFlags {
  const flags = {} as ServeFlags;
  for (const key of KEYS) setFlag(flags, key, SPECS[key].default, false);
  return flags;
}

/**
 * The start-up warning about the flags of {@link NOT_IN_EFFECT}, with the values they were given; `undefined`
 * once the list is empty.
 */
export function notInEffectWarning(flags: ServeFlags): string | undefined {
  const keys = KEYS.filter((k) => NOT_IN_EFFECT[k]);
  if (!keys.length) return undefined;
  const shown = keys.map((k) => {
    const v = flags[k];
    return `--${SPECS[k].name}=${Array.isArray(v) ? v.join(",") : k.endsWith("Ms") ? `${v}ms` : String(v)}`;
  });
  return `accepted but not in effect yet (their features have not landed): ${shown.join(" ")}`;
}

/** Parses the arguments after `galaxy serve`; returns "help" for `--help`/`-h`, throws {@link FlagError}. */
export function parseServeFlags(args: string[]): ServeFlags | "help" {
  const flags = defaultServeFlags();
  const seen = new Set<keyof ServeFlags>();
  let lastBool: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h" || arg === "-help") return "help";
    if (arg === "--") {
      if (i + 1 < args.length) throw unexpectedArgument(args[i + 1], undefined);
      break;
    }
    if (!arg.startsWith("-") || arg === "-") throw unexpectedArgument(arg, lastBool);

    const { key, shown, value: inline } = splitFlag(arg);
    const spec = SPECS[key];
    let value = inline;
    if (value === undefined) {
      if (spec.type === "bool") {
        value = "true";
      } else {
        const next = args[i + 1];
        if (next === undefined || /^-[-a-zA-Z]/.test(next)) {
          throw new FlagError(`flag needs an argument: ${shown}`, shown);
        }
        value = next;
        i++;
      }
    }
    lastBool = spec.type === "bool" && inline === undefined ? shown : undefined;
    try {
      setFlag(flags, key, value, seen.has(key));
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      throw new FlagError(`invalid value ${JSON.stringify(value)} for ${shown}: ${reason}`, shown);
    }
    seen.add(key);
  }
  return flags;
}

/** The help text of `galaxy serve`: one line per flag, `--name type  meaning (default X)`. */
export function serveHelp(): string {
  const left = (f: FlagInfo) => `${f.short ? `-${f.short}, ` : "    "}--${f.name} ${f.type}`;
  const width = Math.max(...FLAG_TABLE.map((f) => left(f).length)) + 3;
  const section = (title: string, group: FlagGroup) =>
    [
      `${title}:`,
      ...FLAG_TABLE.filter((f) => f.group === group).map((f) =>
        `  ${left(f).padEnd(width)}${f.usage} (default ${f.default})`
      ),
    ].join("\n");
  return [
    "Usage: galaxy serve [flags]",
    "",
    "Runs the Galaxy node daemon: it serves the CNI calls that galaxy-sdn relays over a unix socket.",
    "",
    section("Galaxy flags", "galaxy"),
    "",
    section("Flags new in Galaxy on Deno", "new"),
    "",
    section("Logging flags (klog)", "logging"),
    "",
    `  ${"-h, --help".padEnd(width)}print this help and exit`,
    "",
    "Syntax: --flag=value or --flag value; a bool flag alone means true and takes a value only with '='",
    "(--route-eni=false); '_' may stand for '-' in names (--flannel_gc_interval=5s); lists are comma-separated",
    "(--cni-paths=/a,/b; repeating the flag appends); durations are Go durations (10s, 1m30s, 500ms, 2h45m).",
  ].join("\n");
}

/** Parses a Go duration (`10s`, `1m30s`, `1.5h`, `500ms`, `0`) into milliseconds; throws on bad text. */
export function parseGoDuration(text: string): number {
  let rest = text;
  let sign = 1n;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1n;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") throw new Error("not a Go duration (examples: 10s, 1m30s, 500ms)");
  let totalNs = 0n;
  const unitPattern = /^([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)/;
  while (rest !== "") {
    const m = unitPattern.exec(rest);
    if (m === null || (m[1] === "" && (m[2] ?? "") === "")) {
      const hint = /^[0-9.]+$/.test(rest) ? "missing unit" : "not a Go duration";
      throw new Error(`${hint} (examples: 10s, 1m30s, 500ms)`);
    }
    const unitNs = DURATION_UNITS_NS[m[3]];
    const fraction = m[2] ?? "";
    totalNs += BigInt(m[1] || "0") * unitNs;
    if (fraction !== "") totalNs += (BigInt(fraction) * unitNs) / 10n ** BigInt(fraction.length);
    if (totalNs > 2n ** 63n - 1n) throw new Error("duration out of range");
    rest = rest.slice(m[0].length);
  }
  return Number(sign * totalNs) / 1e6;
}

const DURATION_UNITS_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  "µs": 1_000n,
  "μs": 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/** Compiles a Go `filepath.Match` glob (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes) to an anchored RegExp. */
export function globToRegExp(pattern: string): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") {
      out += "[^/]*";
    } else if (c === "?") {
      out += "[^/]";
    } else if (c === "\\") {
      if (i + 1 >= pattern.length) throw new Error(`bad pattern ${JSON.stringify(pattern)}: trailing \\`);
      out += escapeRegExp(pattern[++i]);
    } else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) throw new Error(`bad pattern ${JSON.stringify(pattern)}: unclosed [`);
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith("^");
      if (negate) body = body.slice(1);
      if (body === "") throw new Error(`bad pattern ${JSON.stringify(pattern)}: empty character class`);
      out += `[${negate ? "^" : ""}${body.replace(/[\]\\^]/g, "\\$&")}]`;
      i = end;
    } else {
      out += escapeRegExp(c);
    }
  }
  return new RegExp(`^${out}$`);
}

/** Splits `host:port` (`:9100`, `127.0.0.1:9100`, `[::1]:9100`); throws when it is not one. */
export function splitHostPort(address: string): { hostname: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):([0-9]{1,5})$/.exec(address);
  if (m === null) throw new Error("expected host:port, e.g. 127.0.0.1:9100, :9100 or [::1]:9100");
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error("port must be 1-65535");
  return { hostname: m[1] ?? m[2], port };
}

function splitFlag(arg: string): { key: keyof ServeFlags; shown: string; value: string | undefined } {
  if (arg.startsWith("--")) {
    const body = arg.slice(2);
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === "" || name.startsWith("-")) throw new FlagError(`bad flag syntax: ${arg}`, arg);
    const key = BY_LONG.get(name.replaceAll("_", "-"));
    if (key === undefined) throw new FlagError(`unknown flag: --${name}`, `--${name}`);
    return { key, shown: `--${SPECS[key].name}`, value: eq < 0 ? undefined : body.slice(eq + 1) };
  }
  const longName = arg.slice(1).split("=")[0].replaceAll("_", "-");
  const key = BY_SHORT.get(arg[1]);
  const rest = arg.slice(2);
  if (key === undefined || /^[a-zA-Z_-]/.test(rest)) {
    const hint = BY_LONG.has(longName) ? ` (long flags take two dashes: --${longName})` : "";
    throw new FlagError(`unknown flag: ${arg.split("=")[0]}${hint}`, arg.split("=")[0]);
  }
  const value = rest === "" ? undefined : rest.startsWith("=") ? rest.slice(1) : rest;
  return { key, shown: `-${arg[1]}`, value };
}

function unexpectedArgument(arg: string, afterBool: string | undefined): FlagError {
  if (afterBool !== undefined && /^(1|0|t|f|true|false)$/i.test(arg)) {
    return new FlagError(
      `unexpected argument ${JSON.stringify(arg)} after ${afterBool}: a bool flag takes a value only ` +
        `with '=' (${afterBool}=${arg})`,
      afterBool,
    );
  }
  return new FlagError(`unexpected argument ${JSON.stringify(arg)}: galaxy serve takes only flags`, arg);
}

function setFlag<K extends keyof ServeFlags>(flags: ServeFlags, key: K, text: string, append: boolean): void {
  const value = SPECS[key].parse(text);
  const previous = flags[key];
  if (append && Array.isArray(previous) && Array.isArray(value)) {
    flags[key] = [...previous, ...value] as ServeFlags[K];
  } else {
    flags[key] = value;
  }
}

function displayDefault(type: FlagType, text: string): string {
  if (type === "strings") return `[${text}]`;
  return text === "" ? '""' : text;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

function parseString(text: string): string {
  return text;
}

function parseNonEmpty(text: string): string {
  if (text === "") throw new Error("must not be empty");
  return text;
}

/** pflag's string slice: CSV, so a field may be quoted ("a,b"); empty entries are dropped. */
function parseStrings(text: string): string[] {
  const fields: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let field = "";
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new Error("unclosed quote");
        if (text[i] === '"' && text[i + 1] === '"') {
          field += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else {
          field += text[i++];
        }
      }
      if (i < text.length && text[i] !== ",") throw new Error("text after a closing quote");
    } else {
      const end = text.indexOf(",", i);
      field = text.slice(i, end < 0 ? text.length : end);
      if (field.includes('"')) throw new Error('a quote (") may only start a field');
      i += field.length;
    }
    if (field !== "") fields.push(field);
    i++; // skip the comma
  }
  return fields;
}

/** Go's strconv.ParseBool. */
function parseBool(text: string): boolean {
  if (["1", "t", "T", "true", "TRUE", "True"].includes(text)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(text)) return false;
  throw new Error("not a bool (true, false, 1, 0, t, f)");
}

function parseInteger(text: string): number {
  if (!/^[+-]?[0-9]+$/.test(text)) throw new Error("not a decimal integer");
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error("integer out of range");
  return n;
}

function parseLevel(text: string): number {
  const n = parseInteger(text);
  if (n < 0 || n > 2 ** 31 - 1) throw new Error("must be an integer >= 0");
  return n;
}

function parsePositiveInt(text: string): number {
  const n = parseInteger(text);
  if (n < 1) throw new Error("must be an integer >= 1");
  return n;
}

function parseIptablesBackend(text: string): "auto" | "legacy" | "nft" {
  if (text !== "auto" && text !== "legacy" && text !== "nft") throw new Error("must be auto, legacy or nft");
  return text;
}

function parseMasqueradeBit(text: string): number {
  const n = parseInteger(text);
  if (n < 0 || n > 31) throw new Error("must be an integer from 0 to 31");
  return n;
}

function parseInterval(text: string): number {
  const ms = parseGoDuration(text);
  if (ms < 0) throw new Error("must not be negative");
  if (ms === 0) throw new Error("must be greater than 0");
  if (ms > MAX_TIMER_MS) throw new Error("must be at most 596h31m23.647s (the longest timer)");
  return ms;
}

/** klog's severity: a name (case-insensitive) or its number. */
function parseSeverity(text: string): number {
  const byName = SEVERITY_NAMES.indexOf(text.toUpperCase());
  if (byName >= 0) return byName;
  if (/^[0-3]$/.test(text)) return Number(text);
  throw new Error("not a severity (INFO, WARNING, ERROR, FATAL or 0-3)");
}

/** klog's vmodule: `pattern=N` entries separated by commas; empty entries and N=0 are ignored. */
function parseVModule(text: string): VModuleRule[] {
  const rules: VModuleRule[] = [];
  for (const entry of text.split(",")) {
    if (entry === "") continue;
    const parts = entry.split("=");
    if (parts.length !== 2 || parts[0] === "" || !/^[0-9]+$/.test(parts[1])) {
      throw new Error(`syntax error in ${JSON.stringify(entry)}: expect comma-separated list of pattern=N`);
    }
    globToRegExp(parts[0]);
    const level = Number(parts[1]);
    if (level > 0) rules.push({ pattern: parts[0], level });
  }
  return rules;
}

/** klog's log_backtrace_at: empty, or `file:line` with a dot in the file name and a line > 0. */
function parseTraceLocation(text: string): TraceLocation | null {
  if (text === "") return null;
  const parts = text.split(":");
  if (parts.length !== 2 || !parts[0].includes(".") || !/^[0-9]+$/.test(parts[1]) || Number(parts[1]) < 1) {
    throw new Error("syntax error: expect file.ts:234");
  }
  return { file: parts[0], line: Number(parts[1]) };
}

function parseRuntimeEndpoint(text: string): string {
  if (text === "") return text;
  const path = text.startsWith("unix://") ? text.slice("unix://".length) : text;
  if (!path.startsWith("/")) throw new Error("expected unix:///path/to/socket or an absolute path");
  return text;
}

function parseHttpUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error("not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error("expected an http:// or https:// URL");
  }
  return text.endsWith("/") ? text : `${text}/`;
}

function parseHostPortFlag(text: string): string {
  if (text !== "") splitHostPort(text);
  return text;
}
