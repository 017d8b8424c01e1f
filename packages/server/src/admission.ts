/**
 * Config validation as a Kubernetes validating admission webhook (the role Galley had in istiod):
 * the API server POSTs an `admission.k8s.io/v1` AdmissionReview for each create or update of an
 * Istio config object, and the answer allows or denies it with the messages `meridian apply` gives.
 *
 * - {@link reviewAdmission} is the whole decision, a pure function from the review to the answer:
 *   the object is checked by `@meridian/api`'s `validateConfig` (the validation of the admin API's
 *   apply), a refusal is `allowed: false` with `status.message` naming the object and the field, an
 *   acceptance carries `analyze`'s findings about the object (against the replica's current config)
 *   and the validator's own notes as `warnings`, which kubectl prints. DELETE and CONNECT are
 *   allowed (nothing to validate), and so are writes to a subresource (`status`).
 * - {@link startAdmissionWebhook} serves it over HTTPS (`--webhook-address`, with
 *   `--webhook-cert-file`/`--webhook-key-file`, re-read when they change, and, with
 *   `--webhook-client-ca-file`, client certificates required). It is read-only: a review never
 *   writes config, so the listener needs no admin credential (see SECURITY.md).
 *
 * The admission contract: https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/
 * (the response echoes the request's `uid` and `apiVersion`; a denial's `status.code` is >= 400).
 */
import { readFileSync, type Stats, unwatchFile, watchFile } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  type AnalysisMessage,
  analyzeConfigs,
  type ConfigObject,
  configKey,
  type FieldError,
  formatFieldError,
  lookupKind,
  validateConfig,
} from '@meridian/api';
import type { Logger } from 'pino';
import { ServerConfigError } from './errors.js';
import { listenFailure } from './listen-address.js';

/** The API versions of AdmissionReview answered (the answer keeps the request's). */
export const ADMISSION_REVIEW_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;

/** The path the ValidatingWebhookConfiguration names (`clientConfig.service.path`). */
export const ADMISSION_PATH = '/validate';

/** `status` of a denial (a Kubernetes `metav1.Status`). */
export interface AdmissionStatus {
  readonly code: number;
  readonly reason: string;
  readonly message: string;
  readonly details?: {
    readonly name?: string;
    readonly group?: string;
    readonly kind?: string;
    readonly causes: readonly { readonly reason: string; readonly field: string; readonly message: string }[];
  };
}

/** The `response` of an AdmissionReview. */
export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: AdmissionStatus;
  readonly warnings?: readonly string[];
}

/** An AdmissionReview answer. */
export interface AdmissionReviewAnswer {
  readonly apiVersion: string;
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse;
}

