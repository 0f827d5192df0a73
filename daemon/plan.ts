/**
 * `galaxy plan NAMESPACE/POD` (`GET /plan` on the daemon's socket): what an ADD of the pod would do, from the
 * daemon's own network resolution ({@link resolveNetworks}), without changing anything. It only reads: the
 * pod, galaxy.json, the configuration folder, the plugins' VERSION answers, the state files and the node's
 * links and files its preconditions name. The JSON shape ({@linkcode Plan}) is stable and documented in the
 * README ("When something is wrong").
 * @module
 */
import { findPlugin, getVersionInfo } from "../cni/invoke.ts";
import { type IpInfo, parseIpInfos } from "../cni/plugins/kit/ipam.ts";
import { ALL_VERSIONS, asCniError, compareVersions, type NetConfList } from "../cni/spec.ts";
import { DEFAULT_SUBNET_FILE } from "../cni/plugins/kit/flannel_subnet.ts";
import { DEFAULT_LOCK_DIR, listAttachments } from "../cni/plugins/kit/sriov_state.ts";
import { parseVlanConf, resolveUplink } from "../cni/plugins/kit/underlay_conf.ts";
import { listLinks } from "../netops/ip.ts";
import { readSriovCounts } from "../netops/sriov.ts";
import {
  findNetworkInConfDir,
  NETWORKS_ANNOTATION,
  parseNetworksAnnotation,
  type PodLike,
  resolveNetworks,
  wantsEniIp,
} from "./networks.ts";
import type { GalaxyConfig } from "./config.ts";
import { mergePorts, specPorts } from "./portmap_rules.ts";
import { listStates, readState } from "./state.ts";

/** Version of the JSON shape of {@linkcode Plan}; bumped only when a field changes meaning or goes away. */
export const PLAN_FORMAT = 1;

/** The capability arguments a plan follows, and where a pod's values come from. */
const CAPABILITIES = ["portMappings", "ips", "mac", "bandwidth"] as const;

/** Which NetworkPolicies select a pod; the network-policy engine provides it when it runs in the daemon. */
export interface PolicySelector {
  /** `namespace/name` of the policies that select the pod, by the direction they isolate it in. */
  policiesSelecting(pod: PodLike): Promise<{ ingress: string[]; egress: string[] }>;
}

/** What the plan needs from the daemon (a subset of the handler's context). */
export interface PlanContext {
  /** galaxy.json as loaded. */
  config: GalaxyConfig;
  /** `--network-conf-dir`. */
  confDir: string;
  /** `--cni-paths`. */
  cniPaths: string[];
  /** `--state-dir`. */
  stateDir: string;
  /** The pod source; in standalone mode the pod is just its name. */
  pods?: { getPod(namespace: string, name: string): Promise<PodLike> };
  /** The policy engine, when the daemon has one. */
  policies?: PolicySelector;
  /** Per-plugin timeout of the VERSION calls. */
  pluginTimeoutMs?: number;
}

/** One node precondition of an attachment. */
export interface Precondition {
  /** What is checked: `uplink`, `vlan-parent`, `sriov-vf`, `subnet-env`, `ipinfos-free`, `plugin-found`. */
  check: string;
  /** True when it holds. */
  ok: boolean;
  /** The evidence (a name, a path, the holder of an address). */
  detail: string;
}

/** One plugin of an attachment's list. */
export interface PlannedPlugin {
  /** Its `type`. */
  type: string;
  /** The executable found on the daemon's `--cni-paths`, or `null`. */
  path: string | null;
  /** Its VERSION answer, or `null` when it could not be asked. */
  supportedVersions: string[] | null;
  /** Why VERSION failed. */
  versionError?: string;
  /** The capabilities it declares (`capabilities: {x: true}`). */
  capabilities: string[];
}

/** Where one capability argument goes. */
export interface PlannedCapability {
  /** `portMappings`, `ips`, `mac` or `bandwidth`. */
  name: string;
  /** The value the ADD would carry. */
  value: unknown;
  /** Plugin types of the list that declare it and get it as `runtimeConfig`. */
  reaches: string[];
  /** True when no plugin declares it, so no plugin sees it. */
  dropped: boolean;
  /** Set when the daemon itself acts on it (`portMappings`: galaxy's port mapper). */
  handledBy?: string;
}

