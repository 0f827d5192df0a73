/**
 * `galaxy install [--uninstall]`: puts Galaxy on a node. It copies the running executable into the bin dir
 * (atomically), links every plugin name to it, links `galaxy-sdn` into the runtime's CNI bin dir, writes
 * `00-galaxy.conflist` (removing the `00-galaxy.conf` of an earlier install or of the Go Galaxy) and, when
 * absent, an example galaxy.json. Run from source, it writes the development launchers instead of a copy.
 * Every step is idempotent, and `--uninstall` removes exactly what install made.
 * @module
 */
import { parseArgs } from "node:util";
import { writeFileAtomic } from "../netops/fs_atomic.ts";
import { DEFAULT_SOCKET_PATH } from "../cni/wire.ts";
import { EXECUTABLE_NAMES, LAUNCHER_HEADER, writeLaunchers } from "./launchers.ts";

/** Where install puts things. */
export interface InstallOptions {
  /** Galaxy's own bin dir, holding `galaxy` and a link per plugin name. */
  binDir: string;
  /** The container runtime's CNI bin dir, which gets `galaxy-sdn`. */
  cniBinDir: string;
  /** The runtime's CNI config dir, which gets `00-galaxy.conflist`. */
  cniConfDir: string;
  /** galaxy.json, written from the example only when absent. */
  config: string;
  /** The daemon socket written into `00-galaxy.conflist` when not the default. */
  socketPath: string;
}

/** The defaults, Galaxy's paths. */
export const INSTALL_DEFAULTS: InstallOptions = {
  binDir: "/opt/cni/galaxy/bin",
  cniBinDir: "/opt/cni/bin",
  cniConfDir: "/etc/cni/net.d",
  config: "/etc/galaxy/galaxy.json",
  socketPath: DEFAULT_SOCKET_PATH,
};

/** The CNI config file name; "00-" sorts it first, so runtimes pick it as the pod network. */
export const CNI_CONF_NAME = "00-galaxy.conflist";
/** The single-configuration file earlier installs (and the Go Galaxy) wrote; install removes it. */
export const OLD_CNI_CONF_NAME = "00-galaxy.conf";

/**
 * The content of `00-galaxy.conflist`: `cniVersion` 1.0.0 for runtimes on libcni < 1.2 (containerd 1.6 cannot
 * parse 1.1.0 results), and `cniVersions` ["1.0.0", "1.1.0"], from which libcni ≥ 1.2 picks 1.1.0.
 */
export function cniConfText(socketPath: string): string {
  const plugin: Record<string, unknown> = { type: "galaxy-sdn", capabilities: { portMappings: true } };
  if (socketPath !== DEFAULT_SOCKET_PATH) plugin.socketPath = socketPath;
  const list = {
    cniVersion: "1.0.0",
    cniVersions: ["1.0.0", "1.1.0"],
    name: "galaxy-sdn",
    plugins: [plugin],
  };
  return JSON.stringify(list, null, 2) + "\n";
}

/**
 * True when `text` is a `00-galaxy.conf` that Galaxy wrote: a single configuration of type and name
 * `galaxy-sdn` (ours of any version, or the Go Galaxy's). Left beside the conflist it would sort first and win.
 */
export function isOldGalaxyConf(text: string | undefined): boolean {
  if (text === undefined) return false;
  try {
    const conf = JSON.parse(text);
    return conf?.type === "galaxy-sdn" && conf?.name === "galaxy-sdn" && conf?.plugins === undefined;
  } catch {
    return false;
  }
}

/** The example galaxy.json; JSON has no comments, so the explanation lives in an ignored `_comment` key. */
export const EXAMPLE_GALAXY_JSON = JSON.stringify(
  {
    _comment: [
      "Galaxy's network configuration. NetworkConf lists the networks a pod can ask for (name defaults to type);",
      "DefaultNetworks are used when a pod has no k8s.v1.cni.cncf.io/networks annotation; ENIIPNetwork is used",
      "for pods that request the tke.cloud.tencent.com/eni-ip resource. Unknown keys (like this one) are ignored.",
    ],
    NetworkConf: [
      {
        name: "galaxy-flannel",
        type: "galaxy-flannel",
        delegate: { type: "galaxy-veth" },
        subnetFile: "/run/flannel/subnet.env",
      },
      { name: "galaxy-k8s-vlan", type: "galaxy-underlay-veth", device: "eth0" },
    ],
    DefaultNetworks: ["galaxy-flannel"],
    ENIIPNetwork: "galaxy-k8s-vlan",
  },
  null,
  2,
) + "\n";

