// Mutual TLS policy (translation reads it from the config snapshot; the CA only supplies secrets): Istio PeerAuthentication
// resolved per workload and port, and the Envoy JSON pieces that enforce it (DownstreamTlsContext for
// inbound, UpstreamTlsContext for DestinationRule ISTIO_MUTUAL and automatic mTLS). Pure functions over
// the config snapshot; the Translator applies them when constructed with `TranslateOptions.mtls`
// (`mtlsUpstreamTls`, `mtlsInboundFilterChains`). Secrets are named as SDS serves them (`default`,
// `ROOTCA`) and, for proxyless gRPC, as certificate provider instances of the gRPC bootstrap (`default`
// instance: cert-chain.pem, key.pem, root-cert.pem). Nothing here issues or holds a key: that is
// @meridian/ca's job, which this package does not import.
import type { ClientTLSSettings, MutualTLSMode, PeerAuthenticationConfig } from '@meridian/api';
import type { EnvoyJson, JsonValue, ProxyInfo } from '@meridian/envoy';
import type { InboundTlsContext, MtlsOptions, UpstreamTlsContext } from './types.js';

/** Name of the SDS secret holding the proxy's own key and chain (Istio/Envoy convention). */
export const SDS_DEFAULT_SECRET = 'default';
/** Name of the SDS secret holding the trust bundle (Istio/Envoy convention). */
export const SDS_ROOT_SECRET = 'ROOTCA';

/** `spiffe://<td>/ns/<namespace>/sa/<serviceAccount>`: an Istio workload identity. */
const spiffeId = (trustDomain: string, namespace: string, serviceAccount: string): string =>
  `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;

/** A resolved mode: UNSET never survives resolution (Istio's default is PERMISSIVE). */
export type EffectiveMtlsMode = Exclude<MutualTLSMode, 'UNSET'>;

/** The mTLS mode of one workload, with port-level overrides. */
export interface EffectivePeerAuthentication {
  readonly mode: EffectiveMtlsMode;
  /** Port-level modes (only from a workload-level policy with a selector). */
  readonly ports: ReadonlyMap<number, EffectiveMtlsMode>;
}

/** The mode for one port of a resolved policy. */
export function modeForPort(p: EffectivePeerAuthentication, port: number): EffectiveMtlsMode {
  return p.ports.get(port) ?? p.mode;
}

/** The facts about a workload that PeerAuthentication selection needs. */
export interface WorkloadFacts {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

const selects = (
  match: Readonly<Record<string, string>> | undefined,
  labels: Readonly<Record<string, string>>,
) =>
  match !== undefined &&
  Object.keys(match).length > 0 &&
  Object.entries(match).every(([k, v]) => labels[k] === v);

/** Istio picks the oldest policy when several apply at one level; then the name decides. */
function oldest(policies: readonly PeerAuthenticationConfig[]): PeerAuthenticationConfig | undefined {
  return [...policies].sort((a, b) => {
    const ta = a.metadata.creationTimestamp ?? '';
    const tb = b.metadata.creationTimestamp ?? '';
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ka = `${a.metadata.namespace}/${a.metadata.name}`;
    const kb = `${b.metadata.namespace}/${b.metadata.name}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  })[0];
}

/**
 * Resolves the PeerAuthentication that applies to a workload (Istio semantics): workload-level (its
 * namespace, selector matching its labels) over namespace-level (its namespace, no selector) over
 * mesh-level (root namespace, no selector); UNSET inherits from the next level; nothing set is
 * PERMISSIVE. `portLevelMtls` counts only on a policy with a selector; an UNSET port inherits the
 * workload's mode. Pass `labels: {}` to get the namespace's mode (for automatic mTLS).
 */
export function resolvePeerAuthentication(
  policies: readonly PeerAuthenticationConfig[],
  workload: WorkloadFacts,
  rootNamespace = 'istio-system',
): EffectivePeerAuthentication {
  const mesh = oldest(
    policies.filter((p) => p.metadata.namespace === rootNamespace && !p.spec.selector?.matchLabels),
  );
  const ns = oldest(
    policies.filter(
      (p) =>
        p.metadata.namespace === workload.namespace &&
        workload.namespace !== rootNamespace &&
        !p.spec.selector?.matchLabels,
    ),
  );
  const wl = oldest(
    policies.filter(
      (p) =>
        p.metadata.namespace === workload.namespace && selects(p.spec.selector?.matchLabels, workload.labels),
    ),
  );
  let mode: EffectiveMtlsMode = 'PERMISSIVE';
  for (const p of [mesh, ns, wl]) {
    const m = p?.spec.mtls?.mode;
    if (m && m !== 'UNSET') mode = m;
  }
  const ports = new Map<number, EffectiveMtlsMode>();
  for (const [port, m] of Object.entries(wl?.spec.portLevelMtls ?? {})) {
    const n = Number(port);
    if (Number.isInteger(n) && n > 0 && m.mode && m.mode !== 'UNSET') ports.set(n, m.mode);
  }
  return { mode, ports };
}

