/**
 * What an importer hands to the registry: one imported service, the immutable view of all of them,
 * the change events and each remote cluster's status. Types only.
 */
import type { FederatedEndpoint, FederatedService } from './wire.js';

/** A service imported from another cluster, as the registry sees it. Frozen. */
export interface ImportedService {
  /** Origin cluster. */
  readonly cluster: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly service: FederatedService;
  /** The origin's endpoints; all with health UNHEALTHY while the cluster is stale. */
  readonly endpoints: readonly FederatedEndpoint[];
  /** The origin cluster has been silent for longer than the grace period. */
  readonly stale: boolean;
  /** `(epoch, seq)` of the record that last changed this entry's content. */
  readonly epoch: number;
  readonly seq: number;
}

/** An immutable snapshot of everything imported; a new object for every change. */
export interface ImportedView {
  /** Increments with every change event (starts at 0, the empty view). */
  readonly version: number;
  /** By `serviceId(cluster, namespace, hostname)`. */
  readonly services: ReadonlyMap<string, ImportedService>;
  /** Remote clusters currently stale. */
  readonly staleClusters: ReadonlySet<string>;
}

/** A reference to one imported service. */
export interface ServiceRef {
  readonly cluster: string;
  readonly namespace: string;
  readonly hostname: string;
}

/** Emitted when the view changes: which services changed (added, updated, removed or health-flipped). */
export interface ImportChange {
  readonly version: number;
  readonly view: ImportedView;
  readonly changed: readonly ServiceRef[];
  /** Clusters that became stale or live again in this change. */
  readonly clusters: readonly { cluster: string; stale: boolean }[];
}

/** Health and progress of one remote cluster (for health endpoints and debugging; not part of the view). */
export interface RemoteClusterStatus {
  readonly cluster: string;
  /** Newest epoch seen from the cluster (records older than this for unknown keys are refused). */
  readonly epoch: number;
  /** Contiguous seq watermark received in `epoch`. */
  readonly watermark: number;
  readonly stale: boolean;
  /** Milliseconds since the cluster was last heard from; undefined if never. */
  readonly heardAgoMs: number | undefined;
  /** Its bucket has been read at least once since the importer attached. */
  readonly synced: boolean;
  /** Live (not deleted) services imported from it. */
  readonly services: number;
}
