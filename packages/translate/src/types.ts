/**
 * The input contract of translation: an immutable config snapshot (validated, normalised Istio
 * objects from `@meridian/api`) and an immutable registry snapshot (services and endpoints, the
 * merged view `@meridian/registry` produces). Translation reads nothing else.
 *
 * Structural sharing is part of the contract: a new snapshot that changes one service keeps the
 * identity (`===`) of every unchanged `Service` object and every unchanged endpoint list, so the
 * incremental {@link Translator} can reuse what it built for them (see cache.ts).
 */
import type {
  AuthorizationPolicyConfig,
  DestinationRuleConfig,
  PeerAuthenticationConfig,
  RateLimitConfig,
  RequestAuthenticationConfig,
  SidecarConfig,
  TelemetryConfig,
  VirtualServiceConfig,
} from '@meridian/api';
import type { EnvoyJson, ProxyInfo } from '@meridian/envoy';
import type { MeshTracing } from './tracing.js';

/** The config objects translation reads, by kind, each list sorted by (namespace, name). */
export interface ConfigSnapshot {
  /** The store revision the snapshot was read at (etcd revision); stamps the listener/route cache. */
  readonly revision: number;
  readonly virtualServices: readonly VirtualServiceConfig[];
  readonly destinationRules: readonly DestinationRuleConfig[];
  readonly sidecars: readonly SidecarConfig[];
  /** AuthorizationPolicies, turned into RBAC filters on inbound chains (authz.ts). */
  readonly authorizationPolicies: readonly AuthorizationPolicyConfig[];
  /** RequestAuthentications, turned into `envoy.filters.http.jwt_authn` on inbound HTTP chains (jwt.ts). */
  readonly requestAuthentications: readonly RequestAuthenticationConfig[];
  /** RateLimits (`policy.meridian.io`), turned into local and global rate-limit filters (ratelimit.ts). */
  readonly rateLimits: readonly RateLimitConfig[];
  /** Telemetries (`telemetry.istio.io`): which sidecars send access logs to the replicas (access-log.ts). */
  readonly telemetries?: readonly TelemetryConfig[];
  /**
   * PeerAuthentications: inbound mTLS modes and automatic mTLS upstream, applied only by a Translator
   * constructed with `TranslateOptions.mtls` (mtls.ts).
   */
  readonly peerAuthentications: readonly PeerAuthenticationConfig[];
  /** What the replica resolved for these objects (fetched JWKS, the rate-limit service's address). */
  readonly policyInputs?: PolicyInputs;
}

/**
 * Inputs of policy translation that need I/O, resolved by the replica and handed in, so translation
 * stays pure: a fetched key set or a changed address is a new ConfigSnapshot.
 */
export interface PolicyInputs {
  /**
   * JWKS documents (JSON text) by source key (`jwksSourceKey` in jwt.ts: the rule's `jwksUri`, or
   * `issuer:<issuer>` when keys are discovered from the issuer). A source without an entry has not been fetched yet: its
   * issuer's tokens are refused (fail closed), as istiod does.
   */
  readonly jwks?: ReadonlyMap<string, string>;
  /**
   * Where proxies reach the global rate-limit service (`envoy.service.ratelimit.v3`): the cluster's
   * replicas, `host:port` of their gRPC servers. Empty or absent: global limits are not enforced
   * (and a warning says so).
   */
  readonly rateLimitService?: readonly ReplicaServiceAddress[];
  /** Where sidecars send access logs (the replicas' gRPC addresses, access-log.ts); absent: none. */
  readonly accessLogService?: readonly ReplicaServiceAddress[];
  /** The mesh's tracing providers and defaults (Istio MeshConfig's, tracing.ts); absent: none defined. */
  readonly tracing?: MeshTracing;
}

/**
 * Where a replica serves one of its own gRPC services to proxies (rate limits, access logs).
 * `mtls`: the proxy connects with its workload certificate (SDS `default`) and accepts only a
 * serving certificate signed by the mesh root (SDS `ROOTCA`) that names `host` (a DNS or IP SAN, as
 * the replicas' serving certificates do and workload certificates never do). Absent: plaintext.
 */
export interface ReplicaServiceAddress {
  readonly host: string;
  readonly port: number;
  readonly mtls?: boolean;
}

