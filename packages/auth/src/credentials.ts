// The operator's credentials file, kubeconfig-like: named contexts (an admin API URL and a token)
// and the current one. `meridian` reads it from `--credentials`, `MERIDIAN_CREDENTIALS` or
// `~/.meridian/credentials.yaml`; it is written with mode 0600.
//
//   apiVersion: meridian.io/v1
//   kind: Credentials
//   current-context: cluster1
//   contexts:
//   - name: cluster1
//     server: http://127.0.0.1:15080
//     token: eyJ...
//   - name: cluster2                      # an admin port served over TLS (meridiand --admin-tls on)
//     server: https://10.0.0.5:15080
//     certificate-authority: /path/root-cert.pem
//     client-certificate: /path/cert-chain.pem   # a mesh certificate instead of (or with) a token
//     client-key: /path/key.pem
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { InvalidAuthInputError } from './errors.js';

/** One context: where the admin API is and the credential to present (a token and/or a cert). */
export interface CredentialContext {
  readonly name: string;
  readonly server: string;
  readonly token?: string;
  /** PEM file of the roots the server's certificate must chain to (https servers). */
  readonly certificateAuthority?: string;
  /** PEM files of a mesh client certificate (chain) and its key (mTLS). */
  readonly clientCertificate?: string;
  readonly clientKey?: string;
}

/** A parsed credentials file. */
export interface CredentialsFile {
  readonly currentContext: string | undefined;
  readonly contexts: readonly CredentialContext[];
}

/** Where the credentials file is when no flag or variable names one. */
export function defaultCredentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.MERIDIAN_CREDENTIALS || join(homedir(), '.meridian', 'credentials.yaml');
}

/** Parses a credentials file's text; errors name the file and field. */
export function parseCredentials(text: string, file: string): CredentialsFile {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (error) {
    throw new InvalidAuthInputError(file, `not YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return { currentContext: undefined, contexts: [] };
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new InvalidAuthInputError(file, 'expected a mapping');
  const d = doc as Record<string, unknown>;
  if (d.kind !== undefined && d.kind !== 'Credentials')
    throw new InvalidAuthInputError(`${file}: kind`, `expected Credentials, got ${JSON.stringify(d.kind)}`);
  const raw = d.contexts ?? [];
  if (!Array.isArray(raw)) throw new InvalidAuthInputError(`${file}: contexts`, 'expected a list');
  const contexts = raw.map((c, i): CredentialContext => {
    const field = `${file}: contexts[${i}]`;
    if (typeof c !== 'object' || c === null) throw new InvalidAuthInputError(field, 'expected a mapping');
    const raw = c as Record<string, unknown>;
    const { name, server } = raw;
    if (typeof name !== 'string' || name === '') throw new InvalidAuthInputError(`${field}.name`, 'required');
    if (typeof server !== 'string' || server === '')
      throw new InvalidAuthInputError(`${field}.server`, 'required');
    const optional = (key: string): string | undefined => {
      const v = raw[key];
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v === '')
        throw new InvalidAuthInputError(`${field}.${key}`, 'expected a non-empty string');
      return v;
    };
    const token = optional('token');
    const clientCertificate = optional('client-certificate');
    const clientKey = optional('client-key');
    const certificateAuthority = optional('certificate-authority');
    if (token === undefined && clientCertificate === undefined)
      throw new InvalidAuthInputError(`${field}.token`, 'required (or client-certificate and client-key)');
    if ((clientCertificate === undefined) !== (clientKey === undefined))
      throw new InvalidAuthInputError(`${field}.client-key`, 'client-certificate and client-key go together');
    return {
      name,
      server,
      ...(token ? { token } : {}),
      ...(certificateAuthority ? { certificateAuthority } : {}),
      ...(clientCertificate ? { clientCertificate } : {}),
      ...(clientKey ? { clientKey } : {}),
    };
  });
  const current = d['current-context'];
  if (current !== undefined && typeof current !== 'string')
    throw new InvalidAuthInputError(`${file}: current-context`, 'expected a string');
  return { currentContext: current, contexts };
}

/** Reads a credentials file; an absent file is an empty one. */
export async function readCredentials(file: string): Promise<CredentialsFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return { currentContext: undefined, contexts: [] };
    throw new InvalidAuthInputError(
      file,
      `cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  return parseCredentials(text, file);
}

/** The context named `name`, else the current one, else the only one. */
export function selectContext(creds: CredentialsFile, name?: string): CredentialContext | undefined {
  const want = name ?? creds.currentContext;
  if (want !== undefined) return creds.contexts.find((c) => c.name === want);
  return creds.contexts.length === 1 ? creds.contexts[0] : undefined;
}

/**
 * Adds or replaces `context` in `file` (made if absent, mode 0600, written atomically) and makes it
 * the current context.
 */
export async function saveContext(file: string, context: CredentialContext): Promise<void> {
  const creds = await readCredentials(file);
  const contexts = [...creds.contexts.filter((c) => c.name !== context.name), context];
  const text = stringify({
    apiVersion: 'meridian.io/v1',
    kind: 'Credentials',
    'current-context': context.name,
    contexts: contexts.map((c) => ({
      name: c.name,
      server: c.server,
      ...(c.token ? { token: c.token } : {}),
      ...(c.certificateAuthority ? { 'certificate-authority': c.certificateAuthority } : {}),
      ...(c.clientCertificate ? { 'client-certificate': c.clientCertificate } : {}),
      ...(c.clientKey ? { 'client-key': c.clientKey } : {}),
    })),
  });
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}
