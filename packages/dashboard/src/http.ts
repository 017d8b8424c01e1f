/**
 * The dashboard's HTTP plumbing: its static files (the app in `public/`, the vendored ES modules
 * from node_modules) with the security headers every page carries, JSON answers, request bodies,
 * and the error a route throws to answer with a status.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';

/** Where the app's files are. */
export const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));
const require = createRequire(import.meta.url);
/** The ES module builds of the vendored libraries, served from node_modules as they are. */
export const VENDOR: Record<string, () => string> = {
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

/** An answer with `status` and a reason (Kubernetes' words) that a route throws. */
export class UiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Sends `body` as JSON, never cached. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(`${JSON.stringify(body)}\n`);
}

const fileCache = new Map<string, Buffer>();

/** Sends a static file (read once, optionally rewritten) with the security headers. */
export async function sendFile(
  res: ServerResponse,
  file: string,
  rewrite?: (s: string) => string,
): Promise<void> {
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

/** Whether the request came over TLS. */
export function isTls(req: IncomingMessage): boolean {
  return (req.socket as Partial<TLSSocket>).encrypted === true;
}

/** The JSON body of a request, at most `limit` bytes (413 past it, 400 when not JSON). */
export function readJsonBody(req: IncomingMessage, limit = 64 * 1024): Promise<unknown> {
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
