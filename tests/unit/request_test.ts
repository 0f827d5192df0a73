/** The CNI request read from env, shared by skel and the daemon, and the one valid-attachments parser. */
import assert from "node:assert/strict";
import { cniArg, parseValidAttachments, requestFromEnv, REQUIRED_ENV, verbOf } from "../../cni/request.ts";
import { CniError } from "../../cni/version.ts";

function throwsCni(fn: () => unknown, code: number, text: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CniError, `expected a CniError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, text);
    return true;
  });
}

const ADD_ENV = { CNI_CONTAINERID: "ctr1", CNI_NETNS: "/var/run/netns/p", CNI_IFNAME: "eth0" };

Deno.test("requestFromEnv: one table per verb; a missing variable is code 4 naming it", () => {
  assert.deepEqual(REQUIRED_ENV.DEL, ["CNI_CONTAINERID", "CNI_IFNAME"]);
  throwsCni(() => requestFromEnv("ADD", { ...ADD_ENV, CNI_NETNS: "" }), 4, /CNI_NETNS/);
  throwsCni(() => requestFromEnv("GC", {}), 4, /CNI_PATH/);
  // The daemon finds plugins by --cni-paths: its GC does not need the runtime's CNI_PATH.
  assert.equal(requestFromEnv("GC", {}, { pluginPathKnown: true }).command, "GC");
  const req = requestFromEnv("ADD", { ...ADD_ENV, CNI_ARGS: "A=1; K8S_POD_NAME =p1 ", CNI_PATH: "/a::/b" });
  assert.deepEqual(req.path, ["/a", "/b"]);
  assert.equal(cniArg(req.args, "K8S_POD_NAME"), "p1");
  assert.equal(cniArg(req.args, "B"), undefined);
});

Deno.test("requestFromEnv: CNI_IFNAME=eth#1 is refused at the edge with code 4, as ip -batch would refuse it", () => {
  throwsCni(() => requestFromEnv("ADD", { ...ADD_ENV, CNI_IFNAME: "eth#1" }), 4, /CNI_IFNAME "eth#1"/);
  throwsCni(() => requestFromEnv("DEL", { ...ADD_ENV, CNI_IFNAME: "a%b" }), 4, /CNI_IFNAME/);
  throwsCni(() => requestFromEnv("ADD", { ...ADD_ENV, CNI_CONTAINERID: "../x" }), 4, /CNI_CONTAINERID/);
});

Deno.test("verbOf: a missing or unknown CNI_COMMAND is code 4", () => {
  throwsCni(() => verbOf({}), 4, /CNI_COMMAND/);
  throwsCni(() => verbOf({ CNI_COMMAND: "FROB" }), 4, /FROB/);
  assert.equal(verbOf({ CNI_COMMAND: "VERSION" }), "VERSION");
});

Deno.test("parseValidAttachments: a missing key is an error (code 7), not 'nothing is valid'", () => {
  throwsCni(() => parseValidAttachments({ name: "n" }), 7, /cni\.dev\/valid-attachments/);
  throwsCni(() => parseValidAttachments({ "cni.dev/valid-attachments": {} }), 7, /must be a list/);
  throwsCni(
    () => parseValidAttachments({ "cni.dev/valid-attachments": [{ containerID: "c1" }] }),
    7,
    /\[0\] must have string containerID and ifname/,
  );
  assert.deepEqual(parseValidAttachments({ "cni.dev/valid-attachments": [] }), []);
  assert.deepEqual(
    parseValidAttachments({ "cni.dev/valid-attachments": [{ containerID: "c1", ifname: "eth0", x: 1 }] }),
    [{ containerID: "c1", ifname: "eth0" }],
  );
});
