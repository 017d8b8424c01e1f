/**
 * A replica's place in its cluster once etcd answers: the directory of the other replicas (workload
 * discovery, rebalancing), the convergence tracker (shared over NATS with the other clusters),
 * the membership record it advertises (`replicas/<id>`) with the singleton election whose leader
 * alone runs the cluster's duties, and federation (imports on every replica, exports while
 * leading). Each part is kept as soon as it opens, so a shutdown mid-attach closes what opened.
 */
import type { LocalSource } from '@meridian/registry';
import type { Store } from '@meridian/store';
import type { XdsServer } from '@meridian/xds';
import type { Logger } from 'pino';
import { ConvergenceTracker } from './convergence.js';
import { ReplicaDirectory } from './discovery.js';
import { ReplicaFederation, type ReplicaFederationOptions } from './federation.js';
import { ReplicaElection, type ReplicaInfo } from './membership.js';
import type { ServerOptions } from './options.js';

/** The addresses a replica bound ('' when not served) and the host it advertises ('' = none). */
export interface ReplicaAddresses {
  readonly xdsAddress: string;
  readonly adminAddress: string;
  readonly monitoringAddress: string;
  readonly caAddress: string;
  readonly advertiseAddress: string;
}

/** The membership record a replica registers about itself (`replicas/<id>`). */
export function replicaInfo(
  o: ServerOptions,
  addresses: ReplicaAddresses,
  version: string,
  startedAt: Date,
): ReplicaInfo {
  return {
    id: o.replicaId,
    meshId: o.meshId,
    clusterId: o.clusterId,
    xdsAddress: addresses.xdsAddress,
    adminAddress: addresses.adminAddress,
    ...(addresses.caAddress ? { caAddress: addresses.caAddress } : {}),
    ...(addresses.advertiseAddress ? { advertiseAddress: addresses.advertiseAddress } : {}),
    locality: o.locality,
    version,
    startedAt: startedAt.toISOString(),
  };
}

/** What {@link ReplicaMembership.join} needs beyond the record. */
export interface JoinOptions {
  readonly options: ServerOptions;
  readonly store: Store;
  /** The replica's logger. */
  readonly log: Logger;
  readonly info: ReplicaInfo;
  /** The etcd revision this replica serves (published with its leadership status). */
  readonly servedRevision: () => number;
  readonly local: LocalSource;
  /** Adds federation's imported services as a registry source (Replica.addRegistrySource). */
  readonly addSource: ReplicaFederationOptions['addSource'];
}

/** The directory, convergence tracker, election and federation of one replica; each undefined until opened. */
export class ReplicaMembership {
  #directory: ReplicaDirectory | undefined;
  #convergence: ConvergenceTracker | undefined;
  #election: ReplicaElection | undefined;
  #federation: ReplicaFederation | undefined;

  get directory(): ReplicaDirectory | undefined {
    return this.#directory;
  }

  get convergence(): ConvergenceTracker | undefined {
    return this.#convergence;
  }

  get election(): ReplicaElection | undefined {
    return this.#election;
  }

  get federation(): ReplicaFederation | undefined {
    return this.#federation;
  }

  /** Whether this replica holds the singleton election now. */
  get isLeader(): boolean {
    return this.#election?.isLeader ?? false;
  }

  /** Opens the directory of the cluster's replicas; `onMembersChange` hears of replicas joining or leaving. */
  async openDirectory(
    store: Store,
    replicaId: string,
    xds: XdsServer,
    log: Logger,
    onMembersChange: () => void,
  ): Promise<ReplicaDirectory> {
    this.#directory = await ReplicaDirectory.open(store, replicaId, xds, {
      log: log.child({ part: 'rebalance' }),
      onMembersChange,
    });
    return this.#directory;
  }

  /**
   * Opens the convergence tracker; with NATS URLs, it also shares this replica's `/debug/replica`
   * block (`status`) with the other clusters.
   */
  async openConvergence(
    store: Store,
    xds: XdsServer,
    o: ServerOptions,
    log: Logger,
    status: () => unknown,
  ): Promise<ConvergenceTracker> {
    this.#convergence = await ConvergenceTracker.open(
      store,
      xds,
      { replicaId: o.replicaId, clusterId: o.clusterId },
      log.child({ part: 'convergence' }),
      {
        natsUrls: o.natsUrls,
        natsCreds: o.natsCreds,
        meshId: o.meshId,
        status,
      },
    );
    return this.#convergence;
  }

  /** Registers the membership record, starts federation (with NATS URLs), then campaigns. */
  async join(j: JoinOptions): Promise<void> {
    const o = j.options;
    this.#election = new ReplicaElection(j.store, j.info, j.log.child({ part: 'membership' }), {
      leaseTtlSeconds: o.replicaLeaseTtlSeconds,
      dutyIntervalMs: 1000,
      servedRevision: j.servedRevision,
    });
    if (o.natsUrls.length > 0) {
      // Import on every replica, export while leading (one exporter per cluster; subscribed before the
      // first campaign, so no term is missed).
      const election = this.#election;
      this.#federation = await ReplicaFederation.start({
        options: o,
        store: j.store,
        local: j.local,
        log: j.log.child({ part: 'federation' }),
        addSource: j.addSource,
        onLeadership: (listener) => election.onLeadership(listener),
      });
    }
    this.#election.start();
  }

  /** Stops federation, then resigns and revokes the replica lease (shutdown, before the store closes). */
  async leave(log: Logger): Promise<void> {
    await this.#federation?.stop().catch((error) => log.warn({ err: error }, 'federation stop failed'));
    await this.#election?.stop().catch((error) => log.warn({ err: error }, 'membership stop failed'));
  }

  /** Closes the directory and the convergence tracker (shutdown, after the store closes). */
  async close(): Promise<void> {
    await this.#directory?.close().catch(() => undefined);
    await this.#convergence?.close().catch(() => undefined);
  }
}
