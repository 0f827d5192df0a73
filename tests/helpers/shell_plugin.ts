/**
 * A fast fake plugin in sh (no Deno start per call) whose every effect is a file, and a daemon handler context
 * over it: ADD makes `<held>/<containerID>-<ifname>` and answers with the network's `addr`, DEL removes the file,
 * so "nothing is left after DEL" can be read back from disk.
 * @module
 */
import { parseGalaxyConfig } from "../../daemon/config.ts";
import type { HandlerContext, PodSource } from "../../daemon/handler.ts";

/** A fast fake plugin (sh, no Deno start): every effect is a file, so "nothing left" can be read back. */
export async function writeShellPlugin(bin: string, held: string): Promise<void> {
  await Deno.mkdir(bin, { recursive: true });
  await Deno.mkdir(held, { recursive: true });
  await Deno.writeTextFile(
    `${bin}/shplug`,
    `#!/bin/sh
conf=$(cat)
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}' ;;
ADD) : > '${held}'/"$CNI_CONTAINERID-$CNI_IFNAME"
  addr=$(printf '%s' "$conf" | sed -n 's/.*"addr":"\\([^"]*\\)".*/\\1/p')
  printf '{"cniVersion":"1.1.0","ips":[{"address":"%s"}]}\\n' "\${addr:-198.18.9.9/24}" ;;
DEL) rm -f '${held}'/"$CNI_CONTAINERID-$CNI_IFNAME" ;;
esac
`,
    { mode: 0o755 },
  );
}

/** A handler context over the shell plugin, in a temp folder. */
export async function withShellHandler(
  networks: { name: string; type?: string; addr?: string }[],
  fn: (ctx: HandlerContext, dir: string) => Promise<void>,
  pods?: PodSource,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "galaxy-faults-" });
  try {
    await writeShellPlugin(`${dir}/bin`, `${dir}/held`);
    const galaxyJson = {
      NetworkConf: networks.map((n) => ({
        name: n.name,
        type: n.type ?? "shplug",
        addr: n.addr,
        cniVersion: "1.1.0",
      })),
      DefaultNetworks: [networks[0].name],
    };
    const ctx: HandlerContext = {
      config: parseGalaxyConfig(JSON.stringify(galaxyJson), "galaxy.json"),
      confDir: `${dir}/net.d`,
      cniPaths: [`${dir}/bin`],
      stateDir: `${dir}/state`,
      pods,
      log: { info: () => {}, warn: () => {}, v: () => {} },
      pluginEnv: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      pluginTimeoutMs: 10_000,
    };
    await fn(ctx, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
