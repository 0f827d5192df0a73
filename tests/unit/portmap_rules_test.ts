/**
 * daemon/portmap_rules.ts: Galaxy's chain-name vectors, the ports taken from a pod spec and from the CNI
 * `portMappings` capability (one set either way), the port-file/annotation parser, and the nat restore text
 * byte for byte (base rules only where missing, KUBE-MARK-MASQ never rewritten, stale chains deleted).
 * @module
 */
import assert from "node:assert/strict";
import { CniError } from "../../cni/spec.ts";
import { parseIptablesSave, RestoreBatch } from "../../netops/iptables.ts";
import {
  ensureBaseRules,
  hostportChainName,
  hostportChains,
  mappingBatch,
  masqueradeMark,
  mergePorts,
  parsePortList,
  type Port,
  PORTMAPPING_ANNOTATION,
  runtimePorts,
  specPorts,
  wantsRandomPorts,
} from "../../daemon/portmap_rules.ts";

Deno.test("chain names match Galaxy's vectors (§4.1)", () => {
  const vectors: [number, string, number, string, string][] = [
    [57119, "TCP", 30008, "testrdma-2", "KUBE-HP-BF3WJKNWB2BP2PEW"],
    [9090, "UDP", 9090, "pod-2", "KUBE-HP-5MLSI4DJJZLGHUZA"],
    [80, "TCP", 80, "deletedpod-1", "KUBE-HP-HSO4NMZ7BUPOGJTD"],
  ];
  for (const [hostPort, protocol, containerPort, podName, want] of vectors) {
    assert.equal(hostportChainName({ hostPort, protocol, containerPort, podName }), want);
  }
  const withIP = hostportChainName({
    hostPort: 80,
    protocol: "TCP",
    containerPort: 80,
    podName: "deletedpod-1",
    hostIP: "198.18.0.1",
  });
  assert.notEqual(withIP, "KUBE-HP-HSO4NMZ7BUPOGJTD", "a hostIP makes its own chain");
  assert.match(withIP, /^KUBE-HP-[A-Z2-7]{16}$/);
});

function pod(ports: Record<string, unknown>[], annotations?: Record<string, string>) {
  return {
    metadata: { name: "web", namespace: "default", annotations },
    spec: { containers: [{ name: "app", ports }] },
  };
}

Deno.test("spec ports: hostPort > 0, or every port with the annotation key (any value)", () => {
  const ports = [{ containerPort: 80, hostPort: 8080 }, { containerPort: 81 }, {
    containerPort: 53,
    protocol: "UDP",
    hostPort: 53,
    hostIP: "198.18.0.1",
  }];
  assert.deepEqual(specPorts(pod(ports)), [
    { hostPort: 8080, containerPort: 80, protocol: "TCP" },
    { hostPort: 53, containerPort: 53, protocol: "UDP", hostIP: "198.18.0.1" },
  ]);
  assert.ok(wantsRandomPorts(pod(ports, { [PORTMAPPING_ANNOTATION]: "" })));
  assert.deepEqual(specPorts(pod(ports, { [PORTMAPPING_ANNOTATION]: "" })).map((p) => p.hostPort), [
    8080,
    0,
    53,
  ]);
  assert.deepEqual(specPorts({ ...pod(ports), spec: { hostNetwork: true, containers: [{ ports }] } }), []);
  assert.deepEqual(
    specPorts(pod([{ containerPort: 80, hostPort: 80, hostIP: "0.0.0.0" }]))[0].hostIP,
    undefined,
  );
});

Deno.test("spec and runtimeConfig give the same set; together no port twice", () => {
  const spec = specPorts(
    pod([{ containerPort: 8080, hostPort: 30080, protocol: "TCP" }, {
      containerPort: 53,
      hostPort: 30053,
      protocol: "UDP",
    }]),
  );
  const runtime = runtimePorts({
    portMappings: [{ hostPort: 30080, containerPort: 8080, protocol: "tcp" }, {
      hostPort: 30053,
      containerPort: 53,
      protocol: "udp",
    }],
  });
  assert.deepEqual(runtime, spec);
  assert.deepEqual(mergePorts(spec, runtime), spec);
  assert.deepEqual(mergePorts([], runtime), spec);
  assert.throws(
    () =>
      mergePorts(
        spec,
        runtimePorts({ portMappings: [{ hostPort: 30080, containerPort: 9, protocol: "tcp" }] }),
      ),
    /hostPort 30080\/TCP is mapped twice/,
  );
  // The same port number on two protocols, or on two host addresses, is two bindings.
  assert.equal(
    mergePorts(
      runtimePorts({
        portMappings: [{ hostPort: 1, containerPort: 1, protocol: "tcp" }, {
          hostPort: 1,
          containerPort: 1,
          protocol: "udp",
        }],
      }),
    ).length,
    2,
  );
});

Deno.test("bad ports are CNI errors naming the field", () => {
  assert.throws(
    () => specPorts(pod([{ containerPort: 80, hostPort: 80, protocol: "SCTP" }])),
    (e) => e instanceof CniError && e.code === 7 && /protocol "SCTP" is not supported/.test(e.message),
  );
  assert.throws(
    () => runtimePorts({ portMappings: [{ hostPort: 70000, containerPort: 1 }] }),
    /hostPort 70000/,
  );
  assert.throws(
    () => runtimePorts({ portMappings: [{ hostPort: 1, containerPort: 1, hostIP: "fd00::1" }] }),
    /not an IPv4/,
  );
  assert.throws(() => runtimePorts({ portMappings: "x" }), /not a list/);
  assert.deepEqual(runtimePorts({}), []);
});