const TLS_SOCKET = 'envoy.transport_sockets.tls';
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

/** An SDS secret fetched over the same ADS stream (how Envoy sidecars get `default` and `ROOTCA`). */
export const sdsSecret = (name: string): EnvoyJson => ({
  name,
  sds_config: { ads: {}, resource_api_version: 'V3' },
});

/** Which way the proxy gets its certificates. */
export type CertificateSource = 'sds' | 'grpc-file-watcher';

/** Proxyless gRPC clients and servers read files through the bootstrap's `default` provider instance. */
export const certificateSourceOf = (proxy: Pick<ProxyInfo, 'kind'>): CertificateSource =>
  String(proxy.kind) === 'grpc' ? 'grpc-file-watcher' : 'sds';

/** The peer SAN check of a validation context: any of these `exact` SANs, or the trust-domain
 * `prefix` (see {@link upstreamSubjectAltNames}). */
type SanCheck = { readonly exact: readonly string[] } | { readonly prefix: string };

function commonTlsContext(
  source: CertificateSource,
  san: SanCheck | undefined,
  alpn?: string[],
  instance = 'default',
): EnvoyJson {
  const match: Record<string, JsonValue> =
    san === undefined
      ? {}
      : 'prefix' in san
        ? { match_subject_alt_names: [{ prefix: san.prefix }] }
        : { match_subject_alt_names: san.exact.map((exact) => ({ exact })) };
  if (source === 'grpc-file-watcher') {
    // gRFC A29: the SAN matchers sit in the validation context that names the CA provider (grpc-js-xds
    // reads `validation_context` or `combined_validation_context.default_validation_context`).
    return {
      tls_certificate_provider_instance: { instance_name: instance, certificate_name: 'default' },
      validation_context: {
        ca_certificate_provider_instance: { instance_name: instance, certificate_name: 'ROOTCA' },
        ...match,
      },
    };
  }
  return {
    tls_certificate_sds_secret_configs: [sdsSecret(SDS_DEFAULT_SECRET)],
    combined_validation_context: {
      default_validation_context: match,
      validation_context_sds_secret_config: sdsSecret(SDS_ROOT_SECRET),
    },
    ...(alpn ? { alpn_protocols: alpn } : {}),
  };
}

/**
 * The inbound `transport_socket` for mTLS: DownstreamTlsContext with the workload's own certificate,
 * client certificates required and verified against the trust bundle (any mesh identity: which
 * identities may call is AuthorizationPolicy's job, as in Istio).
 */
export function inboundMtlsTransportSocket(
  source: CertificateSource = 'sds',
  grpcInstance = 'default',
): EnvoyJson {
  const alpn = source === 'sds' ? ['h2', 'http/1.1'] : undefined;
  return {
    name: TLS_SOCKET,
    typed_config: {
      '@type': DOWNSTREAM_TLS,
      require_client_certificate: true,
      common_tls_context: commonTlsContext(source, undefined, alpn, grpcInstance),
    },
  };
}

/** Listener filter needed in front of PERMISSIVE filter chains (TLS vs plaintext detection). */
export const TLS_INSPECTOR: EnvoyJson = {
  name: 'envoy.filters.listener.tls_inspector',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
  },
};

/**
 * The Envoy sidecar filter chains of one inbound port under a mode, from its plaintext filter chain:
 * STRICT: TLS only (plaintext has no matching chain and is refused); PERMISSIVE: a TLS chain and a
 * plaintext chain, told apart by the TLS inspector; DISABLE: the plaintext chain as is.
 */
export function inboundFilterChains(mode: EffectiveMtlsMode, chain: EnvoyJson): EnvoyJson[] {
  const match = (chain.filter_chain_match ?? {}) as EnvoyJson;
  const tls = {
    ...chain,
    name: `${String(chain.name ?? 'inbound')}-mtls`,
    filter_chain_match: { ...match, transport_protocol: 'tls' },
    transport_socket: inboundMtlsTransportSocket('sds'),
  };
  if (mode === 'STRICT') return [tls];
  if (mode === 'DISABLE') return [{ ...chain }];
  return [tls, { ...chain, filter_chain_match: { ...match, transport_protocol: 'raw_buffer' } }];
}

/**
 * The `transport_socket` of a proxyless gRPC server listener's filter chain: STRICT requires mTLS;
 * PERMISSIVE and DISABLE serve plaintext, because gRPC's xDS server cannot tell TLS from plaintext on
 * one port (gRFC A36: `transport_protocol` may only be empty or `raw_buffer`).
 */
