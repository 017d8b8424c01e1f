/**
 * The dashboard's sessions: login (a token or a mesh client certificate becomes a session cookie
 * holding a short-lived token), logout (the token revoked for the whole cluster, this replica's event
 * streams of the session ended at once), and the open event streams by session.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DashboardCaller, DashboardHost } from './host.js';
import { isTls, readJsonBody, sendJson, UiError } from './http.js';
import { readCookie, sessionCookie, sessionSeconds, tokenExpiry } from './session.js';

/**
 * The open event streams of each replica (keyed by its authority object, which lives as long as the
 * replica), by session token: a logout ends the session's streams at once instead of at their next
 * period's session check.
 */
const openStreams = new WeakMap<object, Map<string, Set<(reason: string) => void>>>();

/** The open event streams of `host`'s replica, by session token. */
export function streamsOf(host: DashboardHost): Map<string, Set<(reason: string) => void>> {
  let byToken = openStreams.get(host.auth);
  if (!byToken) {
    byToken = new Map();
    openStreams.set(host.auth, byToken);
  }
  return byToken;
}

/**
 * Starts a session (`POST /ui/login`): from an admin token or the TLS connection's mesh client
 * certificate, for a caller with role view; sets the session cookie.
 */
export async function login(
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
export async function logout(
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
export function authStatus(error: unknown): number | undefined {
  const s = (error as { status?: unknown })?.status;
  return s === 401 || s === 403 ? s : undefined;
}
