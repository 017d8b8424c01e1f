import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeResource, type EnvoyJson, type JsonValue, type ResourceTypeUrl } from '@meridian/envoy';
import type { Connection } from './connection.js';
import { shortType } from './metrics.js';
import { type DeltaWatch, type SotwWatch, type SyncState, sotwTarget, syncState } from './protocol.js';
import type { EncodedResource } from './types.js';

/** Sync status of one type for one proxy (`istioctl proxy-status` columns). */
export interface TypeSyncStatus {
  readonly state: SyncState;
  readonly nonceSent: string | undefined;
  readonly nonceAcked: string | undefined;
  /** SotW version_info ACKed last. */
  readonly versionAcked: string | undefined;
  readonly wildcard: boolean;
  readonly subscribed: readonly string[];
  /** Resources the proxy holds (as far as the server knows). */
  readonly resources: number;
  /** Milliseconds since the last response of this type; undefined when none was sent. */
  readonly lastPushAgeMs: number | undefined;
  /** Milliseconds since the last ACK of this type; undefined when none arrived on this stream. */
  readonly lastAckAgeMs: number | undefined;
  /** The last NACK's message, when the state is ERROR. */
  readonly error: string | undefined;
}

/** Sync status of one connected proxy. */
export interface ProxySyncStatus {
  /** The node id as sent. */
  readonly proxyId: string;
  /** istioctl's proxy name: `<pod>.<namespace>` when the node id follows Istio's convention, else the node id. */
  readonly name: string;
  /** Node metadata `ISTIO_VERSION` ('' when not sent): istioctl's VERSION column. */
  readonly istioVersion: string;
  readonly connectionId: string;
  readonly variant: 'sotw' | 'delta';
  readonly namespace: string;
  readonly clusterId: string;
  readonly kind: string;
  readonly authenticatedIdentity: string | undefined;
  readonly peer: string;
  readonly connectedAt: string;
  readonly blocked: boolean;
  /** Bytes handed to HTTP/2 and not yet written (a proxy that stopped reading keeps this above 0). */
  readonly bufferedBytes: number;
  /** By istiod's short type name: `cds`, `eds`, `lds`, `rds`, `sds`. */
  readonly types: Readonly<Record<string, TypeSyncStatus>>;
  /**
   * Why the proxy's resources could not be built from the current snapshot (nothing was sent: it
   * keeps its last good config); absent once a push succeeds.
   */
  readonly pushError?: { readonly message: string; readonly snapshotVersion: string; readonly ageMs: number };
  /** The newest snapshot version (config revision) whose resources the proxy has ACKed in full. */
  readonly syncedVersion?: string;
  /** Milliseconds since it reached `syncedVersion`. */
  readonly syncedAgeMs?: number;
}

/**
 * istioctl's name of a proxy: `<pod>.<namespace>` (Istio's proxy ID) when the node id follows Istio's
 * `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local` convention, else the node id itself.
 */
export function proxyName(nodeId: string, workloadName: string, namespace: string): string {
  return nodeId.includes('~') && workloadName && namespace ? `${workloadName}.${namespace}` : nodeId;
}

/** The sync status of one connection. */
export function connectionStatus(conn: Connection, now = Date.now()): ProxySyncStatus | undefined {
  if (!conn.ctx) return undefined;
  const types: Record<string, TypeSyncStatus> = {};
  for (const [type, watch] of conn.watches) {
    const state = syncState(watch);
    const book = conn.books.get(type);
    const held = 'sent' in watch ? (watch as SotwWatch).sent.size : (watch as DeltaWatch).known.size;
    types[shortType(type)] = {
      state,
      nonceSent: watch.nonceSent,
      nonceAcked: watch.nonceAcked,
      versionAcked: watch.versionAcked,
      wildcard: watch.wildcard,
      subscribed: [...watch.names],
      resources: held,
      lastPushAgeMs: book?.lastPushAt === undefined ? undefined : now - book.lastPushAt,
      lastAckAgeMs: book?.lastAckAt === undefined ? undefined : now - book.lastAckAt,
      error: state === 'ERROR' ? watch.lastNack?.message : undefined,
    };
  }
  const p = conn.ctx.proxy;
  const version = p.metadata.ISTIO_VERSION;
  return {
    proxyId: p.id,
    name: proxyName(p.id, p.workloadName, p.namespace),
    istioVersion: typeof version === 'string' ? version : '',
    connectionId: conn.id,
    variant: conn.variant,
    namespace: p.namespace,
    clusterId: p.clusterId,
    kind: p.kind,
    authenticatedIdentity: conn.ctx.authenticatedIdentity,
    peer: conn.ctx.peer,
    connectedAt: new Date(conn.connectedAt).toISOString(),
    blocked: conn.blocked,
    bufferedBytes: conn.bufferedBytes,
    types,
    ...(conn.syncedVersion !== undefined
      ? { syncedVersion: conn.syncedVersion, syncedAgeMs: now - (conn.syncedAt ?? now) }
      : {}),
    ...(conn.pushFailure
      ? {
          pushError: {
            message: conn.pushFailure.message,
            snapshotVersion: conn.pushFailure.snapshotVersion,
            ageMs: now - conn.pushFailure.at,
          },
        }
      : {}),
  };
}

/** One resource in a config dump. */
export interface DumpedResource {
  readonly name: string;
  readonly version: string;
  /** The resource in Envoy JSON; undefined when the server no longer holds its bytes. */
  readonly resource: EnvoyJson | undefined;
}

