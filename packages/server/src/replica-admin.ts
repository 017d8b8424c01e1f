/**
 * A replica's HTTP faces: the readiness probes (`/healthz`, `/readyz`, `/metrics`) shared by the admin
 * and monitoring ports, opening the admin port (HTTPS with `--admin-tls on`), the monitoring port
 * and the admission webhook, the admin authority's stand-in before etcd has been reached, and the
 * replica's own `/debug/*` answers (leader, federation, replicas, convergence, JWKS, graph,
 * registry, replica).
 */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { ConfigObject } from '@meridian/api';
import type { AdminAuthority } from '@meridian/auth';
import type { RegistrationService } from '@meridian/registry';
import type { Store } from '@meridian/store';
import type { XdsServer } from '@meridian/xds';
import { metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  type AdminTlsSource,
  type MonitoringHost,
  startAdminServer,
  startMonitoringServer,
} from './admin-http.js';
import { startAdmissionWebhook } from './admission.js';
import type { ClusterState } from './cluster-state.js';
import type { ConfigService } from './config-service.js';
import { mergeConvergence, mergeMeshConvergence } from './convergence.js';
import type { DiskSnapshot } from './disk-snapshot.js';
import { AdminError } from './errors.js';
import type { StoreHealth } from './health.js';
import type { JwksResolver } from './jwks.js';
import { listenFailure, splitAddress } from './listen-address.js';
import { ReplicaElection } from './membership.js';
import type { ServerOptions } from './options.js';
import type { PushPipeline } from './push-pipeline.js';
import type { ReplicaAddresses, ReplicaMembership } from './replica-membership.js';
import type { ListenAt } from './replica-startup.js';
import type { Telemetry } from './telemetry.js';
import type { TelemetryIngest } from './telemetry-ingest.js';

/** An HTTP server a replica opened and the address it is bound at. */
export interface OpenedServer {
  readonly server: HttpServer;
  readonly address: string;
}

/** What the readiness probes read. */
export interface ProbeSources {
  readonly draining: () => boolean;
  readonly snapshot: () => unknown;
  /** Why the CA configured with `--ca-address` is not loaded, if it is not. */
  readonly caProblem: () => string | undefined;
  readonly disk: () => DiskSnapshot | undefined;
  readonly health: StoreHealth;
  readonly telemetry: Telemetry;
}

/** `/healthz`, `/readyz` and `/metrics`, as both the admin and the monitoring port serve them. */
export function replicaProbes(s: ProbeSources): MonitoringHost {
  return {
    notReady: () =>
      s.draining()
        ? 'shutting down'
        : !s.snapshot()
          ? 'not ready: no config snapshot yet'
          : s.caProblem() !== undefined && !s.disk()?.serving
            ? `not ready: --ca-address is set but the CA is not loaded: ${s.caProblem()}`
            : undefined,
    readiness: () => s.health.describe(),
    metrics: (req: IncomingMessage, res: ServerResponse) => s.telemetry.handle(req, res),
  };
}

/** The admin authority's stand-in before etcd has been reached: every call is a 503. */
export function unavailableAuthority(disk: DiskSnapshot | undefined): AdminAuthority {
  const served = disk?.serving;
  const error = () =>
    new AdminError(
      'STORE_UNAVAILABLE',
      `store unreachable${served ? `: serving revision ${served.revision} from disk` : ''}; the admin API needs etcd to check credentials`,
    );
  return new Proxy({} as AdminAuthority, {
    get: () => () => {
      throw error();
    },
  });
}

/** What the admin port serves. */
export interface AdminSources {
  readonly options: ServerOptions;
  /** The replica's logger. */
  readonly log: Logger;
  readonly probes: MonitoringHost;
  readonly config: ConfigService;
  /** The cluster's admin authority; undefined until etcd has been reached (a start from disk). */
  readonly auth: () => AdminAuthority | undefined;
  readonly disk: () => DiskSnapshot | undefined;
  readonly xds: XdsServer;
  readonly debugInfo: (path: string) => unknown | undefined;
  /** The CA port's serving certificate for `--admin-tls on` (throws without a CA). */
  readonly adminTls: () => AdminTlsSource;
}

/**
 * Returns the function that opens the admin port (at start, or once etcd answers when HTTPS needs
 * the CA's certificate). The refusal counter is made now, whenever the port opens.
 */
