import assert from "node:assert/strict";
import {
  defaultServeFlags,
  FLAG_TABLE,
  FlagError,
  globToRegExp,
  MAX_TIMER_MS,
  NOT_IN_EFFECT,
  NOT_IN_EFFECT_NOTE,
  notInEffectWarning,
  parseGoDuration,
  parseServeFlags,
  type ServeFlags,
  serveHelp,
  splitHostPort,
} from "../../daemon/flags.ts";

function parse(...args: string[]): ServeFlags {
  const result = parseServeFlags(args);
  assert.notEqual(result, "help", `unexpected help for ${args.join(" ")}`);
  return result as ServeFlags;
}

/** Asserts that `args` fail with a FlagError whose message contains `flag` and whose `flag` is `flag`. */
function assertFlagError(args: string[], flag: string, messagePart?: RegExp): FlagError {
  let caught: unknown;
  try {
    parseServeFlags(args);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof FlagError, `${JSON.stringify(args)} should throw a FlagError, got ${caught}`);
  assert.equal(caught.flag, flag, `${JSON.stringify(args)}: ${caught.message}`);
  assert.ok(
    caught.message.includes(flag),
    `${JSON.stringify(args)}: "${caught.message}" should name ${flag}`,
  );
  if (messagePart) assert.match(caught.message, messagePart);
  return caught;
}

// Written out here, not taken from the table, so that a changed default fails a test.
const GALAXY_DEFAULTS: ServeFlags = {
  master: "",
  kubeconfig: "",
  jsonConfigPath: "/etc/galaxy/galaxy.json",
  networkConfDir: "/etc/cni/net.d/",
  cniPaths: ["/opt/cni/galaxy/bin"],
  networkPolicy: false,
  bridgeNfCallIptables: true,
  ipForward: true,
  routeEni: false,
  flannelAllocatedIpDir: ["/var/lib/cni/networks", "/var/lib/cni/networks/galaxy-flannel"],
  flannelGcIntervalMs: 10_000,
  gcDirs: ["/var/lib/cni/flannel", "/var/lib/cni/galaxy", "/var/lib/cni/galaxy/port"],
  containerRuntimeEndpoint: "",
  gcGracePeriodMs: 120_000,
  eniMetadataUrl: "http://metadata.tencentyun.com/latest/meta-data/",
  hostnameOverride: "",
  version: false,
  pprof: false,
  socketPath: "/var/run/galaxy/galaxy.sock",
  stateDir: "/var/lib/cni/galaxy",
  maxConcurrentRequests: 8,
  metricsAddress: "",
  portDir: "",
  iptablesBackend: "auto",
  masqueradeBit: 14,
  v: 0,
  logtostderr: true,
  alsologtostderr: false,
  logDir: "",
  logFile: "",
  stderrthreshold: 2,
  vmodule: [],
  logBacktraceAt: null,
  logFlushFrequencyMs: 5_000,
};

const ISSUE_FLAGS = [
  "master",
  "kubeconfig",
  "json-config-path",
  "network-conf-dir",
  "cni-paths",
  "network-policy",
  "bridge-nf-call-iptables",
  "ip-forward",
  "route-eni",
  "flannel-allocated-ip-dir",
  "flannel-gc-interval",
  "gc-dirs",
  "container-runtime-endpoint",
  "gc-grace-period",
  "eni-metadata-url",
  "hostname-override",
  "version",
  "v",
  "logtostderr",
  "alsologtostderr",
  "log-dir",
  "log-file",
  "stderrthreshold",
  "vmodule",
  "log-backtrace-at",
  "log-flush-frequency",
  "socket-path",
  "state-dir",
  "max-concurrent-requests",
  "metrics-address",
  "port-dir",
  "iptables-backend",
  "masquerade-bit",
  "pprof",
];

