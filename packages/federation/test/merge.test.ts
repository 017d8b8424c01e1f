/**
 * The importer's merge rule, without NATS: records fed in any order, with duplicates, through the
 * cache interface, always leave the newest (epoch, seq) version of each service in the view.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { FederationImporter, type ImportCacheSnapshot, type ServiceRecord, serviceId } from '../src/index.js';
import { log, svc } from './helpers.js';

function record(name: string, epoch: number, seq: number, deleted: boolean): ServiceRecord {
  const s = svc('east', name, 1 + ((epoch * 7 + seq) % 5), { k: seq % 250 });
  return {
    v: 1,
    kind: 'service',
    mesh: 'm',
    origin: 'east',
    epoch,
    seq,
    namespace: 'default',
    hostname: s.service.hostname,
    deleted,
    ...(deleted ? { endpoints: [] } : { service: s.service, endpoints: s.endpoints }),
    exportedAt: '',
  };
}

async function viewOf(records: ServiceRecord[]) {
  const snapshot: ImportCacheSnapshot = { v: 1, mesh: 'm', savedAt: '', records, epochs: {} };
  const imp = new FederationImporter({
    mesh: 'm',
    localCluster: 'west',
    logger: log,
    cache: { load: async () => snapshot, save: async () => {} },
  });
  await imp.start();
  await imp.stop();
  return imp.view;
}

describe('merge by (epoch, seq)', () => {
  test('any order, any duplicates: the newest version of each service wins; tombstones hide it', async () => {
    const versions = fc.record({
      name: fc.constantFrom('a', 'b', 'c'),
      epoch: fc.integer({ min: 1, max: 4 }),
      seq: fc.integer({ min: 1, max: 30 }),
      deleted: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(versions, {
          minLength: 1,
          maxLength: 30,
          selector: (v) => `${v.name}/${v.epoch}/${v.seq}`,
        }),
        fc.infiniteStream(fc.nat()),
        async (vs, rand) => {
          const recs = vs.map((v) => record(v.name, v.epoch, v.seq, v.deleted));
          // Shuffle and duplicate some.
          const it = rand[Symbol.iterator]();
          const shuffled = [...recs, ...recs.filter(() => (it.next().value as number) % 3 === 0)].sort(
            () => ((it.next().value as number) % 3) - 1,
          );
          const view = await viewOf(shuffled);
          for (const name of ['a', 'b', 'c']) {
            const mine = recs.filter((r) => r.hostname.startsWith(`${name}.`));
            const id = serviceId('east', 'default', `${name}.default.svc.cluster.local`);
            if (mine.length === 0) {
              expect(view.services.has(id)).toBe(false);
              continue;
            }
            const newest = mine.reduce((a, b) =>
              b.epoch > a.epoch || (b.epoch === a.epoch && b.seq > a.seq) ? b : a,
            );
            if (newest.deleted) expect(view.services.has(id)).toBe(false);
            else
              expect(view.services.get(id)).toMatchObject({
                epoch: newest.epoch,
                seq: newest.seq,
                endpoints: newest.endpoints,
              });
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