/** True when this process runs from a `deno compile` executable rather than from source. */
export function isCompiled(): boolean {
  return import.meta.url.includes("/deno-compile-");
}

async function readTextOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function readLinkOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await Deno.readLink(path);
  } catch {
    return undefined;
  }
}

/** Makes `path` a symlink to `target`, replacing anything else there atomically; no change when already so. */
async function ensureSymlink(target: string, path: string, changes: string[]): Promise<void> {
  if (await readLinkOrUndefined(path) === target) return;
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.remove(tmp).catch(() => {});
  await Deno.symlink(target, tmp);
  await Deno.rename(tmp, path);
  changes.push(`link ${path} -> ${target}`);
}

async function filesEqual(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
    if (x.length !== y.length) return false;
    // The executable is ~100 MB: compare 8 bytes at a time (a per-byte callback takes seconds).
    const words = Math.floor(x.length / 8);
    const [wx, wy] = [
      new BigUint64Array(x.buffer, x.byteOffset, words),
      new BigUint64Array(y.buffer, y.byteOffset, words),
    ];
    for (let i = 0; i < words; i++) if (wx[i] !== wy[i]) return false;
    for (let i = words * 8; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  } catch {
    return false;
  }
}

/** The first bytes of a file as text (enough to tell a launcher), or `undefined` when it cannot be read. */
async function readHead(path: string): Promise<string | undefined> {
  try {
    using file = await Deno.open(path);
    const buf = new Uint8Array(LAUNCHER_HEADER.length);
    const n = await file.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } catch {
    return undefined;
  }
}

/** Installs; returns one line per change made (empty when everything was already in place). */
export async function install(options: InstallOptions): Promise<string[]> {
  const changes: string[] = [];
  await Deno.mkdir(options.binDir, { recursive: true, mode: 0o755 });
  const galaxy = `${options.binDir}/galaxy`;
  if (isCompiled()) {
    const self = Deno.execPath();
    if (!(await filesEqual(self, galaxy))) {
      const tmp = `${galaxy}.tmp-${Deno.pid}`;
      await Deno.copyFile(self, tmp);
      await Deno.chmod(tmp, 0o755);
      await Deno.rename(tmp, galaxy);
      changes.push(`copy ${self} -> ${galaxy}`);
    }
    for (const name of EXECUTABLE_NAMES.filter((n) => n !== "galaxy")) {
      await ensureSymlink("galaxy", `${options.binDir}/${name}`, changes);
    }
  } else {
    const before = await Promise.all(
      EXECUTABLE_NAMES.map((n) => readTextOrUndefined(`${options.binDir}/${n}`)),
    );
    await writeLaunchers(options.binDir);
    const after = await Promise.all(
      EXECUTABLE_NAMES.map((n) => readTextOrUndefined(`${options.binDir}/${n}`)),
    );
    EXECUTABLE_NAMES.forEach((n, i) => {
      if (before[i] !== after[i]) changes.push(`launcher ${options.binDir}/${n}`);
    });
  }
  await Deno.mkdir(options.cniBinDir, { recursive: true, mode: 0o755 });
  await ensureSymlink(`${options.binDir}/galaxy-sdn`, `${options.cniBinDir}/galaxy-sdn`, changes);

  const confPath = `${options.cniConfDir}/${CNI_CONF_NAME}`;
  const conf = cniConfText(options.socketPath);
  if (await readTextOrUndefined(confPath) !== conf) {
    await Deno.mkdir(options.cniConfDir, { recursive: true, mode: 0o755 });
    await writeFileAtomic(confPath, conf, { mode: 0o644, dirMode: 0o755 });
    changes.push(`write ${confPath}`);
  }
  const oldPath = `${options.cniConfDir}/${OLD_CNI_CONF_NAME}`;
  await removeIf(oldPath, isOldGalaxyConf(await readTextOrUndefined(oldPath)), changes);
  if (await readTextOrUndefined(options.config) === undefined) {
    await writeFileAtomic(options.config, EXAMPLE_GALAXY_JSON, { mode: 0o644, dirMode: 0o755 });
    changes.push(`write ${options.config} (example)`);
  }
  return changes;
}

