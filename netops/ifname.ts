/**
 * The one interface-name rule, import-free so that the CNI request reader, the annotation parser and `ip.ts`
 * share it: what libcni accepts (1–15 bytes, not `.` or `..`, no `/`, `:` or whitespace) narrowed by what an
 * `ip -batch` line can carry (no quote, backslash, `#` or `%`). A name one layer accepts and a later one
 * refuses would fail an ADD half-way with the wrong code; with one rule it fails at the edge (code 4).
 * @module
 */

/** The longest interface name Linux accepts (IFNAMSIZ - 1), in bytes. */
export const IFNAME_MAX = 15;

const FORBIDDEN = /[\s"'\\#/:%]/;

/** Why `name` is not a valid interface name (a phrase after the name's subject), or `undefined` when it is. */
export function ifnameProblem(name: string): string | undefined {
  if (typeof name !== "string" || name.length === 0) return "is empty";
  const bytes = new TextEncoder().encode(name).length; // IFNAMSIZ counts bytes
  if (bytes > IFNAME_MAX) return `"${name}" is ${bytes} bytes long; Linux allows at most ${IFNAME_MAX}`;
  if (name === "." || name === "..") return `"${name}" is not a valid name`;
  const bad = FORBIDDEN.exec(name);
  if (bad) return `"${name}" contains the forbidden character ${JSON.stringify(bad[0])}`;
  return undefined;
}
