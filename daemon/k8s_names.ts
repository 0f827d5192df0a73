/**
 * The Kubernetes name rules a pod's namespace and name must meet before any apiserver URL is built from them:
 * a `K8S_POD_NAME` of `..` once made the daemon read `/api/v1/namespaces/default/` as the pod. Import-free but
 * for the core's errors.
 * @module
 */
import { CniError, ErrorCode } from "../cni/version.ts";

/** RFC 1123 label: what a namespace must be (at most 63). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1123 subdomain: what a pod name must be (at most 253, labels joined by dots). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Throws code 4 naming `what` (`K8S_POD_NAMESPACE`, ...) unless `namespace` and `name` are valid. */
export function checkPodName(namespace: string, name: string): void {
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `K8S_POD_NAMESPACE ${JSON.stringify(namespace.slice(0, 100))} is not a DNS label`,
    );
  }
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `K8S_POD_NAME ${JSON.stringify(name.slice(0, 300))} is not a DNS subdomain name`,
    );
  }
}
