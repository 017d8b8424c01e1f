/**
 * Asking the other replicas of the cluster. The dashboard's server side calls each member listed in
 * the cluster's membership (`/debug/replicas`, entries in etcd, never an address a caller gives) with
 * the caller's session token. That token was minted by this cluster's signing key for this caller
 * and lives an hour at most; every member can mint such tokens itself (it reads the key from etcd),
 * so handing one to a member gives it nothing it did not have. A member answers with the caller's
 * roles, as if the browser had asked it.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** A membership entry as `/debug/replicas` lists it (the fields the dashboard uses). */
export interface MemberEntry {
  readonly id: string;
  readonly clusterId: string;
  readonly adminAddress: string;
  readonly locality?: string;
  readonly version?: string;
  readonly startedAt?: string;
}

/** A member's answer, or why there is none. */
export type MemberAnswer<T> =
  | { readonly ok: true; readonly status: number; readonly value: T; readonly ms: number }
  | { readonly ok: false; readonly status?: number; readonly error: string; readonly ms: number };

/**
 * The base URL of a member's admin port: its address, with a wildcard host replaced by the host the
 * browser used, and the scheme of this request.
 */
export function memberBase(adminAddress: string, requestHost: string | undefined, tls: boolean): string {
  const m = /^(.*):(\d+)$/.exec(adminAddress);
  let host = m ? m[1]! : adminAddress;
  const port = m ? m[2]! : tls ? '443' : '80';
  if (host === '0.0.0.0' || host === '::' || host === '[::]' || host === '') {
    host = new URL(`http://${requestHost ?? '127.0.0.1'}`).hostname;
  }
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `${tls ? 'https' : 'http'}://${host}:${port}`;
}

/** GET `path` from `base` with the bearer `token`, JSON or text; never throws. */
export function memberGet<T>(
  base: string,
  path: string,
  token: string | undefined,
  options: { timeoutMs?: number; ca?: string; text?: boolean } = {},
): Promise<MemberAnswer<T>> {
  const start = performance.now();
  const ms = () => Math.round(performance.now() - start);
  return new Promise((resolve) => {
    const url = new URL(path, base);
    const https = url.protocol === 'https:';
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method: 'GET',
        headers: token ? { authorization: `Bearer ${token}` } : {},
        timeout: options.timeoutMs ?? 2000,
        ...(https && options.ca ? { ca: options.ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (error) => resolve({ ok: false, error: error.message, ms: ms() }));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            let message = body.trim().slice(0, 300);
            try {
              const parsed = JSON.parse(body) as { message?: string; error?: string };
              message = parsed.message ?? parsed.error ?? message;
            } catch {
              // not JSON
            }
            resolve({ ok: false, status, error: `HTTP ${status}: ${message}`, ms: ms() });
            return;
          }
          if (options.text) {
            resolve({ ok: true, status, value: body as T, ms: ms() });
            return;
          }
          try {
            resolve({ ok: true, status, value: JSON.parse(body) as T, ms: ms() });
          } catch (error) {
            resolve({ ok: false, status, error: `not JSON: ${(error as Error).message}`, ms: ms() });
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${options.timeoutMs ?? 2000} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) =>
      resolve({ ok: false, error: error.code ? `${error.code}: ${error.message}` : error.message, ms: ms() }),
    );
    req.end();
  });
}
