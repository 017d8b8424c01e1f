/**
 * The replica's two HTTP servers, split by trust as istiod splits its ports:
 *
 * - the **monitoring** server (`--monitoring-address`, default `0.0.0.0:15014`): `/healthz`,
 *   `/readyz` and `/metrics`, nothing else, no credentials; safe to expose to Prometheus and probes;
 * - the **admin** server (`--admin-address`, default loopback `127.0.0.1:15080`): the config API,
 *   `/debug/*` and the auth API, every request authenticated (bearer admin token) and authorised by
 *   role; `/healthz` and `/readyz` are answered there too, without credentials.
 *
 * | request | role |
 * |---|---|
 * | `GET /debug/syncz`, `/debug/config_dump?proxy=[&view=current]`, `/debug/leader`, `/debug/replica`, `/debug/replicas`, `/debug/federation`, `/debug/jwks` (issuer, URI, last success, last error of each JWKS), `/debug/graph` (the service graph from the proxies' access logs, telemetry-ingest.ts), `/debug/registry` (services and endpoints, local and imported, with cluster, locality and health) | view |
 * | `GET /apis/v1/config/<kind>[?namespace=<ns>]`, `GET /apis/v1/config/<kind>/<namespace>/<name>` | view |
 * | `POST /apis/v1/apply[?source=<file name>]`, body: YAML/JSON documents | edit |
 * | `DELETE /apis/v1/config/<kind>/<namespace>/<name>[?resourceVersion=<rv>]` | edit |
 * | `GET /apis/v1/auth/whoami` | any authenticated caller |
 * | `GET /apis/v1/auth/rolebindings`, `PUT`/`DELETE /apis/v1/auth/rolebindings/<name>` | admin |
 * | `POST /apis/v1/auth/tokens`, body `{"subject" or "user", "ttlSeconds"}` | admin |
 * | `/ui/...`: the web dashboard (@meridian/dashboard: a login page that exchanges a token for a session cookie, then GET only) | view |
 *
 * Browser safety: a request whose `Origin` is not the server's own, or that a browser marks
 * cross-site, is refused (403) before anything else; no CORS header is ever sent, so preflights
 * fail; request bodies must be `application/json` or `application/yaml` (415 otherwise), which a
 * page cannot send cross-origin without a preflight; credentials are bearer tokens only, which a
 * browser never attaches by itself.
 *
 * Errors are `{code, reason, message, errors?}` with the HTTP status of kubectl's reason (401
 * Unauthorized, 403 Forbidden, 422 Invalid, 409 Conflict, 404 NotFound, 503 ServiceUnavailable,
 * 400 BadRequest, 413 RequestEntityTooLarge, 415 UnsupportedMediaType). Every write and every
 * refusal is written to the audit log (logger `part: audit`) with the caller's identity.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import {
  type AdminAuthority,
  AuthError,
  type Caller,
  InvalidAuthInputError,
  operatorSubject,
  parseRoleBinding,
  type Role,
  UnauthenticatedError,
  validateBindingName,
  validateSubject,
} from '@meridian/auth';
import { identityFromPeerCertificate, spiffeId } from '@meridian/ca';
import { type DashboardHost, handleDashboard, isDashboardPath } from '@meridian/dashboard';
import type { Logger } from 'pino';
import { requireKind } from './config-kinds.js';
import type { ConfigService } from './config-service.js';
import { AdminError } from './errors.js';

/** What the monitoring server reads from the replica. */
export interface MonitoringHost {
  /** `undefined` when ready; otherwise why not (503). */
  notReady(): string | undefined;
  /** `ok` or `degraded: ...` (200 either way: a degraded replica still serves its last snapshot). */
  readiness(): string;
  metrics(req: IncomingMessage, res: ServerResponse): void;
}

/** What the admin server reads from the replica. */
export interface AdminHost extends MonitoringHost {
  readonly log: Logger;
  readonly config: ConfigService;
  /** Credentials and role bindings of the cluster. */
  readonly auth: AdminAuthority;
  /** The trust domain of operator identities (`user` in a token request). */
  readonly trustDomain: string;
  /** Sync status and config dumps (secrets already redacted). */
  debug: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** A `/debug/*` answer of the replica (JSON), or a promise of one; undefined: no such path. */
  debugInfo(path: string): unknown | undefined;
  /** Counts a refused request by reason (`unauthenticated`, `forbidden`, `cross_origin`, ...). */
  onRefused?(reason: string): void;
}

