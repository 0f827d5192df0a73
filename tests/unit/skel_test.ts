import assert from "node:assert/strict";
import { handle, type Plugin, type PluginOutput, type PluginRequest } from "../../cni/skel.ts";
import { CniError, type CniVersion, type Result } from "../../cni/spec.ts";

const PLUGIN_RESULT: Result = {
  cniVersion: "1.1.0",
  interfaces: [{ name: "eth0", mac: "0a:58:0a:00:00:05", sandbox: "/var/run/netns/ctr1", mtu: 1450 }],
  ips: [
    { address: "10.0.0.5/24", gateway: "10.0.0.1", interface: 0 },
    { address: "fd00::5/64", gateway: "fd00::1", interface: 0 },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "::/0", gw: "fd00::1", priority: 10 }],
  dns: { nameservers: ["10.96.0.10"] },
};

interface FakeOptions {
  supportedVersions?: readonly CniVersion[];
  result?: Result;
  fail?: unknown;
}

function fakePlugin(opts: FakeOptions = {}): { plugin: Plugin; calls: PluginRequest[] } {
  const calls: PluginRequest[] = [];
  const answer = <T>(req: PluginRequest, value: T): Promise<T> => {
    calls.push(req);
    return opts.fail === undefined ? Promise.resolve(value) : Promise.reject(opts.fail);
  };
  const plugin: Plugin = {
    name: "fake",
    supportedVersions: opts.supportedVersions,
    add: (req) => answer(req, structuredClone(opts.result ?? PLUGIN_RESULT)),
    del: (req) => answer(req, undefined),
    check: (req) => answer(req, undefined),
    status: (req) => answer(req, undefined),
    gc: (req) => answer(req, undefined),
  };
  return { plugin, calls };
}

const ENV: Record<string, string> = {
  CNI_CONTAINERID: "ctr1",
  CNI_NETNS: "/var/run/netns/ctr1",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
};

function envFor(command: string, overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string | undefined> = { ...ENV, CNI_COMMAND: command, ...overrides };
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

function conf(cniVersion: string | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...(cniVersion === undefined ? {} : { cniVersion }), name: "galaxy-net", type: "fake", ...extra };
}

function encode(value: unknown): Uint8Array {
  return new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
}

function run(plugin: Plugin, env: Record<string, string>, stdin: unknown): Promise<PluginOutput> {
  return handle(plugin, env, encode(stdin));
}

function expectError(out: PluginOutput, code: number, text?: RegExp): Record<string, unknown> {
  assert.equal(out.exitCode, 1, out.stdout);
  const err = JSON.parse(out.stdout);
  assert.equal(err.code, code, out.stdout);
  assert.equal(typeof err.msg, "string");
  if (text) assert.match(err.msg, text);
  return err;
}

function expectSuccess(out: PluginOutput): unknown {
  assert.equal(out.exitCode, 0, out.stdout);
  return out.stdout === "" ? undefined : JSON.parse(out.stdout);
}

// ---------------------------------------------------------------------------------------------------------

Deno.test("VERSION answers all seven versions", async () => {
  const { plugin, calls } = fakePlugin();
  const out = await handle(plugin, { CNI_COMMAND: "VERSION" }, new Uint8Array());
  assert.deepStrictEqual(expectSuccess(out), {
    cniVersion: "1.1.0",
    supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
  });
  assert.equal(calls.length, 0);
});

Deno.test("VERSION of a restricted plugin lists only its versions", async () => {
  const { plugin } = fakePlugin({ supportedVersions: ["0.4.0", "1.0.0"] });
  const answer = expectSuccess(await run(plugin, { CNI_COMMAND: "VERSION" }, { cniVersion: "1.0.0" }));
  assert.deepStrictEqual((answer as Record<string, unknown>).supportedVersions, ["0.4.0", "1.0.0"]);
});

