/**
 * galaxy-k8s-sriov's configuration: the PF (`device`), `vf_num`, how the VF gets its VLAN, and the roots and
 * lock folder its tests point elsewhere.
 * @module
 */
import { validateIfName } from "../../../netops/ip.ts";
import { DEFAULT_PROC_ROOT, DEFAULT_SYSFS_ROOT, type SriovRoots } from "../../../netops/sriov.ts";
import { CniError, type Dns, ErrorCode } from "../../version.ts";
import { optionalDns } from "./conf.ts";
import { DEFAULT_LOCK_DIR } from "./sriov_state.ts";

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

/** The plugin's name, in its messages. */
export const NAME = "galaxy-k8s-sriov";

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

/** Where a configuration looks for sysfs and procfs (`/sys` and `/proc` unless a test says otherwise). */
export function roots(conf: K8sSriovConf): SriovRoots {
  return { sysfsRoot: conf.sysfsRoot, procRoot: conf.procRoot };
}

/** The node-wide lock under which VFs are chosen and records written. */
export function lockFile(conf: K8sSriovConf): string {
  return `${conf.lockDir}/lock`;
}

/** This process's network namespace (the node's), as a path `ip link set ... netns` accepts from a pod. */
export function nodeNetns(): string {
  return `/proc/${Deno.pid}/ns/net`;
}
