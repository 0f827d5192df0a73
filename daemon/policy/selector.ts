/**
 * Label selector matching as Kubernetes defines it: every `matchLabels` pair AND every `matchExpressions`
 * requirement (In, NotIn, Exists, DoesNotExist); an empty selector matches everything.
 * @module
 */
import type { LabelSelector } from "./model.ts";

/** True when `labels` satisfy `selector`. */
export function matches(selector: LabelSelector, labels: Record<string, string>): boolean {
  if (selector.matchLabels) {
    for (const k in selector.matchLabels) if (labels[k] !== selector.matchLabels[k]) return false;
  }
  if (selector.matchExpressions) {
    for (const e of selector.matchExpressions) {
      const has = Object.hasOwn(labels, e.key);
      switch (e.operator) {
        case "In":
          if (!has || !e.values?.includes(labels[e.key])) return false;
          break;
        case "NotIn":
          if (has && e.values?.includes(labels[e.key])) return false;
          break;
        case "Exists":
          if (!has) return false;
          break;
        case "DoesNotExist":
          if (has) return false;
          break;
        default:
          return false;
      }
    }
  }
  return true;
}

/** A stable text key of a selector (for memoising the pods it selects). */
export function selectorKey(selector: LabelSelector | undefined): string {
  if (!selector) return "-";
  const labels = Object.entries(selector.matchLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const exprs = (selector.matchExpressions ?? []).map((
    e,
  ) => [e.key, e.operator, [...(e.values ?? [])].sort()]);
  return JSON.stringify([labels, exprs]);
}
