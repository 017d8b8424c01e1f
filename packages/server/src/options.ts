/**
 * meridiand's settings. Each comes, in order of precedence, from a command-line flag, an environment
 * variable, the config file (`--config FILE` or `MERIDIAN_CONFIG`, YAML or JSON, keys as in
 * {@link ServerOptions}) or its default:
 *
 * | flag | environment | file key | default |
 * |---|---|---|---|
 * | `--mesh-id` | `MERIDIAN_MESH_ID` | `meshId` | `mesh1` |
 * | `--cluster-id` | `MERIDIAN_CLUSTER_ID` | `clusterId` | `cluster1` |
 * | `--locality` (`region/zone/subzone`) | `MERIDIAN_LOCALITY` | `locality` | `` |
 * | `--etcd-endpoints` (comma-separated) | `MERIDIAN_ETCD_ENDPOINTS` | `etcdEndpoints` | `http://127.0.0.1:2379` |
 * | `--xds-address` (plaintext gRPC: ADS, workload registration with a token; `off`: not served) | `MERIDIAN_XDS_ADDRESS` | `xdsAddress` | `0.0.0.0:15010`, or `off` when `--ca-address` is set |
 * | `--admin-address` (HTTP, authenticated: config API, debug, auth API) | `MERIDIAN_ADMIN_ADDRESS` | `adminAddress` | `127.0.0.1:15080` |
 * | `--admin-tls` (`on`: HTTPS with the CA's serving certificate; mesh client certificates authenticate too) | `MERIDIAN_ADMIN_TLS` | `adminTls` | `off` |
 * | `--monitoring-address` (HTTP, open: `/healthz`, `/readyz`, `/metrics` only; `off`: not served) | `MERIDIAN_MONITORING_ADDRESS` | `monitoringAddress` | `0.0.0.0:15014` |
 * | `--replica-id` | `MERIDIAN_REPLICA_ID` | `replicaId` | `<hostname>-<pid>` |
 * | `--registration-ttl` (s) | `MERIDIAN_REGISTRATION_TTL` | `registrationTtlSeconds` | `15` |
 * | `--replica-lease-ttl` (s) | `MERIDIAN_REPLICA_LEASE_TTL` | `replicaLeaseTtlSeconds` | `1` |
 * | `--debounce-ms` | `MERIDIAN_DEBOUNCE_MS` | `debounceMs` | `100` |
 * | `--max-debounce-ms` (a push waits at most this long after the first change, however often changes keep coming) | `MERIDIAN_MAX_DEBOUNCE_MS` | `maxDebounceMs` | 10 × `debounceMs`, at least `100` |
 * | `--endpoint-debounce-max-ms` (the same bound for a burst of endpoint-only changes: WorkloadEntries, agent registrations, imported services) | `MERIDIAN_ENDPOINT_DEBOUNCE_MAX_MS` | `endpointDebounceMaxMs` | `debounceMs`, at most `maxDebounceMs` |
 * | `--push-concurrency` (pushes to proxies in flight at once) | `MERIDIAN_PUSH_CONCURRENCY` | `pushConcurrency` | `100` |
 * | `--store-timeout-ms` | `MERIDIAN_STORE_TIMEOUT_MS` | `storeTimeoutMs` | `2000` |
 * | `--store-connect-timeout-ms` (etcd never reached at start-up and no snapshot on disk: exit 2) | `MERIDIAN_STORE_CONNECT_TIMEOUT_MS` | `storeConnectTimeoutMs` | `60000` |
 * | `--snapshot-dir` (last-known-good snapshot `<mesh>.<cluster>.lkg`, served at start while etcd is unreachable; `off`: none) | `MERIDIAN_SNAPSHOT_DIR` | `snapshotDir` | `<tmpdir>/meridian` |
 * | `--drain-timeout-ms` | `MERIDIAN_DRAIN_TIMEOUT_MS` | `drainTimeoutMs` | `5000` |
 * | `--log-level` | `MERIDIAN_LOG_LEVEL` | `logLevel` | `info` |
 * | `--ca-address` (TLS: CreateCertificate; empty = not served) | `MERIDIAN_CA_ADDRESS` | `caAddress` | `` |
 * | `--ca-kek-file` (else `MERIDIAN_CA_KEK`) | `MERIDIAN_CA_KEK_FILE` | `caKekFile` | `` |
 * | `--advertise-address` (the host, an IP or DNS name, at which proxies and agents reach this replica's CA mTLS and xDS ports where they are bound to `0.0.0.0`/`::`, as istiod's `POD_IP`: recorded in membership, so the rate-limit and access-log clusters and ReplicaDiscovery name it, and carried by the serving certificate as an IP or DNS SAN) | `MERIDIAN_ADVERTISE_ADDRESS` | `advertiseAddress` | the bind host of `--ca-address` (else `--xds-address`) unless it is `0.0.0.0`/`::`; then the host's first non-loopback address (logged) |
 * | `--serving-names` (comma-separated DNS names or IPs the serving certificate names besides `localhost`, the bind host and the advertised host, e.g. the Kubernetes Service name, as istiod's `ISTIOD_CUSTOM_HOST`) | `MERIDIAN_SERVING_NAMES` | `servingNames` | `` |
 * | none (a secret: never on the command line or in the file) | `MERIDIAN_CA_KEK` (base64 or hex of 32 bytes) | none | `` |
 * | `--trust-domain` | `MERIDIAN_TRUST_DOMAIN` | `trustDomain` | `cluster.local` |
 * | `--nats-url` (comma-separated or repeated; empty = single-cluster, no federation) | `MERIDIAN_NATS_URL` | `natsUrls` | `` |
 * | `--nats-creds` (NATS `.creds` file or nkey seed file, e.g. `meridian federation nats-config`'s `<cluster>.nk`) | `MERIDIAN_NATS_CREDS` | `natsCreds` | `` |
 * | `--federation-grace` (s; silence before a remote cluster's endpoints turn UNHEALTHY) | `MERIDIAN_FEDERATION_GRACE` | `federationGraceSeconds` | `30` |
 * | `--federation-export` (`all` or `marked`: label `federation.meridian.io/export=true`) | `MERIDIAN_FEDERATION_EXPORT` | `federationExport` | `all` |
 * | `--webhook-address` (HTTPS: Kubernetes admission webhook `POST /validate`, read-only, see admission.ts; `off`: not served) | `MERIDIAN_WEBHOOK_ADDRESS` | `webhookAddress` | `off` |
 * | `--webhook-cert-file`, `--webhook-key-file` (PEM serving chain and key of the webhook; required with it) | `MERIDIAN_WEBHOOK_CERT_FILE`, `MERIDIAN_WEBHOOK_KEY_FILE` | `webhookCertFile`, `webhookKeyFile` | `` |
 * | `--webhook-client-ca-file` (PEM: require a client certificate it signed, e.g. the API server's) | `MERIDIAN_WEBHOOK_CLIENT_CA_FILE` | `webhookClientCaFile` | `` |
 * | `--rate-limit-address` (`host:port`, comma-separated: where proxies reach the replicas' global rate-limit service; empty: the replicas' CA mTLS addresses from membership, or their xDS addresses with `--rate-limit-plaintext on` and no CA) | `MERIDIAN_RATE_LIMIT_ADDRESS` | `rateLimitAddress` | `` |
 * | `--rate-limit-plaintext` (`on`: answer rate-limit calls without a workload certificate, on the plaintext xDS port; development only) | `MERIDIAN_RATE_LIMIT_PLAINTEXT` | `rateLimitPlaintext` | `off` |
 * | `--telemetry-plaintext` (`on`: accept access logs and stats from unauthenticated reporters, on the plaintext xDS port; their entries never carry mTLS or a principal) | `MERIDIAN_TELEMETRY_PLAINTEXT` | `telemetryPlaintext` | `off` |
 * | `--mesh-config` (an Istio MeshConfig file, or the `istio` ConfigMap: its tracing `extensionProviders`, `defaultProviders.tracing` and `defaultConfig.tracing.sampling` for Telemetry's `tracing`) | `MERIDIAN_MESH_CONFIG` | `meshConfig` | `` |
 */
import { readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MESH_ID } from '@meridian/store';
import { parse as parseYaml } from 'yaml';
import { ServerConfigError } from './errors.js';
import { isOff } from './listen-address.js';
import { connectableHost, LOG_LEVELS, listenAddress, segment, serverUrl } from './setting-checks.js';

/** The resolved settings of one replica. */
export interface ServerOptions {
  readonly meshId: string;
  readonly clusterId: string;
  readonly locality: string;
  readonly etcdEndpoints: readonly string[];
  readonly xdsAddress: string;
  readonly adminAddress: string;
  readonly adminTls: string;
  readonly monitoringAddress: string;
  readonly replicaId: string;
  readonly registrationTtlSeconds: number;
  readonly replicaLeaseTtlSeconds: number;
  readonly debounceMs: number;
  /** The longest a push waits after the first change while changes keep coming (ms). */
  readonly maxDebounceMs: number;
  /** The longest a push waits after an endpoint-only change while changes keep coming (ms). */
  readonly endpointDebounceMaxMs: number;
  /** How many pushes to proxies are in flight at once. */
  readonly pushConcurrency: number;
  readonly storeTimeoutMs: number;
  readonly storeConnectTimeoutMs: number;
  readonly snapshotDir: string;
  readonly drainTimeoutMs: number;
  readonly logLevel: string;
  readonly caAddress: string;
  readonly caKekFile: string;
  /**
   * The host (IP or DNS name, no port) proxies and agents reach this replica at; '' = chosen at start
   * ({@link chooseAdvertiseAddress}).
   */
  readonly advertiseAddress: string;
  /** More DNS names or IPs of the TLS port's serving certificate (e.g. the Kubernetes Service name). */
  readonly servingNames: readonly string[];
  /** The cluster CA's key-encryption key as text (`MERIDIAN_CA_KEK`), used when `caKekFile` is empty. */
  readonly caKek: string;
  readonly trustDomain: string;
  readonly natsUrls: readonly string[];
  readonly natsCreds: string;
  readonly federationGraceSeconds: number;
  readonly federationExport: string;
  readonly webhookAddress: string;
  readonly webhookCertFile: string;
  readonly webhookKeyFile: string;
  readonly webhookClientCaFile: string;
  /** Where proxies reach the global rate-limit service (`host:port`, comma-separated); '' = membership. */
  readonly rateLimitAddress: string;
  /** `on`: the rate-limit service answers callers without a workload certificate. */
  readonly rateLimitPlaintext: string;
  /** `on`: accept telemetry from unauthenticated reporters (telemetry-ingest.ts). */
  readonly telemetryPlaintext: string;
  /** An Istio MeshConfig file whose tracing providers Telemetry's `tracing` names (tracing.ts); empty: none. */
  readonly meshConfig: string;
}

