/**
 * The dashboard's routes under `/ui/` on the admin port.
 *
 * | route | who |
 * |---|---|
 * | `GET /ui/login`, `/ui/assets/*`, `/ui/vendor/*` (the login page and static files: no data) | anyone |
 * | `POST /ui/login`, body `{"token": "<admin token>"}` or `{"certificate": true}` (the mesh client certificate of the TLS connection, admin port over TLS) (JSON, same origin): sets the session cookie | a token or certificate with role view |
 * | `POST /ui/logout`: revokes the session token (for every replica of the cluster), ends its open event streams, clears the cookie | anyone (acts on the cookie it carries) |
 * | `GET /ui/`, `/ui/<page>`: the app (without a session: 303 to `/ui/login`) | session, role view |
 * | `GET /ui/api/*`: the data of the pages, JSON (without a session: 401) | session, role view |
 *
 * The admin server refuses cross-origin requests before this handler runs; the login additionally
 * needs a JSON body (a cross-origin form cannot send one without a preflight, which is refused) and a
 * same-origin `Origin`. Everything else the app calls is GET, and the session cookie is SameSite=Strict
 * with Path `/ui`, so no other site can make the browser use it.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { join, normalize } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import {
  ALL_KINDS,
  type AnalysisMessage,
  type AuthorizationPolicyConfig,
  analyzeConfigs,
  type ConfigObject,
} from '@meridian/api';
import { selectAuthorizationPolicies } from '@meridian/translate';
import { layoutGraph, type ServiceGraph } from './layout.js';
import { type MemberAnswer, type MemberEntry, memberBase, memberGet } from './members.js';
import { readCookie, sessionCookie, sessionCookieName, sessionSeconds, tokenExpiry } from './session.js';

/** The caller as the admin authority sees it. */
export interface DashboardCaller {
  readonly subject: string;
  readonly roles: ReadonlySet<string>;
}

/** What the dashboard needs from the replica's admin server. */
export interface DashboardHost {
  readonly auth: {
    authenticateToken(token: string): Promise<DashboardCaller>;
    /** Throws an error with `status` 403 when the caller's roles do not grant `role`. */
    authorize(caller: DashboardCaller, role: 'view', action: string): void;
    mint(subject: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }>;
    /**
     * Revokes a token for every replica of the cluster before it expires (resolves once the store
     * has it); throws an error with `status` 401 for a token that does not verify.
     */
    revoke(token: string): Promise<{ subject: string; expiresAt: Date }>;
  };
  /** The replica's own `/debug/*` answers (`/debug/replica`, `/debug/replicas`, `/debug/leader`, ...). */
  debugInfo(path: string): unknown;
  /** The config API's list. */
  listConfig(kind: string, namespace?: string): Promise<{ revision: number; items: readonly ConfigObject[] }>;
  /** The mesh trust bundle (PEM) when the admin port serves TLS: members are asked over HTTPS. */
  trustBundle?(): string | undefined;
  /**
   * The caller a verified mesh client certificate of this request proves (admin port over TLS), with
   * the certificate's expiry; undefined without one. Throws (`status` 401) for an untrusted one.
   */
  clientCertificate?(req: IncomingMessage): { caller: DashboardCaller; expiresAt: Date } | undefined;
  readonly log: {
    info(obj: Record<string, unknown>, msg: string): void;
    warn(obj: Record<string, unknown>, msg: string): void;
  };
  onRefused?(reason: string): void;
}

/**
 * Istio's root namespace when the replica does not report its own (`rootNamespace` of
 * `/debug/replica`, its translator's): the translator's default.
 */
const DEFAULT_ROOT_NAMESPACE = 'istio-system';
/** The pages of the app (each is served the same shell; the app draws the page). */
export const PAGES = ['mesh', 'proxies', 'graph', 'config', 'policy'] as const;

const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));
const require = createRequire(import.meta.url);
/** The ES module builds of the vendored libraries, served from node_modules as they are. */
const VENDOR: Record<string, () => string> = {
  'preact.mjs': () => require.resolve('preact').replace(/\.js$/, '.mjs'),
  'hooks.mjs': () => require.resolve('preact/hooks').replace(/\.js$/, '.mjs'),
  'htm.mjs': () => require.resolve('htm').replace(/\.js$/, '.mjs'),
};
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
/** No inline script or style, nothing from elsewhere, never framed. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/**
 * The open event streams of each replica (keyed by its authority object, which lives as long as the
 * replica), by session token: a logout ends the session's streams at once instead of at their next
 * period's session check.
 */