/**
 * How a service's endpoints are found, as Istio's `model.Resolution`:
 * `EDS` (client-side load balancing over registry endpoints: Kubernetes services, ServiceEntry
 * `STATIC` and WorkloadEntry-backed entries), `DNS` (Envoy resolves each endpoint address,
 * ServiceEntry `DNS`), `DNS_ROUND_ROBIN`, `PASSTHROUGH` (original destination, ServiceEntry `NONE`).
 */
export type Resolution = 'EDS' | 'DNS' | 'DNS_ROUND_ROBIN' | 'PASSTHROUGH';

/** One port of a service. `protocol` is Istio's protocol name (`HTTP`, `HTTP2`, `GRPC`, `TCP`, ...). */
export interface ServicePort {
  readonly name: string;
  readonly port: number;
  readonly protocol: string;
  /** The port endpoints listen on when an endpoint's `ports` map does not name this port. */
  readonly targetPort?: number;
}

/** A service as the registry knows it. */
export interface Service {
  /** Fully-qualified hostname, e.g. `reviews.default.svc.cluster.local`. Unique in a snapshot. */
  readonly hostname: string;
  readonly namespace: string;
  readonly ports: readonly ServicePort[];
  readonly labels: Readonly<Record<string, string>>;
  /** Istio `exportTo`: `*` (everyone, the default when empty), `.` (own namespace) or namespaces. */
  readonly exportTo: readonly string[];
  readonly resolution: Resolution;
  /** Virtual IPs (cluster IPs); used for virtual host domains and TCP listener names. */
  readonly addresses?: readonly string[];
  /** True for ServiceEntry `MESH_EXTERNAL` services. */
  readonly meshExternal?: boolean;
  /**
   * ServiceEntry `subjectAltNames`: identities the service's workloads may present besides those of
   * its endpoints' service accounts (Istio adds them to the service's accounts for upstream SAN checks).
   */
  readonly subjectAltNames?: readonly string[];
}

/** Envoy's `Locality`; empty strings mean unknown. */
export interface EndpointLocality {
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
}

/** Endpoint health as the registry reports it; only HEALTHY endpoints receive new traffic. */
export type EndpointHealth = 'HEALTHY' | 'UNHEALTHY' | 'DRAINING';

/** One instance of a service. */
export interface Endpoint {
  readonly address: string;
  /** Service port name -> the port this endpoint listens on (Istio WorkloadEntry `ports`). */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly locality: EndpointLocality;
  readonly network: string;
  readonly clusterId: string;
  readonly health: EndpointHealth;
  /** The workload's service account (`''`: none); its identity is
   * `spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>`. */
  readonly serviceAccount: string;
  /** The workload's namespace when the registry knows it (imported endpoints carry the namespace of
   * their origin service); absent: the service's namespace. */
  readonly namespace?: string;
  /** Load-balancing weight, at least 1. */
  readonly weight: number;
}

/** Services and their endpoints. */
export interface RegistrySnapshot {
  readonly revision: number;
  /** Sorted by hostname. */
  readonly services: readonly Service[];
  /** Endpoints by service hostname, each list sorted by (address, ports). */
  readonly endpoints: ReadonlyMap<string, readonly Endpoint[]>;
}

