/**
 * The configuration shared by the underlay plugins (galaxy-k8s-vlan; galaxy-underlay-veth reads the same keys)
 * and the uplink it names.
 * @module
 */
import { getLink, type IpvlanMode, type Link, listLinks, validateIfName } from "../../../netops/ip.ts";
import { CniError, type Dns, ErrorCode } from "../../version.ts";
import { kernelError } from "./errors.ts";

/** How galaxy-k8s-vlan connects pods (`switch`). */
export type SwitchMode = "bridge" | "pure" | "macvlan" | "ipvlan";

/** galaxy-k8s-vlan's configuration (galaxy-underlay-veth reads the same keys and uses a few). */
export interface VlanNetConf {
  /** `device`: the uplink, e.g. `eth1` or an existing VLAN device `eth1.12`. */
  device?: string;
  /** `devices`: candidates when `device` is empty; the first that exists is used. */
  devices?: string[];
  /** `switch`: `bridge` (also `""`, the default), `pure`, `macvlan`, `ipvlan`. */
  mode: SwitchMode;
  /** `ipvlan_mode`: `l2`, `l3` (default) or `l3s`. */
  ipvlanMode: IpvlanMode;
  /** `disable_default_bridge`; absent means "disabled unless an address is on VLAN 0". */
  disableDefaultBridge?: boolean;
  /** `default_bridge_name` (default `docker`): the VLAN 0 bridge in bridge mode. */
  defaultBridgeName: string;
  /** `bridge_name_prefix` (default `docker`): the bridge of VLAN n is `<prefix><n>`. */
  bridgeNamePrefix: string;
  /** `vlan_name_prefix` (default `vlan`): a created VLAN device is `<prefix><n>`. */
  vlanNamePrefix: string;
  /** `gratuitous_arp_request`: announce with ARP requests (`arping -U`) instead of replies (`-A`). */
  gratuitousArpRequest: boolean;
  /** `mtu`: of the pod interfaces; the uplink's (or master's) when absent or 0. */
  mtu?: number;
  /** `lockDir` (ours): where the node-wide lock file lives (default {@linkcode DEFAULT_LOCK_DIR}). */
  lockDir: string;
  /** `dns`, copied into the result. */
  dns?: Dns;
}

/** Where the node-wide lock file lives unless `lockDir` says otherwise. */
export const DEFAULT_LOCK_DIR = "/var/run/galaxy";

const MODES: readonly string[] = ["bridge", "pure", "macvlan", "ipvlan"];

const IPVLAN_MODES: readonly string[] = ["l2", "l3", "l3s"];

function ifNameProblem(value: string, what: string, suffixLength = 0): string | undefined {
  try {
    validateIfName(value + "0".repeat(suffixLength));
    return undefined;
  } catch (err) {
    return suffixLength
      ? `${what}: "${value}" leaves no room for a VLAN ID within 15 characters, or has a forbidden character`
      : `${what}: ${(err as Error).message}`;
  }
}

/**
 * Reads and checks the configuration by hand (no zod on a plugin's start-up path). Every problem is collected
 * and reported at once as a CniError with code 7 that names the keys.
 */
