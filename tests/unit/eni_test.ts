import assert from "node:assert/strict";
import { eniTable, maskPrefix, readEnis } from "../../daemon/eni.ts";

Deno.test("eni: masks and route tables", () => {
  assert.equal(maskPrefix("255.255.255.0"), 24);
  assert.equal(maskPrefix("255.255.240.0"), 20);
  assert.equal(maskPrefix("255.255.255.255"), 32);
  assert.equal(maskPrefix("0.0.0.0"), 0);
  assert.throws(() => maskPrefix("255.0.255.0"), /not contiguous/);
  assert.throws(() => maskPrefix("24"), /not an IPv4 mask/);
  assert.equal(eniTable("eth2"), 2);
  assert.equal(eniTable("eth0"), 1, "Galaxy: table 0 does not exist, eth0 uses 1");
  assert.equal(eniTable("ens5"), 5);
  assert.throws(() => eniTable("enp"), /no number/);
  assert.throws(() => eniTable("eth254"), /reserved/);
});

Deno.test("eni: the metadata client reads Tencent's layout; a non-200 answer is an error", async () => {
  const paths: Record<string, string> = {
    "/latest/meta-data/network/interfaces/macs": "52:54:00:AA:00:01/\n52:54:00:aa:00:02/\n",
    "/latest/meta-data/mac": "52:54:00:aa:00:01",
    "/latest/meta-data/network/interfaces/macs/52:54:00:aa:00:01/primary-local-ipv4": "198.18.80.5",
    "/latest/meta-data/network/interfaces/macs/52:54:00:aa:00:01/local-ipv4s/198.18.80.5/subnet-mask":
      "255.255.255.0",
    "/latest/meta-data/network/interfaces/macs/52:54:00:aa:00:02/primary-local-ipv4": "198.18.81.70",
    "/latest/meta-data/network/interfaces/macs/52:54:00:aa:00:02/local-ipv4s/198.18.81.70/subnet-mask":
      "255.255.255.192",
    "/latest/meta-data/network/interfaces/macs/52:54:00:aa:00:02/local-ipv4s/198.18.81.70/gateway":
      "198.18.81.65",
  };
  let broken = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const text = paths[new URL(req.url).pathname];
    if (broken) return new Response("", { status: 503 });
    return text === undefined ? new Response("", { status: 404 }) : new Response(text);
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}/latest/meta-data/`;
    assert.deepEqual(await readEnis(base), {
      primaryMac: "52:54:00:aa:00:01",
      enis: [
        // no gateway path: the subnet's first host, as Galaxy
        { mac: "52:54:00:aa:00:01", ip: "198.18.80.5", subnet: "198.18.80.0/24", gateway: "198.18.80.1" },
        { mac: "52:54:00:aa:00:02", ip: "198.18.81.70", subnet: "198.18.81.64/26", gateway: "198.18.81.65" },
      ],
    });
    broken = true;
    await assert.rejects(readEnis(base), /network\/interfaces\/macs: HTTP 503/);
  } finally {
    await server.shutdown();
  }
});
