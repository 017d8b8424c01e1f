// Observer 1: the demo clients' own record of every call. Each @grpc/grpc-js-xds client writes its last
// minute of calls (end time, answering cluster or '' for a failure, gRPC code) to traffic.json every
// half second; this recorder reads those files every 500 ms and keeps every call once, for the whole
// run, per client cluster.
import { readFile } from 'node:fs/promises';
import type { CallRecord, TrafficFile } from '../../packages/cli/src/local/demo-app.js';
import type { Mesh } from './mesh.js';

/** Per second: calls answered by each cluster, and failed, for one client. */
export interface SecondBucket {
  readonly t: number; // seconds since the scenario's start
  readonly ok: number;
  readonly failed: number;
  readonly by: Record<string, number>;
}

export class TrafficRecorder {
  readonly calls = new Map<string, CallRecord[]>();
  private readonly last = new Map<string, { at: number; n: number }>();
  private timer: NodeJS.Timeout | undefined;
  private reading = false;

  constructor(private readonly mesh: Mesh) {
    for (const c of mesh.plan.clusters) this.calls.set(c.name, []);
  }

  start(): void {
    this.timer = setInterval(() => void this.read(), 500);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await new Promise((r) => setTimeout(r, 1200)); // the clients write every 500 ms
    await this.read();
  }

  async read(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      for (const c of this.mesh.plan.clusters) {
        let t: TrafficFile;
        try {
          t = JSON.parse(await readFile(this.mesh.paths.traffic(c.name), 'utf8')) as TrafficFile;
        } catch {
          continue; // being replaced, or the client is down
        }
        const seen = this.last.get(c.name) ?? { at: 0, n: 0 };
        const mine = this.calls.get(c.name)!;
        let atLast = 0;
        for (const r of t.recent) {
          if (r[0] < seen.at) continue;
          if (r[0] === seen.at && atLast++ < seen.n) continue;
          mine.push(r);
        }
        const maxAt = mine.at(-1)?.[0] ?? 0;
        this.last.set(c.name, { at: maxAt, n: mine.filter((r) => r[0] === maxAt).length });
      }
    } finally {
      this.reading = false;
    }
  }

  /** Calls of `cluster`'s client that ended in [from, to). */
  between(cluster: string, from: number, to = Number.POSITIVE_INFINITY): CallRecord[] {
    return (this.calls.get(cluster) ?? []).filter(([at]) => at >= from && at < to);
  }

  failed(cluster: string, from: number, to?: number): number {
    return this.between(cluster, from, to).filter(([, by]) => by === '').length;
  }

  /** When the last failed call of `cluster` in [from, to) ended, or undefined. */
  lastFailure(cluster: string, from: number, to?: number): number | undefined {
    return this.between(cluster, from, to)
      .filter(([, by]) => by === '')
      .at(-1)?.[0];
  }

  /** One bucket per second from `start` to `end`. */
  timeline(cluster: string, start: number, end: number): SecondBucket[] {
    const out: SecondBucket[] = [];
    for (let s = start; s < end; s += 1000) {
      const by: Record<string, number> = {};
      let ok = 0;
      let failed = 0;
      for (const [, from] of this.between(cluster, s, s + 1000)) {
        if (from === '') failed++;
        else {
          ok++;
          by[from] = (by[from] ?? 0) + 1;
        }
      }
      out.push({ t: Math.round((s - start) / 1000), ok, failed, by });
    }
    return out;
  }
}
