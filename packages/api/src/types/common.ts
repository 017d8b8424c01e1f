/**
 * Shapes shared by several Istio config kinds: string matches, percentages, port selectors, both
 * workload selector forms (security `matchLabels`, networking `labels`) and policy target references.
 */

/** A map of string keys to string values (labels, annotations, header values). */
export type StringMap = Record<string, string>;

/** Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` (RE2 syntax); `{}` matches presence. */
export interface StringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

/** Istio `Percent`: a double in 0..100. */
export interface Percent {
  value?: number;
}

/** Istio `PortSelector`: a port number. */
export interface PortSelector {
  number?: number;
}

/** `istio.type.v1beta1.WorkloadSelector` (security kinds): `matchLabels`. */
export interface WorkloadSelector {
  matchLabels?: StringMap;
}

/** `networking.v1alpha3.WorkloadSelector` (Sidecar, ServiceEntry): `labels`. */
export interface NetworkingWorkloadSelector {
  labels?: StringMap;
}

/** Gateway API policy target reference (AuthorizationPolicy `targetRef`). */
export interface PolicyTargetReference {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
}
