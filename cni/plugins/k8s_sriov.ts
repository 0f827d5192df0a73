/**
 * galaxy-k8s-sriov (galaxy-behaviour.md §3.5): gives the pod a VF of the PF `device`. ADD enables VFs when the
 * PF has none (`sriov_numvfs` = min(`sriov_totalvfs`, `vf_num`)), picks a free VF under a node-wide lock, sets
 * its VLAN through the PF, moves it into the pod under `CNI_IFNAME`, puts the addresses and routes on it,
 * spreads its interrupts over the CPUs (IRQ `N` → CPU `N % numCPU`) and announces the first address with
 * gratuitous ARP. The result's interface carries the VF's PCI address as `pciID` (CNI 1.1.0).
 *
 * Configuration (besides `name`, `type`, `ipam`, `dns`):
 * - `device` (required): the PF, an interface in the node namespace;
 * - `vf_num`: use at most this many VFs, and enable this many when the PF has none; 256 when absent or ≤ 0;
 * - `vfVlan`: `"pf"` (default) sets the VF VLAN through the PF (`ip link set <pf> vf <i> vlan <v>`, 0 =
 *   untagged) and DEL resets it to 0; `"none"` leaves VF VLANs alone, for PFs that cannot program them
 *   (switchdev mode, where the VLAN belongs to the representor) and for test trees without SR-IOV
 *   hardware. With `"none"`, an address with a non-zero VLAN is refused (code 7) rather than silently
 *   left untagged;
 * - `sysfsRoot` (default `/sys`) and `procRoot` (default `/proc`): where the PF's sysfs entries and
 *   `irq/<N>/smp_affinity_list` are read and written; other roots serve tests with a fake tree;
 * - `lockDir` (default `/var/lib/cni/galaxy/sriov`): the lock file and one record per attachment
 *   (sriov_state.ts).
 *
 * A VF is free when its `virtfn<i>/net/` lists exactly one netdev and that netdev is in the node namespace
 * (sysfs does not list netdevs of other namespaces). The lock makes picking and moving a VF one step for all
 * plugin processes on the node, so two pods never get the same VF. Addresses come from `ipinfos` in CNI_ARGS
 * (all of them; they must share one VLAN) or from the delegated `ipam`. Routes: IPAM's routes (gateway
 * defaulting to the address's gateway), else a default route via the gateway when there is one.
 *
 * Unlike Galaxy: every CNI version in and out (Galaxy: 0.1.0/0.2.0); the lock; a failed ADD gives the VF back
 * (moved to the node under its old name, VLAN reset, record removed) and releases IPAM; DEL succeeds with a
 * missing namespace or interface and when repeated, always releases IPAM, resets the VLAN, and finds a VF that
 * its dying namespace gave back to the node by the PCI address in its record; DEL moves back only the VF of
 * its own record, identified by PCI parent (or MAC); nothing ever enters a namespace on the main thread.
 * @module
 */
import { sendGratuitousArp } from "../../netops/arping.ts";
import { getLink, type Link, linkSet, listLinks, runBatch, validateIfName } from "../../netops/ip.ts";
import { isIPv4 } from "../../netops/ip_address.ts";
import { NetnsNotFoundError } from "../../netops/netns.ts";
import {
  DEFAULT_PROC_ROOT,
  DEFAULT_SYSFS_ROOT,
  irqAffinities,
  linkPciAddress,
  listVirtFns,
  onlineCpus,
  pciNetdevs,
  readSriovCounts,
  readVfVlans,
  setIrqAffinities,
  setNumVfs,
  type SriovCounts,
  type SriovRoots,
  vfIrqs,
  vfVlanOps,
  type VirtFn,
} from "../../netops/sriov.ts";
import { attachmentKey, parseValidAttachments } from "../request.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import { appendResult, CniError, type Dns, ErrorCode, type Result, type ResultIp } from "../version.ts";
import { verifyAttachment } from "./kit/check.ts";
import { optionalDns } from "./kit/conf.ts";
import { kernelError, logLine } from "./kit/errors.ts";
import { withFileLock } from "./kit/file_lock.ts";
import { type Allocation, forwardToIpam, statusThenIpam } from "./kit/ipam.ts";
import { configurePodInterface, refuseTakenNames } from "./kit/pod_interface.ts";
import { interfaceIndex } from "./kit/results.ts";
import { allocateThenAdd, cleanUpThenRelease, withRollback } from "./kit/rollback.ts";
import {
  DEFAULT_LOCK_DIR,
  listAttachments,
  readAttachment,
  removeAttachment,
  type SriovAttachment,
  writeAttachment,
} from "./kit/sriov_state.ts";

