/**
 * A fake instance metadata service (Tencent's layout) for route-ENI tests, run as its own process inside a
 * lab's node namespace: `deno run -A fake_metadata.ts <tree.json> <port-file>`. `tree.json` holds
 * `{"failFirst": N, "paths": {"network/interfaces/macs": "...", ...}}`, re-read on every request: the first N
 * requests get HTTP 500 (an outage), a path it does not know gets 404, every other one its text.
 * @module
 */
const [treeFile, portFile] = Deno.args;
let served = 0;
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => Deno.writeTextFileSync(portFile, String(port)),
}, async (req) => {
  const tree = JSON.parse(await Deno.readTextFile(treeFile)) as {
    failFirst?: number;
    paths: Record<string, string>;
  };
  served++;
  if (served <= (tree.failFirst ?? 0)) return new Response("outage\n", { status: 500 });
  const path = new URL(req.url).pathname.replace(/^\/latest\/meta-data\//, "");
  const text = tree.paths[path];
  return text === undefined ? new Response("not found\n", { status: 404 }) : new Response(text);
});
Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