/** A body that is not an AdmissionReview request (answered with HTTP 400, not a review). */
export class AdmissionRequestError extends Error {
  override readonly name = 'AdmissionRequestError';
  constructor(
    /** The field of the review that is wrong, e.g. `request.uid`. */
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** What a review reads besides the request: the replica's current config (for analyze's warnings). */
export interface AdmissionContext {
  /** The config objects the replica serves now; the reviewed object is checked against them. */
  readonly currentConfig?: () => readonly ConfigObject[];
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** One line of a finding, without positions (the object was serialised by the API server). */
const line = (e: FieldError): string =>
  formatFieldError({ object: e.object, path: e.path, message: e.message });

/**
 * Decides one AdmissionReview: the answer to send back (HTTP 200), or throws
 * {@link AdmissionRequestError} when `review` is not an AdmissionReview request. Never writes,
 * never throws for a bad config object (that is a denial).
 */
export function reviewAdmission(review: unknown, context: AdmissionContext = {}): AdmissionReviewAnswer {
  if (!isObject(review)) throw new AdmissionRequestError('body', 'expected an AdmissionReview object');
  const apiVersion = str(review.apiVersion);
  if (!apiVersion || !(ADMISSION_REVIEW_VERSIONS as readonly string[]).includes(apiVersion))
    throw new AdmissionRequestError(
      'apiVersion',
      `expected ${ADMISSION_REVIEW_VERSIONS.join(' or ')}, got ${JSON.stringify(review.apiVersion)}`,
    );
  if (review.kind !== 'AdmissionReview')
    throw new AdmissionRequestError('kind', `expected AdmissionReview, got ${JSON.stringify(review.kind)}`);
  const request = review.request;
  if (!isObject(request)) throw new AdmissionRequestError('request', 'missing');
  const uid = str(request.uid);
  if (!uid) throw new AdmissionRequestError('request.uid', 'missing');
  const answer = (response: Omit<AdmissionResponse, 'uid'>): AdmissionReviewAnswer => ({
    apiVersion,
    kind: 'AdmissionReview',
    response: { uid, ...response },
  });
  const operation = str(request.operation);
  if (operation === 'DELETE' || operation === 'CONNECT') return answer({ allowed: true });
  if (operation !== 'CREATE' && operation !== 'UPDATE')
    throw new AdmissionRequestError(
      'request.operation',
      `expected CREATE, UPDATE, DELETE or CONNECT, got ${JSON.stringify(request.operation)}`,
    );
  // A write to a subresource (`status`) does not change what Meridian validates.
  if (str(request.subResource)) return answer({ allowed: true });

  const gvk = isObject(request.kind) ? request.kind : {};
  const group = str(gvk.group) ?? '';
  const version = str(gvk.version) ?? '';
  const kind = str(gvk.kind) ?? '';
  const deny = (message: string, causes: readonly FieldError[] = []): AdmissionReviewAnswer =>
    answer({
      allowed: false,
      status: {
        code: 422,
        reason: 'Invalid',
        message,
        ...(causes.length > 0
          ? {
              details: {
                ...(str(request.name) ? { name: str(request.name) } : {}),
                group,
                kind,
                causes: causes.map((e) => ({
                  reason: 'FieldValueInvalid',
                  field: e.path,
                  message: e.message,
                })),
              },
            }
          : {}),
      },
    });
  if (!lookupKind(`${group}/${version}`, kind))
    return deny(
      `${kind || '?'}.${group || '?'}/${version || '?'}: not a kind Meridian validates (the webhook's rules should name only the Istio kinds of the manifests)`,
    );
  if (!isObject(request.object)) throw new AdmissionRequestError('request.object', 'missing');

  // The API server sends the object as stored; fill what a namespaced request carries beside it.
  const object: Record<string, unknown> = { apiVersion: `${group}/${version}`, kind, ...request.object };
  const metadata = isObject(object.metadata) ? { ...object.metadata } : {};
  if (metadata.namespace === undefined && str(request.namespace)) metadata.namespace = request.namespace;
  if (metadata.name === undefined && str(request.name)) metadata.name = request.name;
  object.metadata = metadata;

  const result = validateConfig(object);
  if (!result.ok) return deny(result.error.lines().join('\n'), result.error.errors);

  const warnings = result.warnings.map(line);
  for (const m of findings(result.config, context)) warnings.push(`[${m.code}] ${line(m)}`);
  return answer({ allowed: true, ...(warnings.length > 0 ? { warnings } : {}) });
}

/**
 * analyze's findings about `config` over the current config (as apply reports them). Warnings never
 * decide: if the analysis fails, the object is answered without them (as apply does).
 */
function findings(config: ConfigObject, context: AdmissionContext): AnalysisMessage[] {
  try {
    const id = configKey(config);
    const byKey = new Map<string, ConfigObject>();
    for (const o of context.currentConfig?.() ?? []) byKey.set(configKey(o), o);
    byKey.set(id, config);
    return analyzeConfigs([...byKey.values()]).filter((m) => m.object === id);
  } catch {
    return [];
  }
}

/** Largest AdmissionReview body read (the API server's own request limit is 3 MiB). */
export const MAX_REVIEW_BYTES = 4 * 1024 * 1024;

/** Settings of the webhook listener (from `--webhook-*`). */
export interface AdmissionWebhookOptions {
  readonly host: string;
  readonly port: number;
  /** PEM serving certificate chain (leaf first); its SANs must name the Service the API server calls. */
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM CA bundle: when set, the caller must present a client certificate it signed. */
  readonly clientCaFile?: string;
}

function readPem(setting: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ServerConfigError(
      setting,
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** A Kubernetes-style failure for a request that is not a review (the API server logs it). */
function failure(res: ServerResponse, code: number, reason: string, message: string): void {
  send(res, code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message });
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_REVIEW_BYTES) chunks.push(c);
    });
    req.on('end', () =>
      resolve(size > MAX_REVIEW_BYTES ? undefined : Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', reject);
  });
}

