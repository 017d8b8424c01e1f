/**
 * Cross-object checks in the manner of `istioctl analyze`: problems that no single object shows.
 * They are warnings: the objects are valid, but traffic will not go where the author meant.
 */
import { type FieldError, formatFieldError, sortFieldErrors } from './errors.js';
import {
  type AuthorizationPolicyConfig,
  type ConfigObject,
  configKey,
  type DestinationRuleConfig,
  type ServiceEntryConfig,
  type VirtualServiceConfig,
} from './kinds.js';
import { FieldPath } from './path.js';
import { requestAuthnLimits } from './request-authn.js';
import { hostsMatch, isIPAddress } from './rules.js';
import type { Destination } from './types.js';

/** What the analysis knows beyond the objects themselves. */
export interface AnalysisContext {
  /**
   * Hosts of services known to exist (FQDNs such as `reviews.default.svc.cluster.local`, from the
   * registry). ServiceEntry hosts among the analysed objects are added automatically. When absent,
   * the "unknown host" checks are skipped.
   */
  knownHosts?: Iterable<string>;
  /** Cluster DNS suffix used to resolve short names; default `cluster.local`. */
  domainSuffix?: string;
}

/** Istio analyzer message codes used here. */
export const AnalysisCode = {
  /** IST0101: a referenced host, or host+subset, does not exist. */
  ReferencedResourceNotFound: 'IST0101',
  /** IST0109: two mesh VirtualServices define the same host. */
  ConflictingMeshGatewayVirtualServiceHosts: 'IST0109',
  /**
   * MER0001 (Meridian): an AuthorizationPolicy field proxyless gRPC servers cannot enforce exactly
   * (gRFC A41: a metadata matcher never matches, `requested_server_name` is empty, no LOG action, no
   * shadow rules). Translation then skips the ALLOW rule or drops the field from the DENY rule, never
   * allowing more than the policy (see @meridian/translate authz.ts).
   */
  GrpcUnenforceableAuthorization: 'MER0001',
  /** MER0002 (Meridian): a RequestAuthentication proxyless gRPC servers cannot enforce (no jwt_authn). */
  GrpcUnenforceableRequestAuthentication: 'MER0002',
  /** MER0003 (Meridian): a RequestAuthentication `targetRef(s)`, which Meridian does not support. */
  UnsupportedTargetRef: 'MER0003',
} as const;

/** One analysis finding; `object`/`path` as in `FieldError`. */
export interface AnalysisMessage extends FieldError {
  /** Istio analyzer code, e.g. `IST0101`. */
  readonly code: string;
  /** Always `warning`: analysis never rejects config. */
  readonly level: 'warning';
}

/** Formats a finding as one line: `Warning [IST0101] VirtualService default/reviews: spec...: message`. */
export function formatAnalysisMessage(m: AnalysisMessage): string {
  return `Warning [${m.code}] ${formatFieldError(m)}`;
}

/**
 * Resolves a host as Istio does: a short name (no dot) is qualified with the config's namespace
 * (`reviews` in `default` -> `reviews.default.svc.cluster.local`); anything else is kept.
 */
export function resolveHost(host: string, namespace: string, domainSuffix = 'cluster.local'): string {
  if (host === '*' || host.includes('.') || isIPAddress(host)) return host;
  return `${host}.${namespace}.svc.${domainSuffix}`;
}

function visibleNamespaces(exportTo: readonly string[] | undefined, own: string): Set<string> {
  if (exportTo === undefined || exportTo.length === 0) return new Set(['*']);
  return new Set(exportTo.map((e) => (e === '.' ? own : e)));
}

function overlap(a: Set<string>, b: Set<string>): boolean {
  if (a.has('~') || b.has('~')) return false;
  if (a.has('*') || b.has('*')) return true;
  for (const x of a) if (b.has(x)) return true;
  return false;
}

function appliesToMesh(vs: VirtualServiceConfig): boolean {
  const g = vs.spec.gateways ?? [];
  return g.length === 0 || g.includes('mesh');
}

interface DestinationRef {
  destination: Destination;
  path: FieldPath;
}

function destinations(vs: VirtualServiceConfig): DestinationRef[] {
  const out: DestinationRef[] = [];
  const spec = FieldPath.root.field('spec');
  (vs.spec.http ?? []).forEach((h, i) => {
    const hp = spec.field('http').index(i);
    (h.route ?? []).forEach((rd, j) => {
      if (rd.destination)
        out.push({ destination: rd.destination, path: hp.field('route').index(j).field('destination') });
    });
    if (h.mirror) out.push({ destination: h.mirror, path: hp.field('mirror') });
    (h.mirrors ?? []).forEach((m, j) => {
      if (m.destination)
        out.push({ destination: m.destination, path: hp.field('mirrors').index(j).field('destination') });
    });
  });
  for (const proto of ['tcp', 'tls'] as const) {
    (vs.spec[proto] ?? []).forEach((t, i) => {
      (t.route ?? []).forEach((rd, j) => {
        if (rd.destination) {
          out.push({
            destination: rd.destination,
            path: spec.field(proto).index(i).field('route').index(j).field('destination'),
          });
        }
      });
    });
  }
  return out;
}

