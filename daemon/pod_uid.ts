/**
 * Which UID a runtime's `K8S_POD_UID` must match. For a static pod (a manifest file the kubelet runs itself)
 * the apiserver only holds a mirror pod, whose own UID differs by design; the kubelet, and with it the runtime,
 * knows the pod by the UID in the mirror's `kubernetes.io/config.mirror` annotation (Multus exempts static
 * pods for the same reason).
 * @module
 */

/** The kubelet's annotation on a mirror pod: the static pod's UID (its config hash). */
export const MIRROR_ANNOTATION = "kubernetes.io/config.mirror";

/** The UID the runtime uses for `pod`: a mirror pod's annotation, else the pod's own UID. */
export function runtimeUidOf(
  pod: { metadata?: { uid?: string; annotations?: Record<string, string> } },
): string | undefined {
  const mirror = pod.metadata?.annotations?.[MIRROR_ANNOTATION];
  return mirror ? mirror : pod.metadata?.uid;
}