Deno.test("port files and the annotation: Galaxy's JSON array", () => {
  const text =
    '[{"hostPort":30080,"containerPort":80,"protocol":"TCP","podName":"web","podIP":"198.18.30.2"},' +
    '{"hostPort":0,"containerPort":81,"protocol":"udp","hostIP":"198.18.0.1","podName":"web","podIP":"198.18.30.2"}]';
  assert.deepEqual(parsePortList(text, "f"), [
    { hostPort: 30080, containerPort: 80, protocol: "TCP", podName: "web", podIP: "198.18.30.2" },
    {
      hostPort: 0,
      containerPort: 81,
      protocol: "UDP",
      hostIP: "198.18.0.1",
      podName: "web",
      podIP: "198.18.30.2",
    },
  ]);
  assert.throws(() => parsePortList("{}", "f"), /not a JSON array/);
});

const WEB: Port = {
  hostPort: 30080,
  containerPort: 8080,
  protocol: "TCP",
  podName: "web",
  podIP: "198.18.30.2",
};
const DNS: Port = {
  hostPort: 30053,
  containerPort: 53,
  protocol: "UDP",
  hostIP: "198.18.31.1",
  podName: "dns",
  podIP: "198.18.30.3",
};

Deno.test("restore text: base rules on an empty node, every mapping, stale chains deleted", () => {
  const empty = parseIptablesSave(
    "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
  )[0];
  const batch = ensureBaseRules(new RestoreBatch(), empty, { mark: masqueradeMark(14) });
  const web = hostportChainName(WEB);
  const dns = hostportChainName(DNS);
  mappingBatch(batch, [WEB, DNS], ["KUBE-HP-STALE", web]);
  assert.equal(
    batch.text(),
    [
      "*nat",
      ":KUBE-HOSTPORTS - [0:0]",
      ":KUBE-MARK-MASQ - [0:0]",
      ":GALAXY-HOSTPORT-MASQ - [0:0]",
      `:${web} - [0:0]`,
      `:${dns} - [0:0]`,
      ":KUBE-HP-STALE - [0:0]",
      '-A PREROUTING -m comment --comment "kube hostport portals" -m addrtype --dst-type LOCAL -j KUBE-HOSTPORTS',
      '-A OUTPUT -m comment --comment "kube hostport portals" -m addrtype --dst-type LOCAL -j KUBE-HOSTPORTS',
      "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
      "-A GALAXY-HOSTPORT-MASQ -m mark ! --mark 0x4000/0x4000 -j RETURN",
      "-A GALAXY-HOSTPORT-MASQ -j MARK --xor-mark 0x4000",
      "-A GALAXY-HOSTPORT-MASQ -j MASQUERADE",
      '-A POSTROUTING -m comment --comment "galaxy hostport masquerade" -j GALAXY-HOSTPORT-MASQ',
      `-A ${web} -m comment --comment "web hostport 30080" -s 198.18.30.2/32 -j KUBE-MARK-MASQ`,
      `-A ${web} -m comment --comment "web hostport 30080" -s 127.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${web} -m comment --comment "web hostport 30080" -p tcp -m tcp -j DNAT --to-destination 198.18.30.2:8080`,
      `-A KUBE-HOSTPORTS -m comment --comment "web hostport 30080" -p tcp -m tcp --dport 30080 -j ${web}`,
      `-A ${dns} -m comment --comment "dns hostport 30053" -s 198.18.30.3/32 -j KUBE-MARK-MASQ`,
      `-A ${dns} -m comment --comment "dns hostport 30053" -s 127.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${dns} -m comment --comment "dns hostport 30053" -p udp -m udp -j DNAT --to-destination 198.18.30.3:53`,
      `-A KUBE-HOSTPORTS -m comment --comment "dns hostport 30053" -p udp -m udp -d 198.18.31.1/32 --dport 30053 -j ${dns}`,
      "-X KUBE-HP-STALE",
      "COMMIT",
      "",
    ].join("\n"),
    "the chain of a live port is never deleted, even when asked",
  );
});

Deno.test("restore text: kube-proxy's KUBE-MARK-MASQ and present base rules are left alone; --masquerade-bit", () => {
  const saved = parseIptablesSave([
    "*nat",
    ":PREROUTING ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":POSTROUTING ACCEPT [0:0]",
    ":KUBE-HOSTPORTS - [0:0]",
    ":KUBE-MARK-MASQ - [0:0]",
    ":GALAXY-HOSTPORT-MASQ - [0:0]",
    ":KUBE-HP-OLDGALAXYCHAIN1 - [0:0]",
    '-A PREROUTING -m comment --comment "kube hostport portals" -m addrtype --dst-type LOCAL -j KUBE-HOSTPORTS',
    '-A OUTPUT -m comment --comment "kube hostport portals" -m addrtype --dst-type LOCAL -j KUBE-HOSTPORTS',
    '-A POSTROUTING -m comment --comment "galaxy hostport masquerade" -j GALAXY-HOSTPORT-MASQ',
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x8000/0x8000",
    "-A GALAXY-HOSTPORT-MASQ -m mark ! --mark 0x8000/0x8000 -j RETURN",
    "-A GALAXY-HOSTPORT-MASQ -j MARK --set-xmark 0x8000/0x0",
    "-A GALAXY-HOSTPORT-MASQ -j MASQUERADE",
    "COMMIT",
  ].join("\n"))[0];
  assert.equal(ensureBaseRules(new RestoreBatch(), saved, { mark: masqueradeMark(15) }).text(), "");
  assert.deepEqual(hostportChains(saved), ["KUBE-HP-OLDGALAXYCHAIN1"]);
  assert.equal(masqueradeMark(14), "0x4000/0x4000");
  assert.equal(masqueradeMark(0), "0x1/0x1");
  assert.equal(masqueradeMark(31), "0x80000000/0x80000000");
});
