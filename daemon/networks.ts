/**
 * Which networks a pod gets, and with which configuration: the `k8s.v1.cni.cncf.io/networks` annotation
 * (both Multus formats), galaxy-ipam's `k8s.v1.cni.galaxy.io/args`, the ENI-IP and default networks of
 * galaxy.json, and the CNI configuration folder.
 *
 * Every resolution returns fresh deep copies, so nothing a plugin run does to a configuration can leak into
 * the next request (Galaxy's shared-map `prevResult` bug).
 *
 * Its length: the annotation formats (text and JSON), galaxy.json networks and --network-conf-dir files all
 * resolve to one list of networks per pod, with one set of error messages.
 * @module
 */
import { confAsList } from "../cni/invoke.ts";
import {
  CniError,
  describeZodError,
  ErrorCode,
  type NetConf,
  type NetConfList,
  NetConfListSchema,
  NetConfSchema,
} from "../cni/spec.ts";
import { ifnameProblem } from "../netops/ifname.ts";
import { isIP } from "../netops/ip_address.ts";
import { type GalaxyConfig, goField, goKeyFold } from "./config.ts";

/** The Multus-compatible annotation that lists a pod's networks. */
export const NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks";
/** galaxy-ipam's annotation; its `common` object becomes extra CNI_ARGS. */
export const GALAXY_ARGS_ANNOTATION = "k8s.v1.cni.galaxy.io/args";
/** The extended resource whose request makes a pod use galaxy.json's `ENIIPNetwork`. */
export const ENI_IP_RESOURCE = "tke.cloud.tencent.com/eni-ip";

const SHIM_TYPE = "galaxy-sdn";
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const CONF_EXTENSIONS = [".conf", ".json", ".conflist"];

/** One network a pod asks for, from one item of the networks annotation. */
export interface NetworkSelection {
  /** The network name. */
  name: string;
  /** The namespace written before `/` (Galaxy's network names are global: it is not used). */
  namespace?: string;
  /** The requested interface name inside the pod. */
  interface?: string;
  /** Requested addresses (JSON form), passed as the `ips` capability. */
  ips?: string[];
  /** Requested MAC address (JSON form), passed as the `mac` capability. */
  mac?: string;
  /** Extra plugin arguments (JSON form `cni-args`), passed as the configuration's `args.cni`. */
  cniArgs?: Record<string, unknown>;
}

/** The least of a pod that network resolution reads; `V1Pod` of @kubernetes/client-node fits. */
export interface PodLike {
  /** Name, namespace and annotations. */
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  /** Regular containers and their resource requests. */
  spec?: { containers?: { name?: string; resources?: { requests?: Record<string, unknown> } }[] };
}

/** A network configuration found in the CNI configuration folder. */
export interface FoundConf {
  /** The configuration as a list (a single configuration becomes a one-plugin list). */
  list: NetConfList;
  /** The file it came from. */
  source: string;
  /** True when the file was a `.conflist`. */
  isList: boolean;
}

/** One network of a pod, ready to run: its configuration, interface and arguments. */
export interface ResolvedNetwork {
  /** The network name as the pod asked for it. */
  name: string;
  /** The interface inside the pod (`CNI_IFNAME` for this network). */
  ifname: string;
  /** A fresh deep copy of the configuration; `cniVersion` is absent when the configuration has none. */
  list: NetConfList;
  /** True when the configuration came from a `.conflist`. */
  isList: boolean;
  /** Where the configuration came from (`galaxy.json NetworkConf "x"` or a file path). */
  source: string;
  /** CNI_ARGS pairs: `IgnoreUnknown=1`, then galaxy-ipam's `common` keys. */
  args: [string, string][];
  /** Capability arguments (`ips`, `mac`) requested by the annotation. */
  capabilityArgs: Record<string, unknown>;
}

/** Options of {@linkcode findNetworkInConfDir}. */
export interface FindConfOptions {
  /** Receives a line for every file that is skipped; default `console.error`. */
  warn?: (message: string) => void;
}

