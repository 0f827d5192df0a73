/**
 * IPv4 CIDR arithmetic for `ipBlock`: a CIDR minus its `except` entries, the union of several blocks, as a
 * minimal list of CIDRs. Exact sets need no `nomatch` entries, so overlapping blocks of one rule cannot undo
 * each other's exceptions in a shared set, and `/0` (which hash:net cannot hold) becomes two `/1`s.
 * @module
 */

/** A closed range of IPv4 addresses as unsigned 32-bit numbers. */
type Range = [number, number];

function parseIp(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

function ipText(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** The range of an IPv4 CIDR (host bits ignored, as the API does), or `undefined` for anything else. */
export function cidrRange(cidr: string): Range | undefined {
  const [ip, len, extra] = cidr.split("/");
  if (extra !== undefined) return undefined;
  const start = parseIp(ip);
  const bits = len === undefined ? 32 : /^\d{1,2}$/.test(len) ? Number(len) : NaN;
  if (start === undefined || !(bits >= 0 && bits <= 32)) return undefined;
  const size = 2 ** (32 - bits);
  const base = start - (start % size);
  return [base, base + size - 1];
}

/** True when the text is an IPv6 CIDR (enforced for IPv4 only; the caller warns). */
export function isIpv6Cidr(cidr: string): boolean {
  return cidr.includes(":");
}

function subtract(ranges: Range[], cut: Range): Range[] {
  const out: Range[] = [];
  for (const [a, b] of ranges) {
    if (cut[1] < a || cut[0] > b) {
      out.push([a, b]);
      continue;
    }
    if (cut[0] > a) out.push([a, cut[0] - 1]);
    if (cut[1] < b) out.push([cut[1] + 1, b]);
  }
  return out;
}

function union(ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

function toCidrs([start, end]: Range): string[] {
  const out: string[] = [];
  let a = start;
  while (a <= end) {
    let size = a === 0 ? 2 ** 32 : 2 ** Math.min(32, countTrailingZeros(a));
    while (a + size - 1 > end) size /= 2;
    const bits = 32 - Math.log2(size);
    if (bits === 0) out.push("0.0.0.0/1", "128.0.0.0/1");
    else out.push(`${ipText(a)}/${bits}`);
    a += size;
  }
  return out;
}

function countTrailingZeros(n: number): number {
  let c = 0;
  while (c < 32 && (n & (2 ** c)) === 0) c++;
  return c;
}

/**
 * The minimal CIDR list of the union of `blocks` (each a CIDR minus its exceptions). Invalid CIDRs are
 * returned in `invalid` and left out.
 */
export function blocksToCidrs(
  blocks: { cidr: string; except: string[] }[],
): { cidrs: string[]; invalid: string[] } {
  const invalid: string[] = [];
  const all: Range[] = [];
  for (const b of blocks) {
    const r = cidrRange(b.cidr);
    if (!r) {
      invalid.push(b.cidr);
      continue;
    }
    let left: Range[] = [r];
    for (const e of b.except) {
      const cut = cidrRange(e);
      if (!cut) invalid.push(e);
      else left = subtract(left, cut);
    }
    all.push(...left);
  }
  return { cidrs: union(all).flatMap(toCidrs), invalid };
}