export function parseVlanConf(config: Record<string, unknown>, options: { plugin: string }): VlanNetConf {
  const problems: string[] = [];
  const str = (key: string): string | undefined => {
    const v = config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") {
      problems.push(`${key}: expected a string`);
      return undefined;
    }
    return v;
  };
  const bool = (key: string): boolean | undefined => {
    const v = config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") {
      problems.push(`${key}: expected true or false`);
      return undefined;
    }
    return v;
  };
  const conf: VlanNetConf = {
    mode: "bridge",
    ipvlanMode: "l3",
    defaultBridgeName: "docker",
    bridgeNamePrefix: "docker",
    vlanNamePrefix: "vlan",
    gratuitousArpRequest: bool("gratuitous_arp_request") ?? false,
    lockDir: DEFAULT_LOCK_DIR,
  };
  const device = str("device");
  if (device) {
    const p = ifNameProblem(device, "device");
    if (p) problems.push(p);
    else conf.device = device;
  }
  const devices = config.devices;
  if (devices !== undefined && devices !== null) {
    if (!Array.isArray(devices) || devices.some((d) => typeof d !== "string")) {
      problems.push("devices: expected a list of interface names");
    } else {
      const bad = devices.map((d, i) => d === "" ? undefined : ifNameProblem(d, `devices[${i}]`)).filter(
        Boolean,
      );
      problems.push(...bad as string[]);
      if (!bad.length) conf.devices = devices.filter((d) => d !== "");
    }
  }
  const mode = str("switch");
  if (mode) {
    if (MODES.includes(mode)) conf.mode = mode as SwitchMode;
    else problems.push(`switch: "${mode}" is not one of ${MODES.map((m) => `"${m}"`).join(", ")} (or "")`);
  }
  const ipvlanMode = str("ipvlan_mode");
  if (ipvlanMode) {
    if (IPVLAN_MODES.includes(ipvlanMode.toLowerCase())) {
      conf.ipvlanMode = ipvlanMode.toLowerCase() as IpvlanMode;
    } else problems.push(`ipvlan_mode: "${ipvlanMode}" is not one of "l2", "l3", "l3s"`);
  }
  const disable = bool("disable_default_bridge");
  if (disable !== undefined) conf.disableDefaultBridge = disable;
  const names: [string, "defaultBridgeName" | "bridgeNamePrefix" | "vlanNamePrefix", number][] = [
    ["default_bridge_name", "defaultBridgeName", 0],
    ["bridge_name_prefix", "bridgeNamePrefix", 4],
    ["vlan_name_prefix", "vlanNamePrefix", 4],
  ];
  for (const [key, field, room] of names) {
    const v = str(key);
    if (!v) continue;
    const p = ifNameProblem(v, key, room);
    if (p) problems.push(p);
    else conf[field] = v;
  }
  const mtu = config.mtu;
  if (mtu !== undefined && mtu !== null && mtu !== 0) {
    if (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
      problems.push("mtu: must be 0 or an integer from 68 to 65535");
    } else {
      conf.mtu = mtu;
    }
  }
  const lockDir = str("lockDir");
  if (lockDir) {
    if (!lockDir.startsWith("/") || lockDir.includes("\0")) {
      problems.push("lockDir: must be an absolute path");
    } else conf.lockDir = lockDir.replace(/\/+$/, "") || "/";
  }
  if (config.dns !== undefined) conf.dns = config.dns as Dns; // skel checked that it is an object
  if (problems.length) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `${options.plugin}: invalid config: ${problems.join("; ")}`,
    );
  }
  return conf;
}

/**
 * The uplink: `device`, or the first of `devices` that exists in this (the node's) namespace. Neither
 * configured, or none there, is a CniError with code 7 naming the key.
 */
export async function resolveUplink(
  conf: Pick<VlanNetConf, "device" | "devices">,
  options: { plugin: string },
): Promise<Link> {
  const { plugin } = options;
  try {
    if (conf.device) {
      const link = await getLink(null, conf.device);
      if (link) return link;
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${plugin}: config "device": interface "${conf.device}" does not exist in the node's network ` +
          "namespace",
      );
    }
    if (conf.devices?.length) {
      const links = await listLinks(null);
      for (const name of conf.devices) {
        const link = links.find((l) => l.name === name);
        if (link) return link;
      }
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `${plugin}: config "devices": none of ${
          conf.devices.join(", ")
        } exists in the node's network namespace`,
      );
    }
  } catch (err) {
    throw kernelError(err, `${plugin}: uplink`);
  }
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `${plugin}: a device is needed: set "device" or "devices" in the config`,
  );
}

/** The device VLAN devices hang off: the uplink itself, or its parent when the uplink is a VLAN device. */
export function vlanParentOf(uplink: Link): string {
  return uplink.kind === "vlan" && uplink.parent ? uplink.parent : uplink.name;
}
