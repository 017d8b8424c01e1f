/**
 * Istio's semantic rules per kind, ported from istio/istio pkg/config/validation (validation.go,
 * virtualservice.go, agent/validation.go). They run on the structurally decoded spec, so every field
 * present has the right JSON type. One module per kind or kind family; shared helpers in common.ts.
 * RequestAuthentication, RateLimit and Telemetry live beside their types (request-authn.ts,
 * rate-limit.ts, telemetry-kind.ts) and are given the shared selector check here.
 */

import type { FieldPath, Reporter } from '../path.js';
import { checkRateLimit, type RateLimit } from '../rate-limit.js';
import { checkRequestAuthentication, type RequestAuthentication } from '../request-authn.js';
import { checkTelemetry, type Telemetry } from '../telemetry-kind.js';
import { checkSelectorLabels } from './common.js';

export { checkDestinationRule } from './destination-rule.js';
export { checkAuthorizationPolicy, checkPeerAuthentication } from './security.js';
export { checkServiceEntry, checkWorkloadEntrySpec } from './service-entry.js';
export { checkSidecar } from './sidecar.js';
export { checkVirtualService } from './virtual-service.js';

/** Validates a RequestAuthentication spec (request-authn.ts). */
export function checkRequestAuthenticationSpec(ra: RequestAuthentication, p: FieldPath, r: Reporter): void {
  checkRequestAuthentication(ra, p, r, checkSelectorLabels);
}

/** Validates a RateLimit spec (rate-limit.ts). */
export function checkRateLimitSpec(rl: RateLimit, p: FieldPath, r: Reporter): void {
  checkRateLimit(rl, p, r, checkSelectorLabels);
}

/** Validates a Telemetry spec (telemetry-kind.ts). */
export function checkTelemetrySpec(t: Telemetry, p: FieldPath, r: Reporter): void {
  checkTelemetry(t, p, r, checkSelectorLabels);
}