/** galaxy-k8s-sriov's configuration, with defaults applied. */
export interface K8sSriovConf {
  /** `device`: the PF. */
  device: string;
  /** `vf_num`: how many VFs to use (and to enable when none are); 256 when absent or ≤ 0. */
  vfNum: number;
  /** `vfVlan`: who sets the VF VLAN: the plugin through the PF (`"pf"`) or nobody (`"none"`). */
  vfVlan: "pf" | "none";
  /** `sysfsRoot`: the sysfs tree (default `/sys`). */
  sysfsRoot: string;
  /** `procRoot`: the procfs tree (default `/proc`). */
  procRoot: string;
  /** `lockDir`: the lock file and the attachment records (default `/var/lib/cni/galaxy/sriov`). */
  lockDir: string;
  /** DNS settings copied into the result. */
  dns?: Dns;
}

const NAME = "galaxy-k8s-sriov";
/** Galaxy's `vf_num` when the configuration gives none. */
export const DEFAULT_VF_NUM = 256;

function absolutePath(v: unknown, key: string, problems: string[], fallback: string): string {
  if (v === undefined) return fallback;
  if (typeof v !== "string" || !v.startsWith("/") || v.includes("\0")) {
    problems.push(`${key}: must be an absolute path`);
    return fallback;
  }
  return v.length > 1 ? v.replace(/\/+$/, "") : v;
}

/** Reads and checks the plugin's keys by hand (plugins do not load zod); problems are code 7, each named. */
export function parseConf(config: Record<string, unknown>): K8sSriovConf {
  const problems: string[] = [];
  let device = "";
  if (typeof config.device !== "string" || config.device === "") {
    problems.push("device: required, the name of the SR-IOV PF");
  } else {
    try {
      device = validateIfName(config.device);
    } catch (err) {
      problems.push(`device: ${(err as Error).message}`);
    }
  }
  let vfNum = DEFAULT_VF_NUM;
  if (config.vf_num !== undefined) {
    if (typeof config.vf_num !== "number" || !Number.isInteger(config.vf_num)) {
      problems.push("vf_num: must be an integer");
    } else if (config.vf_num > 0) {
      vfNum = config.vf_num;
    }
  }
  const vfVlan = config.vfVlan ?? "pf";
  if (vfVlan !== "pf" && vfVlan !== "none") problems.push(`vfVlan: must be "pf" or "none"`);
  const sysfsRoot = absolutePath(config.sysfsRoot, "sysfsRoot", problems, DEFAULT_SYSFS_ROOT);
  const procRoot = absolutePath(config.procRoot, "procRoot", problems, DEFAULT_PROC_ROOT);
  const lockDir = absolutePath(config.lockDir, "lockDir", problems, DEFAULT_LOCK_DIR);
  let dns: Dns | undefined;
  try {
    dns = optionalDns(config, { plugin: NAME });
  } catch (err) {
    problems.push((err as Error).message.replace(`${NAME}: invalid config: `, ""));
  }
  if (problems.length) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `${NAME}: invalid config: ${problems.join("; ")}`);
  }
  const conf: K8sSriovConf = { device, vfNum, vfVlan: vfVlan as "pf" | "none", sysfsRoot, procRoot, lockDir };
  if (dns) conf.dns = dns;
  return conf;
}

