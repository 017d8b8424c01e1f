// Observer 2: a config writer with its own log. It applies ServiceEntries `w-<run>-<n>` in namespace
// `chaos` through the admin API of a cluster's replicas (round robin, 5 s bound per request), deletes
// every fourth acknowledged one, and records each outcome: acknowledged (HTTP 200), refused (an HTTP
// error answer) or unknown (no answer: it may or may not have been applied, so it is checked neither
// way). Its verdict comes from etcd read directly with etcdctl, not from Meridian: every acknowledged
// write not deleted must be there (lost = 0), every acknowledged delete must stay gone (resurrected = 0).
import type { ClusterPlan } from '../../packages/cli/src/local/plan.js';
import { adminUrl } from '../../packages/cli/src/local/plan.js';
import { type Mesh, sleep } from './mesh.js';

export interface WriteEvent {
  readonly at: number;
  readonly op: 'apply' | 'delete';
  readonly name: string;
  readonly outcome: 'ack' | 'refused' | 'unknown';
  readonly detail?: string;
}

export interface WriterFigures {
  readonly writesAccepted: number;
  readonly writesRefused: number;
  readonly writesUnknown: number;
  readonly deletesAccepted: number;
  readonly ackedWritesLost: number;
  readonly deletedResurrected: number;
  readonly lostNames: string[];
  readonly resurrectedNames: string[];
}

export const seYaml = (name: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: chaos}
spec:
  hosts: [${name}.chaos.example]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
`;

/** One admin request: 'ack', 'refused' (an HTTP error answer, with its message) or 'unknown'. */
export async function adminCall(
  mesh: Mesh,
  c: ClusterPlan,
  i: number,
  method: 'POST' | 'DELETE',
  path: string,
  body?: string,
): Promise<{ outcome: WriteEvent['outcome']; detail?: string; status?: number; text?: string }> {
  try {
    const res = await fetch(`${adminUrl(c, i)}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${mesh.token(c)}`,
        ...(body !== undefined ? { 'content-type': 'application/yaml' } : {}),
      },
      ...(body !== undefined ? { body } : {}),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (res.status === 200) return { outcome: 'ack', status: 200, text };
    return {
      outcome: 'refused',
      detail: `HTTP ${res.status}: ${text.slice(0, 160)}`,
      status: res.status,
      text,
    };
  } catch (error) {
    // Connection refused: nothing reached the replica, so the write is refused, not in doubt.
    const code = ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ECONNREFUSED') return { outcome: 'refused', detail: 'connection refused' };
    return { outcome: 'unknown', detail: (error as Error).message };
  }
}

export class ConfigWriter {
  readonly log: WriteEvent[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  private n = 0;
  private next = 0;
  private readonly run = Date.now().toString(36);

  constructor(
    private readonly mesh: Mesh,
    private readonly c: ClusterPlan,
    private readonly everyMs = 250,
  ) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        await this.step();
        await sleep(this.everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private pickReplica(): number {
    return this.next++ % this.c.replicas;
  }

  private async step(): Promise<void> {
    this.n++;
    if (this.n % 4 === 0) {
      const deletable = this.liveAcked();
      const victim = deletable[0];
      if (victim !== undefined) {
        const r = await adminCall(
          this.mesh,
          this.c,
          this.pickReplica(),
          'DELETE',
          `/apis/v1/config/ServiceEntry/chaos/${victim}`,
        );
        this.log.push({ at: Date.now(), op: 'delete', name: victim, outcome: r.outcome, detail: r.detail });
        return;
      }
    }
    const name = `w-${this.run}-${this.n}`;
    const r = await adminCall(
      this.mesh,
      this.c,
      this.pickReplica(),
      'POST',
      '/apis/v1/apply?source=chaos-writer',
      seYaml(name),
    );
    this.log.push({ at: Date.now(), op: 'apply', name, outcome: r.outcome, detail: r.detail });
  }

  /** Names applied with an ack and never the object of a delete attempt. */
  private liveAcked(): string[] {
    const touched = new Set(this.log.filter((e) => e.op === 'delete').map((e) => e.name));
    return this.log
      .filter((e) => e.op === 'apply' && e.outcome === 'ack' && !touched.has(e.name))
      .map((e) => e.name);
  }

  count(
    op: WriteEvent['op'],
    outcome: WriteEvent['outcome'],
    from = 0,
    to = Number.POSITIVE_INFINITY,
  ): number {
    return this.log.filter((e) => e.op === op && e.outcome === outcome && e.at >= from && e.at < to).length;
  }

  /** Checks the log against etcd, read directly (etcdctl), and returns the figures. */
  verify(): WriterFigures {
    const present = etcdNames(this.mesh, this.c);
    const deleteAttempted = new Set(this.log.filter((e) => e.op === 'delete').map((e) => e.name));
    const deleted = new Set(
      this.log.filter((e) => e.op === 'delete' && e.outcome === 'ack').map((e) => e.name),
    );
    const lost = this.log
      .filter((e) => e.op === 'apply' && e.outcome === 'ack' && !deleteAttempted.has(e.name))
      .map((e) => e.name)
      .filter((n) => !present.has(n));
    const resurrected = [...deleted].filter((n) => present.has(n));
    return {
      writesAccepted: this.count('apply', 'ack'),
      writesRefused: this.count('apply', 'refused'),
      writesUnknown: this.count('apply', 'unknown'),
      deletesAccepted: deleted.size,
      ackedWritesLost: lost.length,
      deletedResurrected: resurrected.length,
      lostNames: lost.slice(0, 20),
      resurrectedNames: resurrected.slice(0, 20),
    };
  }
}

/**
 * Names of the ServiceEntries of namespace chaos in `c`'s etcd, read with etcdctl (keys only): the
 * folded key of an object is `<keyspace>config/ServiceEntry/chaos/<name>` (server/src/config-commit.ts);
 * single-object applies are written there directly.
 */
export function etcdNames(mesh: Mesh, c: ClusterPlan): Set<string> {
  const keys = mesh.etcdctl(c, ['get', '--prefix', `/meridian/${mesh.plan.mesh}/${c.name}/`, '--keys-only']);
  const out = new Set<string>();
  for (const k of keys.split('\n')) {
    const m = /\/config\/ServiceEntry\/chaos\/([^/]+)$/.exec(k.trim());
    if (m) out.add(m[1]!);
  }
  return out;
}
