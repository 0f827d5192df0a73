/**
 * `deno task dev-install <dir>`: writes the development launchers into `<dir>`.
 * @module
 */
import { writeLaunchers } from "../cli/launchers.ts";

if (Deno.args.length !== 1 || Deno.args[0].startsWith("-")) {
  console.error("usage: deno task dev-install <dir>");
  Deno.exit(2);
}
for (const path of await writeLaunchers(Deno.args[0])) console.log(path);