function roots(conf: K8sSriovConf): SriovRoots {
  return { sysfsRoot: conf.sysfsRoot, procRoot: conf.procRoot };
}

function lockFile(conf: K8sSriovConf): string {
  return `${conf.lockDir}/lock`;
}

/** This process's network namespace (the node's), as a path `ip link set ... netns` accepts from a pod. */
function nodeNetns(): string {
  return `/proc/${Deno.pid}/ns/net`;
}

// ------------------------------------------------------------------------------------------ choosing a VF

/** The VF {@linkcode chooseVf} picked. */
export interface VfChoice {
  /** The VF. */
  vf: VirtFn;
  /** Its netdev in the node namespace. */
  name: string;
  /** Records of other attachments that name this VF: their pods are gone (the VF is back on the node). */
  stale: SriovAttachment[];
}

/**
 * Picks the first free VF: exactly one netdev under `virtfn<i>/net/`, present in the node namespace. VFs no
 * record names come first; a VF that a record names but that is back on the node (its pod namespace died, or
 * an ADD crashed before moving it) is taken only after those, and its records are returned as `stale`.
 * Without a free VF, `choice` is absent and `reasons` says why each VF was passed over.
 */
export function chooseVf(
  vfs: VirtFn[],
  options: { nodeLinks: ReadonlySet<string>; attachments: readonly SriovAttachment[] },
): { choice?: VfChoice; reasons: string[] } {
  const reasons: string[] = [];
  const free: VfChoice[] = [];
  for (const vf of vfs) {
    const where = `virtfn${vf.index} (${vf.pciAddress})`;
    if (vf.netdevs.length === 0) {
      reasons.push(`${where}: no netdev on the node, in use`);
    } else if (vf.netdevs.length > 1) {
      reasons.push(`${where}: ${vf.netdevs.length} netdevs (${vf.netdevs.join(", ")})`);
    } else if (!options.nodeLinks.has(vf.netdevs[0])) {
      reasons.push(`${where}: ${vf.netdevs[0]} is not in the node namespace, in use`);
    } else {
      const stale = options.attachments.filter((a) => a.pciAddress === vf.pciAddress);
      free.push({ vf, name: vf.netdevs[0], stale });
    }
  }
  if (vfs.length === 0) reasons.push("no virtfn entries");
  const choice = free.find((c) => c.stale.length === 0) ?? free[0];
  return choice ? { choice, reasons } : { reasons };
}

// ------------------------------------------------------------------------------------------ giving a VF back

async function isOurVf(netns: string, link: Link, att: SriovAttachment): Promise<boolean> {
  const pci = await linkPciAddress(netns, link.name);
  if (pci) return pci === att.pciAddress;
  // no PCI parent reported (a kernel before 5.15, or a stand-in device): the MAC recorded at ADD decides
  return att.mac === undefined || link.address?.toLowerCase() === att.mac.toLowerCase();
}

/**
 * Brings an attachment's VF back to the node under the name it had there (or `dev<ifindex>` when that name
 * is taken, as Galaxy named it): from the pod namespace when it is still there (under `ifname`, or under its
 * node name when an ADD stopped between move and rename), else from wherever the node has it now (a dying
 * namespace hands physical devices back to the node, keeping the name they had inside), found by PCI address.
 * With `resetVlan`, the VF VLAN is set back to 0 through the PF when ADD had set it. Returns what happened.
 */
