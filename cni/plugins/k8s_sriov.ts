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
import { type Link, linkSet, listLinks, runBatch } from "../../netops/ip.ts";
import { isIPv4 } from "../../netops/ip_address.ts";
import {
  irqAffinities,
  linkPciAddress,
  listVirtFns,
  onlineCpus,
  readVfVlans,
  setIrqAffinities,
  vfIrqs,
  vfVlanOps,
} from "../../netops/sriov.ts";
import { attachmentKey, parseValidAttachments } from "../request.ts";
import { type Plugin, type PluginRequest, runPlugin } from "../skel.ts";
import { appendResult, CniError, ErrorCode, type Result, type ResultIp } from "../version.ts";
import { verifyAttachment } from "./kit/check.ts";
import { kernelError, logLine } from "./kit/errors.ts";
import { withFileLock } from "./kit/file_lock.ts";
import { type Allocation, forwardToIpam, statusThenIpam } from "./kit/ipam.ts";
import { configurePodInterface, refuseTakenNames } from "./kit/pod_interface.ts";
import { interfaceIndex } from "./kit/results.ts";
import { allocateThenAdd, cleanUpThenRelease, withRollback } from "./kit/rollback.ts";
import { type K8sSriovConf, lockFile, NAME, parseConf, roots } from "./kit/sriov_conf.ts";
import {
  listAttachments,
  readAttachment,
  removeAttachment,
  type SriovAttachment,
  writeAttachment,
} from "./kit/sriov_state.ts";
import { checkPf, chooseVf, enableVfs, restoreVf } from "./kit/sriov_vf.ts";

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
