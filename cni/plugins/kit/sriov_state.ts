/**
 * galaxy-k8s-sriov's node-wide state: a lock file that serialises every VF-touching step of every plugin
 * process on the node (`flock` through `Deno.FsFile.tryLock`, released by the kernel when a process dies), and
 * one small JSON record per attachment saying which VF it got. Records are written atomically (temp file,
 * fsync, rename) before the work they describe, so DEL, a retried ADD or GC can always find the VF.
 *
 * Layout under `lockDir` (default {@linkcode DEFAULT_LOCK_DIR}): `lock`, and `<containerId>@<ifname>.json`
 * per attachment (`@` cannot occur in a container ID, so the name is unambiguous).
 * @module
 */
import { writeFileAtomic } from "../../../netops/fs_atomic.ts";
import { CniError, ErrorCode } from "../../version.ts";

/** Where the lock and the records live unless the configuration's `lockDir` says otherwise. */
export const DEFAULT_LOCK_DIR = "/var/lib/cni/galaxy/sriov";

/** What one attachment holds: enough to find its VF again and undo what ADD did to it. */
export interface SriovAttachment {
  /** The network name (the configuration's `name`); GC looks only at its own network's records. */
  network: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** CNI_IFNAME: the VF's name inside the pod. */
  ifname: string;
  /** CNI_NETNS at ADD. */
  netns: string;
  /** The PF. */
  pf: string;
  /** The VF index on the PF (`virtfn<vf>`, `ip link set <pf> vf <vf>`). */
  vf: number;
  /** The VF's PCI address. */
  pciAddress: string;
  /** The VF's netdev name on the node before ADD; DEL gives it back this name. */
  vfName: string;
  /** The VF's MAC on the node before ADD; identifies it in the pod when the kernel gives no PCI parent. */
  mac?: string;
  /** The VLAN ADD asked for. */
  vlan: number;
  /** True when ADD programs the VLAN through the PF, so that DEL resets it to 0. */
  vlanViaPf: boolean;
  /** The addresses put on the pod interface. */
  addresses: string[];
  /** The routes put in the pod through the interface. */
  routes: { dst: string; gw?: string }[];
}

/** The record's file name for an attachment. */
export function attachmentFileName(containerId: string, ifname: string): string {
  if (!containerId || containerId.includes("@") || containerId.includes("/")) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_CONTAINERID ${JSON.stringify(containerId)} is not usable`,
    );
  }
  if (!ifname || ifname.includes("/")) {
    throw new CniError(ErrorCode.InvalidEnvironment, `CNI_IFNAME ${JSON.stringify(ifname)} is not usable`);
  }
  return `${containerId}@${ifname}.json`;
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}

/** Checks a parsed record and returns it typed, or throws naming the first bad field. */
export function parseAttachment(raw: unknown): SriovAttachment {
  const r = raw as Record<string, unknown>;
  if (typeof r !== "object" || r === null || Array.isArray(r)) throw new Error("not a JSON object");
  for (const key of ["network", "containerId", "ifname", "netns", "pf", "pciAddress", "vfName"]) {
    if (typeof r[key] !== "string") throw new Error(`${key}: expected a string`);
  }
  for (const key of ["vf", "vlan"]) {
    if (!Number.isInteger(r[key]) || (r[key] as number) < 0) {
      throw new Error(`${key}: expected an integer ≥ 0`);
    }
  }
  if (typeof r.vlanViaPf !== "boolean") throw new Error("vlanViaPf: expected a boolean");
  if (r.mac !== undefined && typeof r.mac !== "string") throw new Error("mac: expected a string");
  if (!isStringList(r.addresses)) throw new Error("addresses: expected a list of strings");
  const routes = r.routes;
  if (
    !Array.isArray(routes) ||
    !routes.every((x) => typeof x?.dst === "string" && (x.gw === undefined || typeof x.gw === "string"))
  ) {
    throw new Error("routes: expected a list of {dst, gw?}");
  }
  return r as unknown as SriovAttachment;
}

/** Reads one attachment's record; `undefined` when there is none. A corrupt record throws. */
export async function readAttachment(
  lockDir: string,
  att: { containerId: string; ifname: string },
): Promise<SriovAttachment | undefined> {
  const path = `${lockDir}/${attachmentFileName(att.containerId, att.ifname)}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  try {
    return parseAttachment(JSON.parse(text));
  } catch (err) {
    throw new Error(`corrupt SR-IOV record ${path}: ${(err as Error).message}`);
  }
}

/** Every record in `lockDir`; corrupt ones are reported in `corrupt` (by path) instead. */
export async function listAttachments(
  lockDir: string,
): Promise<{ attachments: SriovAttachment[]; corrupt: string[] }> {
  const attachments: SriovAttachment[] = [];
  const corrupt: string[] = [];
  let names: string[] = [];
  try {
    for await (const e of Deno.readDir(lockDir)) {
      if (e.isFile && e.name.endsWith(".json") && e.name.includes("@")) names.push(e.name);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { attachments, corrupt };
    throw err;
  }
  names = names.sort();
  for (const name of names) {
    try {
      attachments.push(parseAttachment(JSON.parse(await Deno.readTextFile(`${lockDir}/${name}`))));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue; // removed meanwhile
      corrupt.push(`${lockDir}/${name}`);
    }
  }
  return { attachments, corrupt };
}

/** Writes an attachment's record atomically: a temporary file, fsync, then rename over the record. */
export async function writeAttachment(lockDir: string, att: SriovAttachment): Promise<void> {
  const path = `${lockDir}/${attachmentFileName(att.containerId, att.ifname)}`;
  await writeFileAtomic(path, JSON.stringify(att, null, 2) + "\n");
}

/** Removes an attachment's record; a missing one is fine. */
export async function removeAttachment(
  lockDir: string,
  att: { containerId: string; ifname: string },
): Promise<void> {
  await Deno.remove(`${lockDir}/${attachmentFileName(att.containerId, att.ifname)}`).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}