export async function restoreVf(
  att: SriovAttachment,
  conf: K8sSriovConf,
  options: { netns?: string; resetVlan?: boolean } = {},
): Promise<string> {
  let outcome = "not found (gone with its device, or in a namespace this attachment does not know)";
  const netns = options.netns || att.netns;
  let inPod = false;
  if (netns) {
    try {
      for (const name of new Set([att.ifname, att.vfName])) {
        const link = await getLink(netns, name);
        if (!link) continue;
        if (!(await isOurVf(netns, link, att))) {
          logLine(NAME, `${name} in ${netns} is not VF ${att.pciAddress}; left alone`);
          continue;
        }
        const nodeNames = new Set((await listLinks(null)).map((l) => l.name));
        const target = nodeNames.has(att.vfName) ? `dev${link.index}` : att.vfName;
        await runBatch(netns, [linkSet(name, { up: false, name: target, netns: nodeNetns() })]);
        outcome = `moved from ${netns} back to the node as ${target}`;
        inPod = true;
        break;
      }
    } catch (err) {
      if (!(err instanceof NetnsNotFoundError)) throw err;
    }
  }
  if (!inPod) {
    const nodeLinks = await listLinks(null);
    const nodeNames = new Set(nodeLinks.map((l) => l.name));
    const here = (await pciNetdevs(att.pciAddress, roots(conf))).find((n) => nodeNames.has(n));
    if (here === att.vfName) {
      outcome = `already on the node as ${here}`;
    } else if (here) {
      const target = nodeNames.has(att.vfName) ? here : att.vfName;
      if (target !== here) await runBatch(null, [linkSet(here, { up: false, name: target })]);
      outcome = `found on the node as ${here}${target === here ? "" : `, renamed ${target}`}`;
    }
  }
  if (options.resetVlan && att.vlanViaPf) {
    const counts = await readSriovCounts(att.pf, roots(conf));
    if ((await getLink(null, att.pf)) && counts && att.vf < counts.numVfs) {
      await runBatch(null, vfVlanOps(att.pf, { vf: att.vf, vlan: 0 }));
      outcome += `; VLAN reset through ${att.pf}`;
    }
  }
  return outcome;
}

// ------------------------------------------------------------------------------------------ ADD

/** What goes on the pod interface. */
interface PodPlan {
  ips: ResultIp[];
  routes: { dst: string; gw?: string }[];
  vlan: number;
}

function podPlan(alloc: Allocation, conf: K8sSriovConf): PodPlan {
  const ips = (alloc.result.ips ?? []).filter((ip) => isIPv4(ip.address.split("/")[0]));
  if (ips.length === 0) throw new CniError(ErrorCode.PluginFailure, `${NAME}: no IPv4 address to configure`);
  const vlans = [...new Set(alloc.vlans)];
  if (vlans.length > 1) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${NAME}: a VF has one VLAN, but the addresses come with VLANs ${vlans.join(", ")}`,
    );
  }
  const vlan = vlans[0] ?? 0;
  if (vlan !== 0 && conf.vfVlan === "none") {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${NAME}: the address needs VLAN ${vlan}, but vfVlan is "none" (nobody would tag the VF)`,
    );
  }
  const gateway = ips[0].gateway;
  const fromIpam = (alloc.result.routes ?? []).filter((r) => isIPv4(r.dst.split("/")[0]));
  const routes = fromIpam.length
    ? fromIpam.map((r) => (r.gw ?? gateway) ? { dst: r.dst, gw: r.gw ?? gateway } : { dst: r.dst })
    : gateway
    ? [{ dst: "0.0.0.0/0", gw: gateway }]
    : [];
  return { ips, routes, vlan };
}

async function checkPf(conf: K8sSriovConf): Promise<void> {
  let pf: Link | undefined;
  let counts: SriovCounts | undefined;
  try {
    pf = await getLink(null, conf.device);
    counts = await readSriovCounts(conf.device, roots(conf));
  } catch (err) {
    throw kernelError(err, `${NAME}: PF ${conf.device}`);
  }
  if (!pf) {
    throw new CniError(
      ErrorCode.PluginFailure,
      `${NAME}: PF ${conf.device} (device) does not exist on the node`,
    );
  }
  if (!counts || counts.totalVfs <= 0) {
    throw new CniError(
      ErrorCode.PluginFailure,
      `${NAME}: ${conf.device} is not an SR-IOV PF: ${conf.sysfsRoot}/class/net/${conf.device}/device/` +
        `sriov_totalvfs is ${counts ? "0" : "missing"}`,
    );
  }
}