Deno.test("flags: no arguments give Galaxy's defaults and the new flags' defaults", () => {
  assert.deepEqual(parse(), GALAXY_DEFAULTS);
  assert.deepEqual(defaultServeFlags(), GALAXY_DEFAULTS);
});

Deno.test("flags: defaultServeFlags returns a fresh object each time", () => {
  const a = defaultServeFlags();
  a.cniPaths.push("/mutated");
  a.vmodule.push({ pattern: "x", level: 1 });
  assert.deepEqual(defaultServeFlags(), GALAXY_DEFAULTS);
});

Deno.test("flags: the table has every flag of the issue once, and covers every ServeFlags field", () => {
  const names = FLAG_TABLE.map((f) => f.name);
  assert.deepEqual([...names].sort(), [...ISSUE_FLAGS].sort());
  assert.equal(new Set(names).size, names.length);
  assert.equal(FLAG_TABLE.length, Object.keys(GALAXY_DEFAULTS).length);
  assert.deepEqual(FLAG_TABLE.filter((f) => f.short).map((f) => [f.name, f.short]), [["v", "v"]]);
  for (const f of FLAG_TABLE) {
    assert.ok(f.usage.length > 10 && !f.usage.includes("\n"), `${f.name}: one-line usage`);
    assert.ok(f.default.length > 0, `${f.name}: default shown`);
  }
});

Deno.test("flags: the table shows each default as the help does", () => {
  const shown = Object.fromEntries(FLAG_TABLE.map((f) => [f.name, `${f.type} ${f.default}`]));
  assert.deepEqual(shown, {
    "master": 'string ""',
    "kubeconfig": 'string ""',
    "json-config-path": "string /etc/galaxy/galaxy.json",
    "network-conf-dir": "string /etc/cni/net.d/",
    "cni-paths": "strings [/opt/cni/galaxy/bin]",
    "network-policy": "bool false",
    "bridge-nf-call-iptables": "bool true",
    "ip-forward": "bool true",
    "route-eni": "bool false",
    "flannel-allocated-ip-dir": "strings [/var/lib/cni/networks,/var/lib/cni/networks/galaxy-flannel]",
    "flannel-gc-interval": "duration 10s",
    "gc-dirs": "strings [/var/lib/cni/flannel,/var/lib/cni/galaxy,/var/lib/cni/galaxy/port]",
    "container-runtime-endpoint": 'string ""',
    "gc-grace-period": "duration 2m",
    "eni-metadata-url": "string http://metadata.tencentyun.com/latest/meta-data/",
    "hostname-override": 'string ""',
    "version": "bool false",
    "pprof": "bool false",
    "socket-path": "string /var/run/galaxy/galaxy.sock",
    "state-dir": "string /var/lib/cni/galaxy",
    "max-concurrent-requests": "int 8",
    "metrics-address": 'host:port ""',
    "port-dir": 'string ""',
    "iptables-backend": "string auto",
    "masquerade-bit": "int 14",
    "v": "int 0",
    "logtostderr": "bool true",
    "alsologtostderr": "bool false",
    "log-dir": 'string ""',
    "log-file": 'string ""',
    "stderrthreshold": "severity 2",
    "vmodule": 'pattern=N,... ""',
    "log-backtrace-at": 'file:line ""',
    "log-flush-frequency": "duration 5s",
  });
});

