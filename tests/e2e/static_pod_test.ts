/**
 * Static pods through the real Kubernetes client and pod cache: the runtime knows a static pod by the UID in
 * its mirror pod's `kubernetes.io/config.mirror` annotation, not by the mirror pod's own UID. Such a pod gets
 * its network; a pod whose UID really differs is still refused, before anything runs.
 * @module
 */
import assert from "node:assert/strict";
import { MIRROR_ANNOTATION } from "../../daemon/pod_uid.ts";
import { runtimeCall, shimList, startDaemon, startFakeApiserver } from "../helpers/daemon.ts";
import { kernelTest, pathExists } from "../helpers/netns.ts";
import { withLab } from "../helpers/netns.ts";

kernelTest(
  "e2e: a static pod (mirror annotation UID) gets its network; a really different UID is refused",
  async () => {
    await withLab("static", async (lab) => {
      const api = await startFakeApiserver(lab);
      let daemon;
      try {
        const mirror = await api.putPod({
          apiVersion: "v1",
          kind: "Pod",
          metadata: {
            name: "etcd-node-a",
            namespace: "kube-system",
            uid: "mirror-uid-0001",
            annotations: { [MIRROR_ANNOTATION]: "static-uid-0001", "kubernetes.io/config.source": "file" },
          },
          spec: { nodeName: "node-a", containers: [{ name: "etcd", image: "x" }] },
        });
        assert.equal((mirror.metadata as { uid: string }).uid, "mirror-uid-0001");
        daemon = await startDaemon(lab, {
          kubeconfig: api.kubeconfig,
          galaxyJson: {
            NetworkConf: [{
              name: "pod-net",
              type: "galaxy-veth",
              ipam: { type: "host-local", subnet: "198.18.36.0/24", dataDir: `${lab.dir}/ipam` },
            }],
            DefaultNetworks: ["pod-net"],
          },
        });
        const pod = await lab.pod("etcd");
        const list = shimList(daemon.socket, "1.0.0");
        const call = (containerId: string, uid: string) => ({
          containerId,
          pod,
          k8s: { namespace: "kube-system", name: "etcd-node-a", uid },
          list,
        });

        for (const uid of ["mirror-uid-0001", "someone-else"]) {
          const refused = await runtimeCall(lab, "add", call(`refused-${uid}`, uid));
          assert.equal(refused.code, 1, refused.stdout);
          assert.match(JSON.parse(refused.stdout).msg, new RegExp(`asked for UID ${uid}`));
          assert.ok(
            !(await pathExists(`${daemon.stateDir}/refused-${uid}`)),
            "a refused ADD left a state file",
          );
        }
        assert.deepEqual(await lab.linkNames(pod), ["lo"]);

        const add = await runtimeCall(lab, "add", call("static-ctr1", "static-uid-0001"));
        assert.equal(add.code, 0, `${add.stdout}${add.stderr}`);
        assert.match(JSON.parse(add.stdout).ips[0].address, /^198\.18\.36\.\d+\/32$/);
        assert.equal((await lab.addresses(pod, "eth0")).length, 1);
        const patches = await api.patches();
        assert.ok(patches.some((p) => p.name === "etcd-node-a"), "network-status written on the mirror pod");
        const del = await runtimeCall(lab, "del", call("static-ctr1", "static-uid-0001"));
        assert.equal(del.code, 0, del.stdout);
        assert.deepEqual(await lab.linkNames(pod), ["lo"]);
        const out = await daemon.process.stop("SIGTERM");
        daemon = undefined;
        assert.equal(out.code, 0, out.stderr);
      } finally {
        if (daemon) await daemon.process.stop("SIGKILL");
        await api.process.stop("SIGTERM");
      }
    });
  },
);
