import assert from "node:assert/strict";
import * as net from "node:net";
import { isIP, isIPv4, isIPv6 } from "../../netops/ip_address.ts";

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
