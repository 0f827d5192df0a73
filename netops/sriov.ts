/**
 * SR-IOV through sysfs, procfs and iproute2: the PF's VF counts (`sriov_totalvfs`, `sriov_numvfs`), its VFs
 * (`virtfn<i>` → the VF's PCI device and the netdevs it lists under `net/`), a VF's MSI interrupts and their
 * CPU affinity (`/proc/irq/<N>/smp_affinity_list`), the VF VLAN set through the PF
 * (`ip link set dev <pf> vf <i> vlan <v>`), and the VLANs the PF reports for its VFs.
 *
 * Every path is under a root that callers may move (`sysfsRoot`, default `/sys`; `procRoot`, default
 * `/proc`), so that tests run against a fake tree. Only the plugin's own (the node's) view is used: sysfs
 * lists the netdevs of the namespace that mounted it, and /proc/irq is not per namespace.
 * @module
 */
import { customOp, type IpOp, validateIfName } from "./ip.ts";
import { runCommands } from "./netns.ts";

/** Where sysfs is mounted on a real node. */
export const DEFAULT_SYSFS_ROOT = "/sys";
/** Where procfs is mounted on a real node. */
export const DEFAULT_PROC_ROOT = "/proc";

/** Roots of the trees this module reads and writes. */
export interface SriovRoots {
  /** The sysfs root (default {@linkcode DEFAULT_SYSFS_ROOT}). */
  sysfsRoot?: string;
  /** The procfs root (default {@linkcode DEFAULT_PROC_ROOT}). */
  procRoot?: string;
}

/** A PCI address as sysfs names devices: `0000:3b:02.0`. */
const PCI_ADDRESS = /^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;

/** True when `value` looks like a PCI address (`domain:bus:device.function`). */
export function isPciAddress(value: string): boolean {
  return PCI_ADDRESS.test(value);
}

function sysfs(options: SriovRoots): string {
  return (options.sysfsRoot ?? DEFAULT_SYSFS_ROOT).replace(/\/+$/, "");
}

function pfDevice(pf: string, options: SriovRoots): string {
  return `${sysfs(options)}/class/net/${validateIfName(pf)}/device`;
}

function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Entry names of a folder in byte order; `undefined` when the folder does not exist. */
async function entries(path: string): Promise<string[] | undefined> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(path)) names.push(e.name);
    return names.sort(compareBytes);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return undefined;
    throw err;
  }
}

async function readCount(path: string): Promise<number | undefined> {
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  if (!/^\d+$/.test(text)) throw new Error(`${path}: expected a number, found ${JSON.stringify(text)}`);
  return Number(text);
}

/** A PF's VF counts. */
export interface SriovCounts {
  /** `sriov_totalvfs`: how many VFs the device can have. */
  totalVfs: number;
  /** `sriov_numvfs`: how many are enabled now. */
  numVfs: number;
}

/**
 * Reads `<sysfsRoot>/class/net/<pf>/device/sriov_{totalvfs,numvfs}`; `undefined` when the device has no such
 * files (not an SR-IOV PF, or no such device). A file that does not hold a number throws.
 */
export async function readSriovCounts(
  pf: string,
  options: SriovRoots = {},
): Promise<SriovCounts | undefined> {
  const dev = pfDevice(pf, options);
  const totalVfs = await readCount(`${dev}/sriov_totalvfs`);
  const numVfs = await readCount(`${dev}/sriov_numvfs`);
  if (totalVfs === undefined || numVfs === undefined) return undefined;
  return { totalVfs, numVfs };
}

/** Enables `count` VFs by writing `sriov_numvfs` (the kernel only accepts this while it is 0). */
export async function setNumVfs(pf: string, count: number, options: SriovRoots = {}): Promise<void> {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`VF count must be ≥ 0, got ${count}`);
  await Deno.writeTextFile(`${pfDevice(pf, options)}/sriov_numvfs`, String(count), { create: false });
}

