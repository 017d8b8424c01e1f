/** Istio's security kinds (security.istio.io): `PeerAuthentication` and `AuthorizationPolicy`. */
import type { PolicyTargetReference, WorkloadSelector } from './common.js';

/** Istio `PeerAuthentication.MutualTLS.Mode`. */
export type MutualTLSMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

/** Istio `PeerAuthentication.MutualTLS`. */
export interface MutualTLS {
  mode?: MutualTLSMode;
}

/** Istio `PeerAuthentication` spec; `portLevelMtls` keys are port numbers and need a `selector`. */
export interface PeerAuthentication {
  selector?: WorkloadSelector;
  mtls?: MutualTLS;
  portLevelMtls?: Record<string, MutualTLS>;
}

/** Istio `Source` (AuthorizationPolicy `rules[].from[].source`). */
export interface Source {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  trustDomains?: string[];
  notTrustDomains?: string[];
}

/** Istio `Operation` (AuthorizationPolicy `rules[].to[].operation`). */
export interface Operation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** Istio `Rule.From`. */
export interface RuleFrom {
  source?: Source;
}

/** Istio `Rule.To`. */
export interface RuleTo {
  operation?: Operation;
}

/** Istio `Condition` (AuthorizationPolicy `rules[].when[]`). */
export interface Condition {
  key?: string;
  values?: string[];
  notValues?: string[];
}

/** Istio `Rule`. */
export interface Rule {
  from?: RuleFrom[];
  to?: RuleTo[];
  when?: Condition[];
}

/** Istio `AuthorizationPolicy.ExtensionProvider`. */
export interface ExtensionProvider {
  name?: string;
}

/** Istio `AuthorizationPolicy.Action`. */
export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

/** Istio `AuthorizationPolicy` spec. */
export interface AuthorizationPolicy {
  selector?: WorkloadSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  rules?: Rule[];
  action?: AuthorizationAction;
  provider?: ExtensionProvider;
}