/** A service account of a service's workload (identity `spiffe://<td>/ns/<namespace>/sa/<name>`). */
export interface WorkloadServiceAccount {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Per-cluster context given to the TLS extension point. */
export interface UpstreamTlsContext {
  readonly clusterName: string;
  readonly service: Service;
  readonly port: ServicePort;
  readonly subset: string;
  /**
   * The service accounts of every endpoint of the service (every cluster, any health, any subset:
   * service level, as Istio), sorted by (namespace, name) and de-duplicated; endpoints without a
   * service account add nothing. Istio checks an upstream peer against these identities.
   */
  readonly serviceAccounts: readonly WorkloadServiceAccount[];
  /** The effective Istio `ClientTLSSettings` (after subset and port-level merging), if any. */
  readonly tls: Readonly<Record<string, unknown>> | undefined;
  readonly proxy: ProxyInfo;
}

/** Context given to the inbound TLS extension point. */
export interface InboundTlsContext {
  readonly proxy: ProxyInfo;
  /** The workload port (the endpoint's target port). */
  readonly port: number;
  /** The plaintext filter chain Meridian built for the port (virtualInbound chain, or the proxyless
   * gRPC server listener's chain). */
  readonly chain: EnvoyJson;
}

/**
 * Mesh mTLS (`TranslateOptions.mtls`, mtls.ts): the config snapshot's PeerAuthentications decide the
 * inbound filter chains (STRICT, PERMISSIVE, DISABLE, per port), and DestinationRule `ISTIO_MUTUAL` or
 * automatic mTLS give clusters an UpstreamTlsContext that checks the peer's SPIFFE id. Certificates
 * come over SDS (`default`, `ROOTCA`) for Envoy and from the gRPC bootstrap's provider for proxyless.
 */
export interface MtlsOptions {
  /** The mesh trust domain of SPIFFE ids (`spiffe://<td>/ns/<namespace>/sa/<account>`). */
  readonly trustDomain: string;
  /** Istio's `enableAutoMtls` for Envoy sidecars (default true; proxyless gRPC clients never). */
  readonly autoMtls?: boolean;
  /** Certificate provider instance of the gRPC bootstrap for proxyless gRPC (default `default`). */
  readonly grpcCertificateInstance?: string;
}

/** Options of translation; every field has Istio's default. */
export interface TranslateOptions {
  /** Istio's root namespace (mesh-wide Sidecar, DestinationRule fallbacks). Default `istio-system`. */
  readonly rootNamespace?: string;
  /** DNS suffix short hosts are completed with. Default `cluster.local`. */
  readonly domainSuffix?: string;
  /**
   * Mesh mTLS from the config snapshot's PeerAuthentications and DestinationRules (see
   * {@link MtlsOptions}). Without it (and without the hooks below) every chain and cluster is
   * plaintext. Exclusive with `upstreamTls` and `inboundFilterChains`.
   */
  readonly mtls?: MtlsOptions;
  /**
   * Lower-level extension point (tests, other TLS schemes): returns the cluster's `transport_socket`
   * (Envoy JSON, e.g. an UpstreamTlsContext using SDS or the gRPC `file_watcher` provider) or
   * undefined for plaintext. Must be pure and read nothing but its context: the Translator's caches
   * do not know what else it reads.
   */
  readonly upstreamTls?: (context: UpstreamTlsContext) => EnvoyJson | undefined;
  /**
   * Lower-level extension point for inbound TLS: the filter chains that replace a port's plaintext
   * chain, e.g. `inboundFilterChains(mode, chain)` of mtls.ts for Envoy (STRICT: one TLS chain;
   * PERMISSIVE: TLS + plaintext by transport protocol, the TLS inspector is then added) or the chain
   * with `grpcServerTransportSocket(mode)` for proxyless servers. Must be pure, as `upstreamTls`.
   */
  readonly inboundFilterChains?: (context: InboundTlsContext) => readonly EnvoyJson[];
}

/** One generated resource: its xDS name and its Envoy JSON (encode with `encodeResource`). */
export interface NamedResource {
  readonly name: string;
  readonly resource: EnvoyJson;
}

/** Everything one proxy is sent, each list sorted by name. */
export interface ProxyResources {
  readonly listeners: readonly NamedResource[];
  readonly routes: readonly NamedResource[];
  readonly clusters: readonly NamedResource[];
  readonly endpoints: readonly NamedResource[];
  /**
   * What the proxy's AuthorizationPolicies ask that its RBAC cannot enforce exactly (formatted
   * findings, see authz.ts); absent when there is none. Nothing is ever allowed more widely.
   */
  readonly warnings?: readonly string[];
}

/**
 * The part of a proxy's resources that depends only on its outbound view (namespace, Sidecar, kind,
 * DNS domain, and locality where load assignments use it): the same object for every proxy with that
 * view while the snapshots' inputs are the same objects, so it is encoded once and shared.
 */
export interface OutboundResources {
  readonly listeners: readonly NamedResource[];
  readonly routes: readonly NamedResource[];
  readonly clusters: readonly NamedResource[];
  readonly endpoints: readonly NamedResource[];
}

/** The workload's own part: its inbound listeners and clusters (and AuthorizationPolicy findings). */
export interface InboundResources {
  readonly listeners: readonly NamedResource[];
  readonly clusters: readonly NamedResource[];
  readonly warnings?: readonly string[];
}

/** A proxy's resources as {@link Translator.translateParts} returns them; names never collide. */
export interface ProxyParts {
  readonly outbound: OutboundResources;
  readonly inbound: InboundResources;
}