/** One network of the pod. */
export interface PlannedAttachment {
  /** 0 for the pod's default network. */
  index: number;
  /** The network name. */
  network: string;
  /** Where its configuration came from (`galaxy.json NetworkConf "x"` or a file path). */
  source: string;
  /** `galaxy.json` or `conf-dir`. */
  sourceKind: "galaxy.json" | "conf-dir";
  /** Configuration files skipped on the way, with why. */
  skippedFiles: string[];
  /** The interface inside the pod. */
  ifname: string;
  /** The `@ifname` the annotation asked for when it is not the one used (network 0 gets CNI_IFNAME). */
  overriddenIfname?: string;
  /** The CNI version it would run at, or `null` when none can be agreed. */
  cniVersion: string | null;
  /** `config` when the configuration names it, `negotiated` when learned from the VERSION answers. */
  cniVersionFrom: "config" | "negotiated";
  /** The plugins, in order. */
  plugins: PlannedPlugin[];
  /** CNI_ARGS decoded: the runtime's K8S_* keys, IgnoreUnknown and galaxy-ipam's `common` keys. */
  cniArgs: Record<string, string>;
  /** `ipinfos` decoded, or `null` when the pod has none. */
  ipinfos: IpInfo[] | null;
  /** Why `ipinfos` could not be read. */
  ipinfosError?: string;
  /** Capability arguments and which plugin gets each. */
  capabilities: PlannedCapability[];
  /** Node preconditions. */
  preconditions: Precondition[];
}

/** The plan of one pod. */
export interface Plan {
  /** {@linkcode PLAN_FORMAT}. */
  format: number;
  /** The pod. */
  pod: { namespace: string; name: string; uid?: string };
  /** True when an ADD would run plugins (exit status 0); false when it fails before any (exit status 1). */
  attempted: boolean;
  /** Why it would fail before any plugin runs. */
  reason?: string;
  /** Where the list of networks came from (the annotation, ENIIPNetwork, DefaultNetworks). */
  networksFrom: string;
  /** The networks, in ADD order. */
  attachments: PlannedAttachment[];
  /** Host ports the port mapper would map (random ports show `hostPort: 0`). */
  ports: { hostPort: number; containerPort: number; protocol: string; hostIP?: string }[];
  /** Policies that select the pod, either direction; `null` when the daemon has no policy engine. */
  policies: string[] | null;
  /** The same by the direction each isolates the pod in; `null` when the daemon has no policy engine. */
  policiesByDirection: { ingress: string[]; egress: string[] } | null;
  /** Preconditions that fail, over all attachments, as `network: check: detail`. */
  failing: string[];
}

function networksFrom(pod: PodLike, config: GalaxyConfig): string {
  const a = pod.metadata?.annotations?.[NETWORKS_ANNOTATION];
  if (a !== undefined && a.trim() !== "") return `annotation ${NETWORKS_ANNOTATION}`;
  if (config.eniIpNetwork !== "" && wantsEniIp(pod)) return "galaxy.json ENIIPNetwork";
  return "galaxy.json DefaultNetworks";
}

/** The `@ifname` the annotation asks for network 0, when it asks for one. */
function requestedFirstIfname(pod: PodLike): string | undefined {
  const a = pod.metadata?.annotations?.[NETWORKS_ANNOTATION];
  if (a === undefined || a.trim() === "") return undefined;
  try {
    return parseNetworksAnnotation(a)[0]?.interface;
  } catch {
    return undefined;
  }
}

async function planPlugins(
  list: NetConfList,
  ctx: PlanContext,
): Promise<{ plugins: PlannedPlugin[]; cniVersion: string | null; from: "config" | "negotiated" }> {
  const plugins: PlannedPlugin[] = [];
  let common: string[] = [...ALL_VERSIONS];
  for (const p of list.plugins) {
    const planned: PlannedPlugin = {
      type: p.type,
      path: null,
      supportedVersions: null,
      capabilities: Object.entries(p.capabilities ?? {}).filter(([, on]) => on === true).map(([k]) => k),
    };
    try {
      planned.path = findPlugin(p.type, ctx.cniPaths);
      planned.supportedVersions = [
        ...(await getVersionInfo(p.type, { path: ctx.cniPaths, timeoutMs: ctx.pluginTimeoutMs }))
          .supportedVersions,
      ];
      common = common.filter((v) => planned.supportedVersions!.includes(v));
    } catch (e) {
      planned.versionError = asCniError(e).message;
      common = [];
    }
    plugins.push(planned);
  }
  if (list.cniVersion) return { plugins, cniVersion: list.cniVersion, from: "config" };
  if (list.cniVersions?.length) {
    const best = list.cniVersions.filter((v) => (ALL_VERSIONS as readonly string[]).includes(v))
      .sort(compareVersions).at(-1);
    return { plugins, cniVersion: best ?? null, from: "config" };
  }
  return { plugins, cniVersion: common.sort(compareVersions).at(-1) ?? null, from: "negotiated" };
}