/** Options of {@linkcode resolveNetworks}. */
export interface ResolveOptions {
  /** The CNI configuration folder (`--network-conf-dir`), scanned on every call. */
  confDir: string;
  /** Receives a line for every configuration file that is skipped; default `console.error`. */
  warn?: (message: string) => void;
}

function invalid(msg: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

// ---------------------------------------------------------------------------------------------------------
// k8s.v1.cni.cncf.io/networks

function ipProblem(ip: string): string | undefined {
  const slash = ip.indexOf("/");
  const addr = slash < 0 ? ip : ip.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return `${show(ip)} is not an IP address or CIDR`;
  if (slash >= 0) {
    const prefix = ip.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128)) {
      return `${show(ip)} has an invalid prefix length`;
    }
  }
  return undefined;
}

const MAC_FORMS = [
  /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$|^[0-9a-f]{2}(:[0-9a-f]{2}){7}$|^[0-9a-f]{2}(:[0-9a-f]{2}){19}$/i,
  /^[0-9a-f]{2}(-[0-9a-f]{2}){5}$|^[0-9a-f]{2}(-[0-9a-f]{2}){7}$|^[0-9a-f]{2}(-[0-9a-f]{2}){19}$/i,
  /^[0-9a-f]{4}(\.[0-9a-f]{4}){2}$|^[0-9a-f]{4}(\.[0-9a-f]{4}){3}$|^[0-9a-f]{4}(\.[0-9a-f]{4}){9}$/i,
];

function parseCommaItem(item: string): NetworkSelection {
  const fail = (why: string) => invalid(`annotation ${NETWORKS_ANNOTATION}: item ${show(item)}: ${why}`);
  if (item === "") throw fail("empty item");
  const slashParts = item.split("/");
  if (slashParts.length > 2) throw fail("more than one '/'");
  const rest = slashParts.length === 2 ? slashParts[1] : slashParts[0];
  const atParts = rest.split("@");
  if (atParts.length > 2) throw fail("more than one '@'");
  const namespace = slashParts.length === 2 ? slashParts[0].trim() : undefined;
  const name = atParts[0].trim();
  const ifname = atParts.length === 2 ? atParts[1].trim() : undefined;
  if (name === "") throw fail("the network name is missing");
  for (const [what, v] of [["namespace", namespace], ["network name", name], ["interface", ifname]]) {
    if (v !== undefined && !DNS1123_LABEL.test(v)) {
      throw fail(`${what} ${show(v)} must match ${DNS1123_LABEL.source}`);
    }
  }
  if (ifname !== undefined) {
    const problem = ifnameProblem(ifname);
    if (problem) throw fail(`interface ${problem}`);
  }
  const sel: NetworkSelection = { name };
  if (namespace !== undefined) sel.namespace = namespace;
  if (ifname !== undefined) sel.interface = ifname;
  return sel;
}

function optional(el: Record<string, unknown>, key: string): unknown {
  return el[key] === null ? undefined : el[key];
}