Deno.test("flags: --f=v and --f v for every kind of value", () => {
  const cases: [string, string, Partial<ServeFlags>][] = [
    ["master", "https://198.18.0.1:6443", { master: "https://198.18.0.1:6443" }],
    ["kubeconfig", "/etc/kubernetes/kubelet.conf", { kubeconfig: "/etc/kubernetes/kubelet.conf" }],
    ["json-config-path", "/tmp/g.json", { jsonConfigPath: "/tmp/g.json" }],
    ["network-conf-dir", "/tmp/net.d", { networkConfDir: "/tmp/net.d" }],
    ["cni-paths", "/a,/b", { cniPaths: ["/a", "/b"] }],
    ["flannel-allocated-ip-dir", "/x", { flannelAllocatedIpDir: ["/x"] }],
    ["flannel-gc-interval", "1m30s", { flannelGcIntervalMs: 90_000 }],
    ["gc-dirs", "/g1,/g2,/g3", { gcDirs: ["/g1", "/g2", "/g3"] }],
    ["hostname-override", "Node-1", { hostnameOverride: "Node-1" }],
    ["socket-path", "/run/g.sock", { socketPath: "/run/g.sock" }],
    ["state-dir", "/tmp/state", { stateDir: "/tmp/state" }],
    ["max-concurrent-requests", "4", { maxConcurrentRequests: 4 }],
    ["metrics-address", "127.0.0.1:9100", { metricsAddress: "127.0.0.1:9100" }],
    ["port-dir", "/tmp/ports", { portDir: "/tmp/ports" }],
    ["iptables-backend", "nft", { iptablesBackend: "nft" }],
    ["masquerade-bit", "0", { masqueradeBit: 0 }],
    ["v", "5", { v: 5 }],
    ["log-dir", "/var/log/galaxy", { logDir: "/var/log/galaxy" }],
    ["log-file", "/var/log/galaxy.log", { logFile: "/var/log/galaxy.log" }],
    ["stderrthreshold", "WARNING", { stderrthreshold: 1 }],
    ["vmodule", "server=3", { vmodule: [{ pattern: "server", level: 3 }] }],
    ["log-backtrace-at", "server.ts:120", { logBacktraceAt: { file: "server.ts", line: 120 } }],
    ["log-flush-frequency", "2s", { logFlushFrequencyMs: 2_000 }],
    ["network-policy", "true", { networkPolicy: true }],
    ["bridge-nf-call-iptables", "false", { bridgeNfCallIptables: false }],
  ];
  for (const [name, value, expected] of cases) {
    const want = { ...GALAXY_DEFAULTS, ...expected };
    assert.deepEqual(parse(`--${name}=${value}`), want, `--${name}=${value}`);
    if (!["network-policy", "bridge-nf-call-iptables"].includes(name)) {
      assert.deepEqual(parse(`--${name}`, value), want, `--${name} ${value}`);
    }
  }
});

Deno.test("flags: a value may contain '=' and may be empty with '='", () => {
  assert.equal(parse("--master=https://h/?a=b").master, "https://h/?a=b");
  assert.equal(parse("--kubeconfig=").kubeconfig, "");
  assert.equal(parse("--master", "").master, "");
});

Deno.test("flags: bool flags — alone means true, a value only with '='", () => {
  const bools = [
    ["network-policy", "networkPolicy"],
    ["bridge-nf-call-iptables", "bridgeNfCallIptables"],
    ["ip-forward", "ipForward"],
    ["route-eni", "routeEni"],
    ["version", "version"],
    ["pprof", "pprof"],
    ["logtostderr", "logtostderr"],
    ["alsologtostderr", "alsologtostderr"],
  ] as const;
  for (const [name, field] of bools) {
    assert.equal(parse(`--${name}`)[field], true, `--${name}`);
    assert.equal(parse(`--${name}=false`)[field], false, `--${name}=false`);
    assert.equal(parse(`--${name}=true`)[field], true, `--${name}=true`);
  }
  for (const t of ["1", "t", "T", "true", "TRUE", "True"]) {
    assert.equal(parse(`--route-eni=${t}`).routeEni, true);
  }
  for (const f of ["0", "f", "F", "false", "FALSE", "False"]) {
    assert.equal(parse(`--ip-forward=${f}`).ipForward, false);
  }
  // The next argument is never a bool's value: `--route-eni false` is an error that says how to write it.
  assertFlagError(["--route-eni", "false"], "--route-eni", /--route-eni=false/);
  assertFlagError(["--logtostderr", "true"], "--logtostderr", /only with '='/);
  assertFlagError(["--route-eni=yes"], "--route-eni", /not a bool/);
  assertFlagError(["--ip-forward="], "--ip-forward", /not a bool/);
  // A bool followed by another flag is just true.
  const f = parse("--route-eni", "--network-policy");
  assert.equal(f.routeEni, true);
  assert.equal(f.networkPolicy, true);
});