/** `count`: a whole number >= 1. */
type Kind = 'string' | 'list' | 'seconds' | 'ms' | 'count';

interface Setting {
  readonly key: keyof ServerOptions;
  /** The command-line flag; none for a secret, which is read from the environment only. */
  readonly flag?: string;
  readonly env: string;
  readonly kind: Kind;
  readonly help: string;
  /** The default, given the settings resolved before this one (in table order). */
  readonly fallback: (resolved: Readonly<Record<string, unknown>>) => string | number | readonly string[];
  /** Why a value (one item of a list) is not acceptable, or undefined when it is. */
  readonly check?: (value: string) => string | undefined;
}

const SETTINGS: readonly Setting[] = [
  {
    key: 'meshId',
    flag: '--mesh-id',
    env: 'MERIDIAN_MESH_ID',
    kind: 'string',
    help: 'mesh id',
    fallback: () => DEFAULT_MESH_ID,
    check: segment,
  },
  {
    key: 'clusterId',
    flag: '--cluster-id',
    env: 'MERIDIAN_CLUSTER_ID',
    kind: 'string',
    help: 'cluster id',
    fallback: () => 'cluster1',
    check: segment,
  },
  {
    key: 'locality',
    flag: '--locality',
    env: 'MERIDIAN_LOCALITY',
    kind: 'string',
    help: 'region/zone/subzone',
    fallback: () => '',
    check: (v) =>
      v === '' || /^[^/\s]+(?:\/[^/\s]+){0,2}$/.test(v)
        ? undefined
        : `expected region, region/zone or region/zone/subzone, got "${v}"`,
  },
  {
    key: 'etcdEndpoints',
    flag: '--etcd-endpoints',
    env: 'MERIDIAN_ETCD_ENDPOINTS',
    kind: 'list',
    help: 'comma-separated etcd client URLs',
    fallback: () => ['http://127.0.0.1:2379'],
    check: serverUrl(['http', 'https']),
  },
  {
    key: 'xdsAddress',
    flag: '--xds-address',
    env: 'MERIDIAN_XDS_ADDRESS',
    kind: 'string',
    help: 'plaintext gRPC listen address (ADS, registration); off: none (default when --ca-address is set)',
    // Resolved after the loop: plaintext xDS is on by default only while no CA port is served.
    fallback: () => '',
    check: listenAddress(true),
  },
  {
    key: 'adminAddress',
    flag: '--admin-address',
    env: 'MERIDIAN_ADMIN_ADDRESS',
    kind: 'string',
    help: 'admin HTTP listen address (authenticated config, debug and auth API)',
    fallback: () => '127.0.0.1:15080',
    check: listenAddress(false),
  },
  {
    key: 'adminTls',
    flag: '--admin-tls',
    env: 'MERIDIAN_ADMIN_TLS',
    kind: 'string',
    help: 'on: serve the admin API over TLS (needs the CA); off: plain HTTP',
    fallback: () => 'off',
  },
  {
    key: 'monitoringAddress',
    flag: '--monitoring-address',
    env: 'MERIDIAN_MONITORING_ADDRESS',
    kind: 'string',
    help: 'monitoring HTTP listen address (/healthz, /readyz, /metrics); off: none',
    fallback: () => '0.0.0.0:15014',
    check: listenAddress(true),
  },
  {
    key: 'replicaId',
    flag: '--replica-id',
    env: 'MERIDIAN_REPLICA_ID',
    kind: 'string',
    help: 'replica id',
    fallback: () => `${hostname()}-${process.pid}`,
    check: segment,
  },
  {
    key: 'registrationTtlSeconds',
    flag: '--registration-ttl',
    env: 'MERIDIAN_REGISTRATION_TTL',
    kind: 'seconds',
    help: 'workload registration lease TTL (s)',
    fallback: () => 15,
  },
  {
    key: 'replicaLeaseTtlSeconds',
    flag: '--replica-lease-ttl',
    env: 'MERIDIAN_REPLICA_LEASE_TTL',
    kind: 'seconds',
    help: 'replica membership/election lease TTL (s)',
    fallback: () => 1,
  },
  {
    key: 'debounceMs',
    flag: '--debounce-ms',
    env: 'MERIDIAN_DEBOUNCE_MS',
    kind: 'ms',
    help: 'push debounce quiet period (ms)',
    fallback: () => 100,
  },
  {
    key: 'maxDebounceMs',
    flag: '--max-debounce-ms',
    env: 'MERIDIAN_MAX_DEBOUNCE_MS',
    kind: 'ms',
    help: 'longest a push waits after the first change while changes keep coming (ms; default 10 x debounce, >= 100)',
    fallback: (resolved) => Math.max(Number(resolved.debounceMs) * 10, 100),
  },
  {
    key: 'endpointDebounceMaxMs',
    flag: '--endpoint-debounce-max-ms',
    env: 'MERIDIAN_ENDPOINT_DEBOUNCE_MAX_MS',
    kind: 'ms',
    help: 'longest a push waits after an endpoint-only change (WorkloadEntry, registration, import) while changes keep coming (ms; default: the debounce quiet period, at most --max-debounce-ms)',
    fallback: (resolved) => Math.min(Number(resolved.debounceMs), Number(resolved.maxDebounceMs)),
  },
  {
    key: 'pushConcurrency',
    flag: '--push-concurrency',
    env: 'MERIDIAN_PUSH_CONCURRENCY',
    kind: 'count',
    help: 'pushes to proxies in flight at once',
    fallback: () => 100,
  },
  {
    key: 'storeTimeoutMs',
    flag: '--store-timeout-ms',
    env: 'MERIDIAN_STORE_TIMEOUT_MS',
    kind: 'ms',
    help: 'bound on every etcd call (ms)',
    fallback: () => 2000,
  },
  {
    key: 'storeConnectTimeoutMs',
    flag: '--store-connect-timeout-ms',
    env: 'MERIDIAN_STORE_CONNECT_TIMEOUT_MS',
    kind: 'ms',
    help: 'bound on reaching etcd at start-up without a snapshot on disk (ms)',
    fallback: () => 60_000,
  },
  {
    key: 'snapshotDir',
    flag: '--snapshot-dir',
    env: 'MERIDIAN_SNAPSHOT_DIR',
    kind: 'string',
    help: 'directory of the last-known-good snapshot (served while etcd is unreachable at start); off: none',
    fallback: () => join(tmpdir(), 'meridian'),
  },
  {
    key: 'drainTimeoutMs',
    flag: '--drain-timeout-ms',
    env: 'MERIDIAN_DRAIN_TIMEOUT_MS',
    kind: 'ms',
    help: 'graceful shutdown bound (ms)',
    fallback: () => 5000,
  },
  {
    key: 'logLevel',
    flag: '--log-level',
    env: 'MERIDIAN_LOG_LEVEL',
    kind: 'string',
    help: 'pino log level',
    fallback: () => 'info',
    check: (v) =>
      LOG_LEVELS.includes(v) ? undefined : `expected one of ${LOG_LEVELS.join(', ')}, got "${v}"`,
  },
  {
    key: 'caAddress',
    flag: '--ca-address',
    env: 'MERIDIAN_CA_ADDRESS',
    kind: 'string',
    help: 'TLS listen address of CreateCertificate (empty: not served)',
    fallback: () => '',
    check: listenAddress(true),
  },
  {
    key: 'caKekFile',
    flag: '--ca-kek-file',
    env: 'MERIDIAN_CA_KEK_FILE',
    kind: 'string',
    help: 'key-encryption key of the cluster CA (else MERIDIAN_CA_KEK)',
    fallback: () => '',
  },
  {
    key: 'caKek',
    env: 'MERIDIAN_CA_KEK',
    kind: 'string',
    help: 'key-encryption key of the cluster CA, base64 or hex of 32 bytes (environment only; --ca-kek-file wins)',
    fallback: () => '',
  },
  {
    key: 'advertiseAddress',
    flag: '--advertise-address',
    env: 'MERIDIAN_ADVERTISE_ADDRESS',
    kind: 'string',
    help: "host (IP or DNS name) proxies reach this replica's CA and xDS ports at (default: the bind host, or the first non-loopback address)",
    fallback: () => '',
    check: (v) => (v === '' ? undefined : connectableHost(v)),
  },
  {
    key: 'servingNames',
    flag: '--serving-names',
    env: 'MERIDIAN_SERVING_NAMES',
    kind: 'list',
    help: 'more DNS names or IPs of the serving certificate, comma-separated (e.g. the Kubernetes Service name)',
    fallback: () => [],
    check: connectableHost,
  },
  {
    key: 'trustDomain',
    flag: '--trust-domain',
    env: 'MERIDIAN_TRUST_DOMAIN',
    kind: 'string',
    help: 'trust domain of workload identities',
    fallback: () => 'cluster.local',
    check: (v) =>
      /^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$/.test(v)
        ? undefined
        : `expected a trust domain (lower-case letters, digits, ".", "_", "-"), got "${v}"`,
  },
  {
    key: 'natsUrls',
    flag: '--nats-url',
    env: 'MERIDIAN_NATS_URL',
    kind: 'list',
    help: 'NATS server URLs of this cluster (federation; none: single-cluster)',
    fallback: () => [],
    check: serverUrl(['nats', 'tls', 'ws', 'wss']),
  },
  {
    key: 'natsCreds',
    flag: '--nats-creds',
    env: 'MERIDIAN_NATS_CREDS',
    kind: 'string',
    help: 'NATS .creds file or nkey seed file of this cluster',
    fallback: () => '',
  },
  {
    key: 'federationGraceSeconds',
    flag: '--federation-grace',
    env: 'MERIDIAN_FEDERATION_GRACE',
    kind: 'seconds',
    help: 'silence before a remote cluster is stale (s)',
    fallback: () => 30,
  },
  {
    key: 'federationExport',
    flag: '--federation-export',
    env: 'MERIDIAN_FEDERATION_EXPORT',
    kind: 'string',
    help: 'services exported: all | marked',
    fallback: () => 'all',
    check: (v) => (v === 'all' || v === 'marked' ? undefined : `expected "all" or "marked", got "${v}"`),
  },
  {
    key: 'webhookAddress',
    flag: '--webhook-address',
    env: 'MERIDIAN_WEBHOOK_ADDRESS',
    kind: 'string',
    help: 'HTTPS listen address of the Kubernetes admission webhook (POST /validate); off: none',
    fallback: () => 'off',
    check: listenAddress(true),
  },
  {
    key: 'webhookCertFile',
    flag: '--webhook-cert-file',
    env: 'MERIDIAN_WEBHOOK_CERT_FILE',
    kind: 'string',
    help: 'PEM serving certificate chain of the admission webhook',
    fallback: () => '',
  },
  {
    key: 'webhookKeyFile',
    flag: '--webhook-key-file',
    env: 'MERIDIAN_WEBHOOK_KEY_FILE',
    kind: 'string',
    help: 'PEM private key of the admission webhook',
    fallback: () => '',
  },
  {
    key: 'webhookClientCaFile',
    flag: '--webhook-client-ca-file',
    env: 'MERIDIAN_WEBHOOK_CLIENT_CA_FILE',
    kind: 'string',
    help: 'PEM CA of the client certificates the admission webhook requires (empty: none required)',
    fallback: () => '',
  },
  {
    key: 'rateLimitAddress',
    flag: '--rate-limit-address',
    env: 'MERIDIAN_RATE_LIMIT_ADDRESS',
    kind: 'string',
    help: "where proxies reach the global rate-limit service, host:port[,...] (empty: the replicas' addresses)",
    fallback: () => '',
  },
  {
    key: 'rateLimitPlaintext',
    flag: '--rate-limit-plaintext',
    env: 'MERIDIAN_RATE_LIMIT_PLAINTEXT',
    kind: 'string',
    help: 'on: answer rate-limit calls without a workload certificate (development only); off: mTLS port only',
    fallback: () => 'off',
    check: (v) => (v === 'on' || v === 'off' ? undefined : `expected on or off, got "${v}"`),
  },
  {
    key: 'telemetryPlaintext',
    flag: '--telemetry-plaintext',
    env: 'MERIDIAN_TELEMETRY_PLAINTEXT',
    kind: 'string',
    help: 'on: accept access logs and stats from unauthenticated reporters (never as mTLS); off: mTLS port only',
    fallback: () => 'off',
    check: (v) => (v === 'on' || v === 'off' ? undefined : `expected on or off, got "${v}"`),
  },
  {
    key: 'meshConfig',
    flag: '--mesh-config',
    env: 'MERIDIAN_MESH_CONFIG',
    kind: 'string',
    help: "an Istio MeshConfig file (or the istio ConfigMap): the tracing providers Telemetry's tracing names",
    fallback: () => '',
  },
];