Deno.test("a restricted plugin refuses a configuration version it does not list", async () => {
  const { plugin, calls } = fakePlugin({ supportedVersions: ["0.4.0", "1.0.0"] });
  expectError(await run(plugin, envFor("ADD"), conf("1.1.0")), 1, /1\.1\.0/);
  expectError(await run(plugin, envFor("ADD"), conf("0.3.1")), 1);
  expectSuccess(await run(plugin, envFor("ADD"), conf("1.0.0")));
  assert.equal(calls.length, 1);
});

// ---------------------------------------------------------------------------------------------------------

Deno.test("malformed stdin gives code 6", async () => {
  const { plugin, calls } = fakePlugin();
  for (const stdin of ["{not json", "", '["a"]', "null", "42"]) {
    const err = expectError(await run(plugin, envFor("ADD"), stdin), 6);
    assert.equal(err.cniVersion, "1.1.0");
  }
  assert.equal(calls.length, 0);
});

Deno.test("ADD without CNI_CONTAINERID gives code 4 naming it", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(
    await run(plugin, envFor("ADD", { CNI_CONTAINERID: undefined }), conf("1.1.0")),
    4,
    /CNI_CONTAINERID/,
  );
  expectError(await run(plugin, envFor("ADD", { CNI_CONTAINERID: "" }), conf("1.1.0")), 4, /CNI_CONTAINERID/);
  expectError(await run(plugin, envFor("ADD", { CNI_NETNS: undefined }), conf("1.1.0")), 4, /CNI_NETNS/);
  expectError(await run(plugin, envFor("ADD", { CNI_IFNAME: undefined }), conf("1.1.0")), 4, /CNI_IFNAME/);
  assert.equal(calls.length, 0);
});

Deno.test("an unsupported cniVersion gives code 1", async () => {
  const { plugin, calls } = fakePlugin();
  for (const v of ["0.9.9", "1.2.0", "2.0.0"]) {
    expectError(await run(plugin, envFor("ADD"), conf(v)), 1, new RegExp(v.replaceAll(".", "\\.")));
  }
  expectError(await run(plugin, envFor("ADD"), conf("1.0.0", { cniVersion: 1 })), 1);
  assert.equal(calls.length, 0);
});

Deno.test("a configuration without cniVersion is read as 0.1.0", async () => {
  const { plugin, calls } = fakePlugin();
  const printed = expectSuccess(await run(plugin, envFor("ADD"), conf(undefined)));
  assert.equal(calls[0].cniVersion, "0.1.0");
  assert.deepStrictEqual(printed, {
    cniVersion: "0.1.0",
    ip4: { ip: "10.0.0.5/24", gateway: "10.0.0.1", routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }] },
    ip6: { ip: "fd00::5/64", gateway: "fd00::1", routes: [{ dst: "::/0", gw: "fd00::1" }] },
    dns: { nameservers: ["10.96.0.10"] },
  });
});

Deno.test("an interface name of 16 characters gives code 4 naming CNI_IFNAME", async () => {
  const { plugin, calls } = fakePlugin();
  const ifname = "a".repeat(16);
  expectError(await run(plugin, envFor("ADD", { CNI_IFNAME: ifname }), conf("1.1.0")), 4, /CNI_IFNAME/);
  expectError(await run(plugin, envFor("DEL", { CNI_IFNAME: ifname }), conf("1.1.0")), 4, /CNI_IFNAME/);
  assert.equal(calls.length, 0);
  expectSuccess(await run(plugin, envFor("ADD", { CNI_IFNAME: "a".repeat(15) }), conf("1.1.0")));
  assert.equal(calls[0].ifname, "aaaaaaaaaaaaaaa");
});

Deno.test("invalid interface names are rejected with code 4", async () => {
  const { plugin, calls } = fakePlugin();
  for (const ifname of [".", "..", "a/b", "a:b", "a b", "a\tb"]) {
    expectError(await run(plugin, envFor("ADD", { CNI_IFNAME: ifname }), conf("1.1.0")), 4, /CNI_IFNAME/);
  }
  assert.equal(calls.length, 0);
});

