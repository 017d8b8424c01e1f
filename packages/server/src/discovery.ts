/**
 * The replica's answer to node agents' ReplicaDiscovery: the live members of its cluster (the
 * membership entries each replica keeps under its lease, mirrored by a watch, so a dead replica drops
 * out within the lease TTL) with their localities and addresses, and this replica's own stream count.
 */
import type { DiscoveredReplica, ReplicaDiscoverySource } from '@meridian/registry';
import { Collection, type Mirror, type Store } from '@meridian/store';
import { REPLICAS_PREFIX, type ReplicaInfo } from './membership.js';

/** A watched view of the cluster's replicas. */
export class ReplicaDirectory implements ReplicaDiscoverySource {
  private constructor(
    readonly selfId: string,
    private readonly mirror: Mirror<ReplicaInfo>,
    private readonly ownConnections: () => number,
  ) {}

  /** Loads the membership entries and follows them. */
  static async open(store: Store, selfId: string, ownConnections: () => number): Promise<ReplicaDirectory> {
    const mirror = await new Collection<ReplicaInfo>(store, REPLICAS_PREFIX).mirror();
    return new ReplicaDirectory(selfId, mirror, ownConnections);
  }

  replicas(): DiscoveredReplica[] {
    return this.mirror.list().map(({ value: r }) => ({
      id: r.id,
      meshId: r.meshId,
      clusterId: r.clusterId,
      locality: r.locality,
      xdsAddress: r.xdsAddress,
      caAddress: r.caAddress ?? '',
      connections: r.id === this.selfId ? this.ownConnections() : 0,
    }));
  }

  async close(): Promise<void> {
    await this.mirror.close();
  }
}
