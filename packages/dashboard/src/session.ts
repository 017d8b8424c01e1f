/**
 * Dashboard sessions. A browser cannot attach a bearer token to a navigation, so the login page
 * exchanges a pasted admin token for a session: a new admin token for the same subject, minted by the
 * cluster's signing key with a short lifetime, kept in an HttpOnly, SameSite=Strict cookie (Secure
 * when the admin port serves TLS) whose Path is `/ui`. Every replica of the cluster verifies it as it
 * verifies any admin token, and roles still come from the role bindings at each request, so deleting a
 * binding ends what a session may see at once.
 *
 * The cookie is honoured only by the dashboard's own GET routes (`/ui/...`); the admin API itself
 * stays bearer-or-certificate only, so a cookie can never carry a write.
 */

/** Longest session, in seconds (never longer than the pasted token's own remaining life). */
export const SESSION_TTL_SECONDS = 3600;
/** A pasted token with less life left than this is refused (the session would end at once). */
export const MIN_SESSION_SECONDS = 60;

/** The cookie of a cluster's sessions: one per cluster, so dashboards of several clusters on one host coexist. */
export function sessionCookieName(clusterId: string): string {
  return `meridian_ui_${clusterId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/** The value of cookie `name` in a `Cookie` header, or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) {
      const value = part.slice(i + 1).trim();
      return value === '' ? undefined : value;
    }
  }
  return undefined;
}

/** `Set-Cookie` of a session (`maxAgeSeconds` 0 clears it). */
export function sessionCookie(name: string, value: string, maxAgeSeconds: number, secure: boolean): string {
  return [
    `${name}=${value}`,
    'Path=/ui',
    `Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}`,
    'HttpOnly',
    'SameSite=Strict',
    ...(secure ? ['Secure'] : []),
  ].join('; ');
}

/**
 * The `exp` claim of a JWT (seconds since the epoch), read without verifying: call only on a token
 * that was verified already.
 */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp : undefined;
  } catch {
    return undefined;
  }
}

/** Seconds a session made from a token expiring at `exp` may last, or undefined when too short. */
export function sessionSeconds(exp: number | undefined, nowSeconds: number): number | undefined {
  const left = exp === undefined ? SESSION_TTL_SECONDS : exp - nowSeconds;
  const ttl = Math.min(SESSION_TTL_SECONDS, Math.floor(left));
  return ttl < MIN_SESSION_SECONDS ? undefined : ttl;
}