const openStreams = new WeakMap<object, Map<string, Set<(reason: string) => void>>>();

function streamsOf(host: DashboardHost): Map<string, Set<(reason: string) => void>> {
  let byToken = openStreams.get(host.auth);
  if (!byToken) {
    byToken = new Map();
    openStreams.set(host.auth, byToken);
  }
  return byToken;
}

/** Whether `path` belongs to the dashboard. */
export function isDashboardPath(path: string): boolean {
  return path === '/ui' || path.startsWith('/ui/');
}

class UiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(`${JSON.stringify(body)}\n`);
}

const fileCache = new Map<string, Buffer>();

async function sendFile(res: ServerResponse, file: string, rewrite?: (s: string) => string): Promise<void> {
  let body = fileCache.get(file);
  if (!body) {
    const raw = await readFile(file);
    body = rewrite ? Buffer.from(rewrite(raw.toString('utf8'))) : raw;
    fileCache.set(file, body);
  }
  const ext = /\.[a-z]+$/.exec(file)?.[0] ?? '';
  res.writeHead(200, {
    'content-type': TYPES[ext] ?? 'application/octet-stream',
    'cache-control': 'no-cache',
    ...SECURITY_HEADERS,
  });
  res.end(body);
}

function isTls(req: IncomingMessage): boolean {
  return (req.socket as Partial<TLSSocket>).encrypted === true;
}

