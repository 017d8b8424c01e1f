/**
 * The data of the dashboard's pages (`/ui/api/<view>`): each view asks this replica, or every
 * replica of its cluster (over their admin ports, with the caller's session token), and shapes the
 * answers for the app. What the pages show is what the `meridian` commands in {@link COMMANDS} show.
 */

import type { IncomingMessage } from 'node:http';
import {
  ALL_KINDS,
  type AnalysisMessage,
  type AuthorizationPolicyConfig,
  analyzeConfigs,
  type ConfigObject,
} from '@meridian/api';
import { selectAuthorizationPolicies } from '@meridian/translate';
import type { DashboardCaller, DashboardHost } from './host.js';
import { isTls, UiError } from './http.js';
import { layoutGraph, type ServiceGraph } from './layout.js';
import { type MemberAnswer, type MemberEntry, memberBase, memberGet } from './members.js';

/**
 * Istio's root namespace when the replica does not report its own (`rootNamespace` of
 * `/debug/replica`, its translator's): the translator's default.
 */
const DEFAULT_ROOT_NAMESPACE = 'istio-system';
/** The equivalent `meridian` command of each page (shown by the app, as Linkerd viz does). */
export const COMMANDS: Record<string, string> = {
  mesh: 'curl -H "Authorization: Bearer $TOKEN" <admin>/debug/replicas   # also /debug/replica, /debug/leader, /debug/federation; a mesh of meridian up: meridian status',
  proxies: 'meridian proxy-status',
  graph: 'curl -H "Authorization: Bearer $TOKEN" <admin>/debug/graph',
  services: 'curl -H "Authorization: Bearer $TOKEN" <admin>/debug/registry',
  config: 'meridian get <kind> -A && meridian analyze',
  policy: 'meridian get ap -A -o yaml',
};

/** One authenticated API request: the replica, the request, its session token and caller. */
export interface Ctx {
  readonly host: DashboardHost;
  readonly req: IncomingMessage;
  readonly token: string;
  readonly caller: DashboardCaller;
}

/** This replica as it reports itself (`/debug/replica`). */
export function self(host: DashboardHost): {
  id: string;
  clusterId: string;
  adminAddress: string;
  [k: string]: unknown;
} {
  return host.debugInfo('/debug/replica') as { id: string; clusterId: string; adminAddress: string };
}

async function members(ctx: Ctx): Promise<MemberEntry[]> {
  const list = (await ctx.host.debugInfo('/debug/replicas')) as MemberEntry[] | undefined;
  const me = self(ctx.host);
  const out = (list ?? []).filter((m) => m.clusterId === me.clusterId);
  if (!out.some((m) => m.id === me.id))
    out.unshift({ id: me.id, clusterId: me.clusterId, adminAddress: me.adminAddress });
  return out;
}

function ask<T>(ctx: Ctx, m: { adminAddress: string }, path: string, text = false): Promise<MemberAnswer<T>> {
  const base = memberBase(m.adminAddress, ctx.req.headers.host, isTls(ctx.req));
  return memberGet<T>(base, path, ctx.token, {
    timeoutMs: 1500,
    ca: ctx.host.trustBundle?.(),
    text,
  });
}