Deno.test("flags: '_' is accepted for '-' in every name", () => {
  assert.equal(parse("--flannel_gc_interval=5s").flannelGcIntervalMs, 5_000);
  assert.deepEqual(parse("--flannel_allocated_ip_dir", "/d").flannelAllocatedIpDir, ["/d"]);
  assert.deepEqual(parse("--gc_dirs=/g").gcDirs, ["/g"]);
  assert.equal(parse("--json_config_path", "/j").jsonConfigPath, "/j");
  assert.equal(parse("--log_dir=/l").logDir, "/l");
  assert.equal(parse("--log_backtrace_at=a.ts:1").logBacktraceAt?.line, 1);
  assert.equal(parse("--bridge_nf_call_iptables=false").bridgeNfCallIptables, false);
  assert.equal(parse("--max_concurrent_requests=3").maxConcurrentRequests, 3);
  for (const f of FLAG_TABLE) {
    const underscored = f.name.replaceAll("-", "_");
    const value = f.type === "bool" ? [] : [SAMPLE_BY_NAME[f.name] ?? sampleValue(f.type)];
    assert.doesNotThrow(() => parse(`--${underscored}`, ...value), `--${underscored}`);
  }
});

const SAMPLE_BY_NAME: Record<string, string> = {
  "iptables-backend": "nft",
  "container-runtime-endpoint": "/run/x.sock",
  "eni-metadata-url": "http://127.0.0.1:1/",
};

function sampleValue(type: string): string {
  const samples: Record<string, string> = {
    string: "x",
    strings: "/a,/b",
    int: "3",
    duration: "3s",
    severity: "INFO",
    "pattern=N,...": "a=1",
    "file:line": "a.ts:1",
    "host:port": ":9100",
  };
  return samples[type];
}

Deno.test("flags: -v and --v in every form pflag and klog accept", () => {
  for (const args of [["-v=3"], ["-v", "3"], ["-v3"], ["--v=3"], ["--v", "3"]]) {
    assert.equal(parse(...args).v, 3, args.join(" "));
  }
  assert.equal(parse("-v=0").v, 0);
  assertFlagError(["-v=-1"], "-v", />= 0/);
  assertFlagError(["--v=-1"], "--v", />= 0/);
  assertFlagError(["-v", "-1"], "-v", />= 0/);
  assertFlagError(["-v=abc"], "-v", /not a decimal integer/);
  assertFlagError(["--v=1.5"], "--v", /not a decimal integer/);
  assertFlagError(["-v"], "-v", /needs an argument/);
  assertFlagError(["-v="], "-v", /not a decimal integer/);
});

Deno.test("flags: long names with a single dash are rejected with a hint, as pflag rejects them", () => {
  assertFlagError(["-logtostderr"], "-logtostderr", /--logtostderr/);
  assertFlagError(["-vmodule=a=1"], "-vmodule", /--vmodule/);
  assertFlagError(["-version"], "-version", /--version/);
  assertFlagError(["-master=x"], "-master", /--master/);
  assertFlagError(["-x"], "-x", /unknown flag/);
  assertFlagError(["-vfoo"], "-vfoo", /unknown flag/);
});