/** The usage text of meridiand. */
export function usage(): string {
  const lines = SETTINGS.map(
    (s) => `  ${(s.flag ? `${s.flag} <value>` : '(environment only)').padEnd(30)} ${s.help} [${s.env}]`,
  );
  return [
    'usage: meridiand [flags]',
    '  --config <file>                YAML/JSON settings file [MERIDIAN_CONFIG]',
    ...lines,
    'precedence: flags > environment > config file > defaults',
  ].join('\n');
}

function convert(s: Setting, source: string, raw: unknown): string | number | readonly string[] {
  const checked = (value: string): string => {
    const why = s.check?.(value);
    if (why !== undefined) throw new ServerConfigError(source, why);
    return value;
  };
  switch (s.kind) {
    case 'list': {
      const list = Array.isArray(raw) ? raw.map(String) : String(raw).split(',');
      const out = list.map((x) => x.trim()).filter((x) => x !== '');
      if (out.length === 0) throw new ServerConfigError(source, 'needs at least one value');
      return out.map(checked);
    }
    case 'seconds':
    case 'count':
    case 'ms': {
      const n = Number(raw);
      const min = s.kind === 'ms' ? 0 : 1;
      if (!Number.isInteger(n) || n < min)
        throw new ServerConfigError(
          source,
          `expected a whole number${min > 0 ? ` >= ${min}` : ''}, got "${String(raw)}"`,
        );
      return n;
    }
    default:
      if (typeof raw !== 'string' && typeof raw !== 'number')
        throw new ServerConfigError(source, `expected a string, got ${JSON.stringify(raw)}`);
      return checked(String(raw));
  }
}

