/**
 * host-local with `/var/lib/cni` moved into a test's folder, so that plugins that pick host-local's default
 * data folder (the Go Galaxy's galaxy-flannel gives its delegate no `dataDir`) never write on the host. Run as
 * `relocated_host_local.ts ROOT`: the configuration on stdin gets host-local's folder
 * `<ipam.dataDir or /var/lib/cni/networks>/<name>` with `/var/lib/cni` replaced by `ROOT/var/lib/cni`, and an
 * unnamed configuration (which host-local v0.8, as the Go Galaxy shipped it, kept in `<dataDir>` itself) is
 * handed to Debian's host-local (≥ 1.0, which needs a name) as the same folder. Then Debian's host-local runs.
 * @module
 */
const root = Deno.args[0];
const DEFAULT = "/var/lib/cni/networks";
const env = Deno.env.toObject();
let stdin = "";
if (env.CNI_COMMAND !== "VERSION") {
  const conf = JSON.parse(await new Response(Deno.stdin.readable).text());
  const ipam = conf.ipam ?? {};
  let dir: string = (ipam.dataDir || DEFAULT).replace(/\/+$/, "");
  if (dir === "/var/lib/cni" || dir.startsWith("/var/lib/cni/")) dir = `${root}${dir}`;
  if (!conf.name) {
    conf.name = dir.slice(dir.lastIndexOf("/") + 1);
    dir = dir.slice(0, dir.lastIndexOf("/"));
  }
  conf.ipam = { ...ipam, dataDir: dir };
  stdin = JSON.stringify(conf);
}
const child = new Deno.Command("/usr/lib/cni/host-local", {
  stdin: "piped",
  stdout: "inherit",
  stderr: "inherit",
})
  .spawn();
const writer = child.stdin.getWriter();
await writer.write(new TextEncoder().encode(stdin));
await writer.close();
Deno.exit((await child.status).code);