/** What stands in for secret material in debug output (as in Istio's config dump). */
export const REDACTED = '[redacted]';

/** Fields of Envoy's protos that hold secret material (TLS keys, passwords, ticket and HMAC keys). */
const SECRET_FIELDS = new Set(['private_key', 'password', 'session_ticket_keys', 'hmac_secret', 'secret']);
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * A copy of `value` with every secret replaced by {@link REDACTED}: the fields that hold keys in
 * Envoy's protos (`tls_certificate.private_key`, `generic_secret.secret`, ...) and, whatever the
 * field, any string (or base64 bytes) carrying a PEM private key.
 */
export function redactSecrets<T extends JsonValue>(value: T): T {
  return redact(value) as T;
}

function redact(value: JsonValue): JsonValue {
  if (typeof value === 'string') {
    if (PEM_PRIVATE_KEY.test(value)) return REDACTED;
    if (value.length > 40 && /^[A-Za-z0-9+/]+=*$/.test(value)) {
      const decoded = Buffer.from(value, 'base64').toString('latin1');
      if (PEM_PRIVATE_KEY.test(decoded)) return REDACTED;
    }
    return value;
  }
  if (Array.isArray(value)) return value.map(redact);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, JsonValue> = {};
    for (const [k, v] of Object.entries(value)) {
      if (SECRET_FIELDS.has(k) && v !== null && v !== undefined) {
        out[k] = typeof v === 'object' && !Array.isArray(v) ? { inline_string: REDACTED } : REDACTED;
      } else out[k] = redact(v as JsonValue);
    }
    return out;
  }
  return value;
}

/** What the server last sent one connection, by short type name (secrets redacted). */
export function connectionConfigDump(
  conn: Connection,
  current: (type: ResourceTypeUrl) => ReadonlyMap<string, { version: string; bytes: Uint8Array }> | undefined,
): Record<string, DumpedResource[]> {
  const out: Record<string, DumpedResource[]> = {};
  for (const [type, watch] of conn.watches) {
    const list: DumpedResource[] = [];
    if ('sent' in watch) {
      for (const r of (watch as SotwWatch).sent.values()) {
        list.push({
          name: r.name,
          version: r.version,
          resource: redactSecrets(decodeResource(type, r.bytes)),
        });
      }
    } else {
      const available = current(type as ResourceTypeUrl);
      for (const [name, version] of (watch as DeltaWatch).known) {
        const r = available?.get(name);
        list.push({
          name,
          version,
          resource: r && r.version === version ? redactSecrets(decodeResource(type, r.bytes)) : undefined,
        });
      }
    }
    out[shortType(type)] = list.sort((a, b) => (a.name < b.name ? -1 : 1));
  }
  return out;
}

/**
 * What the current snapshot holds for one connection's subscriptions, by short type name (secrets
 * redacted): what the connection would be sent if it subscribed again now. Compared with
 * {@link connectionConfigDump} (what was sent) it shows a proxy that is behind or was refused a
 * push (`meridian proxy-status <proxy>`).
 */
export function connectionCurrentConfig(
  conn: Connection,
  current: (type: ResourceTypeUrl) => ReadonlyMap<string, EncodedResource> | undefined,
): Record<string, DumpedResource[]> {
  const out: Record<string, DumpedResource[]> = {};
  for (const [type, watch] of conn.watches) {
    const list = sotwTarget(watch, current(type as ResourceTypeUrl)).map((r) => ({
      name: r.name,
      version: r.version,
      resource: redactSecrets(decodeResource(type, r.bytes)),
    }));
    out[shortType(type)] = list;
  }
  return out;
}

/** What the debug handler reads from the server. */
export interface DebugSource {
  syncStatus(): ProxySyncStatus[];
  /** What was sent to the proxy with this node id (or name), per connection id. */
  configDump(proxyId: string): Record<string, Record<string, DumpedResource[]>> | undefined;
  /** What the current snapshot holds for the proxy's subscriptions, per connection id. */
  currentConfig?(proxyId: string): Record<string, Record<string, DumpedResource[]>> | undefined;
}

/**
 * A node:http request handler for `/debug/syncz` (every proxy's sync status, JSON) and
 * `/debug/config_dump?proxy=<node id or pod.namespace>` (what was sent to that proxy, per connection;
 * with `&view=current`: what the current snapshot holds for the same subscriptions). Returns false
 * for other paths so the replica can chain it with its own admin routes.
 */
export function debugHandler(source: DebugSource): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const reply = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body, null, 2)}\n`);
    };
    if (url.pathname === '/debug/syncz') {
      reply(200, source.syncStatus());
      return true;
    }
    if (url.pathname === '/debug/config_dump') {
      const proxy = url.searchParams.get('proxy');
      if (!proxy) {
        reply(400, { error: 'query parameter "proxy" (a node id) is required' });
        return true;
      }
      const view = url.searchParams.get('view') ?? 'sent';
      if (view !== 'sent' && view !== 'current') {
        reply(400, { error: `query parameter "view" must be "sent" or "current" (got "${view}")` });
        return true;
      }
      const dump =
        view === 'current'
          ? source.currentConfig
            ? source.currentConfig(proxy)
            : undefined
          : source.configDump(proxy);
      if (!dump) reply(404, { error: `no connected proxy with node id "${proxy}"` });
      else reply(200, dump);
      return true;
    }
    return false;
  };
}
