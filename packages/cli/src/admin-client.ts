// How the CLI reaches a replica's admin API: which server, which credential, and the call itself
// with kubectl's error shapes. Server: `--server`, else `MERIDIAN_SERVER`, else the credentials
// context, else the local default. Token: `--token`, else `MERIDIAN_TOKEN`, else the credentials
// context (`--credentials FILE` or `MERIDIAN_CREDENTIALS` or ~/.meridian/credentials.yaml,
// `--context NAME`). For an https server (meridiand --admin-tls on): the roots to trust and,
// optionally, a mesh client certificate (kubectl's flag names).
import { readFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { defaultCredentialsPath, readCredentials, selectContext } from '@meridian/auth/credentials';
import { type Command, CommanderError, Option } from 'commander';
import { type CliContext, UsageError } from './context.js';

/** The default admin address of a local replica (meridiand's `--admin-address` default). */
export const DEFAULT_SERVER = 'http://127.0.0.1:15080';

/** Flags every admin-API command takes. */
export interface TargetFlags {
  readonly server?: string;
  readonly token?: string;
  readonly credentials?: string;
  readonly context?: string;
  readonly certificateAuthority?: string;
  readonly clientCertificate?: string;
  readonly clientKey?: string;
}

/** Where to send admin calls and with which token. */
export interface AdminTarget {
  readonly server: string;
  readonly token: string | undefined;
  /** TLS material (PEM) for an https server. */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
}

/** Adds `--server`, `--token`, `--credentials` and `--context` to a command. */
export function withTargetOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--server <url>', `replica admin address (env MERIDIAN_SERVER, default ${DEFAULT_SERVER})`),
    )
    .addOption(
      new Option('--token <token>', 'admin token (env MERIDIAN_TOKEN; default: the credentials file)'),
    )
    .addOption(
      new Option(
        '--credentials <file>',
        'credentials file (env MERIDIAN_CREDENTIALS, default ~/.meridian/credentials.yaml)',
      ),
    )
    .addOption(
      new Option('--context <name>', 'context of the credentials file (default: its current context)'),
    )
    .addOption(
      new Option(
        '--certificate-authority <file>',
        'PEM roots the https server must chain to (the mesh root)',
      ),
    )
    .addOption(
      new Option(
        '--client-certificate <file>',
        'PEM mesh client certificate chain (mTLS instead of a token)',
      ),
    )
    .addOption(new Option('--client-key <file>', 'PEM key of --client-certificate'));
}

/**
 * `http://host:port` from a server address (a bare `host:port` is http). A malformed address is a
 * UsageError naming where it came from.
 */
export function normalizeServer(url: string, from = '--server'): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
  let parsed: URL;
  try {
    parsed = new URL(withScheme);
  } catch {
    throw new UsageError(`${from} "${url}" is not an address (expected http(s)://host:port)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new UsageError(
      `${from} "${url}": scheme must be http or https, got ${parsed.protocol.slice(0, -1)}`,
    );
  if (parsed.hostname === '' || (parsed.pathname !== '/' && parsed.pathname !== '') || parsed.search !== '')
    throw new UsageError(`${from} "${url}" is not an address (expected http(s)://host:port)`);
  return `${parsed.protocol}//${parsed.host}`;
}

/** Resolves server and token from flags, environment and the credentials file. */
export async function resolveTarget(
  flags: TargetFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AdminTarget> {
  const file = flags.credentials ?? defaultCredentialsPath(env);
  const creds = await readCredentials(file);
  const context = selectContext(creds, flags.context);
  if (flags.context !== undefined && !context)
    throw new UsageError(
      `context "${flags.context}" is not in ${file} (contexts: ${creds.contexts.map((c) => c.name).join(', ') || 'none'})`,
    );
  const server = flags.server ?? env.MERIDIAN_SERVER ?? context?.server ?? DEFAULT_SERVER;
  const serverFrom =
    flags.server !== undefined
      ? '--server'
      : env.MERIDIAN_SERVER !== undefined
        ? 'MERIDIAN_SERVER'
        : context?.server !== undefined
          ? `server of context "${context.name}"`
          : 'server';
  const token = flags.token ?? (env.MERIDIAN_TOKEN || undefined) ?? context?.token;
  const read = async (flag: string, path: string | undefined): Promise<string | undefined> => {
    if (path === undefined) return undefined;
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      throw new Error(
        `${flag} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
  };
  const ca = await read(
    '--certificate-authority',
    flags.certificateAuthority ?? context?.certificateAuthority,
  );
  const cert = await read('--client-certificate', flags.clientCertificate ?? context?.clientCertificate);
  const key = await read('--client-key', flags.clientKey ?? context?.clientKey);
  if ((cert === undefined) !== (key === undefined))
    throw new Error('--client-certificate and --client-key go together');
  const tls =
    ca || cert ? { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } : undefined;
  return { server: normalizeServer(server, serverFrom), token, ...(tls ? { tls } : {}) };
}

/** One HTTP(S) request; resolves with status and body text. */
function send(
  target: AdminTarget,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: string | undefined,
): Promise<{ status: number; text: string }> {
  const url = new URL(`${target.server}${path}`);
  const https = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const options = {
      method,
      headers: {
        ...headers,
        ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
      },
      timeout: 30_000,
      ...(https && target.tls ? target.tls : {}),
    };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    };
    const req = https ? httpsRequest(url, options, onResponse) : httpRequest(url, options, onResponse);
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error('timed out after 30 s'), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface ErrorBody {
  code?: string;
  reason?: string;
  message?: string;
}

/** Fails the command quietly after the message was printed. */
export function fail(ctx: CliContext, line: string, exitCode = 1): never {
  ctx.err(line);
  throw new CommanderError(exitCode, 'meridian.failed', line);
}

/** Calls the admin API; prints kubectl-style errors and fails on a non-2xx answer. */
export async function adminCall(
  ctx: CliContext,
  target: AdminTarget,
  method: string,
  path: string,
  body?: { text: string; type: 'application/yaml' | 'application/json' },
): Promise<unknown> {
  const headers: Record<string, string> = {};
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  if (body) headers['content-type'] = body.type;
  let res: { status: number; text: string };
  try {
    res = await send(target, method, path, headers, body?.text);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (
      e.code === 'ECONNREFUSED' ||
      e.code === 'ENOTFOUND' ||
      e.code === 'EHOSTUNREACH' ||
      e.code === 'ETIMEDOUT'
    )
      fail(
        ctx,
        `The connection to the server ${target.server} was refused - did you specify the right host or port? (${e.code})`,
        2,
      );
    fail(ctx, `Unable to connect to the server ${target.server}: ${e.message}`, 2);
  }
  const text = res.text;
  const ok = res.status >= 200 && res.status < 300;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!ok) {
    const e = (parsed ?? {}) as ErrorBody;
    if (res.status === 401)
      fail(
        ctx,
        `error: You must be logged in to the server (Unauthorized): ${e.message ?? text.trim()}${target.token || target.tls?.cert ? '' : ' (no token: run "meridian auth bootstrap", or set MERIDIAN_TOKEN or --token)'}`,
      );
    fail(ctx, `Error from server (${e.reason ?? `HTTP ${res.status}`}): ${e.message ?? text.trim()}`);
  }
  return parsed;
}