Deno.test("CNI_IFNAME=eth#1 gives code 4 (not code 7 later, when ip -batch refuses it)", async () => {
  const { plugin, calls } = fakePlugin();
  for (const ifname of ["eth#1", "eth%1", 'eth"1']) {
    expectError(await run(plugin, envFor("ADD", { CNI_IFNAME: ifname }), conf("1.1.0")), 4, /CNI_IFNAME/);
  }
  assert.equal(calls.length, 0);
});

Deno.test("an invalid container ID is rejected with code 4", async () => {
  const { plugin, calls } = fakePlugin();
  for (const id of ["-abc", ".abc", "a b", "a/b", "ctr;1"]) {
    expectError(
      await run(plugin, envFor("ADD", { CNI_CONTAINERID: id }), conf("1.1.0")),
      4,
      /CNI_CONTAINERID/,
    );
    expectError(
      await run(plugin, envFor("DEL", { CNI_CONTAINERID: id }), conf("1.1.0")),
      4,
      /CNI_CONTAINERID/,
    );
  }
  assert.equal(calls.length, 0);
  expectSuccess(await run(plugin, envFor("ADD", { CNI_CONTAINERID: "0abc_d.e-f" }), conf("1.1.0")));
});

Deno.test("a missing or unknown CNI_COMMAND gives code 4", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(await run(plugin, envFor("ADD", { CNI_COMMAND: undefined }), conf("1.1.0")), 4, /CNI_COMMAND/);
  expectError(await run(plugin, envFor("ADD", { CNI_COMMAND: "" }), conf("1.1.0")), 4, /CNI_COMMAND/);
  expectError(await run(plugin, envFor("REFRESH"), conf("1.1.0")), 4, /REFRESH/);
  expectError(await run(plugin, envFor("add"), conf("1.1.0")), 4);
  assert.equal(calls.length, 0);
});

Deno.test("CHECK needs a configuration of at least 0.4.0", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(await run(plugin, envFor("CHECK"), conf("0.3.1")), 1, /CHECK/);
  expectError(await run(plugin, envFor("CHECK"), conf("0.2.0")), 1);
  assert.equal(calls.length, 0);
  assert.equal(expectSuccess(await run(plugin, envFor("CHECK"), conf("0.4.0"))), undefined);
  assert.equal(calls[0].command, "CHECK");
});

Deno.test("STATUS and GC need a configuration of 1.1.0", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(await run(plugin, { CNI_COMMAND: "STATUS" }, conf("1.0.0")), 1, /STATUS/);
  expectError(await run(plugin, { CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, conf("1.0.0")), 1, /GC/);
  assert.equal(calls.length, 0);
  assert.equal(expectSuccess(await run(plugin, { CNI_COMMAND: "STATUS" }, conf("1.1.0"))), undefined);
  assert.equal(
    expectSuccess(await run(plugin, { CNI_COMMAND: "GC", CNI_PATH: "/a:/b" }, conf("1.1.0"))),
    undefined,
  );
  assert.deepStrictEqual(calls.map((c) => [c.command, c.containerId, c.ifname, c.path]), [
    ["STATUS", "", "", []],
    ["GC", "", "", ["/a", "/b"]],
  ]);
});

Deno.test("GC without CNI_PATH gives code 4", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(await run(plugin, { CNI_COMMAND: "GC" }, conf("1.1.0")), 4, /CNI_PATH/);
  assert.equal(calls.length, 0);
});

Deno.test("a configuration without type gives code 7 naming type", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(await run(plugin, envFor("ADD"), { cniVersion: "1.1.0", name: "galaxy-net" }), 7, /type/);
  expectError(await run(plugin, envFor("ADD"), conf("1.1.0", { type: "" })), 7, /type/);
  assert.equal(calls.length, 0);
});

Deno.test("an invalid name gives code 7; no name (or upstream flannel's empty one) is accepted (unnamed galaxy.json networks)", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(await run(plugin, envFor("ADD"), conf("1.1.0", { name: "bad name" })), 7, /name/);
  expectError(await run(plugin, envFor("ADD"), conf("1.1.0", { name: 5 })), 7, /name/);
  assert.equal(calls.length, 0);
  expectSuccess(await run(plugin, envFor("ADD"), { cniVersion: "1.1.0", type: "fake" }));
  expectSuccess(await run(plugin, envFor("ADD"), conf("1.1.0", { name: "" })));
  assert.equal(calls.length, 2);
  assert.equal(calls[0].config.name, undefined);
});

