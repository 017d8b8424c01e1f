// Issue 12's memory figure, measured where RSS cannot: the heap one more sidecar costs a replica.
//
// One etcd and one meridiand (its V8 heap snapshot on SIGUSR2, which collects garbage first); the
// `mesh` bench's config applied through the admin API; then --first distinct sidecars (SotW, each the
// workload of its own WorkloadEntry, CDS and LDS by wildcard, ACKing at once), a heap snapshot, then
// --second sidecars in all and another snapshot. The live heap of each snapshot is the sum of its
// objects' sizes (native buffers included); the difference divided by the sidecars added is what one
// sidecar costs once the shared outbound views exist. RSS in `pnpm bench mesh` is higher: it also
// holds garbage not yet collected, the shared views, and writes queued for sidecars slower than the
// replica (its client processes share the machine).
//
//   pnpm bench mesh-memory [--first 100] [--second 300]
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TypeUrl } from '@meridian/envoy';
import { eventually, freePorts, SimulatedProxy, startEtcdCluster } from '@meridian/testkit';
import { startReplicas, xdsClient } from '../packages/server/test/harness.js';
import { emitResult, log, parseFlags, round3 } from './lib/index.js';
import { meshObjects, sidecarNode } from './lib/mesh-objects.js';

const FLAGS = {
  first: { type: 'integer', default: 100, help: 'sidecars at the first heap snapshot' },
  second: { type: 'integer', default: 300, help: 'sidecars at the second heap snapshot' },
} as const;

/** Total self size of a V8 heap snapshot's nodes, and the part in native array buffers. */
async function heapOf(file: string): Promise<{ total: number; buffers: number }> {
  const snap = JSON.parse(await readFile(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const width = fields.length;
  const size = fields.indexOf('self_size');
  const name = fields.indexOf('name');
  let total = 0;
  let buffers = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    total += snap.nodes[i + size]!;
    if (snap.strings[snap.nodes[i + name]!] === 'system / JSArrayBufferData')
      buffers += snap.nodes[i + size]!;
  }
  return { total, buffers };
}

export async function main(args: string[]): Promise<void> {
  const flags = parseFlags(args, FLAGS, {
    bench: 'mesh-memory',
    description: 'issue 12: heap one more distinct sidecar costs a replica (heap snapshots after GC)',
  });
  if (!(flags.first >= 1 && flags.second > flags.first && flags.second <= 5000))
    throw new Error('need 1 <= --first < --second <= 5000');
  const dir = await mkdtemp(join(tmpdir(), 'meridian-heap-'));
  const etcd = await startEtcdCluster({ size: 1 });
  const ports = await freePorts(2);
  const saved = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}`;
  const replicas = await startReplicas([
    {
      id: 'r0',
      etcd: etcd.endpoints,
      xdsPort: ports[0]!,
      adminPort: ports[1]!,
      extraArgs: ['--log-level', 'warn'],
    },
  ]).finally(() => {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  });
  const replica = replicas[0]!;
  const proxies: SimulatedProxy[] = [];
  try {
    const mesh = meshObjects(1000, 5000, 500); // as `pnpm bench mesh`
    const all = [
      ...mesh.serviceEntries,
      ...mesh.workloadEntries,
      ...mesh.destinationRules,
      ...mesh.virtualServices,
    ];
    const res = await replica.api('POST', '/apis/v1/apply', JSON.stringify(all), 600_000);
    if (res.status !== 200) throw new Error(`apply: HTTP ${res.status}`);
    log(`mesh: ${all.length} objects applied; one replica`);
    // One workload of every service in turn, so the sidecars are distinct workloads of many services.
    const perService = Math.max(1, Math.floor(mesh.workloads.length / 1000));
    const workloads = mesh.workloads.filter((_, i) => i % perService === 0);
    const client = xdsClient(replica.xds);
    const heaps: { sidecars: number; total: number; buffers: number }[] = [];
    for (const target of [flags.first, flags.second]) {
      for (const w of workloads.slice(proxies.length, target)) {
        const node = sidecarNode(w, 'c1');
        const p = new SimulatedProxy({
          nodeId: node.id,
          metadata: node.metadata,
          variant: 'sotw',
          subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
        });
        p.connect(client);
        proxies.push(p);
      }
      await eventually(
        `${target} sidecars synced`,
        () =>
          proxies.every((p) =>
            [TypeUrl.Cluster, TypeUrl.Listener].every((t) => (p.state.get(t)?.acks ?? 0) >= 1),
          ),
        600_000,
        100,
      );
      const before = new Set(await readdir(dir));
      replica.child!.kill('SIGUSR2');
      const file = await eventually(
        'the heap snapshot',
        async () => {
          const fresh = (await readdir(dir)).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
          if (!fresh) return undefined;
          // Written when its size stops changing.
          const a = (await readFile(join(dir, fresh))).length;
          await new Promise((r) => setTimeout(r, 1000));
          const b = (await readFile(join(dir, fresh))).length;
          return a === b && a > 0 ? fresh : undefined;
        },
        300_000,
        500,
      );
      heaps.push({ sidecars: target, ...(await heapOf(join(dir, file))) });
      await rm(join(dir, file));
      log(`${target} sidecars: live heap ${(heaps.at(-1)!.total / 1e6).toFixed(1)} MB`);
    }
    const [a, b] = heaps as [(typeof heaps)[0], (typeof heaps)[0]];
    const perSidecarKb = (b.total - a.total) / (b.sidecars - a.sidecars) / 1024;
    const buffersKb = (b.buffers - a.buffers) / (b.sidecars - a.sidecars) / 1024;
    log(
      `one more sidecar: ${perSidecarKb.toFixed(1)} KB of live heap (${buffersKb.toFixed(1)} KB of it in buffers); target 100 KB per proxy`,
    );
    emitResult({
      first: a.sidecars,
      second: b.sidecars,
      heap_first_mb: round3(a.total / 1e6),
      heap_second_mb: round3(b.total / 1e6),
      heap_per_sidecar_kb: round3(perSidecarKb),
      buffers_per_sidecar_kb: round3(buffersKb),
    });
  } finally {
    for (const p of proxies) p.disconnect();
    await replica.kill();
    await etcd.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
