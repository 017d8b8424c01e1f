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
 *
 * This module routes; the pages' data are views.ts's, login and logout session-routes.ts's, static
 * files and JSON answers http.ts's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, normalize } from 'node:path';
import type { DashboardCaller, DashboardHost } from './host.js';
import { PUBLIC_DIR, sendFile, sendJson, UiError, VENDOR } from './http.js';
import { readCookie, sessionCookieName, tokenExpiry } from './session.js';
import { authStatus, login, logout, streamsOf } from './session-routes.js';
import {
  type Ctx,
  configDumpView,
  configView,
  endpointsView,
  graphView,
  meshView,
  policyView,
  proxiesView,
  self,
  servicesView,
} from './views.js';

/** The pages of the app (each is served the same shell; the app draws the page). */
export const PAGES = ['mesh', 'proxies', 'graph', 'config', 'policy'] as const;

/** Whether `path` belongs to the dashboard. */
export function isDashboardPath(path: string): boolean {
  return path === '/ui' || path.startsWith('/ui/');
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