async function removeIf(path: string, condition: boolean, changes: string[]): Promise<void> {
  if (!condition) return;
  await Deno.remove(path);
  changes.push(`remove ${path}`);
}

/**
 * Removes what {@linkcode install} made and nothing else: files changed since are left alone, and the bin and
 * config folders are removed only when empty.
 */
export async function uninstall(options: InstallOptions): Promise<string[]> {
  const changes: string[] = [];
  const sdn = `${options.cniBinDir}/galaxy-sdn`;
  await removeIf(sdn, await readLinkOrUndefined(sdn) === `${options.binDir}/galaxy-sdn`, changes);
  const confPath = `${options.cniConfDir}/${CNI_CONF_NAME}`;
  await removeIf(confPath, await readTextOrUndefined(confPath) === cniConfText(options.socketPath), changes);
  await removeIf(options.config, await readTextOrUndefined(options.config) === EXAMPLE_GALAXY_JSON, changes);
  for (const name of EXECUTABLE_NAMES) {
    const path = `${options.binDir}/${name}`;
    const link = await readLinkOrUndefined(path);
    const text = link === undefined ? await readHead(path) : undefined;
    const ours = link === "galaxy" ||
      (text?.startsWith(LAUNCHER_HEADER) ?? false);
    const compiledCopy = name === "galaxy" && link === undefined && text !== undefined && isCompiled() &&
      await filesEqual(Deno.execPath(), path);
    await removeIf(path, ours || compiledCopy, changes);
  }
  // Folders install may have made go too, but only when nothing else is left in them.
  for (const dir of [options.binDir, options.config.slice(0, options.config.lastIndexOf("/"))]) {
    if (dir && await isEmptyDir(dir)) {
      await Deno.remove(dir);
      changes.push(`remove ${dir}/`);
    }
  }
  return changes;
}

async function isEmptyDir(path: string): Promise<boolean> {
  try {
    for await (const _ of Deno.readDir(path)) return false;
    return true;
  } catch {
    return false;
  }
}

/** `galaxy install [flags]`. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        "bin-dir": { type: "string", default: INSTALL_DEFAULTS.binDir },
        "cni-bin-dir": { type: "string", default: INSTALL_DEFAULTS.cniBinDir },
        "cni-conf-dir": { type: "string", default: INSTALL_DEFAULTS.cniConfDir },
        "config": { type: "string", default: INSTALL_DEFAULTS.config },
        "socket-path": { type: "string", default: INSTALL_DEFAULTS.socketPath },
        "uninstall": { type: "boolean", default: false },
        "help": { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (e) {
    console.error(`galaxy install: ${(e as Error).message}`);
    console.error(installUsage());
    return 2;
  }
  if (values.help) {
    console.log(installUsage());
    return 0;
  }
  const options: InstallOptions = {
    binDir: values["bin-dir"],
    cniBinDir: values["cni-bin-dir"],
    cniConfDir: values["cni-conf-dir"],
    config: values.config,
    socketPath: values["socket-path"],
  };
  try {
    const changes = values.uninstall ? await uninstall(options) : await install(options);
    for (const line of changes) console.log(line);
    if (changes.length === 0) console.log(values.uninstall ? "nothing to remove" : "already installed");
    return 0;
  } catch (e) {
    console.error(`galaxy install: ${(e as Error).message}`);
    return 1;
  }
}

/** Usage text of `galaxy install`. */
export function installUsage(): string {
  return `Usage: galaxy install [--uninstall] [flags]

  --bin-dir DIR        Galaxy's executable and plugin links (default ${INSTALL_DEFAULTS.binDir})
  --cni-bin-dir DIR    the runtime's CNI plugin dir; gets galaxy-sdn (default ${INSTALL_DEFAULTS.cniBinDir})
  --cni-conf-dir DIR   the runtime's CNI config dir; gets ${CNI_CONF_NAME} (default ${INSTALL_DEFAULTS.cniConfDir})
  --config FILE        galaxy.json, written from an example only when absent (default ${INSTALL_DEFAULTS.config})
  --socket-path PATH   the daemon socket galaxy-sdn talks to (default ${INSTALL_DEFAULTS.socketPath})
  --uninstall          remove what install made (files changed since are kept)`;
}
