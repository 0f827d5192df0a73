import assert from "node:assert/strict";
import * as net from "node:net";
import {
  cidrContains,
  formatCidr,
  isIP,
  isIPv4,
  isIPv4Cidr,
  isIPv6,
  networkOf,
  parseCidr,
} from "../../netops/ip_address.ts";

const SAMPLES = [
  "198.18.0.1",
  "0.0.0.0",
  "255.255.255.255",
  "256.1.1.1",
  "01.2.3.4",
  "1.2.3",
  "1.2.3.4.5",
  "1.2.3.4 ",
  "",
  "::",
  "::1",
  "fe80::1",
  "fe80::1%eth0",
  "fe80::1%",
  "2001:db8::1:2:3:4:5",
  "2001:db8:0:0:0:0:2:1",
  "1:2:3:4:5:6:7:8",
  "1:2:3:4:5:6:7:8:9",
  "1::2::3",
  "::ffff:198.18.0.1",
  "::ffff:198.18.0",
  "12345::",
  "g::1",
  ":1",
  "1:",
  "a:b:c:d:e:f:1.2.3.4",
  "1::2:3:4:5:6:7",
  "::2:3:4:5:6:7:8",
  "198.18.0.1/24",
];

Deno.test("ip_address: isIP, isIPv4 and isIPv6 agree with node:net", () => {
  for (const s of SAMPLES) {
    assert.equal(isIPv4(s), net.isIPv4(s), `isIPv4(${JSON.stringify(s)})`);
    assert.equal(isIPv6(s), net.isIPv6(s), `isIPv6(${JSON.stringify(s)})`);
    assert.equal(isIP(s), net.isIP(s), `isIP(${JSON.stringify(s)})`);
  }
});

Deno.test("isIPv4Cidr: an IPv4 address (node:net's rule) and a prefix of 0-32", () => {
  for (const ok of ["198.18.0.3/24", "0.0.0.0/0", "198.18.0.5/32"]) assert.ok(isIPv4Cidr(ok), ok);
  for (const bad of ["198.18.0.3", "198.18.0.3/33", "198.18.0.3/", "198.018.0.3/24", "fd00::1/64", "/24"]) {
    assert.ok(!isIPv4Cidr(bad), bad);
  }
});

Deno.test("parseCidr / networkOf / formatCidr / cidrContains: both families, canonical text", () => {
  const v6 = parseCidr("fd00:198:18:21::1/64")!;
  assert.equal(formatCidr(networkOf(v6)), "fd00:198:18:21::/64");
  assert.equal(formatCidr(networkOf(parseCidr("198.18.33.1/24")!)), "198.18.33.0/24");
  assert.ok(cidrContains(parseCidr("198.18.32.0/20")!, parseCidr("198.18.33.0/24")!));
  assert.ok(!cidrContains(parseCidr("198.18.33.0/24")!, parseCidr("198.18.32.0/20")!));
  assert.ok(!cidrContains(parseCidr("198.18.32.0/20")!, v6));
  for (const bad of ["198.18.0.1", "198.18.0.1/33", "fd00::1/129", "fd00:::1/64"]) {
    assert.equal(parseCidr(bad), undefined, bad);
  }
});
