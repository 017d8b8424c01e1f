// How the CLI reaches a replica's admin API: which server, which token, and the call itself with
// kubectl's error shapes. Server: `--server`, else `MERIDIAN_SERVER`, else the credentials context,
// else the local default. Token: `--token`, else `MERIDIAN_TOKEN`, else the credentials context
// (`--credentials FILE` or `MERIDIAN_CREDENTIALS` or ~/.meridian/credentials.yaml, `--context NAME`).
import { defaultCredentialsPath, readCredentials, selectContext } from '@meridian/auth';
import { type Command, CommanderError, Option } from 'commander';
import type { CliContext } from './context.js';

/** The default admin address of a local replica (meridiand's `--admin-address` default). */
export const DEFAULT_SERVER = 'http://127.0.0.1:15080';

/** Flags every admin-API command takes. */
export interface TargetFlags {
  readonly server?: string;
  readonly token?: string;
  readonly credentials?: string;
  readonly context?: string;
}

/** Where to send admin calls and with which token. */
export interface AdminTarget {
  readonly server: string;
  readonly token: string | undefined;
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
    );
}

function normalize(url: string): string {
  return (/^https?:\/\//.test(url) ? url : `http://${url}`).replace(/\/+$/, '');
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
    throw new Error(
      `context "${flags.context}" is not in ${file} (contexts: ${creds.contexts.map((c) => c.name).join(', ') || 'none'})`,
    );
  const server = flags.server ?? env.MERIDIAN_SERVER ?? context?.server ?? DEFAULT_SERVER;
  const token = flags.token ?? (env.MERIDIAN_TOKEN || undefined) ?? context?.token;
  return { server: normalize(server), token };
}

interface ErrorBody {
  code?: string;
  reason?: string;
  message?: string;
}

/** Fails the command quietly after the message was printed. */
export function fail(ctx: CliContext, line: string): never {
  ctx.err(line);
  throw new CommanderError(1, 'meridian.failed', line);
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
  let res: Response;
  try {
    res = await fetch(`${target.server}${path}`, {
      method,
      headers,
      ...(body ? { body: body.text } : {}),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    fail(
      ctx,
      `The connection to the server ${target.server} was refused - did you specify the right host or port? (${cause?.code ?? cause?.message ?? (error as Error).message})`,
    );
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed ?? {}) as ErrorBody;
    if (res.status === 401)
      fail(
        ctx,
        `error: You must be logged in to the server (Unauthorized): ${e.message ?? text.trim()}${target.token ? '' : ' (no token: run "meridian auth bootstrap", or set MERIDIAN_TOKEN or --token)'}`,
      );
    fail(ctx, `Error from server (${e.reason ?? res.statusText}): ${e.message ?? text.trim()}`);
  }
  return parsed;
}
