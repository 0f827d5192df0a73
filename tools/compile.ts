/**
 * `deno task compile`: builds `dist/galaxy` with `deno compile`, the permissions of
 * {@linkcode PERMISSION_FLAGS} and the version facts stamped in. `deno compile` needs Deno's `denort` runtime:
 * it downloads one, or takes the file named by `DENORT_BIN`.
 * @module
 */
import { PERMISSION_FLAGS } from "./permissions.ts";

const repo = new URL("..", import.meta.url).pathname.replace(/\/+$/, "");
const out = `${repo}/dist/galaxy`;
const args = ["compile", "--quiet", ...PERMISSION_FLAGS, "--output", out, `${repo}/main.ts`];
const result = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "piped" }).output();
if (!result.success) {
  console.error(new TextDecoder().decode(result.stderr).trim());
  console.error(
    "deno compile failed. It needs Deno's denort runtime for this platform, which it downloads from Deno's " +
      "release server; where that is unreachable, set DENORT_BIN to a denort binary of Deno " +
      Deno.version.deno + ".",
  );
  Deno.exit(1);
}
console.log(out);