/**
 * The kinds {@link analyzeConfigs} reads: a message is only ever about an object of these kinds, and
 * objects of other kinds never change a message, so a caller checking one apply can leave the rest out.
 */
export const ANALYZED_KINDS: ReadonlySet<string> = new Set([
  'VirtualService',
  'DestinationRule',
  'ServiceEntry',
  'AuthorizationPolicy',
  'RequestAuthentication',
]);

/**
 * Runs the cross-object checks over a set of validated objects and returns warnings in
 * deterministic order:
 * - IST0101: a route or mirror destination names a subset that no DestinationRule for its host
 *   defines; with `knownHosts`, a destination host, a mesh VirtualService host or a DestinationRule
 *   host that matches no known service;
 * - IST0109: two VirtualServices bound to the mesh, visible in a common namespace, define the same host.
 * Limitations: DestinationRule `exportTo` and Sidecar scoping are not considered when matching
 * subsets (any DestinationRule for the host counts).
 */
export function analyzeConfigs(
  objects: readonly ConfigObject[],
  context: AnalysisContext = {},
): AnalysisMessage[] {
  const suffix = context.domainSuffix ?? 'cluster.local';
  const out: AnalysisMessage[] = [];
  const warn = (obj: ConfigObject, code: string, path: FieldPath, message: string): void => {
    out.push({ object: configKey(obj), path: path.text, message, code, level: 'warning' });
  };
  const vss = objects.filter((o): o is VirtualServiceConfig => o.kind === 'VirtualService');
  const drs = objects.filter((o): o is DestinationRuleConfig => o.kind === 'DestinationRule');
  const ses = objects.filter((o): o is ServiceEntryConfig => o.kind === 'ServiceEntry');

  let known: string[] | undefined;
  if (context.knownHosts !== undefined) {
    known = [...context.knownHosts];
    for (const se of ses)
      for (const h of se.spec.hosts ?? []) known.push(resolveHost(h, se.metadata.namespace, suffix));
  }
  const exact = new Set(known ?? []);
  const wildcards = (known ?? []).filter((k) => k.startsWith('*'));
  const isKnown = (host: string): boolean =>
    known === undefined ||
    exact.has(host) ||
    wildcards.some((k) => hostsMatch(k, host)) ||
    (host.startsWith('*') && known.some((k) => hostsMatch(k, host)));

  // Subsets defined per resolved DestinationRule host.
  const drHosts = drs.map((dr) => ({
    host: resolveHost(dr.spec.host ?? '', dr.metadata.namespace, suffix),
    subsets: new Set((dr.spec.subsets ?? []).map((s) => s.name ?? '')),
  }));

  for (const vs of vss) {
    for (const { destination, path } of destinations(vs)) {
      const host = resolveHost(destination.host ?? '', vs.metadata.namespace, suffix);
      if (!isKnown(host)) {
        warn(
          vs,
          AnalysisCode.ReferencedResourceNotFound,
          path.field('host'),
          `Referenced host not found: "${destination.host}"`,
        );
      }
      const subset = destination.subset;
      if (subset) {
        const defined = drHosts.some((d) => hostsMatch(d.host, host) && d.subsets.has(subset));
        if (!defined) {
          warn(
            vs,
            AnalysisCode.ReferencedResourceNotFound,
            path.field('subset'),
            `Referenced host+subset in destinationrule not found: "${destination.host}+${subset}"`,
          );
        }
      }
    }
    if (known !== undefined && appliesToMesh(vs)) {
      (vs.spec.hosts ?? []).forEach((h, i) => {
        if (h.startsWith('*') || isIPAddress(h)) return;
        const host = resolveHost(h, vs.metadata.namespace, suffix);
        if (!isKnown(host)) {
          warn(
            vs,
            AnalysisCode.ReferencedResourceNotFound,
            FieldPath.root.field('spec').field('hosts').index(i),
            `Referenced host not found: "${h}"`,
          );
        }
      });
    }
  }

  if (known !== undefined) {
    for (const dr of drs) {
      const host = resolveHost(dr.spec.host ?? '', dr.metadata.namespace, suffix);
      if (!host.startsWith('*') && !isKnown(host)) {
        warn(
          dr,
          AnalysisCode.ReferencedResourceNotFound,
          FieldPath.root.field('spec').field('host'),
          `Referenced host not found: "${dr.spec.host}"`,
        );
      }
    }
  }

  // Conflicting mesh VirtualServices: same resolved host, visible in a common namespace.
  const meshVss = [...vss].filter(appliesToMesh).sort((a, b) => (configKey(a) < configKey(b) ? -1 : 1));
  const byHost = new Map<string, Array<{ vs: VirtualServiceConfig; index: number }>>();
  for (const vs of meshVss) {
    (vs.spec.hosts ?? []).forEach((h, index) => {
      const host = resolveHost(h, vs.metadata.namespace, suffix);
      const list = byHost.get(host) ?? [];
      list.push({ vs, index });
      byHost.set(host, list);
    });
  }
  for (const [host, list] of byHost) {
    for (let i = 0; i < list.length; i++) {
      const a = list[i] as { vs: VirtualServiceConfig; index: number };
      const others = list.filter((b, j) => {
        if (j === i || b.vs === a.vs) return false;
        const va = visibleNamespaces(a.vs.spec.exportTo, a.vs.metadata.namespace);
        const vb = visibleNamespaces(b.vs.spec.exportTo, b.vs.metadata.namespace);
        return overlap(va, vb);
      });
      if (others.length === 0) continue;
      const names = [a.vs, ...others.map((o) => o.vs)]
        .map((v) => `${v.metadata.namespace}/${v.metadata.name}`)
        .sort()
        .join(',');
      warn(
        a.vs,
        AnalysisCode.ConflictingMeshGatewayVirtualServiceHosts,
        FieldPath.root.field('spec').field('hosts').index(a.index),
        `The VirtualServices ${names} associated with mesh gateway define the same host "${host}" which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
      );
    }
  }

  for (const ap of objects.filter((o): o is AuthorizationPolicyConfig => o.kind === 'AuthorizationPolicy'))
    grpcAuthorizationLimits(ap, (path, message) =>
      warn(ap, AnalysisCode.GrpcUnenforceableAuthorization, path, message),
    );

  for (const ra of objects)
    if (ra.kind === 'RequestAuthentication')
      for (const l of requestAuthnLimits(ra.spec, FieldPath.root.field('spec')))
        warn(ra, l.code, l.path, l.message);

  return sortFieldErrors(out) as AnalysisMessage[];
}

const GRPC_LIMIT = 'cannot be enforced exactly by proxyless gRPC servers';

/** The AuthorizationPolicy fields proxyless gRPC servers cannot enforce exactly (gRFC A41). */
function grpcAuthorizationLimits(
  ap: AuthorizationPolicyConfig,
  warn: (path: FieldPath, m: string) => void,
): void {
  const spec = FieldPath.root.field('spec');
  const action = ap.spec.action ?? 'ALLOW';
  const effect =
    action === 'ALLOW'
      ? 'the rule allows nothing on them'
      : 'the field is left out of the rule, which then matches more requests';
  if (action === 'AUDIT') warn(spec.field('action'), `AUDIT ${GRPC_LIMIT} (no LOG action): ignored there`);
  if (action === 'CUSTOM')
    warn(
      spec.field('action'),
      'CUSTOM has no ext_authz provider in Meridian: its rules deny what they match',
    );
  const dry = ap.metadata.annotations?.['istio.io/dry-run'];
  if (dry !== undefined && ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(dry))
    warn(
      FieldPath.root.field('metadata').field('annotations'),
      `dry-run ${GRPC_LIMIT} (no shadow rules): ignored there`,
    );
  (ap.spec.rules ?? []).forEach((rule, i) => {
    const rp = spec.field('rules').index(i);
    (rule.from ?? []).forEach((from, j) => {
      for (const field of ['requestPrincipals', 'notRequestPrincipals'] as const) {
        if ((from.source?.[field] ?? []).length > 0)
          warn(
            rp.field('from').index(j).field('source').field(field),
            `${field} ${GRPC_LIMIT} (JWT metadata never matches): ${effect}`,
          );
      }
    });
    (rule.when ?? []).forEach((when, k) => {
      const key = when.key ?? '';
      const metadata = key.startsWith('request.auth.') || key.startsWith('experimental.envoy.filters.');
      if (metadata || key === 'connection.sni')
        warn(
          rp.field('when').index(k).field('key'),
          `${key} ${GRPC_LIMIT} (${metadata ? 'metadata never matches' : 'the SNI is empty'}): ${effect}`,
        );
    });
  });
}
