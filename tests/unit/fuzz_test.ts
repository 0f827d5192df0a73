/**
 * Issue 10's fuzz test: 10 000+ generated inputs from a fixed seed over the plugin side's env and stdin
 * (`skel.handle`, in-process), the daemon's socket bodies and pod annotations (`handleCni` with a shell plugin
 * whose every effect is a file), galaxy.json, and a sample through the real socket. Each input has one known
 * fault (or none): the answer must be the CNI error object with that fault's code, or a success where the input
 * was valid; the daemon never throws; after the runtime's DEL nothing is left on disk.
 */
import assert from "node:assert/strict";
import { handle, type Plugin } from "../../cni/skel.ts";
import { CniError } from "../../cni/spec.ts";
import { encodeBase64, requestDaemon } from "../../cni/wire.ts";
import { parseGalaxyConfig } from "../../daemon/config.ts";
import { handleCni, type HandlerContext, type PodSource } from "../../daemon/handler.ts";
import { startServer } from "../../daemon/server.ts";
import { withShellHandler } from "../helpers/shell_plugin.ts";

/** mulberry32: small, fast, and the same sequence everywhere. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = rng(0x10_2026);
function pick<T>(items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}
function junk(max = 40): string {
  const alphabet = "abcXYZ019-_.:/;=%#\"'\\ \t\n{}[]\u0000é✓";
  let s = "";
  const n = Math.floor(rand() * max);
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
}
function randomJson(depth = 0): unknown {
  const r = rand();
  if (depth > 2 || r < 0.2) return pick([null, true, 0, -1, 1e308, "", junk(10)]);
  if (r < 0.5) return Array.from({ length: Math.floor(rand() * 3) }, () => randomJson(depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = 0; i < Math.floor(rand() * 4); i++) {
    o[pick(["type", "name", "cniVersion", "ipam", junk(6)])] = randomJson(depth + 1);
  }
  return o;
}

const TMP = Deno.makeTempDirSync({ prefix: "galaxy-fuzz-" });
const PLAIN_FILE = `${TMP}/plain`;
Deno.writeTextFileSync(PLAIN_FILE, "");
addEventListener("unload", () => Deno.removeSync(TMP, { recursive: true }));

const VALID_ENV = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "fuzz1",
  CNI_NETNS: "/proc/self/ns/net",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/nowhere",
};
const VALID_CONF = { cniVersion: "1.0.0", name: "fuzznet", type: "fuzzplug" };

/** One fault of the plugin-side input, with the code it must give (0: none, a success). */
const SKEL_FAULTS: [
  string,
  number,
  (env: Record<string, string>, conf: Record<string, unknown>) => string | void,
][] = [
  ["none", 0, () => {}],
  ["no CNI_COMMAND", 4, (e) => void delete e.CNI_COMMAND],
  ["bad verb", 4, (e) => void (e.CNI_COMMAND = pick(["add", "DELETE", junk(8) || "x"]))],
  ["no container ID", 4, (e) => void delete e.CNI_CONTAINERID],
  ["bad container ID", 4, (e) => void (e.CNI_CONTAINERID = pick(["-x", "a b", "a/b", "é", `${junk(5)}/`]))],
  ["long container ID", 4, (e) => void (e.CNI_CONTAINERID = "a".repeat(201 + Math.floor(rand() * 5000)))],
  [
    "bad ifname",
    4,
    (e) => void (e.CNI_IFNAME = pick(["eth0%d", "a b", "a/b", "..", "x".repeat(16), "e:1", "a#"])),
  ],
  ["relative netns", 4, (e) => void (e.CNI_NETNS = pick(["ns", "./ns", "proc/self/ns/net"]))],
  ["netns a dir", 4, (e) => void (e.CNI_NETNS = pick(["/", "/tmp", TMP]))],
  ["netns a plain file", 4, (e) => void (e.CNI_NETNS = PLAIN_FILE)],
  ["netns 5000 chars", 4, (e) => void (e.CNI_NETNS = `/${"n".repeat(5000)}`)],
  ["netns missing", 3, (e) => void (e.CNI_NETNS = `${TMP}/gone-${Math.floor(rand() * 1e6)}`)],
  ["bad CNI_ARGS", 4, (e) => void (e.CNI_ARGS = pick(["novalue", "=x", "a=1;;=2", "k"]))],
  ["stdin not JSON", 6, () => pick(["", "{", "nul", junk(20) + "{"])],
  ["stdin not an object", 6, () => JSON.stringify(pick([1, [], null, "s", true, [VALID_CONF]]))],
  ["bad version", 1, (_, c) => void (c.cniVersion = pick(["9.9.9", "1.0", "v1"]))],
  ["no type", 7, (_, c) => void delete c.type],
  ["bad name", 7, (_, c) => void (c.name = pick(["a b", "-x", "a/b"]))],
];

const fuzzPlugin: Plugin = {
  name: "fuzzplug",
  add: () => Promise.resolve({ cniVersion: "1.1.0", ips: [{ address: "198.18.0.2/24" }] }),
  del: () => Promise.resolve(),
  check: () => Promise.resolve(),
};

