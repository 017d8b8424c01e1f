// `meridian analyze`: files alone, the live config of a real replica, and files over the live config.
// Exit 79 with warnings (istioctl's code), 0 without; warnings are istioctl's one-line format.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { operatorSubject } from '@meridian/auth';
import { run } from '@meridian/cli';
import { Replica, resolveOptions } from '@meridian/server';
import { type EtcdCluster, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

let dir: string;
let etcd: EtcdCluster;
let replica: Replica;
let token: string;
let out: string[] = [];
let err: string[] = [];
const ctx = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
const meridian = (...args: string[]): Promise<number> => run(args, ctx);

const VS_TO_V1 = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]}]
`;
const DR_V1 = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}]
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cli-analyze-'));
  etcd = await startEtcd();
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--cluster-id', 'c8', '--replica-id', 'analyze-1', '--etcd-endpoints', etcd.endpoints.join(',')],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0', '--monitoring-address', 'off'],
        ...['--snapshot-dir', 'off'],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  const { bootstrapCredential } = await import('@meridian/auth');
  const { EtcdStore, Keyspace } = await import('@meridian/store');
  const store = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of('mesh1', 'c8') });
  try {
    ({ token } = await bootstrapCredential(store, {
      subject: operatorSubject('cluster.local', 'analyst'),
      role: 'admin',
      bindingName: 'analyst',
      ttlSeconds: 600,
    }));
  } finally {
    await store.close();
  }
  await writeFile(join(dir, 'vs.yaml'), VS_TO_V1);
  await writeFile(join(dir, 'dr.yaml'), DR_V1);
});
afterAll(async () => {
  await replica?.stop();
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  out = [];
  err = [];
});

const target = () => [
  '--server',
  replica.adminAddress,
  '--token',
  token,
  '--credentials',
  join(dir, 'none.yaml'),
];

describe('meridian analyze', () => {
  it('files alone: a route to a subset no DestinationRule defines is a warning (exit 79); with the rule, none', async () => {
    expect(await meridian('analyze', '-f', join(dir, 'vs.yaml'))).toBe(79);
    expect(out).toEqual([
      'Warning [IST0101] VirtualService default/reviews: spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews.default.svc.cluster.local+v1"',
    ]);
    out = [];
    expect(await meridian('analyze', '-f', join(dir, 'vs.yaml'), '-f', join(dir, 'dr.yaml'))).toBe(0);
    expect(out).toEqual([]);
    expect(err.join('\n')).toContain('No validation issues found');
  });

  it('the live config, and files over it as if applied', async () => {
    expect(await meridian('apply', '-f', join(dir, 'vs.yaml'), ...target())).toBe(0);
    out = [];
    expect(await meridian('analyze', ...target())).toBe(79);
    expect(out.join('\n')).toContain('[IST0101] VirtualService default/reviews');
    out = [];
    // The rule only in a file: analyzed over the live config, the live route's subset now resolves.
    expect(await meridian('analyze', '-f', join(dir, 'dr.yaml'), '--live', ...target())).toBe(0);
  });
});