function capabilitiesOf(
  plugins: PlannedPlugin[],
  values: Record<string, unknown>,
): PlannedCapability[] {
  const out: PlannedCapability[] = [];
  for (const name of CAPABILITIES) {
    if (values[name] === undefined) continue;
    const reaches = plugins.filter((p) => p.capabilities.includes(name)).map((p) => p.type);
    const c: PlannedCapability = { name, value: values[name], reaches, dropped: reaches.length === 0 };
    if (name === "portMappings") {
      c.handledBy = "galaxy port mapper";
      c.dropped = false;
    }
    out.push(c);
  }
  return out;
}

/** Addresses (without prefix) held by state files of other pods, with who holds them. */
async function heldAddresses(
  stateDir: string,
  pod: { namespace: string; name: string },
): Promise<Map<string, string>> {
  const held = new Map<string, string>();
  for (const { containerId } of await listStates(stateDir).catch(() => [])) {
    const networks = await readState(stateDir, containerId).catch(() => undefined) ?? [];
    const args = networks.find((n) => n.Runtime)?.Runtime?.args ?? {};
    if (args.K8S_POD_NAMESPACE === pod.namespace && args.K8S_POD_NAME === pod.name) continue;
    for (const n of networks) {
      for (const ip of n.Result?.ips ?? []) {
        const who = args.K8S_POD_NAME ? `${args.K8S_POD_NAMESPACE}/${args.K8S_POD_NAME}` : "(no pod)";
        held.set(
          ip.address.split("/")[0],
          `container ${containerId} of pod ${who}, network "${n.NetworkType}"`,
        );
      }
    }
  }
  return held;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The node preconditions one plugin of a network would need; reads only. */
async function pluginPreconditions(conf: Record<string, unknown>): Promise<Precondition[]> {
  const type = String(conf.type);
  const out: Precondition[] = [];
  if (type === "galaxy-k8s-vlan" || type === "galaxy-underlay-veth") {
    try {
      const vlan = parseVlanConf(conf, { plugin: type });
      const uplink = await resolveUplink(vlan, { plugin: type });
      out.push({ check: "uplink", ok: true, detail: uplink.name });
      if (uplink.kind === "vlan" && uplink.parent) {
        const present = (await listLinks(null)).some((l) => l.name === uplink.parent);
        out.push({ check: "vlan-parent", ok: present, detail: uplink.parent });
      }
    } catch (e) {
      out.push({ check: "uplink", ok: false, detail: asCniError(e).message });
    }
  } else if (type === "galaxy-k8s-sriov") {
    const device = typeof conf.device === "string" ? conf.device : "";
    const lockDir = typeof conf.lockDir === "string" && conf.lockDir ? conf.lockDir : DEFAULT_LOCK_DIR;
    try {
      const counts = await readSriovCounts(device);
      if (!counts) throw new Error("not an SR-IOV PF (no sriov_totalvfs), or no such device");
      const records = await listAttachments(lockDir).catch(() => ({ attachments: [] }));
      const used = records.attachments.filter((a) => a.pf === device).length;
      const free = counts.totalVfs - used;
      out.push({
        check: "sriov-vf",
        ok: free > 0,
        detail: `${device}: ${free} of ${counts.totalVfs} VFs free`,
      });
    } catch (e) {
      out.push({
        check: "sriov-vf",
        ok: false,
        detail: `${device || "(no device)"}: ${(e as Error).message}`,
      });
    }
  } else if (type === "galaxy-flannel") {
    const file = typeof conf.subnetFile === "string" && conf.subnetFile
      ? conf.subnetFile
      : DEFAULT_SUBNET_FILE;
    out.push({ check: "subnet-env", ok: await exists(file), detail: file });
  }
  return out;
}

/** The plan of one pod. Never throws for a problem of the pod: it is the plan's `reason`. */
export async function planPod(
  ctx: PlanContext,
  namespace: string,
  name: string,
  ifname = "eth0",
): Promise<Plan> {
  const plan: Plan = {
    format: PLAN_FORMAT,
    pod: { namespace, name },
    attempted: false,
    networksFrom: "",
    attachments: [],
    ports: [],
    policies: ctx.policies ? [] : null,
    policiesByDirection: ctx.policies ? { ingress: [], egress: [] } : null,
    failing: [],
  };
  let pod: PodLike & { metadata?: { uid?: string } };
  try {
    pod = ctx.pods ? await ctx.pods.getPod(namespace, name) : { metadata: { namespace, name } };
  } catch (e) {
    plan.reason = asCniError(e).message;
    return plan;
  }
  if (pod.metadata?.uid) plan.pod.uid = pod.metadata.uid;
  // Known before resolution, so a pod whose networks cannot be resolved still shows them.
  if (ctx.policies) {
    const by = await ctx.policies.policiesSelecting(pod);
    plan.policiesByDirection = by;
    plan.policies = [...new Set([...by.ingress, ...by.egress])].sort();
  }
  plan.networksFrom = networksFrom(pod, ctx.config);
  let resolved;
  try {
    resolved = await resolveNetworks(pod, ifname, ctx.config, {
      confDir: ctx.confDir,
      warn: () => {},
    });
  } catch (e) {
    plan.reason = asCniError(e).message;
    return plan;
  }
  try {
    plan.ports = mergePorts(specPorts(pod as Parameters<typeof specPorts>[0])).map((p) => ({
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      protocol: p.protocol,
      ...(p.hostIP ? { hostIP: p.hostIP } : {}),
    }));
  } catch (e) {
    plan.failing.push(`ports: ${(e as Error).message}`);
  }
  const held = await heldAddresses(ctx.stateDir, plan.pod);
  const requested0 = requestedFirstIfname(pod);
  const bandwidth = bandwidthOf(pod);
  const reasons: string[] = [];
  for (const [i, net] of resolved.entries()) {
    const { plugins, cniVersion, from } = await planPlugins(net.list, ctx);
    const cniArgs: Record<string, string> = {
      K8S_POD_NAMESPACE: namespace,
      K8S_POD_NAME: name,
      ...(plan.pod.uid ? { K8S_POD_UID: plan.pod.uid } : {}),
      ...Object.fromEntries(net.args),
    };
    const a: PlannedAttachment = {
      index: i,
      network: net.name,
      source: net.source,
      sourceKind: net.source.startsWith("galaxy.json") ? "galaxy.json" : "conf-dir",
      skippedFiles: [],
      ifname: net.ifname,
      cniVersion,
      cniVersionFrom: from,
      plugins,
      cniArgs,
      ipinfos: null,
      capabilities: capabilitiesOf(plugins, {
        ...(plan.ports.length ? { portMappings: plan.ports } : {}),
        ...net.capabilityArgs,
        ...(bandwidth ? { bandwidth } : {}),
      }),
      preconditions: [],
    };
    if (a.sourceKind === "conf-dir") {
      // The same scan again, for this network alone: which files were passed over on the way to its file.
      await findNetworkInConfDir(ctx.confDir, net.name, { warn: (m) => a.skippedFiles.push(m) });
    }
    if (i === 0 && requested0 !== undefined && requested0 !== net.ifname) a.overriddenIfname = requested0;
    try {
      a.ipinfos = parseIpInfos({ args: net.args }) ?? null;
    } catch (e) {
      a.ipinfosError = asCniError(e).message;
      a.preconditions.push({ check: "ipinfos-valid", ok: false, detail: a.ipinfosError });
    }
    for (const info of a.ipinfos ?? []) {
      const ip = info.ip.split("/")[0];
      const holder = held.get(ip);
      a.preconditions.push({
        check: "ipinfos-free",
        ok: holder === undefined,
        detail: holder ? `${ip} is held by ${holder}` : `${ip} is free`,
      });
    }
    for (const p of plugins) {
      if (p.path === null) {
        a.preconditions.push({
          check: "plugin-found",
          ok: false,
          detail: `${p.type}: ${p.versionError ?? "not found"}`,
        });
      }
    }
    for (const conf of net.list.plugins) a.preconditions.push(...await pluginPreconditions(conf));
    if (cniVersion === null) {
      reasons.push(`network "${net.name}": its plugins share no CNI version with galaxy`);
    }
    for (const p of a.preconditions) if (!p.ok) plan.failing.push(`${net.name}: ${p.check}: ${p.detail}`);
    plan.attachments.push(a);
  }
  // What the daemon refuses before running any plugin: no common version. The first plugin not found fails
  // at exec, which is before any plugin runs only for the first attachment's first plugin.
  const firstMissing = plan.attachments[0]?.plugins[0]?.path === null;
  if (firstMissing) {
    reasons.push(`network "${resolved[0].name}": plugin ${resolved[0].list.plugins[0].type} not found`);
  }
  plan.attempted = reasons.length === 0;
  if (reasons.length) plan.reason = reasons.join("; ");
  return plan;
}

/** The pod's bandwidth annotations as the CNI `bandwidth` capability wants them (bits per second). */
function bandwidthOf(pod: PodLike): Record<string, number> | undefined {
  const a = pod.metadata?.annotations ?? {};
  const out: Record<string, number> = {};
  const ingress = quantity(a["kubernetes.io/ingress-bandwidth"]);
  const egress = quantity(a["kubernetes.io/egress-bandwidth"]);
  if (ingress !== undefined) out.ingressRate = ingress;
  if (egress !== undefined) out.egressRate = egress;
  return Object.keys(out).length ? out : undefined;
}

function quantity(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const m = /^(\d+(?:\.\d+)?)([kMGT]?)$/.exec(text.trim());
  if (!m) return undefined;
  const scale = { "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] as "" | "k" | "M" | "G" | "T"];
  return Math.round(Number(m[1]) * scale);
}

/** The plan as a table for people. */
export function formatPlan(plan: Plan): string {
  const lines: string[] = [];
  lines.push(`pod ${plan.pod.namespace}/${plan.pod.name}${plan.pod.uid ? ` (uid ${plan.pod.uid})` : ""}`);
  lines.push(
    plan.attempted
      ? "ADD would run its plugins" +
        (plan.failing.length ? `, but ${plan.failing.length} precondition(s) fail` : "")
      : `ADD would fail before any plugin runs: ${plan.reason}`,
  );
  if (plan.networksFrom) lines.push(`networks from: ${plan.networksFrom}`);
  for (const a of plan.attachments) {
    lines.push("");
    lines.push(
      `#${a.index} network "${a.network}" → ${a.ifname}` +
        (a.overriddenIfname
          ? ` (the annotation asked for "${a.overriddenIfname}"; network 0 takes CNI_IFNAME)`
          : ""),
    );
    lines.push(`   config:      ${a.source}`);
    for (const s of a.skippedFiles) lines.push(`   skipped:     ${s}`);
    lines.push(`   cniVersion:  ${a.cniVersion ?? "(none in common)"} (${a.cniVersionFrom})`);
    for (const p of a.plugins) {
      const versions = p.supportedVersions
        ? p.supportedVersions.join(",")
        : `VERSION failed: ${p.versionError}`;
      lines.push(
        `   plugin:      ${p.type}  [${versions}]${
          p.capabilities.length ? `  caps: ${p.capabilities.join(",")}` : ""
        }`,
      );
    }
    lines.push(`   CNI_ARGS:    ${Object.entries(a.cniArgs).map(([k, v]) => `${k}=${v}`).join(";")}`);
    if (a.ipinfos) {
      lines.push(
        `   ipinfos:     ${a.ipinfos.map((i) => `${i.ip}${i.vlan ? ` vlan ${i.vlan}` : ""}`).join(", ")}`,
      );
    }
    if (a.ipinfosError) lines.push(`   ipinfos:     invalid: ${a.ipinfosError}`);
    for (const c of a.capabilities) {
      const to = c.handledBy
        ? `${c.handledBy}${c.reaches.length ? ` and ${c.reaches.join(",")}` : ""}`
        : c.dropped
        ? "DROPPED (no plugin declares it)"
        : c.reaches.join(",");
      lines.push(`   capability:  ${c.name} → ${to}`);
    }
    for (const p of a.preconditions) {
      lines.push(`   ${p.ok ? "ok  " : "FAIL"}         ${p.check}: ${p.detail}`);
    }
  }
  lines.push("");
  lines.push(
    `ports:    ${
      plan.ports.length
        ? plan.ports.map((p) =>
          `${p.hostIP ? `${p.hostIP}:` : ""}${p.hostPort || "random"}→${p.containerPort}/${p.protocol}`
        ).join(", ")
        : "none"
    }`,
  );
  const by = plan.policiesByDirection;
  lines.push(
    `policies: ${
      by === null
        ? "(no policy engine in this daemon)"
        : `ingress: ${by.ingress.join(", ") || "none"}; egress: ${by.egress.join(", ") || "none"}`
    }`,
  );
  return lines.join("\n");
}