function assertErrorObject(text: string, code: number, what: string): void {
  let obj: { code?: unknown; msg?: unknown; cniVersion?: unknown };
  try {
    obj = JSON.parse(text);
  } catch {
    assert.fail(`${what}: not JSON: ${text.slice(0, 200)}`);
  }
  assert.equal(typeof obj.cniVersion, "string", `${what}: ${text}`);
  assert.equal(typeof obj.msg, "string", `${what}: ${text}`);
  assert.equal(obj.code, code, `${what}: ${text.slice(0, 300)}`);
  assert.doesNotMatch(
    String(obj.msg),
    /TypeError|Cannot read properties|undefined is not/,
    `${what}: ${text}`,
  );
}

Deno.test("fuzz: 5 000 plugin-side calls (env + stdin), each with one fault of known code", async () => {
  for (let i = 0; i < 5000; i++) {
    const [what, want, mutate] = pick(SKEL_FAULTS);
    const env: Record<string, string> = { ...VALID_ENV, CNI_COMMAND: pick(["ADD", "DEL", "CHECK"]) };
    const conf: Record<string, unknown> = { ...VALID_CONF };
    const stdin = mutate(env, conf) ?? JSON.stringify(conf);
    let expect = want;
    // DEL takes a netns that is gone or not a namespace as none (it must converge).
    if (env.CNI_COMMAND === "DEL" && ["netns a dir", "netns a plain file", "netns missing"].includes(what)) {
      expect = 0;
    }
    if (env.CNI_COMMAND === "DEL" && what === "no container ID") expect = 4;
    const out = await handle(fuzzPlugin, env, new TextEncoder().encode(stdin));
    const label = `#${i} ${env.CNI_COMMAND} ${what}`;
    if (expect === 0) {
      assert.equal(out.exitCode, 0, `${label}: ${out.stdout}`);
    } else {
      assert.equal(out.exitCode, 1, `${label}: ${out.stdout}`);
      assertErrorObject(out.stdout, expect, label);
    }
  }
});

Deno.test("fuzz: 2 000 galaxy.json texts either load or give an error naming galaxy.json, never a TypeError", () => {
  const base = {
    NetworkConf: [{ name: "n", type: "galaxy-veth" }],
    DefaultNetworks: ["n"],
    ENIIPNetwork: "n",
  };
  for (let i = 0; i < 2000; i++) {
    const doc: Record<string, unknown> = structuredClone(base);
    const key = pick(["NetworkConf", "DefaultNetworks", "ENIIPNetwork", junk(5)]);
    doc[key] = randomJson();
    const text = rand() < 0.1 ? JSON.stringify(doc).slice(0, Math.floor(rand() * 40)) : JSON.stringify(doc);
    try {
      parseGalaxyConfig(text, "galaxy.json");
    } catch (e) {
      // A bad galaxy.json stops the daemon at start with a message naming the file and the key.
      const ok = e instanceof CniError ||
        (e instanceof Error && !(e instanceof TypeError) && /galaxy\.json/.test(e.message));
      assert.ok(ok, `#${i} ${text.slice(0, 200)}: ${e}`);
    }
  }
});

function body(env: Record<string, string>, config: unknown): string {
  return JSON.stringify({ env, config: encodeBase64(new TextEncoder().encode(JSON.stringify(config))) });
}

async function listDir(path: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(path)) if (e.isFile) names.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names.sort();
}

