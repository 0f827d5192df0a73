/**
 * `/etc/galaxy/galaxy.json`: the networks Galaxy itself knows (`NetworkConf`), the networks a pod gets when it
 * asks for none (`DefaultNetworks`) and the network for pods that request an ENI IP (`ENIIPNetwork`).
 *
 * Top-level keys match case-insensitively, as Go's `encoding/json` matches struct fields; unknown top-level
 * keys are ignored. The file is read once, at startup; every problem in it is a startup error naming the file
 * and the culprit.
 * @module
 */

/**
 * One network of galaxy.json: its plugin `type`, its `name` and the plugin's own fields, exactly as written. A
 * network without `name` is known by its `type` but stays unnamed for its plugins, as the Go daemon passed it:
 * nothing a plugin sees changes at the switch.
 */
export type GalaxyNetwork = Record<string, unknown> & { type: string; name?: string };

/** The parsed galaxy.json. */
export interface GalaxyConfig {
  /** `NetworkConf`, by network name (else type), in file order. Entries are frozen: clone before changing one. */
  networks: Map<string, GalaxyNetwork>;
  /** `DefaultNetworks`: the networks of a pod without a networks annotation. */
  defaultNetworks: string[];
  /** `ENIIPNetwork`: the network of a pod that requests an ENI IP; empty when unset. */
  eniIpNetwork: string;
}

/** The plugin type of the CNI shim; a network of this type would call the daemon from within itself. */
const SHIM_TYPE = "galaxy-sdn";

/**
 * Go's `encoding/json` key folding, good for comparing with ASCII field names: case-insensitive, where the
 * Kelvin sign and the long s also fold to `k` and `s` (Unicode simple folding, as `bytes.EqualFold`).
 */
export function goKeyFold(key: string): string {
  return key.toLowerCase().replace(/\u017f/g, "s");
}

/**
 * The value of the last key of `obj` that matches `field` case-insensitively, as Go's decoder would leave it
 * (each matching key overwrites the previous one), or `undefined` when no key matches.
 */
export function goField(obj: Record<string, unknown>, field: string): unknown {
  const want = goKeyFold(field);
  let value: unknown;
  for (const [k, v] of Object.entries(obj)) {
    if (goKeyFold(k) === want) value = v;
  }
  return value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function describeEntry(index: number, entry: unknown): string {
  const name = isPlainObject(entry) ? entry.name : undefined;
  const type = isPlainObject(entry) ? entry.type : undefined;
  if (typeof name === "string") return `NetworkConf[${index}] (name "${name}")`;
  if (name !== undefined) return `NetworkConf[${index}] (name ${JSON.stringify(name) ?? String(name)})`;
  if (typeof type === "string") return `NetworkConf[${index}] (type "${type}")`;
  return `NetworkConf[${index}]`;
}

function parseNetworks(raw: unknown, source: string): Map<string, GalaxyNetwork> {
  const networks = new Map<string, GalaxyNetwork>();
  const indexOf = new Map<string, number>();
  if (raw === undefined || raw === null) return networks;
  if (!Array.isArray(raw)) throw new Error(`${source}: NetworkConf must be an array of network objects`);
  raw.forEach((entry: unknown, index: number) => {
    const what = `${source}: ${describeEntry(index, entry)}`;
    if (!isPlainObject(entry)) throw new Error(`${what}: must be an object, got ${JSON.stringify(entry)}`);
    const { type, name } = entry;
    if (type === undefined) throw new Error(`${what}: "type" is missing`);
    if (typeof type !== "string" || type === "") {
      throw new Error(`${what}: "type" must be a non-empty string, got ${JSON.stringify(type)}`);
    }
    if (type === SHIM_TYPE) {
      throw new Error(
        `${what}: type "${SHIM_TYPE}" is Galaxy's own shim; it would call the daemon from itself`,
      );
    }
    if (name !== undefined && (typeof name !== "string" || name === "")) {
      throw new Error(`${what}: "name" must be a non-empty string, got ${JSON.stringify(name)}`);
    }
    const key = name ?? type;
    const earlier = indexOf.get(key);
    if (earlier !== undefined) {
      throw new Error(
        `${what}: duplicate network name "${key}" (also NetworkConf[${earlier}]${
          name === undefined ? "; a network without a name is named after its type" : ""
        })`,
      );
    }
    indexOf.set(key, index);
    const network = { ...entry } as GalaxyNetwork;
    networks.set(key, deepFreeze(network));
  });
  return networks;
}

function parseDefaultNetworks(raw: unknown, source: string): string[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new Error(`${source}: DefaultNetworks must be an array of network names`);
  return raw.map((v: unknown, i: number) => {
    if (typeof v !== "string") {
      throw new Error(`${source}: DefaultNetworks[${i}] must be a string, got ${JSON.stringify(v)}`);
    }
    return v;
  });
}

/** Parses the text of galaxy.json; `source` (the file name) starts every error message. */
export function parseGalaxyConfig(text: string, source: string): GalaxyConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: invalid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(doc)) throw new Error(`${source}: must hold a JSON object, got ${JSON.stringify(doc)}`);
  const networks = parseNetworks(goField(doc, "NetworkConf"), source);
  const defaultNetworks = parseDefaultNetworks(goField(doc, "DefaultNetworks"), source);
  const eni = goField(doc, "ENIIPNetwork");
  if (eni !== undefined && eni !== null && typeof eni !== "string") {
    throw new Error(`${source}: ENIIPNetwork must be a string, got ${JSON.stringify(eni)}`);
  }
  return { networks, defaultNetworks, eniIpNetwork: eni ?? "" };
}

/** Reads and parses galaxy.json at `path`; any problem is an Error naming the file. */
export async function loadGalaxyConfig(path: string): Promise<GalaxyConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`${path}: cannot read galaxy config: ${(e as Error).message}`);
  }
  return parseGalaxyConfig(text, path);
}

/**
 * A start-up warning for each galaxy.json network without a name: its plugins get none, as the Go daemon passed
 * it. Galaxy's built-ins (and host-local, through them) take that; a third-party plugin on CNI ≥ 0.8's skel
 * refuses it ("missing network name").
 */
export function unnamedNetworkWarnings(config: GalaxyConfig): string[] {
  return [...config.networks].filter(([, n]) => n.name === undefined).map(([key, n]) =>
    `galaxy.json network "${key}" has no name: its plugins get none, as the Go Galaxy passed it; Galaxy's ` +
    `built-ins accept that, a third-party plugin (${n.type}?) on CNI >= 0.8 refuses it ("missing network ` +
    `name"): give the network a name if its plugin needs one`
  );
}
