/**
 * Writes the DaemonSet image as one archive, for `deploy/image/build.sh`:
 *
 *   deno run -A tools/oci_archive.ts --rootfs ROOTFS.tar.gz --binary dist/galaxy --name galaxy:0.1.0 --output OUT.tar
 *
 * The archive is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) that also carries Docker's
 * `manifest.json` over the same blobs, as `docker save` writes since Docker 25: `ctr images import`, `podman load`
 * and `docker load` all take it and name the image from it. Two gzip layers: the root filesystem as given, and
 * one with the executable at `/opt/cni/galaxy/bin/galaxy`, a link per plugin name beside it, and the same file
 * hard-linked at `/usr/bin/galaxy`. Layers are made with GNU tar (sorted names, fixed times and owners) and
 * `gzip -n`, so the same inputs give the same digests.
 * @module
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { EXECUTABLE_NAMES } from "../cli/launchers.ts";

/** A blob of the archive. */
export interface Blob {
  /** `sha256:<hex>`. */
  digest: string;
  /** Bytes. */
  size: number;
}

/** The image configuration (OCI image-spec `config`), with what the DaemonSet needs and nothing else. */
export function imageConfig(diffIds: string[], created: string): Record<string, unknown> {
  return {
    architecture: "amd64",
    os: "linux",
    created,
    config: {
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      Entrypoint: ["/usr/bin/galaxy"],
      Cmd: ["serve"],
      WorkingDir: "/",
    },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: [
      { created, created_by: "deploy/image/build.sh: Debian root filesystem (mmdebstrap)" },
      { created, created_by: "deploy/image/build.sh: galaxy" },
    ],
  };
}

/** `name:tag` as containerd and podman store it (`galaxy:0.1.0` is `docker.io/library/galaxy:0.1.0`). */
export function fullImageName(name: string): string {
  const withTag = /:[^/]+$/.test(name) ? name : `${name}:latest`;
  const first = withTag.split("/")[0];
  if (!withTag.includes("/")) return `docker.io/library/${withTag}`;
  if (first.includes(".") || first.includes(":") || first === "localhost") return withTag;
  return `docker.io/${withTag}`;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  // The readable stream closes the file when it ends.
  for await (const chunk of (await Deno.open(path)).readable) hash.update(chunk);
  return hash.digest("hex");
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!r.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr).trim()}`);
  return new TextDecoder().decode(r.stdout);
}

/** The sha256 of a gzip file's content (the layer's diff ID). */
async function gunzippedSha256(path: string): Promise<string> {
  const out = await sh("bash", ["-c", 'gzip -dc "$1" | sha256sum', "-", path]);
  return `sha256:${out.split(" ")[0]}`;
}

/** Makes the galaxy layer (a gzip tar) from the executable, in `work`. */
export async function galaxyLayer(binary: string, work: string, mtime: number): Promise<string> {
  const root = `${work}/galaxy-layer`;
  await Deno.mkdir(`${root}/opt/cni/galaxy/bin`, { recursive: true });
  await Deno.mkdir(`${root}/usr/bin`, { recursive: true });
  await Deno.copyFile(binary, `${root}/opt/cni/galaxy/bin/galaxy`);
  await Deno.chmod(`${root}/opt/cni/galaxy/bin/galaxy`, 0o755);
  await Deno.link(`${root}/opt/cni/galaxy/bin/galaxy`, `${root}/usr/bin/galaxy`);
  for (const name of EXECUTABLE_NAMES.filter((n) => n !== "galaxy")) {
    await Deno.symlink("galaxy", `${root}/opt/cni/galaxy/bin/${name}`);
  }
  const tar = `${work}/galaxy-layer.tar.gz`;
  await sh("bash", [
    "-c",
    'tar --create --sort=name --mtime="@$3" --owner=0 --group=0 --numeric-owner --format=posix ' +
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$1" opt usr | gzip -n -6 > "$2"',
    "-",
    root,
    tar,
    String(mtime),
  ]);
  return tar;
}

/** Moves `path` into `blobs/sha256/` of the layout at `dir` and returns its digest and size. */
async function addBlob(dir: string, path: string): Promise<Blob> {
  const hex = await sha256File(path);
  await Deno.mkdir(`${dir}/blobs/sha256`, { recursive: true });
  await Deno.rename(path, `${dir}/blobs/sha256/${hex}`);
  return { digest: `sha256:${hex}`, size: (await Deno.stat(`${dir}/blobs/sha256/${hex}`)).size };
}

async function addJsonBlob(dir: string, value: unknown): Promise<Blob> {
  const path = `${dir}/tmp.json`;
  await Deno.writeTextFile(path, JSON.stringify(value));
  return await addBlob(dir, path);
}

/** Writes the archive; returns its size in bytes and the manifest digest. */
export async function writeArchive(
  options: { rootfs: string; binary: string; name: string; output: string; mtime: number },
): Promise<{ size: number; manifest: string }> {
  const work = await Deno.makeTempDir({ prefix: "galaxy-image-" });
  try {
    const layout = `${work}/layout`;
    await Deno.mkdir(layout);
    const galaxyTar = await galaxyLayer(options.binary, work, options.mtime);
    const diffIds = [await gunzippedSha256(options.rootfs), await gunzippedSha256(galaxyTar)];
    await Deno.copyFile(options.rootfs, `${work}/rootfs.tar.gz`);
    const layers = [await addBlob(layout, `${work}/rootfs.tar.gz`), await addBlob(layout, galaxyTar)];
    const created = new Date(options.mtime * 1000).toISOString();
    const config = await addJsonBlob(layout, imageConfig(diffIds, created));
    const manifest = await addJsonBlob(layout, {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...l })),
    });
    const full = fullImageName(options.name);
    await Deno.writeTextFile(`${layout}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await Deno.writeTextFile(
      `${layout}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: {
            "io.containerd.image.name": full,
            "org.opencontainers.image.ref.name": full.slice(full.lastIndexOf(":") + 1),
          },
        }],
      }),
    );
    const hex = (b: Blob) => `blobs/sha256/${b.digest.slice(7)}`;
    await Deno.writeTextFile(
      `${layout}/manifest.json`,
      JSON.stringify([{ Config: hex(config), RepoTags: [full], Layers: layers.map(hex) }]),
    );
    const tmpOut = `${options.output}.tmp-${Deno.pid}`;
    await sh("bash", [
      "-c",
      'tar --create --sort=name --mtime="@$3" --owner=0 --group=0 --numeric-owner -f "$2" -C "$1" ' +
      "oci-layout index.json manifest.json blobs",
      "-",
      layout,
      tmpOut,
      String(options.mtime),
    ]);
    await Deno.rename(tmpOut, options.output);
    return { size: (await Deno.stat(options.output)).size, manifest: manifest.digest };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: {
      rootfs: { type: "string" },
      binary: { type: "string" },
      name: { type: "string", default: "galaxy:0.1.0" },
      output: { type: "string" },
    },
  });
  if (!values.rootfs || !values.binary || !values.output) {
    console.error(
      "usage: oci_archive.ts --rootfs ROOTFS.tar.gz --binary GALAXY --name NAME:TAG --output OUT.tar",
    );
    Deno.exit(2);
  }
  const mtime = Number(Deno.env.get("SOURCE_DATE_EPOCH") ?? 0);
  const { rootfs, binary, name, output } = values;
  const r = await writeArchive({ rootfs, binary, name, output, mtime });
  console.log(
    `${values.output}: ${fullImageName(values.name)}, ${
      (r.size / 1e6).toFixed(1)
    } MB, manifest ${r.manifest}`,
  );
}