Deno.test('cniVersion "" is 0.1.0, as libcni reads it: accepted, answered and failed in 0.1.0', async () => {
  const { plugin, calls } = fakePlugin();
  const out = await run(plugin, envFor("ADD"), conf("1.1.0", { cniVersion: "" }));
  const printed = expectSuccess(out) as { cniVersion: string; ip4?: unknown };
  assert.equal(printed.cniVersion, "0.1.0");
  assert.ok(printed.ip4, "a 0.1.0 result keeps its address");
  assert.equal(calls[0].cniVersion, "0.1.0");
  const err = expectError(await run(plugin, envFor("CHECK"), conf("1.1.0", { cniVersion: "" })), 1, /CHECK/);
  assert.equal(err.cniVersion, "0.1.0");
});

Deno.test("DEL without CNI_NETNS is accepted", async () => {
  const { plugin, calls } = fakePlugin();
  const out = await run(plugin, envFor("DEL", { CNI_NETNS: undefined }), conf("1.0.0"));
  assert.deepStrictEqual(out, { stdout: "", exitCode: 0 });
  assert.equal(calls.length, 1);
  assert.equal(calls[0].command, "DEL");
  assert.equal(calls[0].netns, "");
});

// ---------------------------------------------------------------------------------------------------------

Deno.test("ADD prints the result in the configuration's version", async (t) => {
  const cases: [string, unknown][] = [
    ["0.2.0", {
      cniVersion: "0.2.0",
      ip4: { ip: "10.0.0.5/24", gateway: "10.0.0.1", routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }] },
      ip6: { ip: "fd00::5/64", gateway: "fd00::1", routes: [{ dst: "::/0", gw: "fd00::1" }] },
      dns: { nameservers: ["10.96.0.10"] },
    }],
    ["0.4.0", {
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0", mac: "0a:58:0a:00:00:05", sandbox: "/var/run/netns/ctr1" }],
      ips: [
        { version: "4", address: "10.0.0.5/24", gateway: "10.0.0.1", interface: 0 },
        { version: "6", address: "fd00::5/64", gateway: "fd00::1", interface: 0 },
      ],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "::/0", gw: "fd00::1" }],
      dns: { nameservers: ["10.96.0.10"] },
    }],
    ["1.0.0", {
      cniVersion: "1.0.0",
      interfaces: [{ name: "eth0", mac: "0a:58:0a:00:00:05", sandbox: "/var/run/netns/ctr1" }],
      ips: [
        { address: "10.0.0.5/24", gateway: "10.0.0.1", interface: 0 },
        { address: "fd00::5/64", gateway: "fd00::1", interface: 0 },
      ],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "::/0", gw: "fd00::1" }],
      dns: { nameservers: ["10.96.0.10"] },
    }],
    ["1.1.0", {
      cniVersion: "1.1.0",
      interfaces: [{ name: "eth0", mac: "0a:58:0a:00:00:05", sandbox: "/var/run/netns/ctr1", mtu: 1450 }],
      ips: [
        { address: "10.0.0.5/24", gateway: "10.0.0.1", interface: 0 },
        { address: "fd00::5/64", gateway: "fd00::1", interface: 0 },
      ],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "::/0", gw: "fd00::1", priority: 10 }],
      dns: { nameservers: ["10.96.0.10"] },
    }],
  ];
  for (const [version, expected] of cases) {
    await t.step(version, async () => {
      const { plugin } = fakePlugin();
      const out = await run(plugin, envFor("ADD"), conf(version));
      assert.equal(out.exitCode, 0, out.stdout);
      assert.equal(out.stdout, out.stdout.trim());
      assert.ok(!out.stdout.includes("\n"), "stdout must be a single JSON document");
      assert.deepStrictEqual(JSON.parse(out.stdout), expected);
    });
  }
});