/**
 * Serves {@link reviewAdmission} on `POST /validate` over HTTPS (nothing else is served). The
 * certificate and key files are re-read when they change (a Kubernetes Secret volume is updated in
 * place). Resolves with the server and its bound port.
 */
export async function startAdmissionWebhook(
  options: AdmissionWebhookOptions,
  context: AdmissionContext & { readonly log: Logger },
): Promise<{ server: Server; port: number }> {
  const { log } = context;
  const material = () => ({
    cert: readPem('--webhook-cert-file', options.certFile),
    key: readPem('--webhook-key-file', options.keyFile),
  });
  const clientCa = options.clientCaFile
    ? readPem('--webhook-client-ca-file', options.clientCaFile)
    : undefined;
  const server = createHttpsServer(
    {
      ...material(),
      minVersion: 'TLSv1.2',
      ...(clientCa ? { ca: clientCa, requestCert: true, rejectUnauthorized: true } : {}),
    },
    (req, res) => {
      const path = new URL(req.url ?? '/', 'https://localhost').pathname;
      if (path !== ADMISSION_PATH) return failure(res, 404, 'NotFound', `no route for ${req.method} ${path}`);
      if (req.method !== 'POST')
        return failure(res, 405, 'MethodNotAllowed', `${req.method} not allowed on ${ADMISSION_PATH}`);
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json')
        return failure(
          res,
          415,
          'UnsupportedMediaType',
          `content-type must be application/json (got "${type}")`,
        );
      readBody(req)
        .then((body) => {
          if (body === undefined)
            return failure(res, 413, 'RequestEntityTooLarge', `body larger than ${MAX_REVIEW_BYTES} bytes`);
          let review: unknown;
          try {
            review = JSON.parse(body);
          } catch (error) {
            return failure(res, 400, 'BadRequest', `body is not JSON: ${(error as Error).message}`);
          }
          try {
            const answer = reviewAdmission(review, context);
            const r = answer.response;
            log.debug(
              { uid: r.uid, allowed: r.allowed, warnings: r.warnings?.length ?? 0 },
              'admission review answered',
            );
            send(res, 200, answer);
          } catch (error) {
            if (!(error instanceof AdmissionRequestError)) throw error;
            failure(res, 400, 'BadRequest', error.message);
          }
        })
        .catch((error: unknown) => {
          log.error({ err: error }, 'admission review failed');
          if (!res.headersSent) failure(res, 500, 'InternalError', 'internal error');
          else res.destroy();
        });
    },
  );
  server.keepAliveTimeout = 5000;
  const reload = () => {
    try {
      server.setSecureContext({
        ...material(),
        minVersion: 'TLSv1.2',
        ...(clientCa ? { ca: clientCa } : {}),
      } as Parameters<typeof server.setSecureContext>[0]);
      log.info({ certFile: options.certFile }, 'admission webhook certificate reloaded');
    } catch (error) {
      log.warn({ err: error }, 'admission webhook certificate not reloaded; keeping the previous one');
    }
  };
  const changed = (cur: Stats, prev: Stats) => {
    if (cur.mtimeMs !== prev.mtimeMs) reload();
  };
  for (const f of [options.certFile, options.keyFile])
    watchFile(f, { interval: 5000, persistent: false }, changed);
  server.once('close', () => {
    for (const f of [options.certFile, options.keyFile]) unwatchFile(f, changed);
  });
  const address = `${options.host}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', (error) => reject(listenFailure('--webhook-address', address, error)));
    server.listen(options.port, options.host, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : options.port);
    });
  });
  return { server, port };
}
