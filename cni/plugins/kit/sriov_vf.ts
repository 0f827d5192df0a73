/**
 * galaxy-k8s-sriov's VFs: checking the PF, enabling VFs, choosing a free one, and giving one back to the node
 * (name, MAC, VLAN) when its pod goes.
 * @module
 */
import { getLink, type Link, linkSet, listLinks, runBatch } from "../../../netops/ip.ts";
import { NetnsNotFoundError } from "../../../netops/netns.ts";
import {
  linkPciAddress,
  pciNetdevs,
  readSriovCounts,
  setNumVfs,
  type SriovCounts,
  vfVlanOps,
  type VirtFn,
} from "../../../netops/sriov.ts";
import { CniError, ErrorCode } from "../../version.ts";
import { kernelError, logLine } from "./errors.ts";
import { type K8sSriovConf, NAME, nodeNetns, roots } from "./sriov_conf.ts";
import type { SriovAttachment } from "./sriov_state.ts";

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

/** Refuses (code 100, naming the file) a `device` that is missing or is not an SR-IOV PF. */
export async function checkPf(conf: K8sSriovConf): Promise<void> {
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
export async function enableVfs(conf: K8sSriovConf): Promise<number> {
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