function parseJsonElement(el: unknown, index: number): NetworkSelection {
  const label = isPlainObject(el) && typeof el.name === "string" ? ` (name ${show(el.name)})` : "";
  const fail = (why: string) =>
    invalid(`annotation ${NETWORKS_ANNOTATION}: element ${index}${label}: ${why}`);
  if (!isPlainObject(el)) throw fail(`must be an object, got ${show(el)}`);
  if (typeof el.name !== "string") throw fail(`"name" must be a string, got ${show(el.name)}`);
  if (el.name === "") throw fail(`"name" may not be empty`);
  const sel: NetworkSelection = { name: el.name };
  const namespace = optional(el, "namespace");
  if (namespace !== undefined) {
    if (typeof namespace !== "string") throw fail(`"namespace" must be a string, got ${show(namespace)}`);
    sel.namespace = namespace;
  }
  const ifname = optional(el, "interface");
  if (ifname !== undefined) {
    if (typeof ifname !== "string") throw fail(`"interface" must be a string, got ${show(ifname)}`);
    const problem = ifnameProblem(ifname);
    if (problem) throw fail(`"interface" ${show(ifname)}: ${problem}`);
    sel.interface = ifname;
  }
  const ips = optional(el, "ips");
  if (ips !== undefined) {
    if (!Array.isArray(ips) || ips.some((ip) => typeof ip !== "string")) {
      throw fail(`"ips" must be an array of strings, got ${show(ips)}`);
    }
    for (const ip of ips as string[]) {
      const problem = ipProblem(ip);
      if (problem) throw fail(`"ips": ${problem}`);
    }
    sel.ips = [...ips as string[]];
  }
  const mac = optional(el, "mac");
  if (mac !== undefined) {
    if (typeof mac !== "string") throw fail(`"mac" must be a string, got ${show(mac)}`);
    if (!MAC_FORMS.some((re) => re.test(mac))) throw fail(`"mac" ${show(mac)} is not a MAC address`);
    sel.mac = mac;
  }
  const cniArgs = optional(el, "cni-args");
  if (cniArgs !== undefined) {
    if (!isPlainObject(cniArgs)) throw fail(`"cni-args" must be an object, got ${show(cniArgs)}`);
    sel.cniArgs = structuredClone(cniArgs);
  }
  return sel;
}

/**
 * Parses the `k8s.v1.cni.cncf.io/networks` annotation: a JSON list of selection objects when the value holds
 * `[`, `{` or `"`, else a comma list of `[namespace/]name[@ifname]`. Errors are CniErrors with code 7.
 */