Deno.test("fuzz: 3 500 socket bodies and pod annotations against the daemon's handler; nothing left after DEL", async () => {
  const annotations = new Map<string, Record<string, string>>();
  const pods: PodSource = {
    getPod: (ns, name) =>
      Promise.resolve({ metadata: { namespace: ns, name, annotations: annotations.get(name) ?? {} } }),
    setNetworkStatus: () => Promise.resolve(),
    notReadyReason: () => undefined,
  };
  await withShellHandler(
    [{ name: "net", addr: "198.18.0.9/24" }, { name: "extra", addr: "198.18.1.9/24" }],
    async (ctx: HandlerContext, dir) => {
      let valid = 0;
      for (let i = 0; i < 3500; i++) {
        const cid = `fz${i}`;
        const env: Record<string, string> = {
          CNI_COMMAND: "ADD",
          CNI_CONTAINERID: cid,
          CNI_NETNS: "/proc/self/ns/net",
          CNI_IFNAME: "eth0",
          CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${cid}`,
        };
        const r = rand();
        let text: string;
        let expect: number | "ok" | "any-error";
        if (r < 0.2) {
          text = pick(["", "null", "1", "[]", '"s"', "{", junk(30), '{"env":[]}', '{"env":{"a":1}}']);
          expect = 6;
        } else if (r < 0.4) {
          text = body(env, pick([1, [], null, "s", true]));
          expect = 6;
        } else if (r < 0.55) {
          env.CNI_ARGS = `IgnoreUnknown=1;K8S_POD_NAMESPACE=${
            pick(["..", "A", "a/b", "-x", ""])
          };K8S_POD_NAME=${pick(["..", "p/q", "P", "."])}`;
          text = body(env, { cniVersion: "1.1.0", name: "galaxy-sdn", type: "galaxy-sdn" });
          expect = 4;
        } else if (r < 0.8) {
          // A pod annotation: a networks list or galaxy args, often malformed.
          const which = rand() < 0.5 ? "k8s.v1.cni.cncf.io/networks" : "k8s.v1.cni.galaxy.io/args";
          const value = pick([
            junk(30),
            JSON.stringify(randomJson()),
            '[{"name":"nowhere"}]',
            '{"common":{"IgnoreUnknown":"0"}}',
            JSON.stringify({ common: { big: "x".repeat(20_000) } }),
            '[{"name":"extra","interface":"eth0%d"}]',
            "extra",
          ]);
          annotations.set(cid, { [which]: value });
          text = body(env, { cniVersion: "1.1.0", name: "galaxy-sdn", type: "galaxy-sdn" });
          expect = "any-error";
          if (which === "k8s.v1.cni.cncf.io/networks" && value === "extra") expect = "ok";
        } else if (r < 0.96) {
          env[pick(["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_COMMAND"])] = pick([
            junk(20),
            "",
            "x".repeat(300),
          ]);
          text = body(env, { cniVersion: "1.1.0", name: "galaxy-sdn", type: "galaxy-sdn" });
          expect = "any-error";
        } else {
          text = body(env, { cniVersion: "1.1.0", name: "galaxy-sdn", type: "galaxy-sdn" });
          expect = "ok";
        }
        const reply = await handleCni(ctx, text);
        const label = `#${i} ${text.slice(0, 160)}`;
        if (expect === "ok" || (expect === "any-error" && reply.status === 200)) {
          assert.equal(reply.status, 200, `${label}: ${reply.body}`);
          if (JSON.parse(text).env?.CNI_COMMAND === "ADD") {
            valid++;
            const del = await handleCni(ctx, body({ ...JSON.parse(text).env, CNI_COMMAND: "DEL" }, {}));
            assert.equal(del.status, 200, `${label} DEL: ${del.body}`);
          }
        } else {
          assert.notEqual(reply.status, 200, `${label}: expected an error, got success`);
          const obj = JSON.parse(reply.body);
          if (expect !== "any-error") assertErrorObject(reply.body, expect, label);
          else assertErrorObject(reply.body, obj.code, label);
          assert.ok([1, 3, 4, 6, 7, 11, 100].includes(obj.code), `${label}: code ${obj.code}`);
        }
        annotations.delete(cid);
      }
      assert.ok(valid > 100, `only ${valid} valid ADDs were generated`);
      assert.deepEqual(await listDir(`${dir}/held`), [], "a plugin effect outlived its DEL");
      assert.deepEqual(await listDir(ctx.stateDir), [], "a state file outlived its DEL");
    },
    pods,
  );
});

Deno.test("fuzz: 300 bodies through the real socket; the server stays healthy and answers each with a CNI object", async () => {
  await withShellHandler([{ name: "net" }], async (ctx, dir) => {
    const socket = `${dir}/run/galaxy.sock`;
    const server = startServer({ cni: (b) => handleCni(ctx, b), notReadyReason: () => undefined }, {
      socketPath: socket,
      maxConcurrent: 4,
    });
    try {
      for (let i = 0; i < 300; i++) {
        const valid = rand() < 0.2;
        const env = {
          CNI_COMMAND: "ADD",
          CNI_CONTAINERID: `sk${i}`,
          CNI_NETNS: "/proc/self/ns/net",
          CNI_IFNAME: "eth0",
        };
        const text = valid ? body(env, {}) : pick([
          junk(50),
          JSON.stringify(randomJson()),
          body({ ...env, CNI_IFNAME: junk(20) }, randomJson()),
        ]);
        const r = await requestDaemon(socket, "/cni", { method: "POST", body: text, timeoutMs: 10_000 });
        if (r.status === 200) {
          if (JSON.parse(text).env?.CNI_COMMAND === "ADD") {
            const del = await requestDaemon(socket, "/cni", {
              method: "POST",
              body: body({ ...env, CNI_COMMAND: "DEL" }, {}),
              timeoutMs: 10_000,
            });
            assert.equal(del.status, 200, del.body);
          }
        } else {
          assert.ok(!valid, `#${i} valid input refused: ${r.body}`);
          const obj = JSON.parse(r.body);
          assertErrorObject(r.body, obj.code, `#${i}`);
        }
      }
      assert.equal((await requestDaemon(socket, "/healthz", { timeoutMs: 5000 })).status, 200);
      assert.deepEqual(await listDir(`${dir}/held`), []);
      assert.deepEqual(await listDir(ctx.stateDir), []);
    } finally {
      await server.shutdown(2000);
      await server.finished;
    }
  });
});