export function adminOpener(s: AdminSources, address: ListenAt): () => Promise<OpenedServer> {
  const o = s.options;
  const refusedAdmin = metrics.getMeter('@meridian/server').createCounter('meridian_admin_requests_refused', {
    description:
      'Admin API requests refused (no or bad credential, role too weak, cross-origin, bad media type).',
  });
  return async () => {
    const admin = await startAdminServer(
      {
        ...s.probes,
        log: s.log.child({ part: 'admin' }),
        config: s.config,
        // Until etcd has been reached (a start from disk), every authenticated call is refused with 503.
        get auth(): AdminAuthority {
          return s.auth() ?? unavailableAuthority(s.disk());
        },
        trustDomain: o.trustDomain,
        debug: s.xds.debugHandler(),
        debugInfo: (path) => s.debugInfo(path),
        onRefused: (reason) => refusedAdmin.add(1, { reason }),
      },
      address,
      o.adminTls === 'on' ? s.adminTls() : undefined,
    ).catch((error: unknown) => {
      throw listenFailure('--admin-address', o.adminAddress, error);
    });
    return { server: admin.server, address: `${address.host}:${admin.port}` };
  };
}

/** Opens the monitoring port (health, readiness and metrics only). */
export async function openMonitoring(
  o: ServerOptions,
  probes: MonitoringHost,
  address: ListenAt,
): Promise<OpenedServer> {
  const monitoring = await startMonitoringServer(probes, address).catch((error: unknown) => {
    throw listenFailure('--monitoring-address', o.monitoringAddress, error);
  });
  return { server: monitoring.server, address: `${address.host}:${monitoring.port}` };
}

/** Opens the Kubernetes admission webhook (`--webhook-address`), which reviews against `currentConfig`. */
export async function openWebhook(
  o: ServerOptions,
  log: Logger,
  currentConfig: () => readonly ConfigObject[],
): Promise<OpenedServer> {
  const at = splitAddress(o.webhookAddress, '--webhook-address');
  const { webhookCertFile: certFile, webhookKeyFile: keyFile, webhookClientCaFile: ca } = o;
  const hook = await startAdmissionWebhook(
    { ...at, certFile, keyFile, ...(ca ? { clientCaFile: ca } : {}) },
    { log: log.child({ part: 'webhook' }), currentConfig },
  );
  return { server: hook.server, address: `${at.host}:${hook.port}` };
}

/** What the replica's `/debug/*` answers read; the getters answer undefined until a part exists. */
export interface DebugSources {
  readonly options: ServerOptions;
  readonly version: string;
  readonly startedAt: Date;
  /** The replica's current addresses. */
  readonly addresses: ReplicaAddresses;
  readonly xds: XdsServer;
  readonly ingest: TelemetryIngest;
  readonly membership: ReplicaMembership;
  readonly push: PushPipeline;
  readonly store: () => Store;
  readonly state: () => ClusterState | undefined;
  readonly health: () => StoreHealth | undefined;
  readonly registration: () => RegistrationService | undefined;
  readonly jwks: () => JwksResolver | undefined;
}

/** The replica's `/debug/*` answer for `path` (JSON, or a promise of it); undefined: no such path. */
export function replicaDebugInfo(s: DebugSources, path: string): unknown | undefined {
  const m = s.membership;
  if (path === '/debug/leader') return m.election?.status();
  if (path === '/debug/federation') return m.federation?.status();
  if (path === '/debug/replicas') return ReplicaElection.list(s.store());
  if (path === '/debug/convergence') {
    const convergence = m.convergence;
    return convergence
      ? {
          cluster: convergence.report(),
          replica: convergence.summary(),
          mesh: convergence.meshReport(),
          remoteProxies: convergence.remoteProxies(),
          remoteReplicas: convergence.remoteReplicas(),
        }
      : { cluster: mergeConvergence([]), mesh: mergeMeshConvergence([]) };
  }
  if (path === '/debug/jwks') return s.jwks()?.status() ?? [];
  if (path === '/debug/graph') return s.ingest.graph();
  if (path === '/debug/registry') {
    // The merged registry this replica translates from: local and imported (federated) services,
    // each endpoint with its cluster, network, locality and health.
    const r = s.push.registrySnapshot;
    return {
      revision: r?.revision ?? 0,
      services: (r?.services ?? []).map((svc) => ({
        ...svc,
        endpoints: r?.endpoints.get(svc.hostname) ?? [],
      })),
    };
  }
  if (path === '/debug/replica') {
    const o = s.options;
    const a = s.addresses;
    return {
      id: o.replicaId,
      meshId: o.meshId,
      clusterId: o.clusterId,
      locality: o.locality,
      version: s.version,
      startedAt: s.startedAt.toISOString(),
      xdsAddress: a.xdsAddress || undefined,
      adminAddress: a.adminAddress,
      monitoringAddress: a.monitoringAddress || undefined,
      caAddress: a.caAddress || undefined,
      advertiseAddress: a.advertiseAddress || undefined,
      rootNamespace: s.push.translator.rootNamespace,
      snapshotRevision: s.push.snapshot?.revision,
      watchedRevision: s.state()?.watchedRevision,
      store: s.health()?.describe(),
      connections: s.xds.connectionCount,
      registrations: s.registration()?.activeCount,
      isLeader: m.isLeader,
    };
  }
  return undefined;
}