/** Resolves the settings from `argv` (without node and script), `env` and the config file. */
export function resolveOptions(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ServerOptions {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new ServerConfigError(arg, 'unexpected argument');
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (name !== '--config' && !SETTINGS.some((s) => s.flag === name))
      throw new ServerConfigError(name, `unknown flag\n${usage()}`);
    if (value === undefined) throw new ServerConfigError(name, 'needs a value');
    // A repeated list flag (`--nats-url a --nats-url b`) accumulates; any other flag: the last wins.
    const prev = flags.get(name);
    const isList = SETTINGS.some((s) => s.flag === name && s.kind === 'list');
    flags.set(name, isList && prev !== undefined ? `${prev},${value}` : value);
  }
  const configFile = flags.get('--config') ?? env.MERIDIAN_CONFIG;
  let file: Record<string, unknown> = {};
  if (configFile) {
    let text: string;
    try {
      text = readFileSync(configFile, 'utf8');
    } catch (error) {
      throw new ServerConfigError(configFile, `cannot read config file: ${(error as Error).message}`);
    }
    const parsed: unknown = parseYaml(text);
    if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed)))
      throw new ServerConfigError(configFile, 'the config file must hold a mapping of settings');
    file = (parsed ?? {}) as Record<string, unknown>;
    const inFile = SETTINGS.filter((s) => s.flag !== undefined);
    for (const k of Object.keys(file))
      if (!inFile.some((s) => s.key === k))
        throw new ServerConfigError(
          `${configFile}: ${k}`,
          `unknown setting (known: ${inFile.map((s) => s.key).join(', ')})`,
        );
  }
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const flag = s.flag === undefined ? undefined : flags.get(s.flag);
    if (flag !== undefined) out[s.key] = convert(s, s.flag ?? s.env, flag);
    else if (env[s.env] !== undefined && env[s.env] !== '') out[s.key] = convert(s, s.env, env[s.env]);
    else if (file[s.key] !== undefined) out[s.key] = convert(s, `${configFile}: ${s.key}`, file[s.key]);
    else out[s.key] = s.fallback(out);
  }
  // Stored bare: `[::1]` -> `::1` (membership and certificates hold hosts, not URL authorities).
  const unbracket = (h: string) => h.replace(/^\[(.*)\]$/, '$1');
  out.advertiseAddress = unbracket(String(out.advertiseAddress));
  out.servingNames = (out.servingNames as readonly string[]).map(unbracket);
  if (out.xdsAddress === '') out.xdsAddress = isOff(String(out.caAddress)) ? '0.0.0.0:15010' : 'off';
  if (out.adminTls !== 'on' && out.adminTls !== 'off')
    throw new ServerConfigError('--admin-tls', `expected on or off, got "${String(out.adminTls)}"`);
  if (!isOff(String(out.webhookAddress)) && (!out.webhookCertFile || !out.webhookKeyFile))
    throw new ServerConfigError(
      '--webhook-address',
      'needs --webhook-cert-file and --webhook-key-file (Kubernetes calls admission webhooks over HTTPS only)',
    );
  return out as unknown as ServerOptions;
}