export function grpcServerTransportSocket(
  mode: EffectiveMtlsMode,
  instance = 'default',
): EnvoyJson | undefined {
  return mode === 'STRICT' ? inboundMtlsTransportSocket('grpc-file-watcher', instance) : undefined;
}

/** A service account of a destination workload (identity `spiffe://<td>/ns/<namespace>/sa/<name>`). */
export interface DestinationServiceAccount {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** What the upstream TLS decision needs to know about a cluster (a subset of {@link UpstreamTlsContext}). */
export interface UpstreamClusterFacts {
  readonly service: {
    readonly hostname: string;
    readonly namespace: string;
    readonly meshExternal?: boolean;
    /** ServiceEntry `subjectAltNames` (identities besides the endpoints' service accounts). */
    readonly subjectAltNames?: readonly string[];
  };
  readonly port: { readonly port: number };
  readonly subset: string;
  /** The service accounts of the service's endpoints (all clusters; UpstreamTlsContext.serviceAccounts). */
  readonly serviceAccounts?: readonly DestinationServiceAccount[];
  /** The effective DestinationRule `tls` settings, if any. */
  readonly tls: Readonly<Record<string, unknown>> | undefined;
  readonly proxy: Pick<ProxyInfo, 'kind'>;
}

/** How {@link upstreamTransportSocket} decides. */
export interface UpstreamTlsOptions {
  readonly trustDomain: string;
  /** Every PeerAuthentication of the mesh (for automatic mTLS). */
  readonly peerAuthentications: readonly PeerAuthenticationConfig[];
  readonly rootNamespace?: string;
  /** Istio's `enableAutoMtls` (default true). */
  readonly autoMtls?: boolean;
  /** Certificate provider instance of the gRPC bootstrap for proxyless clients (default `default`). */
  readonly grpcCertificateInstance?: string;
}

const sortedUnique = (values: Iterable<string>): string[] =>
  [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * The identities an mTLS upstream peer must prove, exact SAN values sorted and de-duplicated (the same
 * bytes on every replica), as Istio's `conditionallyConvertToIstioMtls` + `buildUpstreamTLSSettings`:
 * the DestinationRule's `tls.subjectAltNames` when it gives any, otherwise the SPIFFE ids
 * `spiffe://<td>/ns/<namespace>/sa/<serviceAccount>` of the destination service's endpoints plus the
 * ServiceEntry's `subjectAltNames` (a service account that already is a SPIFFE id, as Istio's endpoints
 * carry them, is taken as is). Undefined when neither names an identity (endpoints without a
 * service account): the caller then falls back to the trust-domain prefix.
 */
export function upstreamSubjectAltNames(
  c: Pick<UpstreamClusterFacts, 'service' | 'serviceAccounts' | 'tls'>,
  trustDomain: string,
): string[] | undefined {
  const fromRule = (c.tls as ClientTLSSettings | undefined)?.subjectAltNames ?? [];
  if (fromRule.length > 0) return sortedUnique(fromRule);
  const ids = sortedUnique([
    ...(c.serviceAccounts ?? []).map((a) =>
      a.serviceAccount.startsWith('spiffe://')
        ? a.serviceAccount
        : spiffeId(trustDomain, a.namespace, a.serviceAccount),
    ),
    ...(c.service.subjectAltNames ?? []),
  ]);
  return ids.length > 0 ? ids : undefined;
}

/**
 * The upstream `transport_socket` for a cluster: DestinationRule `tls.mode: ISTIO_MUTUAL` -> mTLS with
 * the mesh certificate, SNI `outbound_.<port>_.<subset>_.<host>` and the peer checked against the
 * destination's identities ({@link upstreamSubjectAltNames}: exact SPIFFE ids of the service's
 * endpoints, or the rule's `subjectAltNames`); no `tls` and automatic mTLS on -> mTLS when the destination namespace's
 * PeerAuthentication accepts it (not DISABLE), plaintext otherwise. `DISABLE` -> plaintext. SIMPLE and
 * MUTUAL (user certificates) are not produced here (undefined).
 */
export function upstreamTransportSocket(
  c: UpstreamClusterFacts,
  o: UpstreamTlsOptions,
): EnvoyJson | undefined {
  const tls = c.tls as ClientTLSSettings | undefined;
  let mtls = tls?.mode === 'ISTIO_MUTUAL';
  // Automatic mTLS only when the DestinationRule has no `tls` block at all: a block without a mode is
  // an explicit DISABLE (the proto3 default, which @meridian/api's canonical form drops), as in Istio.
  if (tls === undefined && (o.autoMtls ?? true) && !c.service.meshExternal) {
    const dest = resolvePeerAuthentication(
      o.peerAuthentications,
      { namespace: c.service.namespace, labels: {} },
      o.rootNamespace,
    );
    mtls = modeForPort(dest, c.port.port) !== 'DISABLE';
  }
  if (!mtls) return undefined;
  const source = certificateSourceOf(c.proxy);
  const exact = upstreamSubjectAltNames(c, o.trustDomain);
  // No identity known for the destination (its endpoints declare no service account, and neither the
  // ServiceEntry nor the DestinationRule names one): any identity of the trust domain. Stricter than
  // Istio, whose empty SAN list makes Envoy accept any certificate the root CA signed.
  const san: SanCheck = exact ? { exact } : { prefix: `spiffe://${o.trustDomain}/` };
  const sni =
    (c.tls as ClientTLSSettings | undefined)?.sni ??
    `outbound_.${c.port.port}_.${c.subset}_.${c.service.hostname}`;
  return {
    name: TLS_SOCKET,
    typed_config: {
      '@type': UPSTREAM_TLS,
      sni,
      common_tls_context: commonTlsContext(
        source,
        san,
        source === 'sds' ? ['istio-peer-exchange', 'istio'] : undefined,
        o.grpcCertificateInstance,
      ),
    },
  };
}

/**
 * A string equal exactly when two PeerAuthentication lists resolve alike: each policy's namespace,
 * name, creation time (the oldest wins a tie) and spec, in (namespace, name) order. The Translator
 * compares it on every config change and drops what mTLS shaped when it differs.
 */
export function peerAuthenticationsKey(policies: readonly PeerAuthenticationConfig[]): string {
  const sorted = [...policies].sort((a, b) => {
    const ka = `${a.metadata.namespace}/${a.metadata.name}`;
    const kb = `${b.metadata.namespace}/${b.metadata.name}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  return JSON.stringify(
    sorted.map((p) => [p.metadata.namespace, p.metadata.name, p.metadata.creationTimestamp ?? '', p.spec]),
  );
}

/**
 * The upstream `transport_socket` of a cluster under `TranslateOptions.mtls` ({@link
 * upstreamTransportSocket} with the mesh's PeerAuthentications). Automatic mTLS applies to Envoy
 * sidecars only (`autoMtls`, default on): as Istio's grpcgen, a proxyless gRPC client gets TLS only
 * from ISTIO_MUTUAL, because a gRPC server cannot sniff TLS and a PERMISSIVE one is plaintext-only.
 */
export function mtlsUpstreamTls(
  c: UpstreamTlsContext,
  peerAuthentications: readonly PeerAuthenticationConfig[],
  o: MtlsOptions,
  rootNamespace: string,
): EnvoyJson | undefined {
  return upstreamTransportSocket(
    {
      service: {
        hostname: c.service.hostname,
        namespace: c.service.namespace,
        meshExternal: c.service.meshExternal,
        subjectAltNames: c.service.subjectAltNames,
      },
      port: c.port,
      subset: c.subset,
      // The destination's identities: the upstream peer must prove one of them (exact SANs).
      serviceAccounts: c.serviceAccounts,
      tls: c.tls,
      proxy: c.proxy,
    },
    {
      trustDomain: o.trustDomain,
      peerAuthentications,
      rootNamespace,
      autoMtls: String(c.proxy.kind) !== 'grpc' && (o.autoMtls ?? true),
      ...(o.grpcCertificateInstance !== undefined
        ? { grpcCertificateInstance: o.grpcCertificateInstance }
        : {}),
    },
  );
}

/**
 * The filter chains of one inbound port under `TranslateOptions.mtls`: the workload's
 * PeerAuthentication mode for the port ({@link resolvePeerAuthentication}, {@link modeForPort}), then
 * {@link inboundFilterChains} for Envoy sidecars or the chain with {@link grpcServerTransportSocket}
 * for proxyless gRPC servers.
 */
export function mtlsInboundFilterChains(
  c: InboundTlsContext,
  peerAuthentications: readonly PeerAuthenticationConfig[],
  o: MtlsOptions,
  rootNamespace: string,
): EnvoyJson[] {
  const { proxy, port, chain } = c;
  const mode = modeForPort(
    resolvePeerAuthentication(
      peerAuthentications,
      { namespace: proxy.namespace, labels: proxy.labels },
      rootNamespace,
    ),
    port,
  );
  if (String(proxy.kind) !== 'grpc') return inboundFilterChains(mode, chain);
  const socket = grpcServerTransportSocket(mode, o.grpcCertificateInstance);
  return [socket ? { ...chain, transport_socket: socket } : chain];
}
