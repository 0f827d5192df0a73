/**
 * A scriptable CNI plugin for tests (like libcni's `noop`): it appends every call it gets (verb, CNI
 * environment, configuration) as one JSON line to the file named by the configuration's `recordFile`, then
 * behaves as the configuration says:
 * - `fail`: `{code, msg}` → print that error and exit 1; `"crash"` → print to stderr and exit 3 without output;
 *   `failOn`, a list of verbs, limits `fail` to those verbs;
 * - `startedFile`: append the verb to that file as soon as the call has its configuration, before any sleep (so a
 *   test knows the plugin is running);
 * - `sleepMs`: wait that long first (the record holds `start` and `end` times in ms);
 * - on ADD: print `prevResult` (or an empty 1.1.0 result) with one more interface named by `addInterface` and
 *   one more address `addAddress` on it, in the configuration's version.
 * @module
 */
import { type CniVersion, convertResult, parseResult, type Result } from "../../cni/spec.ts";

const env = Deno.env.toObject();
if (env.CNI_COMMAND === "VERSION") {
  console.log(
    JSON.stringify({ cniVersion: "1.1.0", supportedVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] }),
  );
  Deno.exit(0);
}
const conf = JSON.parse(await new Response(Deno.stdin.readable).text());
const cniEnv = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("CNI_")));
const start = Date.now();
if (conf.startedFile) await Deno.writeTextFile(conf.startedFile, `${env.CNI_COMMAND}\n`, { append: true });
if (conf.sleepMs) await new Promise((r) => setTimeout(r, conf.sleepMs));
if (conf.recordFile) {
  const record = { verb: env.CNI_COMMAND, env: cniEnv, conf, start, end: Date.now() };
  await Deno.writeTextFile(conf.recordFile, JSON.stringify(record) + "\n", { append: true });
}
const failing = conf.fail && (!conf.failOn || conf.failOn.includes(env.CNI_COMMAND));
if (failing && conf.fail === "crash") {
  console.error("fake plugin: simulated crash");
  Deno.exit(3);
}
if (failing) {
  console.log(JSON.stringify({ cniVersion: conf.cniVersion, code: conf.fail.code, msg: conf.fail.msg }));
  Deno.exit(1);
}
if (env.CNI_COMMAND === "ADD") {
  const result: Result = conf.prevResult
    ? parseResult(conf.prevResult, conf.cniVersion)
    : { cniVersion: "1.1.0" };
  const interfaces = result.interfaces ?? [];
  interfaces.push({ name: conf.addInterface ?? env.CNI_IFNAME, sandbox: env.CNI_NETNS });
  result.interfaces = interfaces;
  if (conf.addAddress) {
    result.ips = [...(result.ips ?? []), { address: conf.addAddress, interface: interfaces.length - 1 }];
  }
  console.log(JSON.stringify(convertResult(result, conf.cniVersion as CniVersion)));
}