Deno.test("flags: string slices — comma-separated, first use replaces the default, repeats append", () => {
  assert.deepEqual(parse("--cni-paths=/a,/b").cniPaths, ["/a", "/b"]);
  assert.deepEqual(parse("--cni-paths=/a", "--cni-paths=/b,/c").cniPaths, ["/a", "/b", "/c"]);
  assert.deepEqual(parse("--cni-paths", "/a", "--cni_paths", "/b").cniPaths, ["/a", "/b"]);
  assert.deepEqual(parse("--cni-paths=").cniPaths, []);
  assert.deepEqual(parse("--gc-dirs=/a,,/b,").gcDirs, ["/a", "/b"]);
  assert.deepEqual(parse('--gc-dirs="/a,b",/c').gcDirs, ["/a,b", "/c"]);
  assert.deepEqual(parse('--gc-dirs="say ""hi""",/c').gcDirs, ['say "hi"', "/c"]);
  assertFlagError(['--gc-dirs="/a'], "--gc-dirs", /unclosed quote/);
  assertFlagError(['--gc-dirs=/a"b'], "--gc-dirs", /quote/);
  assertFlagError(['--gc-dirs="/a"x'], "--gc-dirs", /closing quote/);
  // Other flags' repeats: the last one wins.
  assert.equal(parse("--master=a", "--master=b").master, "b");
  assert.equal(parse("-v=1", "--v=4").v, 4);
});

Deno.test("flags: Go durations", () => {
  const table: [string, number][] = [
    ["10s", 10_000],
    ["1m30s", 90_000],
    ["500ms", 500],
    ["1h", 3_600_000],
    ["2h45m", 9_900_000],
    ["1.5s", 1_500],
    [".5s", 500],
    ["5.s", 5_000],
    ["1.1s", 1_100],
    ["1h1m1s1ms", 3_661_001],
    ["300us", 0.3],
    ["300µs", 0.3],
    ["300μs", 0.3],
    ["1500000ns", 1.5],
    ["+2s", 2_000],
    ["0", 0],
    ["0s", 0],
    ["-5s", -5_000],
    ["1.5h", 5_400_000],
  ];
  for (const [text, ms] of table) assert.equal(parseGoDuration(text), ms, text);
  for (
    const bad of ["10", "abc", "", "s", ".s", "1x", "1m30", "1 s", "1e3s", "--1s", "1s ", "+", "-", "1.2.3s"]
  ) {
    assert.throws(() => parseGoDuration(bad), Error, `"${bad}" should be rejected`);
  }
  assert.throws(() => parseGoDuration("3000000h"), /out of range/);
});

Deno.test("flags: duration flags take positive Go durations and say what is wrong", () => {
  assert.equal(parse("--flannel-gc-interval=1m30s").flannelGcIntervalMs, 90_000);
  assert.equal(parse("--flannel-gc-interval", "500ms").flannelGcIntervalMs, 500);
  assert.equal(parse("--log-flush-frequency=1.5s").logFlushFrequencyMs, 1_500);
  assert.equal(parse("--flannel-gc-interval=596h31m23.647s").flannelGcIntervalMs, MAX_TIMER_MS);
  assertFlagError(["--flannel-gc-interval=10"], "--flannel-gc-interval", /missing unit/);
  assertFlagError(["--flannel-gc-interval=abc"], "--flannel-gc-interval", /not a Go duration/);
  assertFlagError(["--flannel-gc-interval=-10s"], "--flannel-gc-interval", /negative/);
  assertFlagError(["--flannel-gc-interval=0s"], "--flannel-gc-interval", /greater than 0/);
  assertFlagError(["--flannel-gc-interval=0"], "--flannel-gc-interval", /greater than 0/);
  assertFlagError(["--flannel-gc-interval=600h"], "--flannel-gc-interval", /at most/);
  assertFlagError(["--flannel_gc_interval=5"], "--flannel-gc-interval", /"5"/);
  assertFlagError(["--log-flush-frequency=x"], "--log-flush-frequency");
});