/** Enables VFs when the PF has none; returns how many VFs this plugin may use. */
async function enableVfs(conf: K8sSriovConf): Promise<number> {
  const counts = await readSriovCounts(conf.device, roots(conf));
  if (!counts || counts.totalVfs <= 0) {
    throw new CniError(ErrorCode.PluginFailure, `${NAME}: ${conf.device} has no SR-IOV VFs any more`);
  }
  const usable = Math.min(counts.totalVfs, conf.vfNum);
  if (counts.numVfs === 0) {
    await setNumVfs(conf.device, usable, roots(conf));
    logLine(NAME, `enabled ${usable} VFs on ${conf.device} (sriov_numvfs was 0)`);
  } else if (counts.numVfs < usable) {
    logLine(NAME, `${conf.device} has ${counts.numVfs} VFs enabled, fewer than the ${usable} it could use`);
  }
  return usable;
}

/** Under the lock: pick a VF, record it, VLAN, move and rename, configure, IRQ affinity. */
async function attachVf(
  req: PluginRequest,
  conf: K8sSriovConf,
  plan: PodPlan,
): Promise<{ att: SriovAttachment; podLink: Link }> {
  const previous = await readAttachment(conf.lockDir, req).catch((err) => {
    logLine(NAME, `${(err as Error).message}; replacing it`);
    return undefined;
  });
  if (previous) {
    // a retried ADD (the runtime lost our answer, or we crashed): give back the VF it had, then start afresh
    const what = await restoreVf(previous, conf);
    logLine(
      NAME,
      `ADD again for ${req.containerId}/${req.ifname}: its earlier VF ${previous.pciAddress} ${what}`,
    );
  }
  await removeAttachment(conf.lockDir, req);
  const usable = await enableVfs(conf);
  const vfs = await listVirtFns(conf.device, usable, roots(conf));
  const nodeLinks = await listLinks(null);
  const { attachments } = await listAttachments(conf.lockDir);
  const { choice, reasons } = chooseVf(vfs, {
    nodeLinks: new Set(nodeLinks.map((l) => l.name)),
    attachments,
  });
  if (!choice) {
    throw new CniError(
      ErrorCode.PluginFailure,
      `${NAME}: no free VF on ${conf.device} (${usable} usable): ${reasons.join("; ")}`,
    );
  }
  for (const stale of choice.stale) {
    logLine(
      NAME,
      `VF ${stale.pciAddress} was recorded for ${stale.containerId}/${stale.ifname} but is back on the node ` +
        `(its pod namespace is gone); taking it and dropping that record`,
    );
    await removeAttachment(conf.lockDir, stale);
  }
  const vfLink = nodeLinks.find((l) => l.name === choice.name)!;
  const att: SriovAttachment = {
    network: String(req.config.name ?? ""),
    containerId: req.containerId,
    ifname: req.ifname,
    netns: req.netns,
    pf: conf.device,
    vf: choice.vf.index,
    pciAddress: choice.vf.pciAddress,
    vfName: choice.name,
    vlan: plan.vlan,
    vlanViaPf: conf.vfVlan === "pf",
    addresses: plan.ips.map((ip) => ip.address),
    routes: plan.routes,
  };
  if (vfLink.address) att.mac = vfLink.address;
  let vlanSet = false;
  return await withRollback(NAME, async (undo) => {
    await writeAttachment(conf.lockDir, att);
    undo.push(`give back VF ${att.pciAddress}`, async () => {
      logLine(NAME, `rollback: VF ${att.pciAddress} ${await restoreVf(att, conf, { resetVlan: vlanSet })}`);
      await removeAttachment(conf.lockDir, att);
    });
    if (att.vlanViaPf) {
      try {
        await runBatch(null, vfVlanOps(att.pf, { vf: att.vf, vlan: att.vlan }));
      } catch (err) {
        throw kernelError(err, `${NAME}: set VLAN ${att.vlan} of ${att.pf} vf ${att.vf}`);
      }
      vlanSet = true;
    }
    try {
      // move and rename in one request: the new name also settles a clash with a name inside the pod
      await runBatch(null, [linkSet(att.vfName, { netns: req.netns, name: req.ifname })]);
    } catch (err) {
      throw kernelError(err, `${NAME}: move VF ${att.vfName} into ${req.netns}`);
    }
    const podLink = await configurePodInterface(req.netns, {
      ifname: req.ifname,
      addresses: att.addresses,
      routes: att.routes,
    });
    try {
      const irqs = await vfIrqs(att.pf, att.vf, roots(conf));
      await setIrqAffinities(irqAffinities(irqs, await onlineCpus(roots(conf))), roots(conf));
    } catch (err) {
      throw kernelError(err, `${NAME}: IRQ affinity of ${att.pf} vf ${att.vf}`);
    }
    return { att, podLink };
  });
}

