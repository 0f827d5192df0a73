import assert from "node:assert/strict";
import { FLAG_TABLE } from "../../daemon/flags.ts";
import { launcherDir, REPO_ROOT } from "../helpers/launchers.ts";
import { runCommand } from "../helpers/netns.ts";

function readmeFlagRows(readme: string): string[][] {
  const block = readme.split("<!-- flags:begin -->")[1]?.split("<!-- flags:end -->")[0];
  assert.ok(block, "README has no flags table markers");
  return block.trim().split("\n").slice(2).map((line) =>
    line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim())
  );
}

Deno.test("readme: the flags table matches galaxy serve --help", async () => {
  const rows = readmeFlagRows(await Deno.readTextFile(`${REPO_ROOT}/README.md`));
  const help = await runCommand(`${await launcherDir()}/galaxy`, ["serve", "--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.equal(rows.length, FLAG_TABLE.length, "one README row per flag");
  rows.forEach(([flag, type, def, usage], i) => {
    const f = FLAG_TABLE[i];
    assert.equal(flag, `\`--${f.name}\`${f.short ? ` (\`-${f.short}\`)` : ""}`);
    assert.equal(type, f.type, f.name);
    assert.equal(def, `\`${f.default}\``, f.name);
    assert.equal(usage.replaceAll("\\|", "|"), f.usage, f.name);
    const line = help.stdout.split("\n").find((l) => l.includes(`--${f.name} `));
    assert.ok(line, `--${f.name} is missing from --help`);
    assert.ok(
      line.includes(f.usage) && line.includes(`(default ${f.default})`),
      `--help line of --${f.name}: ${line}`,
    );
  });
});

Deno.test("readme: the two commands are the npm scripts, and .ci/run runs exactly the test command", async () => {
  const readme = await Deno.readTextFile(`${REPO_ROOT}/README.md`);
  assert.match(readme, /\|\s*set up and run the demo\s*\|\s*`npm ci && npm run demo`\s*\|/);
  assert.match(readme, /\|\s*set up and run the whole test suite\s*\|\s*`npm ci && npm test`\s*\|/);
  const ci = await Deno.readTextFile(`${REPO_ROOT}/.ci/run`);
  assert.match(ci, /^npm ci && npm test 2>&1 \| tee "\$log"$/m);
  const pkg = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/package.json`));
  assert.match(pkg.scripts.test, /deno task test$/);
  assert.match(pkg.scripts.demo, /deno task demo$/);
  assert.match(pkg.devDependencies.deno, /^2\.9\.\d+$/);
});