/** One `virtfn<i>` of a PF as sysfs shows it. */
export interface VirtFn {
  /** The VF index (the `<i>` of `virtfn<i>`, the `vf <i>` of `ip link`). */
  index: number;
  /** The VF's PCI address (where `virtfn<i>` points). */
  pciAddress: string;
  /**
   * The netdevs under the VF's `net/`, in byte order. Sysfs lists only the netdevs of the namespace that
   * mounted it: a VF moved into a pod shows none.
   */
  netdevs: string[];
}

/**
 * The PF's VFs `virtfn0` … `virtfn<count-1>` that exist (missing ones are left out), with their PCI address
 * and netdevs.
 */
export async function listVirtFns(pf: string, count: number, options: SriovRoots = {}): Promise<VirtFn[]> {
  const dev = pfDevice(pf, options);
  const found: VirtFn[] = [];
  for (let index = 0; index < count; index++) {
    let target: string;
    try {
      target = await Deno.readLink(`${dev}/virtfn${index}`);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    const pciAddress = target.replace(/\/+$/, "").split("/").pop() ?? "";
    if (!isPciAddress(pciAddress)) {
      throw new Error(`${dev}/virtfn${index} points to ${target}, which is not a PCI device`);
    }
    found.push({ index, pciAddress, netdevs: (await entries(`${dev}/virtfn${index}/net`)) ?? [] });
  }
  return found;
}

/** The netdevs a PCI device lists under `<sysfsRoot>/bus/pci/devices/<pci>/net/` (none when absent). */
export async function pciNetdevs(pciAddress: string, options: SriovRoots = {}): Promise<string[]> {
  if (!isPciAddress(pciAddress)) throw new Error(`${JSON.stringify(pciAddress)} is not a PCI address`);
  return (await entries(`${sysfs(options)}/bus/pci/devices/${pciAddress}/net`)) ?? [];
}

/** The MSI interrupts of VF `index` (the entries of `virtfn<index>/msi_irqs/`), ascending. */
export async function vfIrqs(pf: string, index: number, options: SriovRoots = {}): Promise<number[]> {
  const names = (await entries(`${pfDevice(pf, options)}/virtfn${index}/msi_irqs`)) ?? [];
  return names.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
}

/** Parses a kernel CPU list (`0-3,8,10-11`) into CPU numbers, ascending; throws on anything else. */
export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  const trimmed = text.trim();
  if (trimmed === "") return [];
  for (const part of trimmed.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`invalid CPU list ${JSON.stringify(text)}`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new Error(`invalid CPU range ${part} in ${JSON.stringify(text)}`);
    for (let cpu = from; cpu <= to; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/**
 * The online CPUs from `<sysfsRoot>/devices/system/cpu/online`; when that file is missing, CPUs
 * `0 … n-1` for the `n` CPUs this process may use (Go's `runtime.NumCPU`, which Galaxy used).
 */
export async function onlineCpus(options: SriovRoots = {}): Promise<number[]> {
  try {
    const cpus = parseCpuList(await Deno.readTextFile(`${sysfs(options)}/devices/system/cpu/online`));
    if (cpus.length > 0) return cpus;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return Array.from({ length: Math.max(1, navigator.hardwareConcurrency || 1) }, (_, i) => i);
}

/**
 * Galaxy's spreading of a VF's interrupts: IRQ `N` goes to CPU `N % numCPU`, taken as an index into the online
 * CPUs so that a CPU list with holes never names an offline CPU (the same as `N % numCPU` when they are 0…n-1).
 */
export function irqAffinities(irqs: number[], cpus: number[]): { irq: number; cpu: number }[] {
  if (cpus.length === 0) throw new RangeError("no CPUs to spread interrupts over");
  return irqs.map((irq) => ({ irq, cpu: cpus[irq % cpus.length] }));
}

/** Writes each `cpu` to `<procRoot>/irq/<irq>/smp_affinity_list`; the first failure throws, naming the file. */
export async function setIrqAffinities(
  affinities: { irq: number; cpu: number }[],
  options: SriovRoots = {},
): Promise<void> {
  const root = (options.procRoot ?? DEFAULT_PROC_ROOT).replace(/\/+$/, "");
  for (const { irq, cpu } of affinities) {
    const path = `${root}/irq/${irq}/smp_affinity_list`;
    try {
      await Deno.writeTextFile(path, String(cpu), { create: false });
    } catch (err) {
      throw new Error(`write ${cpu} to ${path}: ${(err as Error).message}`);
    }
  }
}

/**
 * The operation that sets a VF's VLAN through its PF: `link set dev <pf> vf <vf> vlan <vlan>` (0 = untagged,
 * which is also how a VLAN is reset). Pure: run it with `runBatch(null, ...)` in the PF's namespace.
 */
export function vfVlanOps(pf: string, target: { vf: number; vlan: number }): IpOp[] {
  const { vf, vlan } = target;
  if (!Number.isInteger(vf) || vf < 0) throw new RangeError(`VF index must be ≥ 0, got ${vf}`);
  if (!Number.isInteger(vlan) || vlan < 0 || vlan > 4094) {
    throw new RangeError(`VLAN must be 0–4094, got ${vlan}`);
  }
  return [customOp(["link", "set", "dev", validateIfName(pf), "vf", String(vf), "vlan", String(vlan)])];
}

/**
 * The VLAN of each VF from `ip -j link show dev <pf>` output (its `vfinfo_list`); a VF without a VLAN entry is
 * untagged (0). A device that reports no VFs gives an empty map.
 */
export function parseVfVlans(json: unknown): Map<number, number> {
  const vlans = new Map<number, number>();
  const links = Array.isArray(json) ? json : [];
  type VfInfo = { vf?: number; vlan?: number; vlan_list?: { vlan?: number }[] };
  for (const link of links as { vfinfo_list?: VfInfo[] }[]) {
    for (const vf of link?.vfinfo_list ?? []) {
      if (typeof vf?.vf !== "number") continue;
      vlans.set(vf.vf, vf.vlan_list?.[0]?.vlan ?? vf.vlan ?? 0);
    }
  }
  return vlans;
}

/** The VLANs `pf` (in this process's namespace) reports for its VFs; see {@linkcode parseVfVlans}. */
export async function readVfVlans(pf: string): Promise<Map<number, number>> {
  const [r] = await runCommands(null, [{ argv: ["ip", "-j", "link", "show", "dev", validateIfName(pf)] }]);
  if (r.code !== 0) throw new Error(`ip -j link show dev ${pf}: ${r.stderr.trim()}`);
  return parseVfVlans(JSON.parse(r.stdout.trim() || "[]"));
}

/**
 * The PCI address of the device behind link `name` (`parentdev` of `ip -d link`, when its bus is `pci`) in the
 * namespace `netnsPath` (`null` = this process's): `undefined` when the link has none (a veth, an old kernel),
 * `null` when there is no such link. A missing namespace rejects with `NetnsNotFoundError`.
 */
export async function linkPciAddress(
  netnsPath: string | null,
  name: string,
): Promise<string | undefined | null> {
  const argv = ["ip", "-j", "-d", "link", "show", "dev", validateIfName(name)];
  const [r] = await runCommands(netnsPath, [{ argv }]);
  if (r.code !== 0) {
    if (/does not exist/.test(r.stderr)) return null;
    throw new Error(`${argv.join(" ")} in ${netnsPath ?? "the current namespace"}: ${r.stderr.trim()}`);
  }
  const [link] = JSON.parse(r.stdout.trim() || "[]") as { parentbus?: string; parentdev?: string }[];
  if (!link) return null;
  return link.parentbus === "pci" && link.parentdev ? link.parentdev : undefined;
}