function readJsonBody(req: IncomingMessage, limit = 64 * 1024): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
    });
    req.on('end', () => {
      if (size > limit)
        return reject(new UiError(413, 'RequestEntityTooLarge', `body larger than ${limit} bytes`));
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (error) {
        reject(new UiError(400, 'BadRequest', `body is not JSON: ${(error as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

/** The equivalent `meridian` command of each page (shown by the app, as Linkerd viz does). */
export const COMMANDS: Record<string, string> = {
  mesh: 'curl -H "Authorization: Bearer $TOKEN" <admin>/debug/replicas   # also /debug/replica, /debug/leader, /debug/federation; a mesh of meridian up: meridian status',
  proxies: 'meridian proxy-status',
  graph: 'curl -H "Authorization: Bearer $TOKEN" <admin>/debug/graph',
  services: 'curl -H "Authorization: Bearer $TOKEN" <admin>/debug/registry',
  config: 'meridian get <kind> -A && meridian analyze',
  policy: 'meridian get ap -A -o yaml',
};

interface Ctx {
  readonly host: DashboardHost;
  readonly req: IncomingMessage;
  readonly token: string;
  readonly caller: DashboardCaller;
}

function self(host: DashboardHost): {
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

async function meshView(ctx: Ctx): Promise<unknown> {
  const list = await members(ctx);
  const me = self(ctx.host);
  const [answers, metrics] = await Promise.all([
    Promise.all(list.map((m) => ask<Record<string, unknown>>(ctx, m, '/debug/replica'))),
    ask<string>(ctx, me, '/metrics', true),
  ]);
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
    ca: metrics.ok ? caExpiry(metrics.value) : {},
    command: COMMANDS.mesh,
  };
}

async function proxiesView(ctx: Ctx): Promise<unknown> {
  const list = await members(ctx);
  const answers = await Promise.all(list.map((m) => ask<Record<string, unknown>[]>(ctx, m, '/debug/syncz')));
  const proxies: unknown[] = [];
  const errors: { replica: string; error: string }[] = [];
  answers.forEach((a, i) => {
    const m = list[i]!;
    if (!a.ok) errors.push({ replica: m.id, error: a.error });
    else for (const p of a.value) proxies.push({ replica: m.id, replicaCluster: m.clusterId, ...p });
  });
  return {
    generatedAt: new Date().toISOString(),
    replicas: list.map((m) => m.id),
    proxies,
    errors,
    convergence: await ctx.host.debugInfo('/debug/convergence'),
    command: COMMANDS.proxies,
  };
}

async function graphView(ctx: Ctx): Promise<unknown> {
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
async function endpointsView(ctx: Ctx, url: URL): Promise<unknown> {
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
async function servicesView(ctx: Ctx): Promise<unknown> {
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

async function configView(ctx: Ctx, url: URL): Promise<unknown> {
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

async function configDumpView(ctx: Ctx, url: URL): Promise<unknown> {
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

async function policyView(ctx: Ctx, url: URL): Promise<unknown> {
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

async function login(
  host: DashboardHost,
  req: IncomingMessage,
  res: ServerResponse,
  cookieName: string,
): Promise<void> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json')
    throw new UiError(415, 'UnsupportedMediaType', 'content-type must be application/json');
  // The admin server refused a foreign Origin already; a login must also name its origin.
  if (req.headers.origin === undefined && req.headers['sec-fetch-site'] !== 'same-origin')
    throw new UiError(403, 'Forbidden', 'login refused: the request names no origin');
  const body = (await readJsonBody(req)) as { token?: unknown; certificate?: unknown } | null;
  let caller: DashboardCaller;
  let ttl: number | undefined;
  let via: 'token' | 'certificate';
  if (body?.certificate === true) {
    // The client certificate the browser presented in the TLS handshake (verified by the admin
    // server against the mesh trust bundle), instead of a pasted token.
    via = 'certificate';
    const peer = host.clientCertificate?.(req);
    if (!peer)
      throw new UiError(
        401,
        'Unauthorized',
        isTls(req)
          ? 'no client certificate was presented: the browser needs a mesh certificate (SPIFFE id) of this trust domain'
          : 'this admin port does not serve TLS (--admin-tls off): log in with a token',
      );
    caller = peer.caller;
    ttl = sessionSeconds(peer.expiresAt.getTime() / 1000, Date.now() / 1000);
  } else {
    via = 'token';
    const token = typeof body?.token === 'string' ? body.token.trim() : '';
    if (!token)
      throw new UiError(
        400,
        'BadRequest',
        'body must be {"token": "<admin token>"} or {"certificate": true}',
      );
    caller = await host.auth.authenticateToken(token);
    ttl = sessionSeconds(tokenExpiry(token), Date.now() / 1000);
  }
  host.auth.authorize(caller, 'view', 'open the dashboard');
  if (ttl === undefined)
    throw new UiError(
      401,
      'Unauthorized',
      via === 'token'
        ? 'the token expires within a minute: make a new one'
        : 'the client certificate expires within a minute: renew it',
    );
  const session = await host.auth.mint(caller.subject, ttl);
  host.log.info(
    {
      audit: true,
      subject: caller.subject,
      method: 'POST',
      path: '/ui/login',
      outcome: 'session',
      via,
      expiresAt: session.expiresAt.toISOString(),
    },
    'dashboard session started',
  );
  sendJson(
    res,
    200,
    { subject: caller.subject, roles: [...caller.roles].sort(), expiresAt: session.expiresAt.toISOString() },
    { 'set-cookie': sessionCookie(cookieName, session.token, ttl, isTls(req)) },
  );
}

/**
 * Ends the session of the cookie: its token is revoked for every replica of the cluster (a copy of
 * the cookie stops working at once on this replica, and on the others as soon as their watch of the
 * store delivers the revocation), this replica's event streams of the session end now (the others'
 * at their next session check), and the cookie is cleared. When the store cannot take the
 * revocation the answer is 503 (the cookie is cleared all the same), so the browser does not claim a
 * logout that did not happen.
 */
async function logout(
  host: DashboardHost,
  req: IncomingMessage,
  res: ServerResponse,
  cookieName: string,
): Promise<void> {
  const clear = { 'set-cookie': sessionCookie(cookieName, '', 0, isTls(req)) };
  const token = readCookie(req.headers.cookie, cookieName);
  if (!token) return sendJson(res, 200, { loggedOut: true, revoked: false }, clear);
  for (const stop of streamsOf(host).get(token) ?? []) stop('logged out');
  try {
    await host.auth.authenticateToken(token); // a session revoked or expired already: nothing to do
    const revoked = await host.auth.revoke(token);
    host.log.info(
      {
        audit: true,
        subject: revoked.subject,
        method: 'POST',
        path: '/ui/logout',
        outcome: 'session revoked',
        expiresAt: revoked.expiresAt.toISOString(),
      },
      'dashboard session ended',
    );
    sendJson(res, 200, { loggedOut: true, revoked: true }, clear);
  } catch (error) {
    if (authStatus(error) === 401)
      return sendJson(
        res,
        200,
        {
          loggedOut: true,
          revoked: false,
          message: `the session had ended already: ${(error as Error).message}`,
        },
        clear,
      );
    host.log.warn({ err: error, path: '/ui/logout' }, 'dashboard session could not be revoked');
    sendJson(
      res,
      503,
      {
        code: 'UNAVAILABLE',
        reason: 'ServiceUnavailable',
        message: `the session could not be revoked (${(error as Error).message}): it stays valid until it expires; try again`,
      },
      clear,
    );
  }
}

/** Status of an error thrown by the auth package (401/403), else undefined. */
function authStatus(error: unknown): number | undefined {
  const s = (error as { status?: unknown })?.status;
  return s === 401 || s === 403 ? s : undefined;
}

/**
 * Serves one request under `/ui` (the caller checked {@link isDashboardPath} and refused cross-origin
 * requests already).
 */
export async function handleDashboard(
  host: DashboardHost,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  const me = self(host);
  const cookieName = sessionCookieName(me.clusterId);
  try {
    if (path === '/ui' || path === '/ui/') {
      res.writeHead(303, { location: '/ui/mesh', 'cache-control': 'no-store' });
      res.end();
      return;
    }
    if (path === '/ui/login') {
      if (method === 'POST') return await login(host, req, res, cookieName);
      if (method !== 'GET') throw new UiError(405, 'MethodNotAllowed', `${method} not allowed on ${path}`);
      return await sendFile(res, join(PUBLIC_DIR, 'login.html'));
    }
    if (path === '/ui/logout') {
      if (method !== 'POST') throw new UiError(405, 'MethodNotAllowed', `${method} not allowed on ${path}`);
      return await logout(host, req, res, cookieName);
    }
    if (method !== 'GET' && method !== 'HEAD')
      throw new UiError(405, 'MethodNotAllowed', `${method} not allowed on ${path}`);
    const asset = /^\/ui\/assets\/([A-Za-z0-9_-]+\.(?:js|css|svg))$/.exec(path);
    if (asset) {
      const file = normalize(join(PUBLIC_DIR, asset[1]!));
      return await sendFile(res, file);
    }
    const vendor = /^\/ui\/vendor\/([a-z]+\.mjs)$/.exec(path);
    if (vendor && VENDOR[vendor[1]!]) {
      // preact/hooks imports "preact" by name: point it at the file served beside it.
      return await sendFile(res, VENDOR[vendor[1]!]!(), (s) =>
        s.replace(/from\s*"preact"/g, 'from"./preact.mjs"'),
      );
    }
    const isApi = path.startsWith('/ui/api/');
    const page = /^\/ui\/([a-z]+)\/?$/.exec(path)?.[1];
    if (!isApi && !(page && (PAGES as readonly string[]).includes(page)))
      throw new UiError(404, 'NotFound', `no dashboard page ${path}`);

    // Everything below needs a session with role view.
    const token = readCookie(req.headers.cookie, cookieName);
    let caller: DashboardCaller | undefined;
    let refusal: unknown;
    if (token) {
      try {
        caller = await host.auth.authenticateToken(token);
        host.auth.authorize(caller, 'view', `read ${path}`);
      } catch (error) {
        refusal = error;
        caller = undefined;
      }
    }
    if (!caller || !token) {
      const status = authStatus(refusal) ?? (refusal === undefined ? 401 : undefined);
      if (status === undefined) throw refusal;
      host.onRefused?.(status === 401 ? 'unauthenticated' : 'forbidden');
      host.log.warn(
        {
          audit: true,
          subject: 'anonymous',
          method,
          path,
          status,
          outcome: status === 401 ? 'unauthenticated' : 'forbidden',
          remote: req.socket.remoteAddress,
        },
        'dashboard request refused',
      );
      if (!isApi && status === 401) {
        res.writeHead(303, {
          location: `/ui/login?next=${encodeURIComponent(path)}`,
          'cache-control': 'no-store',
        });
        res.end();
        return;
      }
      const message =
        refusal instanceof Error ? refusal.message : 'no dashboard session: log in at /ui/login';
      sendJson(res, status, {
        code: status === 401 ? 'UNAUTHENTICATED' : 'FORBIDDEN',
        reason: status === 401 ? 'Unauthorized' : 'Forbidden',
        message,
      });
      return;
    }
    if (!isApi) return await sendFile(res, join(PUBLIC_DIR, 'index.html'));
    const ctx: Ctx = { host, req, token, caller };
    const requested = path.slice('/ui/api/'.length);
    if (requested.startsWith('stream/')) {
      await streamView(ctx, res, requested.slice('stream/'.length), url, path);
      return;
    }
    const body = await viewBody(ctx, requested, url);
    if (body === undefined) throw new UiError(404, 'NotFound', `no dashboard API ${path}`);
    sendJson(res, 200, body);
  } catch (error) {
    handleFailure(error);
  }

  function handleFailure(error: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (error instanceof UiError) {
      sendJson(res, error.status, {
        code: error.reason.toUpperCase(),
        reason: error.reason,
        message: error.message,
      });
      return;
    }
    const status = authStatus(error);
    if (status !== undefined) {
      host.onRefused?.(status === 401 ? 'unauthenticated' : 'forbidden');
      host.log.warn(
        {
          audit: true,
          subject: 'anonymous',
          method,
          path,
          status,
          outcome: 'refused',
          reason: (error as Error).message,
          remote: req.socket.remoteAddress,
        },
        'dashboard request refused',
      );
      sendJson(res, status, {
        code: status === 401 ? 'UNAUTHENTICATED' : 'FORBIDDEN',
        reason: status === 401 ? 'Unauthorized' : 'Forbidden',
        message: (error as Error).message,
      });
      return;
    }
    host.log.warn({ err: error, path }, 'dashboard request failed');
    sendJson(res, 500, {
      code: 'INTERNAL',
      reason: 'InternalError',
      message: (error as Error)?.message ?? String(error),
    });
  }

  /** The JSON of one page's data, or undefined for an unknown view. */
  async function viewBody(ctx: Ctx, view: string, url: URL): Promise<unknown> {
    const caller = ctx.caller;
    return view === 'session'
      ? {
          subject: caller.subject,
          roles: [...caller.roles].sort(),
          replica: me.id,
          clusterId: me.clusterId,
          expiresAt: tokenExpiry(ctx.token),
        }
      : view === 'mesh'
        ? await meshView(ctx)
        : view === 'proxies'
          ? await proxiesView(ctx)
          : view === 'graph'
            ? await graphView(ctx)
            : view === 'endpoints'
              ? await endpointsView(ctx, url)
              : view === 'services'
                ? await servicesView(ctx)
                : view === 'config'
                  ? await configView(ctx, url)
                  : view === 'config_dump'
                    ? await configDumpView(ctx, url)
                    : view === 'policy'
                      ? await policyView(ctx, url)
                      : undefined;
  }

  /**
   * Server-sent events of a live page's data (`/ui/api/stream/mesh|proxies|graph`): one `data:` event
   * per period, the session re-checked before each (a binding deleted, a session expired or revoked
   * ends the stream with an `end` event; a logout on this replica ends it at once), until the
   * browser goes away.
   */
  async function streamView(
    ctx: Ctx,
    res: ServerResponse,
    view: string,
    url: URL,
    at: string,
  ): Promise<void> {
    const periodMs = STREAM_PERIOD_MS[view];
    if (periodMs === undefined) throw new UiError(404, 'NotFound', `no live dashboard stream ${at}`);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    let open = true;
    let ended: string | undefined;
    let wake: (() => void) | undefined;
    const stop = (reason: string) => {
      ended = reason;
      wake?.();
    };
    const byToken = streamsOf(host);
    const mine = byToken.get(ctx.token) ?? new Set();
    mine.add(stop);
    byToken.set(ctx.token, mine);
    req.on('close', () => {
      open = false;
      wake?.();
    });
    try {
      while (open && ended === undefined) {
        try {
          const caller = await host.auth.authenticateToken(ctx.token);
          host.auth.authorize(caller, 'view', `read ${at}`);
          const body = await viewBody({ ...ctx, caller }, view, url);
          if (!open || ended !== undefined) break;
          res.write(`data: ${JSON.stringify(body)}\n\n`);
        } catch (error) {
          if (authStatus(error) !== undefined) {
            ended = (error as Error).message;
            break;
          }
          res.write(`event: failure\ndata: ${JSON.stringify({ message: (error as Error).message })}\n\n`);
        }
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, periodMs);
        });
        clearTimeout(timer);
        wake = undefined;
      }
      if (open && ended !== undefined)
        res.write(`event: end\ndata: ${JSON.stringify({ message: ended })}\n\n`);
    } finally {
      mine.delete(stop);
      if (mine.size === 0 && byToken.get(ctx.token) === mine) byToken.delete(ctx.token);
      res.end();
    }
  }
}

/** Live views and how often their stream sends (`/ui/api/stream/<view>`). */
const STREAM_PERIOD_MS: Readonly<Record<string, number>> = { mesh: 2000, proxies: 2000, graph: 5000 };
