import type { RateLimit } from './rate-limit.js';
import type { RequestAuthentication } from './request-authn.js';
import type { Telemetry } from './telemetry-kind.js';
import type {
  AuthorizationPolicy,
  DestinationRule,
  PeerAuthentication,
  ServiceEntry,
  Sidecar,
  VirtualService,
  WorkloadEntry,
} from './types.js';

/** Static facts about one config kind: its API group, canonical version and accepted versions. */
export interface ConfigKindInfo {
  /** Kubernetes kind, e.g. `VirtualService`. */
  readonly kind: KindName;
  /** API group, e.g. `networking.istio.io`. */
  readonly group: string;
  /** Canonical version every accepted version is normalised to. */
  readonly version: string;
  /** `group/version` of the canonical version, the `apiVersion` of a validated object. */
  readonly apiVersion: string;
  /** Every version accepted on input, canonical first. */
  readonly versions: readonly string[];
}

/** Names of the supported config kinds. */
export type KindName =
  | 'VirtualService'
  | 'DestinationRule'
  | 'ServiceEntry'
  | 'WorkloadEntry'
  | 'Sidecar'
  | 'PeerAuthentication'
  | 'AuthorizationPolicy'
  | 'RequestAuthentication'
  | 'RateLimit'
  | 'Telemetry';

const NETWORKING = 'networking.istio.io';
const SECURITY = 'security.istio.io';

function kindInfo(kind: KindName, group: string, versions: readonly string[]): ConfigKindInfo {
  const version = versions[0] ?? 'v1';
  return Object.freeze({ kind, group, version, apiVersion: `${group}/${version}`, versions });
}

const NETWORKING_VERSIONS = Object.freeze(['v1', 'v1beta1', 'v1alpha3']);
const SECURITY_VERSIONS = Object.freeze(['v1', 'v1beta1']);
/** Meridian's own policy kinds (RateLimit). */
const POLICY = 'policy.meridian.io';
const POLICY_VERSIONS = Object.freeze(['v1alpha1']);

/**
 * The supported kinds. `networking.istio.io` kinds accept `v1`, `v1beta1` and `v1alpha3`;
 * `security.istio.io` kinds accept `v1` and `v1beta1`. All normalise to `v1`.
 */
export const ConfigKind: Readonly<Record<KindName, ConfigKindInfo>> = Object.freeze({
  VirtualService: kindInfo('VirtualService', NETWORKING, NETWORKING_VERSIONS),
  DestinationRule: kindInfo('DestinationRule', NETWORKING, NETWORKING_VERSIONS),
  ServiceEntry: kindInfo('ServiceEntry', NETWORKING, NETWORKING_VERSIONS),
  WorkloadEntry: kindInfo('WorkloadEntry', NETWORKING, NETWORKING_VERSIONS),
  Sidecar: kindInfo('Sidecar', NETWORKING, NETWORKING_VERSIONS),
  PeerAuthentication: kindInfo('PeerAuthentication', SECURITY, SECURITY_VERSIONS),
  AuthorizationPolicy: kindInfo('AuthorizationPolicy', SECURITY, SECURITY_VERSIONS),
  RequestAuthentication: kindInfo('RequestAuthentication', SECURITY, SECURITY_VERSIONS),
  RateLimit: kindInfo('RateLimit', POLICY, POLICY_VERSIONS),
  Telemetry: kindInfo('Telemetry', 'telemetry.istio.io', Object.freeze(['v1', 'v1alpha1'])),
});

/** Every supported kind, in a fixed order (the order of `ConfigKind`). */
export const ALL_KINDS: readonly ConfigKindInfo[] = Object.freeze(Object.values(ConfigKind));

/**
 * Looks up a kind by `apiVersion` and `kind` as written on input.
 * Returns undefined for an unknown kind, group or version.
 */
export function lookupKind(apiVersion: string, kind: string): ConfigKindInfo | undefined {
  const info = (ConfigKind as Record<string, ConfigKindInfo | undefined>)[kind];
  if (info === undefined || !Object.hasOwn(ConfigKind, kind)) return undefined;
  const slash = apiVersion.indexOf('/');
  if (slash < 0) return undefined;
  const group = apiVersion.slice(0, slash);
  const version = apiVersion.slice(slash + 1);
  if (group !== info.group || !info.versions.includes(version)) return undefined;
  return info;
}

/** Kubernetes `ObjectMeta`, the fields Meridian keeps. `namespace` defaults to `"default"`. */
export interface ObjectMeta {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  generation?: number;
  uid?: string;
  creationTimestamp?: string;
}

/** Maps each kind name to its spec type. */
export interface SpecByKind {
  VirtualService: VirtualService;
  DestinationRule: DestinationRule;
  ServiceEntry: ServiceEntry;
  WorkloadEntry: WorkloadEntry;
  Sidecar: Sidecar;
  PeerAuthentication: PeerAuthentication;
  AuthorizationPolicy: AuthorizationPolicy;
  RequestAuthentication: RequestAuthentication;
  RateLimit: RateLimit;
  Telemetry: Telemetry;
}

/** One config object of kind `K`, in Meridian's internal (validated, normalised) form. */
export interface TypedConfigObject<K extends KindName> {
  /** Always the canonical `group/v1` after validation, whatever version was written. */
  apiVersion: string;
  kind: K;
  metadata: ObjectMeta;
  spec: SpecByKind[K];
}

/** A validated config object of any supported kind; narrow on `kind`. */
export type ConfigObject = { [K in KindName]: TypedConfigObject<K> }[KindName];

/** A VirtualService config object. */
export type VirtualServiceConfig = TypedConfigObject<'VirtualService'>;
/** A DestinationRule config object. */
export type DestinationRuleConfig = TypedConfigObject<'DestinationRule'>;
/** A ServiceEntry config object. */
export type ServiceEntryConfig = TypedConfigObject<'ServiceEntry'>;
/** A WorkloadEntry config object. */
export type WorkloadEntryConfig = TypedConfigObject<'WorkloadEntry'>;
/** A Sidecar config object. */
export type SidecarConfig = TypedConfigObject<'Sidecar'>;
/** A PeerAuthentication config object. */
export type PeerAuthenticationConfig = TypedConfigObject<'PeerAuthentication'>;
/** An AuthorizationPolicy config object. */
export type AuthorizationPolicyConfig = TypedConfigObject<'AuthorizationPolicy'>;
/** A RequestAuthentication config object. */
export type RequestAuthenticationConfig = TypedConfigObject<'RequestAuthentication'>;
/** A RateLimit config object (`policy.meridian.io/v1alpha1`). */
export type RateLimitConfig = TypedConfigObject<'RateLimit'>;
/** A Telemetry config object (`telemetry.istio.io/v1`). */
export type TelemetryConfig = TypedConfigObject<'Telemetry'>;

/**
 * The identity of a config object: `Kind/namespace/name`, e.g. `VirtualService/default/reviews`.
 * The same string is used as `FieldError.object`. A missing namespace counts as `default`.
 */
export function configKey(obj: {
  kind: string;
  metadata: { name: string; namespace?: string | undefined };
}): string {
  return `${obj.kind}/${obj.metadata.namespace || 'default'}/${obj.metadata.name}`;
}