/** ADD: addresses, then (under the node-wide lock) a VF into the pod; the result is chained onto `prevResult`. */
export async function add(req: PluginRequest): Promise<Result> {
  const conf = parseConf(req.config);
  await refuseTakenNames(req, [req.ifname], { plugin: NAME });
  await checkPf(conf);
  return await allocateThenAdd(req, NAME, async (alloc) => {
    const plan = podPlan(alloc, conf);
    const { att, podLink } = await withFileLock(lockFile(conf), () => attachVf(req, conf, plan));
    await sendGratuitousArp(req.ifname, plan.ips[0].address.split("/")[0], {
      netns: req.netns,
      detach: true,
    });
    const ours: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: req.ifname, mac: podLink.address, sandbox: req.netns, pciID: att.pciAddress }],
      ips: plan.ips.map((ip) => ({ ...ip, interface: 0 })),
      routes: plan.routes,
    };
    if (conf.dns) ours.dns = conf.dns;
    return appendResult(req.prevResult, ours);
  });
}

// ------------------------------------------------------------------------------------------ DEL, CHECK, ...

/**
 * DEL: under the lock, the VF of this attachment's record goes back to the node under its old name with its
 * VLAN reset, and the record is removed; without a record there is nothing of ours to touch. Delegated IPAM
 * is released whatever happened before.
 */
export async function del(req: PluginRequest): Promise<void> {
  await cleanUpThenRelease(req, async () => {
    const conf = parseConf(req.config);
    await withFileLock(lockFile(conf), async () => {
      let att: SriovAttachment | undefined;
      try {
        att = await readAttachment(conf.lockDir, req);
      } catch (err) {
        logLine(NAME, `${(err as Error).message}; removing it, its VF cannot be known`);
        await removeAttachment(conf.lockDir, req);
        return;
      }
      if (!att) return;
      const what = await restoreVf(att, conf, { netns: req.netns, resetVlan: true });
      logLine(
        NAME,
        `DEL ${att.containerId}/${att.ifname}: VF ${att.pciAddress} (${att.pf} vf ${att.vf}) ${what}`,
      );
      await removeAttachment(conf.lockDir, att);
    });
  }, { plugin: NAME });
}

/**
 * CHECK: the record exists and matches `prevResult`'s `pciID`; the pod interface is there, up, with the MAC and
 * addresses of `prevResult` and the routes of the record; it is the recorded VF (when the kernel reports its
 * PCI parent); the PF reports the recorded VLAN for it (when it reports VF VLANs at all). Then IPAM's CHECK.
 */