export function parseNetworksAnnotation(value: string): NetworkSelection[] {
  if (value.trim() === "") throw invalid(`annotation ${NETWORKS_ANNOTATION} is empty`);
  if (!/[[{"]/.test(value)) return value.split(",").map((item) => parseCommaItem(item.trim()));
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch (e) {
    throw invalid(`annotation ${NETWORKS_ANNOTATION}: invalid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(doc)) {
    throw invalid(`annotation ${NETWORKS_ANNOTATION}: the JSON form must be an array of objects`);
  }
  if (doc.length === 0) throw invalid(`annotation ${NETWORKS_ANNOTATION}: the JSON list is empty`);
  return doc.map((el: unknown, i: number) => parseJsonElement(el, i));
}

// ---------------------------------------------------------------------------------------------------------
// k8s.v1.cni.galaxy.io/args: a tiny JSON scanner that finds the exact text of each value.

interface Member {
  key: string;
  start: number;
  end: number;
}

function skipWs(s: string, i: number): number {
  while (i < s.length && (s[i] === " " || s[i] === "\t" || s[i] === "\n" || s[i] === "\r")) i++;
  return i;
}

function expect(s: string, i: number, ch: string): number {
  if (s[i] !== ch) throw new SyntaxError(`expected '${ch}' at offset ${i}`);
  return i + 1;
}

function scanString(s: string, i: number): number {
  i = expect(s, i, '"');
  while (i < s.length) {
    const c = s[i];
    if (c === '"') return i + 1;
    i += c === "\\" ? 2 : 1;
  }
  throw new SyntaxError("unterminated string");
}

const LITERAL = /true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

function scanValue(s: string, i: number): number {
  const c = s[i];
  if (c === '"') return scanString(s, i);
  if (c === "{") return scanObject(s, i).end;
  if (c === "[") {
    i = skipWs(s, i + 1);
    if (s[i] === "]") return i + 1;
    for (;;) {
      i = skipWs(s, scanValue(s, i));
      if (s[i] === "]") return i + 1;
      i = skipWs(s, expect(s, i, ","));
    }
  }
  LITERAL.lastIndex = i;
  const m = LITERAL.exec(s);
  if (!m) throw new SyntaxError(`unexpected character at offset ${i}`);
  return i + m[0].length;
}

/** The members of the object starting at `s[i]`, with the exact span of each value. */
function scanObject(s: string, i: number): { members: Member[]; end: number } {
  const members: Member[] = [];
  i = skipWs(s, expect(s, i, "{"));
  if (s[i] === "}") return { members, end: i + 1 };
  for (;;) {
    const keyEnd = scanString(s, i);
    const key = JSON.parse(s.slice(i, keyEnd)) as string;
    i = skipWs(s, expect(s, skipWs(s, keyEnd), ":"));
    const end = scanValue(s, i);
    members.push({ key, start: i, end });
    i = skipWs(s, end);
    if (s[i] === "}") return { members, end: i + 1 };
    i = skipWs(s, expect(s, i, ","));
  }
}

/**
 * The extra CNI_ARGS of galaxy-ipam's `k8s.v1.cni.galaxy.io/args` annotation: each key of its `common` object
 * with the value's raw JSON text, byte for byte as written. A missing annotation gives none. Invalid JSON, or
 * a key or value that cannot travel in CNI_ARGS (`;` or `=`), is a CniError with code 7.
 */
export function parseGalaxyArgs(value: string | undefined): [string, string][] {
  if (value === undefined) return [];
  const fail = (why: string) => invalid(`annotation ${GALAXY_ARGS_ANNOTATION}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch (e) {
    throw fail(`invalid JSON: ${(e as Error).message}`);
  }
  if (doc === null) return [];
  if (!isPlainObject(doc)) throw fail(`must be a JSON object, got ${show(doc)}`);
  const common = goField(doc, "common");
  if (common === undefined || common === null) return [];
  if (!isPlainObject(common)) throw fail(`"common" must be an object, got ${show(common)}`);
  // JSON.parse accepted the text, so the scanner only has to find spans. Go's decoder lets the last of
  // several case-insensitively equal keys win, and so does goField: take the same member here.
  const raw = new Map<string, string>();
  try {
    const top = scanObject(value, skipWs(value, 0)).members;
    const commonMember = top.findLast((m) => goKeyFold(m.key) === "common")!;
    for (const m of scanObject(value, commonMember.start).members) {
      raw.set(m.key, value.slice(m.start, m.end));
    }
  } catch (e) {
    throw fail(`cannot read the text of "common": ${(e as Error).message}`);
  }
  const args: [string, string][] = [];
  for (const [key, text] of raw) {
    if (key === "" || /[;=]/.test(key)) {
      throw fail(`key ${show(key)} of "common" cannot be a CNI_ARGS key (empty, or holds ';' or '=')`);
    }
    if (/[;=]/.test(text)) {
      throw fail(`value of "common.${key}" holds ';' or '=', which cannot travel in CNI_ARGS: ${text}`);
    }
    args.push([key, text]);
  }
  return args;
}

// ---------------------------------------------------------------------------------------------------------
// Pods

/** True when some regular container (not an init container) requests the `tke.cloud.tencent.com/eni-ip` resource. */
export function wantsEniIp(pod: PodLike): boolean {
  return (pod.spec?.containers ?? []).some((c) => {
    const requests = c.resources?.requests;
    return requests !== undefined && Object.hasOwn(requests, ENI_IP_RESOURCE) &&
      requests[ENI_IP_RESOURCE] !== undefined && requests[ENI_IP_RESOURCE] !== null;
  });
}

function podName(pod: PodLike): string {
  return `${pod.metadata?.namespace ?? ""}/${pod.metadata?.name ?? ""}`;
}

// ---------------------------------------------------------------------------------------------------------
// The CNI configuration folder

function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return ca.done ? (cb.done ? 0 : -1) : 1;
    const d = ca.value.codePointAt(0)! - cb.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** The configuration files directly in `dir` and the sub-folders to visit, both sorted as Go sorts bytes. */
async function listDir(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  const files: string[] = [];
  const dirs: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    // Like Go's ReadDir, the entry's own type decides: symlinks count as files, never as sub-folders.
    if (e.isDirectory) dirs.push(e.name);
    else if (CONF_EXTENSIONS.some((ext) => e.name.endsWith(ext))) files.push(e.name);
  }
  files.sort(compareCodePoints);
  dirs.sort(compareCodePoints);
  return { files: files.map((f) => `${dir}/${f}`), dirs: dirs.map((d) => `${dir}/${d}`) };
}

function wrapConf(conf: NetConf & { name: string }): NetConfList {
  const list = confAsList(conf);
  if (list.cniVersion === undefined) {
    delete list.cniVersion;
    delete list.plugins[0].cniVersion;
  }
  return list;
}

/** Reads one configuration file; `undefined` (after a warning) when it cannot be used. */
async function readConf(path: string, warn: (m: string) => void): Promise<FoundConf | undefined> {
  let doc: unknown;
  try {
    doc = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    warn(`skipping CNI configuration ${path}: ${(e as Error).message}`);
    return undefined;
  }
  if (path.endsWith(".conflist")) {
    const parsed = NetConfListSchema.safeParse(doc);
    if (!parsed.success) {
      warn(`skipping CNI configuration list ${path}: ${describeZodError(parsed.error)}`);
      return undefined;
    }
    return { list: doc as NetConfList, source: path, isList: true };
  }
  const parsed = NetConfSchema.safeParse(doc);
  if (!parsed.success) {
    const hint = isPlainObject(doc) && Array.isArray(doc.plugins) ? " (a list? name it .conflist)" : "";
    warn(`skipping CNI configuration ${path}: ${describeZodError(parsed.error)}${hint}`);
    return undefined;
  }
  const conf = doc as NetConf;
  if (conf.name === undefined) return undefined;
  return { list: wrapConf(conf as NetConf & { name: string }), source: path, isList: false };
}

/**
 * Finds network `name` in the CNI configuration folder `dir`, scanned afresh on every call: `.conf`, `.json`
 * and `.conflist` files of the folder, then of each immediate sub-folder, all in lexicographic order; the
 * first match wins. Unusable files are skipped with a warning; a configuration of Galaxy's own shim
 * (`galaxy-sdn`) is never chosen; the empty name matches nothing; a missing folder gives `undefined`.
 */
export async function findNetworkInConfDir(
  dir: string,
  name: string,
  options: FindConfOptions = {},
): Promise<FoundConf | undefined> {
  if (name === "") return undefined;
  const warn = options.warn ?? ((m: string) => console.error(m));
  const root = dir.replace(/(?<=.)\/+$/, "");
  let top: { files: string[]; dirs: string[] };
  try {
    top = await listDir(root);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new CniError(
      ErrorCode.IoFailure,
      `cannot read CNI configuration folder ${root}: ${(e as Error).message}`,
    );
  }
  const candidates = [...top.files];
  for (const sub of top.dirs) {
    try {
      candidates.push(...(await listDir(sub)).files);
    } catch (e) {
      warn(`skipping CNI configuration folder ${sub}: ${(e as Error).message}`);
    }
  }
  for (const path of candidates) {
    const found = await readConf(path, warn);
    if (found === undefined || found.list.name !== name) continue;
    if (found.list.plugins.some((p) => p.type === SHIM_TYPE)) {
      warn(`skipping CNI configuration ${path} for network "${name}": it runs ${SHIM_TYPE}, Galaxy itself`);
      continue;
    }
    return found;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Resolution

function selectionsOf(pod: PodLike, config: GalaxyConfig): { selections: NetworkSelection[]; from: string } {
  const annotation = pod.metadata?.annotations?.[NETWORKS_ANNOTATION];
  if (annotation !== undefined && annotation.trim() !== "") {
    return { selections: parseNetworksAnnotation(annotation), from: `annotation ${NETWORKS_ANNOTATION}` };
  }
  if (config.eniIpNetwork !== "" && wantsEniIp(pod)) {
    return { selections: [{ name: config.eniIpNetwork }], from: "galaxy.json ENIIPNetwork" };
  }
  if (config.defaultNetworks.length === 0) {
    throw invalid(
      `no networks: pod ${podName(pod)} has no ${NETWORKS_ANNOTATION} annotation and galaxy.json's ` +
        `DefaultNetworks is empty`,
    );
  }
  return {
    selections: config.defaultNetworks.map((name) => ({ name })),
    from: "galaxy.json DefaultNetworks",
  };
}

async function lookUp(
  name: string,
  config: GalaxyConfig,
  options: ResolveOptions,
): Promise<FoundConf | undefined> {
  const entry = config.networks.get(name);
  if (entry !== undefined) {
    // An unnamed entry runs as the list named "": its plugin gets no name (cni/invoke.ts pluginConfig).
    const list = wrapConf(
      { ...structuredClone(entry), name: entry.name ?? "" } as NetConf & { name: string },
    );
    if (entry.name === undefined) delete list.plugins[0].name;
    return {
      list,
      source: `galaxy.json NetworkConf "${name}"`,
      isList: false,
    };
  }
  return await findNetworkInConfDir(options.confDir, name, { warn: options.warn });
}

function addCniArgs(list: NetConfList, cniArgs: Record<string, unknown>, name: string): void {
  const targets: Record<string, unknown>[] = [list, ...list.plugins];
  for (const target of targets) {
    const args = target.args ?? {};
    if (!isPlainObject(args)) {
      throw invalid(`network "${name}": its "args" is not an object, so cni-args cannot be added`);
    }
    const cni = args.cni ?? {};
    if (!isPlainObject(cni)) {
      throw invalid(`network "${name}": its "args.cni" is not an object, so cni-args cannot be added`);
    }
    target.args = { ...args, cni: { ...cni, ...structuredClone(cniArgs) } };
  }
}

/**
 * The networks of `pod`, in order, each with a fresh copy of its configuration. Network 0 gets `ifname` (the
 * runtime's CNI_IFNAME); network i ≥ 1 its requested interface or `eth<i>`. Names are looked up in
 * galaxy.json, then in the configuration folder. Every problem is a CniError (code 7) raised before anything
 * runs: a bad annotation, no networks, an interface used twice, an unknown network.
 */
export async function resolveNetworks(
  pod: PodLike,
  ifname: string,
  config: GalaxyConfig,
  options: ResolveOptions,
): Promise<ResolvedNetwork[]> {
  const { selections, from } = selectionsOf(pod, config);
  const extraArgs = parseGalaxyArgs(pod.metadata?.annotations?.[GALAXY_ARGS_ANNOTATION]);
  const ifnames = selections.map((sel, i) => i === 0 ? ifname : sel.interface ?? `eth${i}`);
  const firstWith = new Map<string, number>();
  ifnames.forEach((ifn, i) => {
    const j = firstWith.get(ifn);
    if (j !== undefined) {
      throw invalid(
        `pod ${podName(pod)}: networks "${selections[j].name}" (#${j}) and "${selections[i].name}" (#${i}) ` +
          `both use interface "${ifn}"`,
      );
    }
    firstWith.set(ifn, i);
  });
  const found = new Map<string, FoundConf>();
  const resolved: ResolvedNetwork[] = [];
  for (const [i, sel] of selections.entries()) {
    let conf = found.get(sel.name);
    if (conf === undefined) {
      conf = await lookUp(sel.name, config, options);
      if (conf === undefined) {
        throw invalid(
          `pod ${podName(pod)}: network "${sel.name}" (from ${from}) not found in galaxy.json NetworkConf ` +
            `nor in ${options.confDir} or its sub-folders (.conf, .json, .conflist)`,
        );
      }
      found.set(sel.name, conf);
    }
    // The same network may be attached twice: every attachment gets its own copy.
    const list = structuredClone(conf.list);
    if (sel.cniArgs) addCniArgs(list, sel.cniArgs, sel.name);
    const capabilityArgs: Record<string, unknown> = {};
    if (sel.ips) capabilityArgs.ips = [...sel.ips];
    if (sel.mac !== undefined) capabilityArgs.mac = sel.mac;
    resolved.push({
      name: sel.name,
      ifname: ifnames[i],
      list,
      isList: conf.isList,
      source: conf.source,
      args: [["IgnoreUnknown", "1"], ...extraArgs.map(([k, v]): [string, string] => [k, v])],
      capabilityArgs,
    });
  }
  return resolved;
}