Deno.test("flags: ints, severities, vmodule, backtrace location, host:port", () => {
  assert.equal(parse("--max-concurrent-requests=1").maxConcurrentRequests, 1);
  assertFlagError(["--max-concurrent-requests=0"], "--max-concurrent-requests", />= 1/);
  assertFlagError(["--max-concurrent-requests=-3"], "--max-concurrent-requests", />= 1/);
  assertFlagError(["--max-concurrent-requests=two"], "--max-concurrent-requests");
  assertFlagError(["--max-concurrent-requests=0x10"], "--max-concurrent-requests");

  const severities: [string, number][] = [
    ["INFO", 0],
    ["warning", 1],
    ["Error", 2],
    ["FATAL", 3],
    ["0", 0],
    ["3", 3],
  ];
  for (const [text, n] of severities) {
    assert.equal(parse(`--stderrthreshold=${text}`).stderrthreshold, n, text);
  }
  assertFlagError(["--stderrthreshold=4"], "--stderrthreshold", /severity/);
  assertFlagError(["--stderrthreshold=DEBUG"], "--stderrthreshold", /severity/);

  assert.deepEqual(parse("--vmodule=server=3,k8s*=5,gc=0,").vmodule, [
    { pattern: "server", level: 3 },
    { pattern: "k8s*", level: 5 },
  ]);
  assert.deepEqual(parse("--vmodule=").vmodule, []);
  for (const bad of ["server", "=3", "server=", "server=x", "a=1=2", "server=-1", "[ab=1"]) {
    assertFlagError([`--vmodule=${bad}`], "--vmodule");
  }

  assert.equal(parse("--log-backtrace-at=").logBacktraceAt, null);
  for (const bad of ["server.ts", "server:12", "server.ts:0", "server.ts:x", "a.ts:1:2"]) {
    assertFlagError([`--log-backtrace-at=${bad}`], "--log-backtrace-at", /file\.ts:234/);
  }

  for (const good of [":9100", "127.0.0.1:9100", "[::1]:9100", "metrics.local:65535"]) {
    assert.equal(parse(`--metrics-address=${good}`).metricsAddress, good);
  }
  for (const bad of ["9100", "127.0.0.1", "h:0", "h:70000", "h:port", "::1:9100", "h :1"]) {
    assertFlagError([`--metrics-address=${bad}`], "--metrics-address");
  }
});

Deno.test("flags: required paths may not be empty", () => {
  for (const name of ["json-config-path", "socket-path", "state-dir"]) {
    assertFlagError([`--${name}=`], `--${name}`, /must not be empty/);
  }
});

Deno.test("flags: unknown flags, missing values and stray arguments are errors naming them", () => {
  assertFlagError(["--bogus"], "--bogus", /unknown flag/);
  assertFlagError(["--bogus=1"], "--bogus", /unknown flag/);
  assertFlagError(["--no-route-eni"], "--no-route-eni", /unknown flag/);
  assertFlagError(["--route-eni", "--Master=x"], "--Master", /unknown flag/);
  assertFlagError(["---v=1"], "---v=1", /bad flag syntax/);
  assertFlagError(["--=x"], "--=x", /bad flag syntax/);
  assertFlagError(["--master"], "--master", /needs an argument/);
  assertFlagError(["--master", "--kubeconfig", "k"], "--master", /needs an argument/);
  assertFlagError(["--cni-paths", "-v"], "--cni-paths", /needs an argument/);
  assertFlagError(["serve"], "serve", /unexpected argument/);
  assertFlagError(["--v=1", "extra"], "extra", /unexpected argument/);
  assertFlagError(["-"], "-", /unexpected argument/);
  assertFlagError(["--", "x"], "x", /unexpected argument/);
  assert.deepEqual(parse("--v=2", "--"), { ...GALAXY_DEFAULTS, v: 2 });
});

Deno.test("flags: --help, -h and -help ask for help", () => {
  for (const args of [["--help"], ["-h"], ["-help"], ["--v=3", "--help"], ["-h", "--bogus"]]) {
    assert.equal(parseServeFlags(args), "help", args.join(" "));
  }
  // Errors before the help flag are still reported, as pflag does.
  assertFlagError(["--bogus", "--help"], "--bogus");
});