export async function check(req: PluginRequest): Promise<void> {
  const conf = parseConf(req.config);
  const prev = req.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, `${NAME}: CHECK needs prevResult`);
  const att = await readAttachment(conf.lockDir, req).catch((err) => {
    throw kernelError(err, NAME);
  });
  const problems: string[] = [];
  if (!att) problems.push(`no record of ${req.containerId}/${req.ifname} in ${conf.lockDir}`);
  problems.push(
    ...await verifyAttachment({
      netns: req.netns,
      ifname: req.ifname,
      prevResult: prev,
      podRoutes: att?.routes,
    }),
  );
  if (att) {
    const index = interfaceIndex(prev, req.ifname, { sandbox: req.netns });
    const pciID = index >= 0 ? prev.interfaces?.[index].pciID : undefined;
    if (pciID !== undefined && pciID !== att.pciAddress) {
      problems.push(`prevResult says ${req.ifname} is ${pciID}, the record says VF ${att.pciAddress}`);
    }
    try {
      const pci = await linkPciAddress(req.netns, req.ifname);
      if (pci && pci !== att.pciAddress) problems.push(`${req.ifname} is ${pci}, not VF ${att.pciAddress}`);
      if (att.vlanViaPf) {
        const vlan = (await readVfVlans(att.pf)).get(att.vf);
        if (vlan !== undefined && vlan !== att.vlan) {
          problems.push(`${att.pf} vf ${att.vf} has VLAN ${vlan}, expected ${att.vlan}`);
        }
      }
    } catch (err) {
      throw kernelError(err, `${NAME}: CHECK`);
    }
  }
  if (problems.length) {
    throw new CniError(ErrorCode.PluginFailure, `${NAME}: CHECK failed: ${problems.join("; ")}`);
  }
  await forwardToIpam("CHECK", req, { plugin: NAME });
}

/** STATUS: ready when the PF is on the node and can have VFs, and IPAM is ready; else code 50. */
export async function status(req: PluginRequest): Promise<void> {
  const conf = parseConf(req.config);
  await statusThenIpam(req, NAME, () => checkPf(conf));
}

/**
 * GC: the records of this network whose attachment is not in `cni.dev/valid-attachments` have their VF given
 * back (as DEL does) and are removed; unreadable records are removed. Errors are collected, the rest goes on;
 * then GC goes to IPAM.
 */
export async function gc(req: PluginRequest): Promise<void> {
  const conf = parseConf(req.config);
  const valid = new Set(parseValidAttachments(req.config).map((a) => attachmentKey(a.containerID, a.ifname)));
  const errors: string[] = [];
  await withFileLock(lockFile(conf), async () => {
    const { attachments, corrupt } = await listAttachments(conf.lockDir);
    for (const path of corrupt) {
      logLine(NAME, `GC: removing unreadable record ${path}`);
      await Deno.remove(path).catch(() => {});
    }
    for (const att of attachments) {
      if (att.network !== req.config.name || valid.has(attachmentKey(att.containerId, att.ifname))) continue;
      try {
        const what = await restoreVf(att, conf, { resetVlan: true });
        logLine(NAME, `GC ${att.containerId}/${att.ifname}: VF ${att.pciAddress} ${what}`);
        await removeAttachment(conf.lockDir, att);
      } catch (err) {
        errors.push(`${att.containerId}/${att.ifname}: ${(err as Error).message}`);
      }
    }
  });
  let ipamError: unknown;
  try {
    await forwardToIpam("GC", req, { plugin: NAME });
  } catch (err) {
    ipamError = err;
  }
  if (errors.length) throw new CniError(ErrorCode.PluginFailure, `${NAME}: GC: ${errors.join("; ")}`);
  if (ipamError !== undefined) throw ipamError;
}

/** The galaxy-k8s-sriov plugin. */
export const plugin: Plugin = { name: NAME, add, del, check, status, gc };

/** Runs galaxy-k8s-sriov as a CNI plugin executable. */
export function main(): Promise<number> {
  return runPlugin(plugin);
}
