import type { KindName } from './kinds.js';
import { RateLimitSchema } from './rate-limit.js';
import { RequestAuthenticationSchema } from './request-authn.js';
import {
  AuthorizationPolicySchema,
  DestinationRuleSchema,
  type MessageSchema,
  PeerAuthenticationSchema,
  ServiceEntrySchema,
  SidecarSchema,
  VirtualServiceSchema,
  WorkloadEntrySchema,
} from './schema.js';
import { TelemetrySchema } from './telemetry-kind.js';

/** The spec schema of each kind. */
export const SPEC_SCHEMAS: Readonly<Record<KindName, MessageSchema>> = {
  VirtualService: VirtualServiceSchema,
  DestinationRule: DestinationRuleSchema,
  ServiceEntry: ServiceEntrySchema,
  WorkloadEntry: WorkloadEntrySchema,
  Sidecar: SidecarSchema,
  PeerAuthentication: PeerAuthenticationSchema,
  AuthorizationPolicy: AuthorizationPolicySchema,
  RequestAuthentication: RequestAuthenticationSchema,
  RateLimit: RateLimitSchema,
  Telemetry: TelemetrySchema,
};
