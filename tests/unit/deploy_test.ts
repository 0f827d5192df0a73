/**
 * The files under `deploy/` against the code: every manifest parses (with the `yaml` package) into objects
 * whose fields the Kubernetes API types know, every `galaxy serve` / `galaxy install` flag is one the
 * executable accepts and lists in its help, every mounted path is one the code uses, the embedded
 * 00-galaxy.conflist and galaxy.json equal the files and the code's text, and the RBAC is exactly what
 * daemon/k8s.ts and daemon/policy/watch.ts call.
 * @module
 */
import assert from "node:assert/strict";
import process from "node:process";
import { parseAllDocuments } from "yaml";
import {
  cniConfText,
  EXAMPLE_GALAXY_JSON,
  INSTALL_DEFAULTS,
  type InstallOptions,
} from "../../cli/install.ts";
import { DEFAULT_CACHE_DIR } from "../../cni/invoke.ts";
import { DEFAULT_SOCKET_PATH } from "../../cni/wire.ts";
import { parseGalaxyConfig } from "../../daemon/config.ts";
import { DEFAULT_RUNTIME_ENDPOINT, runtimeTarget } from "../../daemon/cri.ts";
import { defaultServeFlags, FLAG_TABLE, parseServeFlags, type ServeFlags } from "../../daemon/flags.ts";
import { launcherDir, REPO_ROOT } from "../helpers/launchers.ts";
import { runCommand } from "../helpers/netns.ts";

const DEPLOY = `${REPO_ROOT}/deploy`;

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