/** `citadel_server_*_expiry_timestamp` of a Prometheus text exposition, as ISO dates. */
export function caExpiry(metrics: string): { root?: string; chain?: string } {
  const pick = (name: string): string | undefined => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.eE+]+)`, 'm').exec(metrics);
    const v = m ? Number(m[1]) : Number.NaN;
    return Number.isFinite(v) && v > 0 ? new Date(v * 1000).toISOString() : undefined;
  };
  const root = pick('citadel_server_root_cert_expiry_timestamp');
  const chain = pick('citadel_server_cert_chain_expiry_timestamp');
  return { ...(root ? { root } : {}), ...(chain ? { chain } : {}) };
}

/**
 * A replica of another cluster as `/debug/convergence` lists it (`remoteReplicas`, from NATS): the
 * state its convergence summary reports.
 */
export interface RemoteReplica {
  readonly clusterId: string;
  readonly replicaId: string;
  readonly reportedAgoMs: number;
  readonly status?: {
    readonly leader: boolean;
    readonly locality: string;
    readonly connections: number;
    readonly registrations?: number;
    readonly store: string;
    readonly version?: string;
    readonly snapshotRevision?: number;
  };
}

/**
 * The mesh page: every replica of the cluster as it reports itself, with the CA's expiry; then the
 * other clusters' replicas as their convergence summaries over NATS report them (never asked).
 */
export async function meshView(ctx: Ctx): Promise<unknown> {
  const list = await members(ctx);
  const me = self(ctx.host);
  const [answers, metrics] = await Promise.all([
    Promise.all(list.map((m) => ask<Record<string, unknown>>(ctx, m, '/debug/replica'))),
    ask<string>(ctx, me, '/metrics', true),
  ]);
  const { remoteReplicas } = ((await ctx.host.debugInfo('/debug/convergence')) ?? {}) as {
    remoteReplicas?: readonly RemoteReplica[];
  };
  return {
    generatedAt: new Date().toISOString(),
    self: me,
    replicas: list.map((m, i) => {
      const a = answers[i]!;
      return {
        ...m,
        reachable: a.ok,
        answerMs: a.ms,
        ...(a.ok ? { status: a.value } : { error: a.error }),
      };
    }),
    leader: await ctx.host.debugInfo('/debug/leader'),
    federation: (await ctx.host.debugInfo('/debug/federation')) ?? null,
    remoteReplicas: (remoteReplicas ?? []).filter((r) => r.clusterId !== me.clusterId),
    ca: metrics.ok ? caExpiry(metrics.value) : {},
    command: COMMANDS.mesh,
  };
}

/** A proxy of another cluster as `/debug/convergence` lists it (`remoteProxies`, from NATS). */
export interface RemoteProxyRow {
  readonly proxy: string;
  readonly namespace: string;
  readonly kind: string;
  readonly variant: string;
  readonly types: Readonly<Record<string, string>>;
  readonly syncedVersion?: string;
  readonly syncedAgeMs?: number;
  readonly lastAckAgeMs?: number;
  readonly pushFailed?: boolean;
  readonly clusterId: string;
  readonly replicaId: string;
  readonly reportedAgoMs: number;
}

/** The other clusters' proxies and their reporting replicas (`remoteProxies` of `/debug/convergence`). */
export interface RemoteProxies {
  readonly proxies: readonly RemoteProxyRow[];
  readonly replicas: readonly {
    readonly clusterId: string;
    readonly replicaId: string;
    readonly proxies: number;
    readonly listed: number;
    readonly omitted: number;
    readonly reportedAgoMs: number;
  }[];
}

/**
 * A remote proxy as a row of the Proxies page: the same fields as a local one where it has them
 * (per type only the state), marked `remote` with the age of the report it comes from.
 */
export function remoteProxyRow(p: RemoteProxyRow): Record<string, unknown> {
  return {
    name: p.proxy,
    namespace: p.namespace,
    kind: p.kind,
    variant: p.variant,
    clusterId: p.clusterId,
    replica: p.replicaId,
    replicaCluster: p.clusterId,
    types: Object.fromEntries(Object.entries(p.types).map(([t, state]) => [t, { state }])),
    ...(p.syncedVersion !== undefined ? { syncedVersion: p.syncedVersion } : {}),
    ...(p.syncedAgeMs !== undefined ? { syncedAgeMs: p.syncedAgeMs } : {}),
    ...(p.lastAckAgeMs !== undefined ? { lastAckAgeMs: p.lastAckAgeMs } : {}),
    ...(p.pushFailed ? { pushFailed: true } : {}),
    remote: { reportedAgoMs: p.reportedAgoMs },
  };
}

/**
 * The proxies page: every replica's connected proxies and their sync state (this cluster's asked of
 * each member), then the other clusters' as their replicas' convergence summaries over NATS list
 * them (at most 200 per replica, marked remote with the report's age); the convergence of each
 * cluster's newest revision.
 */
export async function proxiesView(ctx: Ctx): Promise<unknown> {
  const list = await members(ctx);
  const answers = await Promise.all(list.map((m) => ask<Record<string, unknown>[]>(ctx, m, '/debug/syncz')));
  const proxies: unknown[] = [];
  const errors: { replica: string; error: string }[] = [];
  answers.forEach((a, i) => {
    const m = list[i]!;
    if (!a.ok) errors.push({ replica: m.id, error: a.error });
    else
      for (const p of a.value)
        proxies.push({
          replica: m.id,
          replicaCluster: m.clusterId,
          ...p,
          // The proxy's own CLUSTER_ID, else the cluster of the replica it is on.
          clusterId: typeof p.clusterId === 'string' && p.clusterId ? p.clusterId : m.clusterId,
        });
  });
  // The other clusters' replicas (remoteReplicas) are the Mesh page's.
  const { remoteProxies, remoteReplicas, ...convergence } = ((await ctx.host.debugInfo(
    '/debug/convergence',
  )) ?? {}) as {
    remoteProxies?: RemoteProxies;
    remoteReplicas?: unknown;
    [k: string]: unknown;
  };
  void remoteReplicas;
  const own = self(ctx.host).clusterId;
  for (const p of remoteProxies?.proxies ?? []) if (p.clusterId !== own) proxies.push(remoteProxyRow(p));
  return {
    generatedAt: new Date().toISOString(),
    clusterId: own,
    replicas: list.map((m) => m.id),
    remoteReplicas: (remoteProxies?.replicas ?? []).filter((r) => r.clusterId !== own),
    proxies,
    errors,
    convergence,
    command: COMMANDS.proxies,
  };
}

/** The graph page: the service graph with its layout. */
export async function graphView(ctx: Ctx): Promise<unknown> {
  const a = await ask<ServiceGraph>(ctx, self(ctx.host), '/debug/graph');
  if (!a.ok) {
    const absent = a.status === 404;
    return {
      absent,
      note: absent
        ? 'this replica serves no /debug/graph yet: no service graph to show'
        : `the service graph could not be read: ${a.error}`,
      layout: layoutGraph({ nodes: [], edges: [] }),
      command: COMMANDS.graph,
    };
  }
  return { absent: false, graph: a.value, layout: layoutGraph(a.value), command: COMMANDS.graph };
}

interface EnvoyEndpoint {
  cluster_name?: string;
  endpoints?: {
    locality?: { region?: string; zone?: string; sub_zone?: string };
    lb_endpoints?: {
      endpoint?: { address?: { socket_address?: { address?: string; port_value?: number } } };
      health_status?: string;
      load_balancing_weight?: number;
    }[];
    priority?: number;
  }[];
}

/**
 * A service's endpoints as proxies are given them: the EDS of one connected proxy (the current
 * snapshot's view, `config_dump?view=current`), per Envoy cluster, by locality, with health.
 */
export async function endpointsView(ctx: Ctx, url: URL): Promise<unknown> {
  const list = await members(ctx);
  let proxy = url.searchParams.get('proxy') ?? undefined;
  let replica = list.find((m) => m.id === url.searchParams.get('replica'));
  if (!proxy) {
    for (const m of list) {
      const a = await ask<{ proxyId: string }[]>(ctx, m, '/debug/syncz');
      if (a.ok && a.value.length > 0) {
        proxy = a.value[0]!.proxyId;
        replica = m;
        break;
      }
    }
  }
  if (!proxy || !replica)
    return { proxy: null, clusters: [], note: 'no proxy is connected to read endpoints from' };
  const a = await ask<Record<string, Record<string, { name: string; resource?: EnvoyEndpoint }[]>>>(
    ctx,
    replica,
    `/debug/config_dump?proxy=${encodeURIComponent(proxy)}&view=current`,
  );
  if (!a.ok)
    throw new UiError(a.status === 404 ? 404 : 502, 'NotFound', `config_dump of ${proxy}: ${a.error}`);
  const clusters: unknown[] = [];
  for (const dump of Object.values(a.value)) {
    for (const r of dump.eds ?? []) {
      const cla = r.resource;
      const localities = (cla?.endpoints ?? []).map((e) => ({
        locality:
          [e.locality?.region, e.locality?.zone, e.locality?.sub_zone].filter(Boolean).join('/') || '(none)',
        priority: e.priority ?? 0,
        endpoints: (e.lb_endpoints ?? []).map((l) => ({
          address: `${l.endpoint?.address?.socket_address?.address ?? '?'}:${l.endpoint?.address?.socket_address?.port_value ?? '?'}`,
          health: l.health_status ?? 'UNKNOWN',
          weight: l.load_balancing_weight,
        })),
      }));
      clusters.push({ name: r.name, localities });
    }
  }
  return {
    proxy,
    replica: replica.id,
    clusters,
    command: `meridian proxy-config endpoint ${proxy}`,
  };
}

/** An endpoint as the replica's registry holds it (`/debug/registry`). */
export interface RegistryEndpoint {
  readonly address: string;
  readonly ports: Readonly<Record<string, number>>;
  readonly locality: { readonly region: string; readonly zone: string; readonly subZone: string };
  readonly network: string;
  readonly clusterId: string;
  readonly health: string;
  readonly serviceAccount?: string;
  readonly weight?: number;
}

/** A service as the replica's registry holds it (`/debug/registry`). */
export interface RegistryService {
  readonly hostname: string;
  readonly namespace: string;
  readonly ports: readonly {
    readonly name: string;
    readonly port: number;
    readonly protocol?: string;
    readonly targetPort?: number;
  }[];
  readonly meshExternal?: boolean;
  readonly endpoints: readonly RegistryEndpoint[];
}

/** A service's endpoints grouped by mesh cluster, then locality, with health counts. */
export interface ServiceEndpoints {
  readonly hostname: string;
  readonly namespace: string;
  readonly ports: RegistryService['ports'];
  readonly meshExternal: boolean;
  readonly health: Readonly<Record<string, number>>;
  readonly clusters: readonly {
    readonly cluster: string;
    /** This replica's own cluster (else imported through federation). */
    readonly local: boolean;
    readonly health: Readonly<Record<string, number>>;
    readonly localities: readonly {
      readonly locality: string;
      readonly endpoints: readonly {
        readonly address: string;
        /** Service port name -> the port this endpoint listens on (its own, else the target port). */
        readonly ports: Readonly<Record<string, number>>;
        readonly health: string;
        readonly network: string;
        readonly serviceAccount: string;
        readonly weight: number;
      }[];
    }[];
  }[];
}

const localityName = (l: RegistryEndpoint['locality'] | undefined): string =>
  [l?.region, l?.zone, l?.subZone].filter(Boolean).join('/') || '(none)';

function countHealth(eps: readonly { health: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of eps) out[e.health] = (out[e.health] ?? 0) + 1;
  return out;
}

/**
 * Groups each service's endpoints by mesh cluster (this replica's own first, then the imported
 * ones by name), then by locality (sorted), keeping the registry's endpoint order within one; each
 * endpoint's port per service port as the translator resolves it.
 */
export function endpointsByCluster(
  services: readonly RegistryService[],
  localCluster: string,
): ServiceEndpoints[] {
  return services.map((s) => {
    const clusters = [...new Set(s.endpoints.map((e) => e.clusterId))].sort((a, b) =>
      a === localCluster ? -1 : b === localCluster ? 1 : a < b ? -1 : a > b ? 1 : 0,
    );
    return {
      hostname: s.hostname,
      namespace: s.namespace,
      ports: s.ports,
      meshExternal: s.meshExternal === true,
      health: countHealth(s.endpoints),
      clusters: clusters.map((cluster) => {
        const eps = s.endpoints.filter((e) => e.clusterId === cluster);
        const localities = [...new Set(eps.map((e) => localityName(e.locality)))].sort();
        return {
          cluster,
          local: cluster === localCluster,
          health: countHealth(eps),
          localities: localities.map((locality) => ({
            locality,
            endpoints: eps
              .filter((e) => localityName(e.locality) === locality)
              .map((e) => ({
                address: e.address,
                // As the translator resolves it: the endpoint's own port, else the target port.
                ports: Object.fromEntries(
                  s.ports.map((p) => [p.name, e.ports[p.name] ?? p.targetPort ?? p.port]),
                ),
                health: e.health,
                network: e.network,
                serviceAccount: e.serviceAccount ?? '',
                weight: e.weight ?? 1,
              })),
          })),
        };
      }),
    };
  });
}

/**
 * Every service's endpoints by mesh cluster, locality and health, from the replica's merged registry
 * (`/debug/registry`: local endpoints and those imported from other clusters through federation),
 * with the federation links' state so an imported cluster gone stale is visible beside its endpoints.
 */
export async function servicesView(ctx: Ctx): Promise<unknown> {
  const me = self(ctx.host);
  const registry = (await ctx.host.debugInfo('/debug/registry')) as
    | { revision: number; services: RegistryService[] }
    | undefined;
  const federation = (await ctx.host.debugInfo('/debug/federation')) as
    | { remoteClusters?: { cluster: string; stale: boolean; heardAgoMs?: number }[] }
    | undefined;
  if (!registry)
    return {
      clusterId: me.clusterId,
      revision: null,
      services: [],
      remoteClusters: [],
      note: 'this replica serves no /debug/registry: no endpoints to show',
      command: COMMANDS.services,
    };
  return {
    clusterId: me.clusterId,
    revision: registry.revision,
    services: endpointsByCluster(registry.services, me.clusterId),
    remoteClusters: federation?.remoteClusters ?? [],
    command: COMMANDS.services,
  };
}

async function allConfig(host: DashboardHost): Promise<ConfigObject[]> {
  const lists = await Promise.all(ALL_KINDS.map((k) => host.listConfig(k.kind)));
  return lists.flatMap((l) => l.items);
}

/** The config page: every object of a kind (optionally of a namespace) with the analysis findings. */
export async function configView(ctx: Ctx, url: URL): Promise<unknown> {
  const objects = await allConfig(ctx.host);
  const warnings: AnalysisMessage[] = analyzeConfigs(objects);
  const kind = url.searchParams.get('kind') ?? undefined;
  const namespace = url.searchParams.get('namespace') ?? undefined;
  const kinds = ALL_KINDS.map((k) => ({
    kind: k.kind,
    count: objects.filter((o) => o.kind === k.kind).length,
  }));
  const namespaces = [...new Set(objects.map((o) => o.metadata.namespace))].sort();
  const items = objects
    .filter((o) => (!kind || o.kind === kind) && (!namespace || o.metadata.namespace === namespace))
    .map((o) => {
      const key = `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
      return { ...o, warnings: warnings.filter((w) => w.object === key) };
    });
  return {
    kinds,
    namespaces,
    items,
    warnings,
    command: `meridian get ${kind ?? '<kind>'}${namespace ? ` -n ${namespace}` : ' -A'} && meridian analyze`,
  };
}