Deno.test("ADD fails with code 1 when the result cannot be expressed in the configuration's version", async () => {
  const { plugin } = fakePlugin({ result: { cniVersion: "1.1.0", interfaces: [{ name: "eth0" }] } });
  const err = expectError(await run(plugin, envFor("ADD"), conf("0.2.0")), 1);
  assert.equal(err.cniVersion, "0.2.0");
});

Deno.test("a plugin's CniError becomes the error object", async () => {
  const { plugin } = fakePlugin({ fail: new CniError(11, "x") });
  const out = await run(plugin, envFor("ADD"), conf("1.1.0"));
  assert.equal(out.exitCode, 1);
  assert.deepStrictEqual(JSON.parse(out.stdout), { cniVersion: "1.1.0", code: 11, msg: "x" });
});

Deno.test("a plugin's CniError details are printed", async () => {
  const { plugin } = fakePlugin({ fail: new CniError(50, "not ready", "bridge cni0 is down") });
  const out = await run(plugin, { CNI_COMMAND: "STATUS" }, conf("1.1.0"));
  assert.deepStrictEqual(JSON.parse(out.stdout), {
    cniVersion: "1.1.0",
    code: 50,
    msg: "not ready",
    details: "bridge cni0 is down",
  });
});

Deno.test("a plain Error from the plugin gives code 100", async () => {
  const { plugin } = fakePlugin({ fail: new Error("boom") });
  for (const verb of ["ADD", "DEL", "CHECK"]) {
    const out = await run(plugin, envFor(verb), conf("1.1.0"));
    assert.equal(out.exitCode, 1);
    assert.deepStrictEqual(JSON.parse(out.stdout), { cniVersion: "1.1.0", code: 100, msg: "boom" });
  }
  const { plugin: thrower } = fakePlugin({ fail: "bare string" });
  expectError(await run(thrower, envFor("ADD"), conf("1.1.0")), 100, /bare string/);
});

// ---------------------------------------------------------------------------------------------------------

