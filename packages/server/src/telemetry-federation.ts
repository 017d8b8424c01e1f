/**
 * The service graph across clusters (issue 17, item 4): where federation links clusters over NATS
 * (`--nats-url`), every replica publishes its edge windows every 2 s on
 * `meridian.telemetry.graph.<mesh>.<cluster>.<replica>` and keeps the latest windows of the other
 * clusters' replicas (for one window), so `/debug/graph` shows the mesh. Within a cluster the
 * windows travel through etcd (telemetry-ingest.ts); NATS messages of the replica's own cluster are
 * ignored. The trust is federation's: whoever may publish on the mesh's NATS subjects may add
 * edges (as it may add imported endpoints). A message is at most the busiest
 * {@link MAX_EDGES} edges; one that does not parse is dropped.
 */
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { natsAuthenticator } from './federation.js';
import type { EdgeWindow } from './service-graph.js';

const MAX_EDGES = 2000;

/** Settings of a {@link GraphExchange}. */
export interface GraphExchangeOptions {
  readonly natsUrls: readonly string[];
  readonly natsCreds: string;
  readonly meshId: string;
  readonly clusterId: string;
  readonly replicaId: string;
  readonly windowSeconds: number;
  /** This replica's windows now. */
  readonly windows: () => EdgeWindow[];
  readonly now: () => number;
  readonly log: Logger;
}

interface Published {
  readonly clusterId: string;
  readonly replicaId: string;
  readonly at: number;
  readonly edges: readonly EdgeWindow[];
}

/** Publishes this replica's edge windows on NATS and collects the other clusters'. */
export class GraphExchange {
  readonly #o: GraphExchangeOptions;
  readonly #remote = new Map<string, Published>();
  #nc: NatsConnection | undefined;
  #sub: Subscription | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(o: GraphExchangeOptions) {
    this.#o = o;
  }

  /** Connects (in the background, retrying) and starts publishing. */
  static start(o: GraphExchangeOptions): GraphExchange {
    const x = new GraphExchange(o);
    const authenticator = natsAuthenticator(o.natsCreds);
    connect({
      servers: [...o.natsUrls],
      name: `meridiand telemetry ${o.clusterId}/${o.replicaId}`,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      ...(authenticator ? { authenticator } : {}),
    }).then(
      (nc) => {
        if (x.#stopped) {
          void nc.close();
          return;
        }
        x.#nc = nc;
        x.#subscribe(nc);
        x.#schedule();
      },
      (error: unknown) =>
        o.log.warn({ err: error }, 'telemetry: NATS not reachable; the graph stays within the cluster'),
    );
    return x;
  }

  #subject(cluster = '*', replica = '*'): string {
    return `meridian.telemetry.graph.${this.#o.meshId}.${cluster}.${replica}`;
  }

  #subscribe(nc: NatsConnection): void {
    const sub = nc.subscribe(this.#subject());
    this.#sub = sub;
    void (async () => {
      for await (const m of sub) {
        try {
          const p = m.json() as Published;
          if (p.clusterId === this.#o.clusterId || typeof p.replicaId !== 'string' || !Array.isArray(p.edges))
            continue;
          this.#remote.set(`${p.clusterId}/${p.replicaId}`, { ...p, edges: p.edges.slice(0, MAX_EDGES) });
        } catch {
          // not a graph message: dropped
        }
      }
    })();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#publish();
      this.#schedule();
    }, 2000);
    this.#timer.unref();
  }

  #publish(): void {
    const nc = this.#nc;
    if (!nc || nc.isClosed()) return;
    const edges = this.#o
      .windows()
      .sort((a, b) => b.requests - a.requests)
      .slice(0, MAX_EDGES);
    const body: Published = {
      clusterId: this.#o.clusterId,
      replicaId: this.#o.replicaId,
      at: this.#o.now(),
      edges,
    };
    try {
      nc.publish(this.#subject(this.#o.clusterId, this.#o.replicaId), JSON.stringify(body));
    } catch (error) {
      this.#o.log.debug({ err: error }, 'telemetry: could not publish the graph on NATS');
    }
  }

  /** The other clusters' replicas' windows, published within the last window. */
  remote(): (readonly EdgeWindow[])[] {
    const now = this.#o.now();
    const out: (readonly EdgeWindow[])[] = [];
    for (const [k, p] of this.#remote) {
      if (now - p.at > this.#o.windowSeconds * 1000) this.#remote.delete(k);
      else out.push(p.edges);
    }
    return out;
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#sub?.unsubscribe();
    await this.#nc?.close().catch(() => undefined);
  }
}