/** The config dump of one proxy, asked of each replica (or the one named) until one holds its stream. */
export async function configDumpView(ctx: Ctx, url: URL): Promise<unknown> {
  const proxy = url.searchParams.get('proxy');
  if (!proxy)
    throw new UiError(
      400,
      'BadRequest',
      'query parameter "proxy" (a node id or <pod>.<namespace>) is required',
    );
  const list = await members(ctx);
  const wanted = url.searchParams.get('replica');
  const order = wanted ? list.filter((m) => m.id === wanted) : list;
  if (wanted && order.length === 0)
    throw new UiError(404, 'NotFound', `replica "${wanted}" is not a member of this cluster`);
  const errors: string[] = [];
  for (const m of order) {
    const a = await ask<unknown>(ctx, m, `/debug/config_dump?proxy=${encodeURIComponent(proxy)}`);
    if (a.ok)
      return {
        proxy,
        replica: m.id,
        dump: a.value,
        command: `meridian proxy-config cluster|listener|route|endpoint ${proxy} -o json`,
      };
    errors.push(`${m.id}: ${a.error}`);
  }
  throw new UiError(404, 'NotFound', `proxy "${proxy}" not found: ${errors.join('; ')}`);
}

/** Parses `a=b,c=d` into labels; refuses a pair without `=`. */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new UiError(400, 'BadRequest', `labels: "${part}" is not key=value`);
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

