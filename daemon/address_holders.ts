/**
 * The refusal of an `ipinfos` address that another attachment on this node holds. `ipinfos` comes from the
 * pod's own `k8s.v1.cni.galaxy.io/args` annotation, which anyone who may create a pod may set: taken as given,
 * another pod's address was taken over (its host route replaced, then removed by the attacker's DEL). Every
 * container's state file records its addresses (the results) and, while its ADD runs, its `ipinfos`, so an
 * address held elsewhere is refused before anything is created, naming the pod that holds it.
 * @module
 */
import { cniArg } from "../cni/request.ts";
import { CniError, ErrorCode } from "../cni/spec.ts";
import type { NetConfList } from "../cni/spec.ts";
import { OVERLAY_PLUGIN_TYPES } from "../cni/plugins/kit/ipam.ts";
import { listStates, readState, type StoredNetwork } from "./state.ts";

/** The addresses (without prefix) of an `ipinfos` value; malformed entries are left to the plugin's check. */
function ipinfosAddresses(text: string | undefined): string[] {
  if (!text) return [];
  try {
    const parsed = JSON.parse(text);
    if (!Array.isArray(parsed)) return [];
    return parsed.flatMap((e) => typeof e?.ip === "string" ? [e.ip.split("/")[0]] : []);
  } catch {
    return [];
  }
}

/** The addresses a stored attachment holds: those of its result, and its `ipinfos` while its ADD runs. */
function heldAddresses(stored: StoredNetwork): string[] {
  const fromResult = (stored.Result?.ips ?? []).map((ip) => ip.address.split("/")[0]);
  return [...fromResult, ...ipinfosAddresses(stored.Args?.ipinfos)];
}

/** One network an ADD is about to attach. */
export interface PlannedNetwork {
  /** The network name. */
  name: string;
  /** Its configuration list. */
  list: NetConfList;
  /** Its CNI_ARGS. */
  args: [string, string][];
}

/**
 * Throws code 7 when an `ipinfos` address of `planned` (for a network whose plugins honour `ipinfos`) is held by
 * an attachment of another container in `stateDir`, naming the pod (or container) that holds it.
 */
export async function refuseHeldAddresses(
  stateDir: string,
  containerId: string,
  planned: PlannedNetwork[],
): Promise<void> {
  const wanted = new Map<string, string>();
  for (const net of planned) {
    if (net.list.plugins.every((p) => OVERLAY_PLUGIN_TYPES.includes(p.type))) continue;
    for (const ip of ipinfosAddresses(cniArg(net.args, "ipinfos"))) wanted.set(ip, net.name);
  }
  if (wanted.size === 0) return;
  for (const { containerId: other } of await listStates(stateDir)) {
    if (other === containerId) continue;
    const networks = await readState(stateDir, other).catch(() => undefined) ?? [];
    for (const stored of networks) {
      for (const ip of heldAddresses(stored)) {
        const network = wanted.get(ip);
        if (network === undefined) continue;
        const args = stored.Runtime?.args ?? {};
        const holder = args.K8S_POD_NAMESPACE && args.K8S_POD_NAME
          ? `pod ${args.K8S_POD_NAMESPACE}/${args.K8S_POD_NAME} (container ${other})`
          : `container ${other}`;
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `network "${network}": ipinfos address ${ip} is held by ${holder} on this node ` +
            `(network "${stored.NetworkType}"); refused`,
        );
      }
    }
  }
}