function clean(path: string): string {
  return path.replace(/\/+$/, "") || "/";
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** True when `path` is `dir` or lies under it. */
function isUnder(path: string, dir: string): boolean {
  const p = clean(path);
  const d = clean(dir);
  return p === d || p.startsWith(d === "/" ? "/" : `${d}/`);
}

const SERVE_DEFAULTS = defaultServeFlags();

/** The subnet file of the galaxy-flannel network in the example galaxy.json (galaxy-flannel's default). */
const FLANNEL_SUBNET_FILE: string = (() => {
  const example = JSON.parse(EXAMPLE_GALAXY_JSON) as { NetworkConf: Obj[] };
  const flannel = example.NetworkConf.find((n) => n.type === "galaxy-flannel");
  assert.equal(
    typeof flannel?.subnetFile,
    "string",
    "the example galaxy.json has a galaxy-flannel subnetFile",
  );
  return flannel!.subnetFile as string;
})();

/**
 * Where containerd and CRI-O bind-mount each pod's network namespace; they pass that path as CNI_NETNS.
 * daemon/handler.ts forwards CNI_NETNS to the plugins, which enter it with setns (netops/netns.ts) and
 * `ip ... netns`. No constant names it because the runtime chooses it, so it is written here: the daemon
 * must see those paths exactly as the host does.
 */
const RUNTIME_NETNS_DIR = "/var/run/netns";

/** Every path the deployment may mount, each derived from the code, with the code that uses it. */
const CODE_PATHS: ReadonlyMap<string, string> = (() => {
  const m = new Map<string, string>();
  const add = (path: string, why: string) => {
    const key = clean(path);
    m.set(key, m.has(key) ? `${m.get(key)}; ${why}` : why);
  };
  add(dirname(SERVE_DEFAULTS.jsonConfigPath), "galaxy serve --json-config-path default's folder");
  add(SERVE_DEFAULTS.networkConfDir, "galaxy serve --network-conf-dir default");
  for (const p of SERVE_DEFAULTS.cniPaths) add(p, "galaxy serve --cni-paths default");
  add(dirname(SERVE_DEFAULTS.socketPath), "galaxy serve --socket-path default's folder");
  add(SERVE_DEFAULTS.stateDir, "galaxy serve --state-dir default");
  for (const p of SERVE_DEFAULTS.gcDirs) add(p, "galaxy serve --gc-dirs default");
  for (const p of SERVE_DEFAULTS.flannelAllocatedIpDir) {
    add(p, "galaxy serve --flannel-allocated-ip-dir default");
  }
  add(INSTALL_DEFAULTS.binDir, "galaxy install --bin-dir default");
  add(INSTALL_DEFAULTS.cniBinDir, "galaxy install --cni-bin-dir default (the runtime's CNI_PATH)");
  add(INSTALL_DEFAULTS.cniConfDir, "galaxy install --cni-conf-dir default");
  add(dirname(INSTALL_DEFAULTS.config), "galaxy install --config default's folder");
  add(dirname(INSTALL_DEFAULTS.socketPath), "galaxy install --socket-path default's folder");
  // libcni's cache dir (cni/invoke.ts DEFAULT_CACHE_DIR), and the parent of the state dir, the GC dirs and
  // host-local's /var/lib/cni/networks: one mount holds all of the node's CNI state.
  add(DEFAULT_CACHE_DIR, "cni/invoke.ts DEFAULT_CACHE_DIR");
  // flanneld's lease, read by galaxy-flannel (cni/plugins/flannel.ts) as the example's subnetFile.
  add(dirname(FLANNEL_SUBNET_FILE), "galaxy-flannel's subnetFile in EXAMPLE_GALAXY_JSON");
  add(RUNTIME_NETNS_DIR, "CNI_NETNS paths of containerd / CRI-O, entered by netops/netns.ts");
  add(dirname(runtimeSocket(DEFAULT_RUNTIME_ENDPOINT)), "daemon/cri.ts DEFAULT_RUNTIME_ENDPOINT's folder");
  return m;
})();

/** The socket path of a runtime endpoint (`unix:///x` or `/x`). */
function runtimeSocket(endpoint: string): string {
  return runtimeTarget(endpoint).slice("unix://".length);
}

function assertCodePath(path: string, where: string): void {
  assert.ok(
    CODE_PATHS.has(clean(path)),
    `${where}: ${path} is not a path the code uses; those are:\n${
      [...CODE_PATHS].map(([p, why]) => `  ${p}  (${why})`).join("\n")
    }`,
  );
}

/** `--name=value` or `--name` → [name with `_` as `-`, value or undefined]. */
function flagOf(arg: string): [string, string | undefined] {
  assert.match(arg, /^--?[a-zA-Z]/, `${JSON.stringify(arg)} is not a flag`);
  const body = arg.replace(/^--?/, "");
  const eq = body.indexOf("=");
  return [(eq < 0 ? body : body.slice(0, eq)).replaceAll("_", "-"), eq < 0 ? undefined : body.slice(eq + 1)];
}

/** The words after `galaxy <sub>` in a command line, which must start with a `galaxy` executable. */
function subcommandArgs(words: string[], sub: string, where: string): string[] {
  assert.equal(basename(words[0] ?? ""), "galaxy", `${where}: runs ${JSON.stringify(words[0])}, not galaxy`);
  assert.equal(words[1], sub, `${where}: runs galaxy ${words[1]}, not galaxy ${sub}`);
  return words.slice(2);
}

let helps: Promise<{ serve: string; install: string }> | undefined;

/** Help texts of the real executable, through the development launcher (run once). */
function helpTexts(): Promise<{ serve: string; install: string }> {
  helps ??= (async () => {
    const galaxy = `${await launcherDir()}/galaxy`;
    const [serve, install] = await Promise.all([
      runCommand(galaxy, ["serve", "--help"]),
      runCommand(galaxy, ["install", "--help"]),
    ]);
    assert.equal(serve.code, 0, serve.stderr);
    assert.equal(install.code, 0, install.stderr);
    return { serve: serve.stdout, install: install.stdout };
  })();
  return helps;
}

function listsFlag(help: string, name: string): boolean {
  return new RegExp(`(^|[\\s,])--${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}[\\s=]`, "m").test(help);
}

/** Checks `galaxy serve` arguments; returns the parsed flags. */
async function checkServeArgs(args: string[], where: string): Promise<ServeFlags> {
  const { serve } = await helpTexts();
  for (const arg of args) {
    const [name] = flagOf(arg);
    assert.ok(
      FLAG_TABLE.some((f) => f.name === name || f.short === name),
      `${where}: galaxy serve has no flag --${name}`,
    );
    assert.ok(listsFlag(serve, name), `${where}: \`galaxy serve --help\` does not list --${name}`);
  }
  const parsed = parseServeFlags(args);
  assert.notEqual(parsed, "help", `${where}: asks for help`);
  // The executable accepts the whole line too: flags before --help are parsed (a bad one exits 2).
  const run = await runCommand(`${await launcherDir()}/galaxy`, ["serve", ...args, "--help"]);
  assert.equal(run.code, 0, `${where}: galaxy serve ${args.join(" ")}: ${run.stderr}`);
  return parsed as ServeFlags;
}

/** Checks `galaxy install` arguments; returns the options install will use. */
async function checkInstallArgs(args: string[], where: string): Promise<InstallOptions> {
  const { install } = await helpTexts();
  const options: InstallOptions = { ...INSTALL_DEFAULTS };
  for (const arg of args) {
    const [name, value] = flagOf(arg);
    assert.ok(listsFlag(install, name), `${where}: \`galaxy install --help\` does not list --${name}`);
    assert.notEqual(name, "uninstall", `${where}: installs, never uninstalls`);
    assert.ok(value !== undefined && value !== "", `${where}: --${name} needs =value`);
    const key = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof InstallOptions;
    assert.ok(key in INSTALL_DEFAULTS, `${where}: --${name} is not an install option`);
    options[key] = value;
  }
  // node:util parseArgs (strict) rejects an unknown flag with exit 2 before it looks at --help.
  const run = await runCommand(`${await launcherDir()}/galaxy`, ["install", ...args, "--help"]);
  assert.equal(run.code, 0, `${where}: galaxy install ${args.join(" ")}: ${run.stderr}`);
  return options;
}

/** Every path the daemon will touch with these flags. */
function servePaths(flags: ServeFlags): string[] {
  return [
    flags.jsonConfigPath,
    flags.networkConfDir,
    ...flags.cniPaths,
    dirname(flags.socketPath),
    flags.stateDir,
    ...flags.gcDirs,
    ...flags.flannelAllocatedIpDir,
  ];
}

/** Each path the daemon and install use with these flags lies under one the code uses (or is one). */
function assertUnderCodePaths(paths: string[], where: string): void {
  for (const p of paths) {
    assert.ok([...CODE_PATHS.keys()].some((c) => isUnder(p, c)), `${where}: ${p} is outside every code path`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Kubernetes object shapes, from the attribute maps of @kubernetes/client-node's generated models.

// deno-lint-ignore no-explicit-any
type Models = Record<string, any>;

let models: Promise<Models> | undefined;

function loadModels(): Promise<Models> {
  // client-node pulls in punycode through node-fetch; silence its deprecation warning as daemon/k8s.ts does.
  (process as unknown as { noDeprecation: boolean }).noDeprecation = true;
  models ??= import("@kubernetes/client-node") as Promise<Models>;
  return models;
}

const KIND_MODELS: Record<string, string> = {
  "v1/ServiceAccount": "V1ServiceAccount",
  "v1/ConfigMap": "V1ConfigMap",
  "rbac.authorization.k8s.io/v1/ClusterRole": "V1ClusterRole",
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "V1ClusterRoleBinding",
  "apps/v1/DaemonSet": "V1DaemonSet",
};

/** Returns one message per field the API type does not have or whose value has the wrong JSON type. */
function shapeErrors(k8s: Models, value: unknown, type: string, path: string): string[] {
  const wrong = (what: string) => [`${path}: expected ${what}, got ${JSON.stringify(value)}`];
  const array = /^Array<(.+)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (type === "any") return [];
  if (type === "string" || type === "Date") return typeof value === "string" ? [] : wrong(type);
  if (type === "number") return typeof value === "number" ? [] : wrong(type);
  if (type === "boolean") return typeof value === "boolean" ? [] : wrong(type);
  if (type === "IntOrString") return ["string", "number"].includes(typeof value) ? [] : wrong(type);
  if (array) {
    if (!Array.isArray(value)) return wrong("a list");
    return value.flatMap((v, i) => shapeErrors(k8s, v, array[1], `${path}[${i}]`));
  }
  const isObject = typeof value === "object" && value !== null && !Array.isArray(value);
  if (map) {
    if (!isObject) return wrong("a map");
    return Object.entries(value).flatMap(([k, v]) => shapeErrors(k8s, v, map[1], `${path}.${k}`));
  }
  const model = k8s[type];
  assert.equal(typeof model?.getAttributeTypeMap, "function", `no client-node model ${type}`);
  if (!isObject) return wrong(`an object (${type})`);
  const fields = model.getAttributeTypeMap() as { baseName: string; type: string }[];
  return Object.entries(value).flatMap(([k, v]) => {
    const field = fields.find((f) => f.baseName === k);
    return field
      ? shapeErrors(k8s, v, field.type, `${path}.${k}`)
      : [`${path}.${k}: no such field in ${type}`];
  });
}

// ---------------------------------------------------------------------------------------------------------

async function manifestFiles(): Promise<string[]> {
  const files: string[] = [];
  for await (const e of Deno.readDir(DEPLOY)) {
    if (e.isFile && /\.ya?ml$/.test(e.name)) files.push(`${DEPLOY}/${e.name}`);
  }
  return files.sort();
}

/** Every object of every manifest under deploy/, parsed with the `yaml` package. */
async function manifests(): Promise<Obj[]> {
  const objects: Obj[] = [];
  for (const file of await manifestFiles()) {
    const docs = parseAllDocuments(await Deno.readTextFile(file));
    assert.ok(Array.isArray(docs), `${file}: not a YAML stream`);
    for (const [i, doc] of docs.entries()) {
      assert.deepEqual(doc.errors.map(String), [], `${file} document ${i}`);
      assert.deepEqual(doc.warnings.map(String), [], `${file} document ${i}`);
      const obj = doc.toJS() as Obj | null;
      assert.ok(obj !== null && typeof obj === "object", `${file} document ${i} is empty`);
      objects.push({ ...obj, "@file": basename(file) });
    }
  }
  return objects;
}

function only(objects: Obj[], kind: string, name?: string): Obj {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0];
}

function withoutFile(obj: Obj): Obj {
  const { "@file": _, ...rest } = obj;
  return rest;
}

/** The daemon's shutdown grace, read from daemon/main.ts (it is not exported). */
async function shutdownGraceSeconds(): Promise<number> {
  const source = await Deno.readTextFile(`${REPO_ROOT}/daemon/main.ts`);
  const m = /const SHUTDOWN_GRACE_MS = ([0-9_]+);/.exec(source);
  assert.ok(m, "daemon/main.ts no longer defines SHUTDOWN_GRACE_MS; update this test");
  return Number(m[1].replaceAll("_", "")) / 1000;
}

Deno.test("deploy: the code paths the checks accept are the ones the code defaults to", () => {
  // A guard on the derivation itself: if a default moves, the manifests must move with it.
  assert.deepEqual([...CODE_PATHS.keys()].sort(), [
    "/etc/cni/net.d",
    "/etc/galaxy",
    "/opt/cni/bin",
    "/opt/cni/galaxy/bin",
    "/run/containerd",
    "/run/flannel",
    "/var/lib/cni",
    "/var/lib/cni/flannel",
    "/var/lib/cni/galaxy",
    "/var/lib/cni/galaxy/port",
    "/var/lib/cni/networks",
    "/var/lib/cni/networks/galaxy-flannel",
    "/var/run/galaxy",
    "/var/run/netns",
  ]);
});

Deno.test("deploy: every manifest parses into Kubernetes objects whose fields the API types know", async () => {
  const objects = await manifests();
  assert.ok(objects.length > 0, "no manifests under deploy/");
  const k8s = await loadModels();
  for (const obj of objects) {
    const where = `${obj["@file"]}: ${obj.kind} ${obj.metadata?.name}`;
    const model = KIND_MODELS[`${obj.apiVersion}/${obj.kind}`];
    assert.ok(model, `${where}: unexpected apiVersion/kind ${obj.apiVersion}/${obj.kind}`);
    assert.deepEqual(shapeErrors(k8s, withoutFile(obj), model, where), []);
    assert.ok(obj.metadata?.name, `${where}: no name`);
    if (!obj.kind.startsWith("Cluster")) assert.equal(obj.metadata.namespace, "kube-system", where);
  }
  // The check itself catches a misspelled field.
  const ds = withoutFile(only(objects, "DaemonSet"));
  const typo = structuredClone(ds);
  typo.spec.template.spec.hostNetwrk = true;
  assert.equal(shapeErrors(k8s, typo, "V1DaemonSet", "typo").length, 1);
});

Deno.test("deploy: the ConfigMaps hold exactly deploy/galaxy.json and deploy/00-galaxy.conflist, the code's text", async () => {
  const objects = await manifests();
  const galaxyJson = await Deno.readTextFile(`${DEPLOY}/galaxy.json`);
  const cniConf = await Deno.readTextFile(`${DEPLOY}/00-galaxy.conflist`);

  assert.equal(cniConf, cniConfText(DEFAULT_SOCKET_PATH), "deploy/00-galaxy.conflist is what install writes");
  assert.equal(galaxyJson, EXAMPLE_GALAXY_JSON, "deploy/galaxy.json is install's example");
  const config = parseGalaxyConfig(galaxyJson, "deploy/galaxy.json");
  assert.ok(config.networks.size > 0);

  const etc = only(objects, "ConfigMap", "galaxy-etc");
  assert.deepEqual(Object.keys(etc.data), ["galaxy.json"]);
  assert.equal(etc.data["galaxy.json"], galaxyJson);
  const cni = only(objects, "ConfigMap", "cni-etc");
  assert.deepEqual(Object.keys(cni.data), ["00-galaxy.conflist"]);
  assert.equal(cni.data["00-galaxy.conflist"], cniConf);
  // Runtimes on libcni < 1.2 (containerd 1.6) read cniVersion, newer ones pick the highest of cniVersions.
  const list = JSON.parse(cniConf);
  assert.equal(list.cniVersion, "1.0.0");
  assert.deepEqual(list.cniVersions, ["1.0.0", "1.1.0"]);
  assert.equal(list.plugins[0].type, "galaxy-sdn");
});

Deno.test("deploy: RBAC grants only what daemon/k8s.ts and daemon/policy/watch.ts call, to the DaemonSet's ServiceAccount", async () => {
  const objects = await manifests();
  const triples = (rules: Obj[]) =>
    rules.flatMap((rule) => {
      assert.deepEqual(Object.keys(rule).sort(), ["apiGroups", "resources", "verbs"], "plain rules only");
      return (rule.apiGroups as string[]).flatMap((g) =>
        (rule.resources as string[]).flatMap((r) => (rule.verbs as string[]).map((v) => `${g}/${r}:${v}`))
      );
    });
  // The pod cache (list + watch with fieldSelector spec.nodeName), the GET fallback, the network-status and
  // network-failure annotations' merge patches, a failed ADD's Event (created, its count patched).
  const required = [
    "/pods:get",
    "/pods:list",
    "/pods:watch",
    "/pods:patch",
    "/events:create",
    "/events:patch",
  ];
  // With --network-policy: namespaces and networkpolicies are listed and watched, and nothing else.
  const policy = [
    "/namespaces:list",
    "/namespaces:watch",
    "networking.k8s.io/networkpolicies:list",
    "networking.k8s.io/networkpolicies:watch",
  ];
  const role = only(objects, "ClusterRole", "galaxy");
  const granted = triples(role.rules);
  assert.equal(new Set(granted).size, granted.length, "no rule repeats another");
  for (const t of required) assert.ok(granted.includes(t), `ClusterRole galaxy lacks ${t}`);
  for (const t of granted) assert.ok([...required, ...policy].includes(t), `ClusterRole galaxy grants ${t}`);
  const args: string[] = only(objects, "DaemonSet").spec.template.spec.containers[0].args;
  const enforcing = args.some((a) => a === "--network-policy" || a === "--network-policy=true");
  for (const t of policy) {
    assert.equal(
      granted.includes(t),
      enforcing,
      `${t} must be granted exactly when --network-policy is passed`,
    );
  }

  const sa = only(objects, "ServiceAccount", "galaxy");
  const binding = only(objects, "ClusterRoleBinding");
  assert.deepEqual(binding.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: "galaxy",
  });
  assert.deepEqual(binding.subjects, [{
    kind: "ServiceAccount",
    name: "galaxy",
    namespace: sa.metadata.namespace,
  }]);
  const ds = only(objects, "DaemonSet");
  assert.equal(ds.spec.template.spec.serviceAccountName, sa.metadata.name);
  assert.equal(ds.metadata.namespace, sa.metadata.namespace);
});

Deno.test("deploy: the DaemonSet runs galaxy install then galaxy serve, with valid flags and the code's paths", async () => {
  const objects = await manifests();
  const ds = only(objects, "DaemonSet");
  const pod = ds.spec.template.spec as Obj;

  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.hostPID, true);
  assert.equal(pod.priorityClassName, "system-node-critical");
  assert.ok(
    pod.tolerations.some((t: Obj) => t.operator === "Exists" && t.key === undefined),
    "tolerates all",
  );
  assert.ok(pod.terminationGracePeriodSeconds >= await shutdownGraceSeconds(), "grace ≥ the daemon's");

  const volumes = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
  assert.equal(volumes.size, pod.volumes.length, "volume names are unique");
  for (const v of volumes.values()) {
    assert.ok(v.hostPath || v.configMap, `volume ${v.name} is a hostPath or a ConfigMap`);
    if (v.hostPath) assertCodePath(v.hostPath.path, `volume ${v.name}`);
    if (v.configMap) only(objects, "ConfigMap", v.configMap.name);
  }
  const checkMounts = (c: Obj) => {
    const mounts = new Map<string, Obj>();
    for (const m of c.volumeMounts as Obj[]) {
      const where = `container ${c.name}, mount ${m.name}`;
      assertCodePath(m.mountPath, where);
      const volume = volumes.get(m.name);
      assert.ok(volume, `${where}: no such volume`);
      // Paths cross between host and container (CNI_NETNS, the socket in 00-galaxy.conflist, plugin links),
      // so a host folder is mounted at its own path.
      if (volume.hostPath) assert.equal(clean(m.mountPath), clean(volume.hostPath.path), where);
      assert.ok(!mounts.has(clean(m.mountPath)), `${where}: mounted twice`);
      mounts.set(clean(m.mountPath), { ...m, volume });
    }
    return mounts;
  };
  const covering = (mounts: Map<string, Obj>, path: string) =>
    [...mounts.values()].filter((m) => isUnder(path, m.mountPath)).sort((a, b) =>
      b.mountPath.length - a.mountPath.length
    )[0] as Obj | undefined;

  // The init container: galaxy install.
  assert.equal(pod.initContainers.length, 1);
  const init = pod.initContainers[0] as Obj;
  const initWords = [...(init.command ?? []), ...(init.args ?? [])];
  const installed = await checkInstallArgs(
    subcommandArgs(initWords, "install", "init container"),
    "init container",
  );
  const initMounts = checkMounts(init);
  for (const dir of [installed.binDir, installed.cniBinDir, installed.cniConfDir]) {
    const m = covering(initMounts, dir);
    assert.ok(m?.volume.hostPath && !m.readOnly, `init container: ${dir} is not a writable host path`);
  }
  // galaxy.json comes from the galaxy-etc ConfigMap, so install finds it present and writes no example.
  const configMount = covering(initMounts, installed.config);
  assert.equal(
    configMount?.volume.configMap?.name,
    "galaxy-etc",
    "install's --config is the ConfigMap's file",
  );
  const etc = only(objects, "ConfigMap", "galaxy-etc");
  assert.ok(basename(installed.config) in etc.data, "the ConfigMap holds install's --config file");
  assertUnderCodePaths(
    [installed.binDir, installed.cniBinDir, installed.cniConfDir, installed.config],
    "init",
  );

  // The main container: galaxy serve.
  assert.equal(pod.containers.length, 1);
  const main = pod.containers[0] as Obj;
  assert.equal(main.image, init.image, "the daemon runs the version the init container installed");
  assert.equal(main.securityContext?.privileged, true);
  const words = [...(main.command ?? []), ...(main.args ?? [])];
  const flags = await checkServeArgs(subcommandArgs(words, "serve", "main container"), "main container");
  assert.equal(flags.logtostderr, true);
  assert.equal(installed.socketPath, flags.socketPath, "install's conf points at the daemon's socket");
  assert.equal(
    cniConfText(installed.socketPath),
    only(objects, "ConfigMap", "cni-etc").data["00-galaxy.conflist"],
  );
  assert.deepEqual(flags.cniPaths, [installed.binDir], "the daemon runs the plugin links install made");

  const mounts = checkMounts(main);
  assertUnderCodePaths(servePaths(flags), "main container");
  for (const p of servePaths(flags)) assert.ok(covering(mounts, p), `main container: ${p} is not mounted`);
  for (const p of CODE_PATHS.keys()) assert.ok(covering(mounts, p), `main container: ${p} is not mounted`);
  const writable = [
    dirname(flags.socketPath),
    flags.stateDir,
    ...flags.gcDirs,
    ...flags.flannelAllocatedIpDir,
  ];
  for (const p of writable) {
    assert.ok(!covering(mounts, p)!.readOnly, `main container: ${p} must be writable`);
  }
  assert.equal(covering(mounts, flags.jsonConfigPath)!.volume.configMap?.name, "galaxy-etc");
  assert.equal(mounts.get(RUNTIME_NETNS_DIR)?.mountPropagation, "Bidirectional");
  // The GC's container runtime: the flag is passed, and the socket's folder is the host's.
  assert.ok(flags.containerRuntimeEndpoint, "main container: --container-runtime-endpoint is not passed");
  const runtimeDir = dirname(runtimeSocket(flags.containerRuntimeEndpoint));
  const runtimeMount = covering(mounts, runtimeDir);
  assert.equal(
    runtimeMount?.volume.hostPath?.path,
    runtimeDir,
    "main container: the runtime socket is not mounted",
  );

  const nodeName = (main.env as Obj[]).filter((e) => e.name === "MY_NODE_NAME");
  assert.deepEqual(nodeName, [{
    name: "MY_NODE_NAME",
    valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } },
  }]);
  assert.ok(main.resources?.requests?.cpu && main.resources?.requests?.memory, "cpu and memory requests");

  // Both probes run `galaxy healthcheck` against the daemon's socket; the executable accepts the arguments
  // (exit 2 is a usage error; 1 is "no daemon there", expected on a test machine).
  for (const probe of ["readinessProbe", "livenessProbe"]) {
    const command = main[probe]?.exec?.command as string[] | undefined;
    assert.ok(command, `${probe} is an exec probe`);
    const args = subcommandArgs(command, "healthcheck", probe);
    assert.deepEqual(args, [`--socket-path=${flags.socketPath}`], probe);
    const run = await runCommand(`${await launcherDir()}/galaxy`, ["healthcheck", ...args]);
    assert.notEqual(run.code, 2, `${probe}: ${run.stderr}`);
    assert.ok(main[probe].timeoutSeconds > 5, `${probe}: longer than healthcheck's own 5 s timeout`);
  }
});

