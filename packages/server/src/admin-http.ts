/**
 * The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, the xds debug endpoints
 * (`/debug/syncz`, `/debug/config_dump?proxy=`), `/debug/leader`, `/debug/replica`, and the config
 * API (JSON over HTTP, what the `meridian` CLI talks to):
 *
 * | request | does |
 * |---|---|
 * | `POST /apis/v1/apply[?source=<file name>]`, body: YAML/JSON documents | validate, then apply all in one transaction |
 * | `GET /apis/v1/config/<kind>[?namespace=<ns>]` | list |
 * | `GET /apis/v1/config/<kind>/<namespace>/<name>` | get one (with `metadata.resourceVersion`) |
 * | `DELETE /apis/v1/config/<kind>/<namespace>/<name>[?resourceVersion=<rv>]` | delete |
 *
 * Errors are `{code, reason, message, errors?}` with the HTTP status of kubectl's reason (422
 * Invalid, 409 Conflict, 404 NotFound, 503 ServiceUnavailable, 400 BadRequest).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { type ConfigService, requireKind } from './config-service.js';
import { AdminError } from './errors.js';

/** What the admin server reads from the replica. */
export interface AdminHost {
  readonly log: Logger;
  readonly config: ConfigService;
  /** `undefined` when ready; otherwise why not (503). */
  notReady(): string | undefined;
  /** `ok` or `degraded: ...` (200 either way: a degraded replica still serves its last snapshot). */
  readiness(): string;
  metrics(req: IncomingMessage, res: ServerResponse): void;
  debug: (req: IncomingMessage, res: ServerResponse) => boolean;
  debugInfo(path: string): unknown | undefined;
}

const MAX_BODY = 8 * 1024 * 1024;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new AdminError('BAD_REQUEST', `request body larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${body}\n`);
}

async function route(host: AdminHost, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  if (path === '/healthz') return text(res, 200, 'ok');
  if (path === '/readyz') {
    const why = host.notReady();
    return why ? text(res, 503, why) : text(res, 200, host.readiness());
  }
  if (path === '/metrics') return host.metrics(req, res);
  if (host.debug(req, res)) return;
  if (path.startsWith('/debug/')) {
    const info = host.debugInfo(path);
    if (info !== undefined) return json(res, 200, info);
  }
  if (path === '/apis/v1/apply') {
    if (method !== 'POST') throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
    const body = await readBody(req);
    const result = await host.config.applyText(body, url.searchParams.get('source') ?? undefined);
    return json(res, 200, result);
  }
  const m = /^\/apis\/v1\/config\/([^/]+)(?:\/([^/]+)\/([^/]+))?\/?$/.exec(path);
  if (m) {
    const kind = requireKind(decodeURIComponent(m[1]!));
    const namespace = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
    const name = m[3] === undefined ? undefined : decodeURIComponent(m[3]);
    if (method === 'GET' && name === undefined) {
      const ns = url.searchParams.get('namespace') ?? undefined;
      const list = await host.config.list(kind, ns);
      return json(res, 200, { kind: `${kind}List`, revision: list.revision, items: list.items });
    }
    if (method === 'GET') return json(res, 200, await host.config.get(kind, namespace!, name!));
    if (method === 'DELETE' && name !== undefined) {
      const rv = url.searchParams.get('resourceVersion') ?? undefined;
      const out = await host.config.delete(kind, namespace!, name, rv);
      return json(res, 200, { kind, namespace, name, revision: out.revision, action: 'deleted' });
    }
    throw new AdminError('BAD_REQUEST', `method ${method} not allowed on ${path}`);
  }
  json(res, 404, { code: 'NOT_FOUND', reason: 'NotFound', message: `no route for ${method} ${path}` });
}

/** Starts the admin HTTP server on `host:port`; resolves with the server and its bound port. */
export async function startAdminServer(
  host: AdminHost,
  address: { host: string; port: number },
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    route(host, req, res).catch((error: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof AdminError) json(res, error.httpStatus, error.toBody());
      else {
        host.log.error({ err: error, url: req.url }, 'admin request failed');
        json(res, 500, {
          code: 'INTERNAL',
          reason: 'InternalError',
          message: String((error as Error)?.message ?? error),
        });
      }
    });
  });
  server.keepAliveTimeout = 5000;
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : address.port);
    });
  });
  return { server, port };
}