/** Largest request body accepted (an apply of a few thousand objects fits). */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

class BodyTooLargeError extends Error {}

/**
 * Reads the body; past {@link MAX_BODY_BYTES} it stops buffering but keeps draining the upload so
 * the client reads the 413 answer instead of a reset connection.
 */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = declared > MAX_BODY_BYTES;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      if (!tooLarge) chunks.push(c);
    });
    req.on('end', () =>
      tooLarge ? reject(new BodyTooLargeError()) : resolve(Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', reject);
  });
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${body}\n`);
}

/** A refusal at the edge: HTTP status, kubectl reason, code and the audit reason label. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly code: string,
    readonly label: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const BODY_TYPES = new Set(['application/json', 'application/yaml', 'application/x-yaml']);

/** Refuses anything a browser could send on behalf of another site. */
function checkBrowserSafety(req: IncomingMessage, method: string): void {
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let sameOrigin = false;
    try {
      sameOrigin = new URL(origin).host === req.headers.host;
    } catch {
      sameOrigin = false;
    }
    if (!sameOrigin)
      throw new Refusal(
        403,
        'Forbidden',
        'FORBIDDEN',
        'cross_origin',
        `cross-origin request from ${origin} refused`,
      );
  }
  if (req.headers['sec-fetch-site'] === 'cross-site')
    throw new Refusal(403, 'Forbidden', 'FORBIDDEN', 'cross_origin', 'cross-site request refused');
  if (method === 'OPTIONS')
    throw new Refusal(403, 'Forbidden', 'FORBIDDEN', 'cross_origin', 'CORS is not offered by this API');
}

function checkBodyType(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (!BODY_TYPES.has(type))
    throw new Refusal(
      415,
      'UnsupportedMediaType',
      'UNSUPPORTED_MEDIA_TYPE',
      'content_type',
      `content-type must be application/json or application/yaml (got ${type ? `"${type}"` : 'none'})`,
    );
}

/**
 * The caller a mesh client certificate proves (admin port over TLS: verified by the TLS layer against
 * the mesh trust bundle; its SPIFFE id is the identity), with the certificate's expiry; undefined when
 * the request carries none. Throws `UnauthenticatedError` for a certificate that is not trusted.
 */
function certificateCaller(
  host: AdminHost,
  req: IncomingMessage,
): { caller: Caller; expiresAt: Date } | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  if (!socket.encrypted || typeof socket.getPeerCertificate !== 'function') return undefined;
  const peer = socket.getPeerCertificate();
  if (!peer?.raw) return undefined;
  if (!socket.authorized)
    throw new UnauthenticatedError(`client certificate not trusted: ${String(socket.authorizationError)}`);
  let id: ReturnType<typeof identityFromPeerCertificate>;
  try {
    id = identityFromPeerCertificate(peer.raw, new Date());
  } catch (error) {
    throw new UnauthenticatedError(`client certificate: ${(error as Error).message}`);
  }
  if (id.trustDomain !== host.trustDomain)
    throw new UnauthenticatedError(
      `client certificate of trust domain "${id.trustDomain}", not "${host.trustDomain}"`,
    );
  return { caller: host.auth.callerFromIdentity(spiffeId(id)), expiresAt: new Date(peer.valid_to) };
}

/**
 * The caller: a bearer admin token, else (admin port over TLS) a client certificate that the TLS
 * layer verified against the mesh trust bundle, whose SPIFFE id is the identity.
 */
async function authenticate(host: AdminHost, req: IncomingMessage): Promise<Caller> {
  const header = req.headers.authorization;
  if (header === undefined || header === '') {
    const peer = certificateCaller(host, req);
    if (peer) return peer.caller;
    throw new UnauthenticatedError(
      'no credentials: send "Authorization: Bearer <token>" (meridian auth), or a mesh client certificate over TLS',
    );
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new UnauthenticatedError('the Authorization header must be "Bearer <token>"');
  return host.auth.authenticateToken(m[1]!);
}

/** Parses a JSON body of the auth API. */
function parseJsonBody(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch (error) {
    throw new AdminError('BAD_REQUEST', `body is not JSON: ${(error as Error).message}`);
  }
}

interface Handled {
  readonly status: number;
  /** For the audit record of a write. */
  readonly detail?: Record<string, unknown>;
}

async function route(
  host: AdminHost,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  method: string,
  caller: Caller,
): Promise<Handled> {
  const path = url.pathname;
  const need = (role: Role, action: string) => host.auth.authorize(caller, role, action);

  if (path.startsWith('/debug/')) {
    if (method !== 'GET') throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
    need('view', `read ${path}`);
    if (host.debug(req, res)) return { status: res.statusCode };
    const info = await host.debugInfo(path);
    if (info !== undefined) {
      json(res, 200, info);
      return { status: 200 };
    }
    json(res, 404, { code: 'NOT_FOUND', reason: 'NotFound', message: `no route for ${method} ${path}` });
    return { status: 404 };
  }
  if (path === '/apis/v1/apply') {
    if (method !== 'POST') throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
    need('edit', 'apply config');
    checkBodyType(req);
    const body = await readBody(req);
    // kubectl's `dryRun=All`: validated and planned, nothing written.
    const dryRun = url.searchParams.get('dryRun');
    if (dryRun !== null && dryRun !== 'All')
      throw new AdminError('BAD_REQUEST', `dryRun must be "All", got "${dryRun}"`);
    const result = await host.config.applyText(body, url.searchParams.get('source') ?? undefined, {
      dryRun: dryRun === 'All',
    });
    json(res, 200, result);
    return {
      status: 200,
      detail: {
        revision: result.revision,
        ...(result.dryRun ? { dryRun: true } : {}),
        items: result.items.map((i) => `${i.kind}/${i.namespace}/${i.name} ${i.action}`),
      },
    };
  }
  const m = /^\/apis\/v1\/config\/([^/]+)(?:\/([^/]+)\/([^/]+))?\/?$/.exec(path);
  if (m) {
    const kind = requireKind(decodeURIComponent(m[1]!));
    const namespace = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
    const name = m[3] === undefined ? undefined : decodeURIComponent(m[3]);
    if (method === 'GET' && name === undefined) {
      need('view', `list ${kind}`);
      const ns = url.searchParams.get('namespace') ?? undefined;
      const list = await host.config.list(kind, ns);
      json(res, 200, { kind: `${kind}List`, revision: list.revision, items: list.items });
      return { status: 200 };
    }
    if (method === 'GET') {
      need('view', `get ${kind}`);
      json(res, 200, await host.config.get(kind, namespace!, name!));
      return { status: 200 };
    }
    if (method === 'DELETE' && name !== undefined) {
      need('edit', `delete ${kind}`);
      const rv = url.searchParams.get('resourceVersion') ?? undefined;
      const out = await host.config.delete(kind, namespace!, name, rv);
      json(res, 200, { kind, namespace, name, revision: out.revision, action: 'deleted' });
      return { status: 200, detail: { object: `${kind}/${namespace}/${name}`, revision: out.revision } };
    }
    throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
  }
  if (path === '/apis/v1/auth/whoami') {
    json(res, 200, { subject: caller.subject, via: caller.via, roles: [...caller.roles].sort() });
    return { status: 200 };
  }
  if (path === '/apis/v1/auth/rolebindings') {
    if (method !== 'GET') throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
    need('admin', 'list role bindings');
    json(res, 200, { kind: 'RoleBindingList', items: host.auth.bindings() });
    return { status: 200 };
  }
  const b = /^\/apis\/v1\/auth\/rolebindings\/([^/]+)$/.exec(path);
  if (b) {
    const name = validateBindingName(decodeURIComponent(b[1]!));
    if (method === 'PUT') {
      need('admin', 'write role bindings');
      checkBodyType(req);
      const binding = parseRoleBinding(parseJsonBody(await readBody(req)));
      const revision = await host.auth.putBinding(name, binding);
      json(res, 200, { name, ...binding, revision });
      return { status: 200, detail: { binding: name, subject: binding.subject, role: binding.role } };
    }
    if (method === 'DELETE') {
      need('admin', 'delete role bindings');
      if (!(await host.auth.deleteBinding(name)))
        throw new AdminError('NOT_FOUND', `role binding "${name}" not found`);
      json(res, 200, { name, action: 'deleted' });
      return { status: 200, detail: { binding: name } };
    }
    throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
  }
  if (path === '/apis/v1/auth/tokens') {
    if (method !== 'POST') throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
    need('admin', 'mint tokens');
    checkBodyType(req);
    const body = parseJsonBody(await readBody(req));
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new InvalidAuthInputError('body', 'expected an object {subject or user, ttlSeconds}');
    const o = body as { subject?: unknown; user?: unknown; ttlSeconds?: unknown };
    const subject =
      o.subject !== undefined
        ? validateSubject(o.subject)
        : typeof o.user === 'string'
          ? operatorSubject(host.trustDomain, o.user)
          : (() => {
              throw new InvalidAuthInputError('subject', 'give "subject" (a SPIFFE id) or "user"');
            })();
    const ttl = o.ttlSeconds === undefined ? 24 * 3600 : Number(o.ttlSeconds);
    const minted = await host.auth.mint(subject, ttl);
    json(res, 200, { subject, token: minted.token, expiresAt: minted.expiresAt.toISOString() });
    // The token itself is never logged.
    return { status: 200, detail: { minted: subject, expiresAt: minted.expiresAt.toISOString() } };
  }
  json(res, 404, { code: 'NOT_FOUND', reason: 'NotFound', message: `no route for ${method} ${path}` });
  return { status: 404 };
}

/** The error response of a failed request and its audit label. */
function answerError(
  host: AdminHost,
  res: ServerResponse,
  error: unknown,
): { status: number; label: string } {
  if (res.headersSent) {
    res.destroy();
    return { status: res.statusCode, label: 'aborted' };
  }
  if (error instanceof Refusal) {
    json(
      res,
      error.status,
      { code: error.code, reason: error.reason, message: error.message },
      error.headers,
    );
    return { status: error.status, label: error.label };
  }
  if (error instanceof AuthError) {
    const unauth = error.status === 401;
    json(
      res,
      error.status,
      {
        code: unauth ? 'UNAUTHENTICATED' : 'FORBIDDEN',
        reason: unauth ? 'Unauthorized' : 'Forbidden',
        message: error.message,
      },
      unauth ? { 'www-authenticate': 'Bearer realm="meridian"' } : {},
    );
    return { status: error.status, label: unauth ? 'unauthenticated' : 'forbidden' };
  }
  if (error instanceof BodyTooLargeError) {
    const message = `request body larger than ${MAX_BODY_BYTES} bytes; split the file (meridian apply -f accepts several files)`;
    json(
      res,
      413,
      { code: 'BAD_REQUEST', reason: 'RequestEntityTooLarge', message },
      { connection: 'close' },
    );
    return { status: 413, label: 'too_large' };
  }
  if (error instanceof InvalidAuthInputError) {
    json(res, 400, { code: 'BAD_REQUEST', reason: 'BadRequest', message: error.message });
    return { status: 400, label: 'bad_request' };
  }
  if (error instanceof AdminError) {
    json(res, error.httpStatus, error.toBody());
    return { status: error.httpStatus, label: error.code.toLowerCase() };
  }
  host.log.error({ err: error }, 'admin request failed');
  json(res, 500, {
    code: 'INTERNAL',
    reason: 'InternalError',
    message: String((error as Error)?.message ?? error),
  });
  return { status: 500, label: 'internal' };
}

/** The dashboard's view of the admin host (`trust`: the mesh bundle when the port serves TLS). */
function dashboardHost(host: AdminHost, trust: () => string | undefined): DashboardHost {
  return {
    get auth() {
      return host.auth;
    },
    debugInfo: (path) => host.debugInfo(path),
    listConfig: (kind, namespace) => host.config.list(requireKind(kind), namespace),
    trustBundle: trust,
    clientCertificate: (req) => certificateCaller(host, req),
    log: host.log,
    ...(host.onRefused ? { onRefused: host.onRefused } : {}),
  };
}

async function handleAdmin(
  host: AdminHost,
  req: IncomingMessage,
  res: ServerResponse,
  trust: () => string | undefined = () => undefined,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  if (path === '/healthz' || path === '/readyz' || path === '/metrics') {
    handleMonitoring(host, req, res, true);
    return;
  }
  let caller: Caller | undefined;
  const audit = (status: number, outcome: string, extra: Record<string, unknown> = {}) =>
    host.log[status < 400 ? 'info' : 'warn'](
      {
        audit: true,
        subject: caller?.subject ?? 'anonymous',
        via: caller?.via,
        method,
        path,
        status,
        outcome,
        remote: req.socket.remoteAddress,
        ...extra,
      },
      outcome === 'allowed' ? 'admin write' : 'admin request refused',
    );
  try {
    checkBrowserSafety(req, method);
    // The dashboard authenticates its own requests (session cookie, GET only; see @meridian/dashboard).
    if (isDashboardPath(path)) return await handleDashboard(dashboardHost(host, trust), req, res);
    caller = await authenticate(host, req);
    const done = await route(host, req, res, url, method, caller);
    if (WRITE_METHODS.has(method) && done.status < 400) audit(done.status, 'allowed', done.detail ?? {});
  } catch (error) {
    const { status, label } = answerError(host, res, error);
    if (status === 401 || status === 403 || status === 415 || status === 413) {
      host.onRefused?.(label);
      audit(status, label, { reason: error instanceof Error ? error.message : String(error) });
    } else if (WRITE_METHODS.has(method)) audit(status, label);
  }
}

function handleMonitoring(
  host: MonitoringHost,
  req: IncomingMessage,
  res: ServerResponse,
  withMetrics: boolean,
): void {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (path === '/healthz') text(res, 200, 'ok');
  else if (path === '/readyz') {
    const why = host.notReady();
    if (why) text(res, 503, why);
    else text(res, 200, host.readiness());
  } else if (withMetrics && path === '/metrics') host.metrics(req, res);
  else
    json(res, 404, { code: 'NOT_FOUND', reason: 'NotFound', message: `no route for ${req.method} ${path}` });
}

async function listen(server: Server, address: { host: string; port: number }): Promise<number> {
  server.keepAliveTimeout = 5000;
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : address.port);
    });
  });
}

/** The admin port's TLS material, kept current by the CA runtime (serving certificate and bundle). */
export interface AdminTlsSource {
  /** Calls `apply` now and on every rotation with the PEM serving chain, key and trust bundle. */
  onChange(apply: (material: { certChainPem: string; keyPem: string; trustBundlePem: string }) => void): void;
}

/**
 * Starts the admin server on `host:port` (HTTPS with `tls`: the CA's serving certificate, client
 * certificates requested and verified against the mesh trust bundle but optional, since a bearer
 * token also authenticates); resolves with the server and its bound port.
 */
export async function startAdminServer(
  host: AdminHost,
  address: { host: string; port: number },
  tls?: AdminTlsSource,
): Promise<{ server: Server; port: number }> {
  let bundle: string | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    handleAdmin(host, req, res, () => bundle).catch((error: unknown) => {
      host.log.error({ err: error }, 'admin request failed');
      if (!res.headersSent)
        json(res, 500, { code: 'INTERNAL', reason: 'InternalError', message: 'internal error' });
      else res.destroy();
    });
  };
  if (!tls) {
    const server = createServer(handler);
    return { server, port: await listen(server, address) };
  }
  let first: { certChainPem: string; keyPem: string; trustBundlePem: string } | undefined;
  let server: ReturnType<typeof createHttpsServer> | undefined;
  tls.onChange((m) => {
    bundle = m.trustBundlePem;
    if (!server) first = m;
    else server.setSecureContext({ cert: m.certChainPem, key: m.keyPem, ca: m.trustBundlePem });
  });
  if (!first) throw new Error('admin TLS: the CA has no serving certificate yet');
  server = createHttpsServer(
    {
      cert: first.certChainPem,
      key: first.keyPem,
      ca: first.trustBundlePem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    handler,
  );
  return { server, port: await listen(server, address) };
}

/** Starts the monitoring HTTP server (`/healthz`, `/readyz`, `/metrics` only). */
export async function startMonitoringServer(
  host: MonitoringHost,
  address: { host: string; port: number },
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, {
        code: 'BAD_REQUEST',
        reason: 'MethodNotAllowed',
        message: `${req.method} not allowed`,
      });
      return;
    }
    handleMonitoring(host, req, res, true);
  });
  return { server, port: await listen(server, address) };
}