Deno.test("flags: Galaxy's own DaemonSet command line parses", () => {
  assert.deepEqual(parse("--logtostderr=true", "--v=3", "--route-eni"), {
    ...GALAXY_DEFAULTS,
    logtostderr: true,
    v: 3,
    routeEni: true,
  });
  assert.deepEqual(
    parse(
      "--json-config-path=/etc/galaxy/galaxy.json",
      "--network-policy",
      "--flannel_gc_interval=30s",
      "--cni-paths=/opt/cni/galaxy/bin,/opt/cni/bin",
      "--hostname-override",
      "node-a",
      "--alsologtostderr",
      "--logtostderr=false",
      "--log-dir=/var/log/galaxy",
      "--stderrthreshold=WARNING",
    ),
    {
      ...GALAXY_DEFAULTS,
      networkPolicy: true,
      flannelGcIntervalMs: 30_000,
      cniPaths: ["/opt/cni/galaxy/bin", "/opt/cni/bin"],
      hostnameOverride: "node-a",
      alsologtostderr: true,
      logtostderr: false,
      logDir: "/var/log/galaxy",
      stderrthreshold: 1,
    },
  );
});

Deno.test("flags: FlagError is an Error with a name and the flag", () => {
  const e = assertFlagError(["--flannel-gc-interval=abc"], "--flannel-gc-interval");
  assert.ok(e instanceof Error);
  assert.equal(e.name, "FlagError");
  assert.equal(
    e.message,
    'invalid value "abc" for --flannel-gc-interval: not a Go duration (examples: 10s, 1m30s, 500ms)',
  );
});

Deno.test("flags: the help lists every flag exactly once, with its type, default and meaning", () => {
  const help = serveHelp();
  assert.match(help, /^Usage: galaxy serve \[flags\]/);
  const lines = help.split("\n");
  for (const f of FLAG_TABLE) {
    const mentions = lines.filter((l) => new RegExp(`^\\s+(-${f.short}, )?--${f.name} `).test(l));
    assert.equal(mentions.length, 1, `--${f.name} should have exactly one help line`);
    const line = mentions[0];
    assert.ok(line.includes(` --${f.name} ${f.type} `), `${f.name}: type in "${line}"`);
    assert.ok(line.includes(f.usage), `${f.name}: usage`);
    assert.ok(line.endsWith(`(default ${f.default})`), `${f.name}: default in "${line}"`);
  }
  assert.match(help, /^ {2}-v, --v int {2,}log verbosity/m);
  assert.match(help, /^ {2}-h, --help {2,}print this help/m);
  assert.match(help, /--pprof bool .*no effect/);
  assert.match(help, /--log-flush-frequency duration .*unbuffered/);
  // Flag lines are in one stable column layout: every meaning starts in the same column.
  const flagLines = lines.filter((l) => /^ {2}(-\w, | {4})--[a-z]/.test(l));
  assert.equal(flagLines.length, FLAG_TABLE.length + 1);
  const columns = FLAG_TABLE.map((f) => lines.find((l) => l.includes(` --${f.name} `))!.indexOf(f.usage));
  columns.push(lines.find((l) => l.includes("--help"))!.indexOf("print this help"));
  assert.equal(new Set(columns).size, 1, `one usage column, got ${[...new Set(columns)]}`);
  assert.equal(serveHelp(), help, "stable");
});