Deno.test("the plugin receives the request built from env and stdin", async () => {
  const { plugin, calls } = fakePlugin();
  const stdin = conf("1.0.0", {
    "x-custom": { keep: [1, 2] },
    ipam: { type: "host-local", subnet: "10.0.0.0/24" },
  });
  const env = envFor("ADD", { CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=web-0" });
  expectSuccess(await run(plugin, env, stdin));
  assert.equal(calls.length, 1);
  const req = calls[0];
  assert.equal(req.command, "ADD");
  assert.equal(req.containerId, "ctr1");
  assert.equal(req.netns, "/var/run/netns/ctr1");
  assert.equal(req.ifname, "eth0");
  assert.deepStrictEqual(req.args, [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web-0"]]);
  assert.deepStrictEqual(req.path, ["/opt/cni/bin", "/usr/lib/cni"]);
  assert.equal(req.cniVersion, "1.0.0");
  assert.deepStrictEqual(req.config, stdin);
  assert.equal(req.prevResult, undefined);
  assert.deepStrictEqual(req.env, env);
  assert.deepStrictEqual(req.stdin, encode(stdin));
});

Deno.test("prevResult in 0.4.0 form reaches the plugin in the 1.1.0 shape", async () => {
  const { plugin, calls } = fakePlugin();
  const prevResult = {
    cniVersion: "0.4.0",
    interfaces: [{ name: "cni0", mac: "a2:00:00:00:00:01" }, {
      name: "eth0",
      sandbox: "/var/run/netns/ctr1",
    }],
    ips: [
      { version: "4", address: "10.0.0.5/24", gateway: "10.0.0.1", interface: 1 },
      { version: "6", address: "fd00::5/64", interface: 1 },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
    dns: { nameservers: ["10.96.0.10"] },
  };
  expectSuccess(await run(plugin, envFor("ADD"), conf("0.4.0", { prevResult })));
  expectSuccess(await run(plugin, envFor("DEL"), conf("0.4.0", { prevResult })));
  const expected = {
    cniVersion: "1.1.0",
    interfaces: [{ name: "cni0", mac: "a2:00:00:00:00:01" }, {
      name: "eth0",
      sandbox: "/var/run/netns/ctr1",
    }],
    ips: [
      { address: "10.0.0.5/24", gateway: "10.0.0.1", interface: 1 },
      { address: "fd00::5/64", interface: 1 },
    ],
    routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
    dns: { nameservers: ["10.96.0.10"] },
  };
  assert.deepStrictEqual(calls.map((c) => c.prevResult), [expected, expected]);
  assert.deepStrictEqual(calls[0].config.prevResult, prevResult);
});

Deno.test("prevResult without cniVersion is read in the configuration's version", async () => {
  const { plugin, calls } = fakePlugin();
  const prevResult = { ip4: { ip: "10.0.0.5/24", gateway: "10.0.0.1" } };
  expectSuccess(await run(plugin, envFor("ADD"), conf("0.2.0", { prevResult })));
  assert.deepStrictEqual(calls[0].prevResult, {
    cniVersion: "1.1.0",
    ips: [{ address: "10.0.0.5/24", gateway: "10.0.0.1" }],
  });
});

Deno.test("an invalid prevResult gives code 6", async () => {
  const { plugin, calls } = fakePlugin();
  const prevResult = { cniVersion: "1.0.0", ips: [{ address: "10.0.0.5" }] };
  expectError(await run(plugin, envFor("ADD"), conf("1.0.0", { prevResult })), 6, /prevResult/);
  assert.equal(calls.length, 0);
});

Deno.test("CNI_ARGS is parsed into ordered pairs", async () => {
  const { plugin, calls } = fakePlugin();
  expectSuccess(await run(plugin, envFor("ADD", { CNI_ARGS: "A=1;B=2" }), conf("1.1.0")));
  expectSuccess(await run(plugin, envFor("ADD", { CNI_ARGS: "X=a=b;;EMPTY=" }), conf("1.1.0")));
  expectSuccess(await run(plugin, envFor("ADD"), conf("1.1.0")));
  assert.deepStrictEqual(calls.map((c) => c.args), [
    [["A", "1"], ["B", "2"]],
    [["X", "a=b"], ["EMPTY", ""]],
    [],
  ]);
});

Deno.test("an invalid CNI_ARGS pair gives code 4", async () => {
  const { plugin, calls } = fakePlugin();
  expectError(await run(plugin, envFor("ADD", { CNI_ARGS: "A" }), conf("1.1.0")), 4, /CNI_ARGS/);
  expectError(await run(plugin, envFor("ADD", { CNI_ARGS: "A=1;=2" }), conf("1.1.0")), 4, /CNI_ARGS/);
  assert.equal(calls.length, 0);
});

// ---------------------------------------------------------------------------------------------------------

Deno.test("the error object carries the configuration's version once the plugin ran", async () => {
  for (const version of ["0.2.0", "0.4.0", "1.0.0"]) {
    const { plugin } = fakePlugin({ fail: new CniError(11, "busy") });
    const out = await run(plugin, envFor("ADD"), conf(version));
    assert.deepStrictEqual(JSON.parse(out.stdout), { cniVersion: version, code: 11, msg: "busy" });
  }
});

Deno.test("the error object carries the configuration's version when validation of a readable config fails", async () => {
  const { plugin } = fakePlugin();
  const cases: [Record<string, string>, Record<string, unknown>][] = [
    [envFor("ADD"), { cniVersion: "0.4.0", type: "fake" }],
    [envFor("ADD"), { cniVersion: "0.4.0", name: "galaxy-net" }],
    [envFor("CHECK"), conf("0.3.1")],
    [envFor("ADD", { CNI_ARGS: "A" }), conf("0.4.0")],
    [envFor("ADD"), conf("1.0.0", { prevResult: { cniVersion: "1.0.0", ips: [{ address: "x" }] } })],
  ];
  for (const [env, stdin] of cases) {
    const err = JSON.parse((await run(plugin, env, stdin)).stdout);
    assert.equal(err.cniVersion, stdin.cniVersion, JSON.stringify(err));
  }
});