/** The unit's settings: section → key → values in order; `\` continues a line, `#`/`;` start comments. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.replace(/\\\n/g, " ").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      sections.set(header[1], section);
      continue;
    }
    assert.ok(section, `setting outside a section: ${line}`);
    const eq = line.indexOf("=");
    assert.ok(eq > 0, `not a setting: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

Deno.test("deploy: galaxy.service installs before the kubelet and runs galaxy serve with valid flags", async () => {
  const unit = parseUnit(await Deno.readTextFile(`${DEPLOY}/galaxy.service`));
  const get = (section: string, key: string) => unit.get(section)?.get(key) ?? [];
  const one = (section: string, key: string) => {
    const values = get(section, key);
    assert.equal(values.length, 1, `[${section}] ${key}= appears once`);
    return values[0];
  };

  assert.ok(
    get("Unit", "Before").join(" ").split(/\s+/).includes("kubelet.service"),
    "Before=kubelet.service",
  );
  assert.equal(one("Service", "Restart"), "always");
  assert.ok(parseFloat(one("Service", "TimeoutStopSec")) >= await shutdownGraceSeconds(), "TimeoutStopSec");
  assert.ok(get("Install", "WantedBy").length > 0, "enable-able");

  const env = get("Service", "Environment").flatMap((e) => e.split(/\s+/));
  assert.ok(env.some((e) => /^MY_NODE_NAME=\S+$/.test(e)), "Environment=MY_NODE_NAME=...");

  const caps = one("Service", "CapabilityBoundingSet").split(/\s+/);
  for (const cap of ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]) assert.ok(caps.includes(cap), cap);
  const allowed = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"];
  for (const cap of caps) assert.ok(allowed.includes(cap), `${cap} is not one Galaxy needs`);

  // Words of a command line; `$VAR` words are the operator's extra flags from EnvironmentFile=.
  const words = (line: string) => line.split(/\s+/).filter((w) => w !== "" && !/^\$\{?[A-Z_]+\}?$/.test(w));

  const pre = words(one("Service", "ExecStartPre"));
  const installed = await checkInstallArgs(subcommandArgs(pre, "install", "ExecStartPre"), "ExecStartPre");
  assertUnderCodePaths(
    [installed.binDir, installed.cniBinDir, installed.cniConfDir, installed.config],
    "install",
  );

  const start = words(one("Service", "ExecStart"));
  assert.equal(start[0], pre[0], "ExecStart runs the executable ExecStartPre installed");
  const flags = await checkServeArgs(subcommandArgs(start, "serve", "ExecStart"), "ExecStart");
  assertUnderCodePaths(servePaths(flags), "ExecStart");
  if (flags.kubeconfig) assertCodePath(dirname(flags.kubeconfig), "--kubeconfig's folder");
  assert.equal(installed.socketPath, flags.socketPath, "install's conf points at the daemon's socket");
  assert.deepEqual(flags.cniPaths, [installed.binDir], "the daemon runs the plugin links install made");
  assert.equal(
    flags.containerRuntimeEndpoint,
    DEFAULT_RUNTIME_ENDPOINT,
    "the GC asks containerd's CRI socket",
  );
});
