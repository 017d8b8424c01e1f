/**
 * TypeScript shapes of the Istio config kinds Meridian accepts, hand-written from Istio's API
 * reference (istio/api: networking/v1alpha3/*.proto, security/v1beta1/*.proto). Field names are the
 * protobuf JSON names Istio's YAML uses. `v1`, `v1beta1` and `v1alpha3` share these shapes.
 *
 * Durations are strings in Go/protobuf-JSON syntax (`"1.5s"`, `"100ms"`, `"5m"`); percentages are
 * numbers in 0..100. Every optional field may be absent; a validated object never carries `null`.
 *
 * The shapes live in `types/`, one file per kind (as in `semantics/`); this barrel is what the rest
 * of the package imports.
 */
export type * from './types/common.js';
export type * from './types/destination-rule.js';
export type * from './types/security.js';
export type * from './types/service-entry.js';
export type * from './types/sidecar.js';
export type * from './types/virtual-service.js';