/**
 * The policy page: every AuthorizationPolicy and WorkloadEntry; with `namespace` (and `labels`), the
 * policies that select such a workload, by action, and what they mean for its requests.
 */
export async function policyView(ctx: Ctx, url: URL): Promise<unknown> {
  const reported = self(ctx.host).rootNamespace;
  const rootNamespace = typeof reported === 'string' && reported ? reported : DEFAULT_ROOT_NAMESPACE;
  const objects = await allConfig(ctx.host);
  const policies = objects.filter((o): o is AuthorizationPolicyConfig => o.kind === 'AuthorizationPolicy');
  const workloads = objects
    .filter((o) => o.kind === 'WorkloadEntry')
    .map((o) => ({
      name: o.metadata.name,
      namespace: o.metadata.namespace,
      labels: (o.spec as { labels?: Record<string, string> }).labels ?? {},
    }));
  const namespace = url.searchParams.get('namespace');
  let selected: unknown = null;
  if (namespace) {
    const labels = parseLabels(url.searchParams.get('labels') ?? '');
    const w = selectAuthorizationPolicies(policies, { namespace, labels }, rootNamespace);
    const brief = (p: AuthorizationPolicyConfig) => ({
      name: p.metadata.name,
      namespace: p.metadata.namespace,
      action: p.spec.action ?? 'ALLOW',
      rules: p.spec.rules ?? [],
      dryRun: p.metadata.annotations?.['istio.io/dry-run'] === 'true',
    });
    selected = {
      namespace,
      labels,
      custom: w.custom.map(brief),
      audit: w.audit.map(brief),
      deny: w.deny.map(brief),
      allow: w.allow.map(brief),
      verdict:
        w.allow.length === 0
          ? 'no ALLOW policy applies: requests not denied are allowed'
          : 'ALLOW policies apply: only requests matching one of their rules (and no DENY) are allowed',
    };
  }
  return {
    rootNamespace,
    policies: policies.map((p) => ({
      name: p.metadata.name,
      namespace: p.metadata.namespace,
      action: p.spec.action ?? 'ALLOW',
      selector: p.spec.selector?.matchLabels ?? null,
    })),
    workloads,
    selected,
    command: namespace
      ? `meridian get ap -n ${namespace} -o yaml; meridian get ap -n ${rootNamespace} -o yaml   # then match the selectors to ${url.searchParams.get('labels') || 'no labels'}`
      : COMMANDS.policy,
  };
}
