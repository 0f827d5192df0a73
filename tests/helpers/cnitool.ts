/**
 * A cnitool-like runtime for tests: runs one verb of a configuration list through `cni/invoke.ts`, in whatever
 * namespace this process was started in (tests start it inside their node namespace with `ip netns exec`).
 *
 * Usage: `cnitool.ts <add|del|check|status|gc>` with the request as JSON on stdin:
 * `{"list": {...}, "rt": {...}, "path": [...], "cacheDir": "...", "valid": [...]}`.
 * Prints the result for add in the list's version, as libcni returns it; on failure prints the CNI error object and exits 1.
 * @module
 */
import {
  addNetworkList,
  type Attachment,
  checkNetworkList,
  delNetworkList,
  gcNetworkList,
  listVersion,
  type RuntimeConf,
  statusNetworkList,
} from "../../cni/invoke.ts";
import { asCniError, convertResult, type NetConfList } from "../../cni/spec.ts";

interface DriverRequest {
  list: NetConfList;
  rt: RuntimeConf;
  path: string[];
  cacheDir: string;
  valid?: Attachment[];
}

const req = JSON.parse(await new Response(Deno.stdin.readable).text()) as DriverRequest;
const options = { path: req.path, cacheDir: req.cacheDir, timeoutMs: 30_000 };
try {
  switch (Deno.args[0]) {
    case "add":
      console.log(
        JSON.stringify(convertResult(await addNetworkList(req.list, req.rt, options), listVersion(req.list))),
      );
      break;
    case "del":
      await delNetworkList(req.list, req.rt, options);
      break;
    case "check":
      await checkNetworkList(req.list, req.rt, options);
      break;
    case "status":
      await statusNetworkList(req.list, options);
      break;
    case "gc":
      await gcNetworkList(req.list, req.valid ?? [], options);
      break;
    default:
      throw new Error(`unknown verb ${Deno.args[0]}`);
  }
} catch (e) {
  console.log(JSON.stringify(asCniError(e).toJSON()));
  Deno.exit(1);
}