Deno.test("flags: globToRegExp follows Go's filepath.Match", () => {
  const cases: [string, string, boolean][] = [
    ["server", "server", true],
    ["server", "servers", false],
    ["k8s*", "k8s_vlan", true],
    ["*", "a/b", false],
    ["?ate", "gate", true],
    ["[a-c]at", "bat", true],
    ["[^a-c]at", "bat", false],
    ["[^a-c]at", "rat", true],
    ["a.b", "axb", false],
    ["a\\*", "a*", true],
    ["a\\*", "ab", false],
    ["daemon/*", "daemon/server", true],
  ];
  for (const [pattern, name, match] of cases) {
    assert.equal(globToRegExp(pattern).test(name), match, `${pattern} vs ${name}`);
  }
  for (const bad of ["[ab", "a\\", "[]", "[^]"]) assert.throws(() => globToRegExp(bad), /bad pattern/, bad);
});

Deno.test("flags: splitHostPort", () => {
  assert.deepEqual(splitHostPort(":9100"), { hostname: "", port: 9100 });
  assert.deepEqual(splitHostPort("127.0.0.1:1"), { hostname: "127.0.0.1", port: 1 });
  assert.deepEqual(splitHostPort("[::1]:65535"), { hostname: "::1", port: 65535 });
  assert.throws(() => splitHostPort("host"), /host:port/);
  assert.throws(() => splitHostPort("host:0"), /1-65535/);
});

Deno.test("flags not in effect yet: --help says so for exactly those flags, and the start-up warning names them", () => {
  const waiting = new Set(
    Object.keys(NOT_IN_EFFECT).map((k) => FLAG_TABLE.find((f) => f.name === kebab(k))?.name),
  );
  assert.equal(waiting.size, Object.keys(NOT_IN_EFFECT).length);
  assert.ok(!waiting.has(undefined), "a NOT_IN_EFFECT key is not a flag");
  const help = serveHelp().split("\n");
  for (const f of FLAG_TABLE) {
    const line = help.find((l) => l.includes(`--${f.name} `))!;
    assert.equal(line.includes(NOT_IN_EFFECT_NOTE), waiting.has(f.name), line);
  }
  // --gc-dirs and --flannel-gc-interval took effect with the GC, --network-policy with network policy: the
  // list is empty, and so is the warning.
  assert.deepEqual(NOT_IN_EFFECT, {});
  assert.equal(
    notInEffectWarning(parse("--network-policy", "--gc-dirs=/a,/b", "--flannel-gc-interval=5s")),
    undefined,
  );
});

function kebab(key: string): string {
  return key.replace(/Ms$/, "").replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

Deno.test("flags: the upkeep flags: runtime endpoint, grace period, metadata URL", () => {
  const f = parse(
    "--container-runtime-endpoint=unix:///run/k3s/containerd/containerd.sock",
    "--gc-grace-period=30s",
    "--eni-metadata-url=http://127.0.0.1:8080/latest/meta-data",
  );
  assert.equal(f.containerRuntimeEndpoint, "unix:///run/k3s/containerd/containerd.sock");
  assert.equal(f.gcGracePeriodMs, 30_000);
  assert.equal(f.eniMetadataUrl, "http://127.0.0.1:8080/latest/meta-data/");
  assertFlagError(["--container-runtime-endpoint=tcp://1.2.3.4:5"], "--container-runtime-endpoint", /unix/);
  assertFlagError(["--gc-grace-period=0"], "--gc-grace-period", /greater than 0/);
  assertFlagError(["--eni-metadata-url=ftp://x/"], "--eni-metadata-url", /http/);
});

Deno.test("port-mapping flags: backend choice and masquerade bit are checked", () => {
  const flags = parseServeFlags(["--iptables-backend=legacy", "--masquerade-bit=15", "--port-dir=/tmp/p"]);
  assert.ok(flags !== "help");
  assert.equal(flags.iptablesBackend, "legacy");
  assert.equal(flags.masqueradeBit, 15);
  assert.equal(flags.portDir, "/tmp/p");
  assert.throws(() => parseServeFlags(["--iptables-backend=xt"]), /auto, legacy or nft/);
  assert.throws(() => parseServeFlags(["--masquerade-bit=32"]), /0 to 31/);
});
