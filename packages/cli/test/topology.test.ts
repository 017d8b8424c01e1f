// The topology file of `meridian up`: the default file parses to east and west; overrides; every
// wrong field is refused with its name; a plan's ports are distinct and its commands well formed.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_TOPOLOGY,
  makePlan,
  natsConfig,
  replicaSpec,
  StatePaths,
  shapeOf,
} from '../src/local/plan.js';
import { overrideTopology, parseTopology, TopologyError } from '../src/local/topology.js';

describe('topology', () => {
  it('parses deploy/local/two-clusters.yaml: east and west, 3 etcd members, 3 NATS servers, 3 replicas', async () => {
    const t = parseTopology(await readFile(DEFAULT_TOPOLOGY, 'utf8'), DEFAULT_TOPOLOGY);
    expect(t.mesh).toBe('local');
    expect(
      t.clusters.map((c) => [c.name, c.region, c.zones.length, c.etcdMembers, c.natsServers, c.replicas]),
    ).toEqual([
      ['east', 'us-east1', 3, 3, 3, 3],
      ['west', 'us-west1', 3, 3, 3, 3],
    ]);
    expect(t.demo).toEqual({ enabled: true, rps: 20 });
  });

  it('--clusters and --replicas override the file', async () => {
    const t = parseTopology(await readFile(DEFAULT_TOPOLOGY, 'utf8'), 'f');
    const three = overrideTopology(t, { clusters: 3, replicas: 1 });
    expect(three.clusters.map((c) => [c.name, c.replicas])).toEqual([
      ['east', 1],
      ['west', 1],
      ['c3', 1],
    ]);
    expect(overrideTopology(t, { clusters: 1 }).clusters.map((c) => c.name)).toEqual(['east']);
    expect(shapeOf(three)).not.toBe(shapeOf(t));
  });

  it('refuses a wrong field, naming it', () => {
    const cases: [string, string][] = [
      ['clusters: []', 'f: clusters: must be a non-empty list'],
      [
        'clusters: [{name: East}]',
        'f: clusters[0].name: must be a lowercase DNS label (a-z, 0-9, -; at most 32), got "East"',
      ],
      [
        'clusters: [{name: a, replicas: 0}]',
        'f: clusters[0].replicas: must be a whole number from 1 to 9, got 0',
      ],
      [
        'clusters: [{name: a, etcd: 3}]',
        'f: clusters[0].etcd: unknown field (known: name, region, zones, replicas, etcdMembers, natsServers)',
      ],
      ['clusters: [{name: a}, {name: a}]', 'f: clusters[1].name: "a" appears twice'],
      [
        'clusters: [{name: a}]\ndemo: {rps: fast}',
        'f: demo.rps: must be a whole number from 1 to 500, got "fast"',
      ],
      [
        'clusters: [{name: a}]\nmeshes: x',
        'f: meshes: unknown field (known: mesh, trustDomain, clusters, demo)',
      ],
      ['[1, 2]', 'f: must be a mapping with mesh, clusters and demo'],
    ];
    for (const [text, message] of cases) {
      let caught: unknown;
      try {
        parseTopology(text, 'f');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(TopologyError);
      expect((caught as Error).message).toBe(message);
    }
  });

  it('plans distinct free ports and NATS gateways to every cluster', async () => {
    const t = parseTopology(await readFile(DEFAULT_TOPOLOGY, 'utf8'), 'f');
    const plan = await makePlan(t, 'f');
    const ports = plan.clusters.flatMap((c) => [
      ...c.etcd.flatMap((e) => [e.client, e.peer]),
      ...c.nats.flatMap((n) => [n.client, n.route, n.gateway, n.monitor]),
      ...c.replicaPorts.flatMap((r) => [r.ca, r.admin, r.monitoring]),
      ...Object.values(c.demo),
    ]);
    expect(new Set(ports).size).toBe(ports.length);
    expect(ports.every((p) => p > 1024 && p < 65536)).toBe(true);
    const conf = natsConfig(new StatePaths('/tmp/x'), plan, plan.clusters[0]!, 1);
    expect(conf).toContain('server_name: "east-1"');
    for (const c of plan.clusters)
      for (const n of c.nats) expect(conf).toContain(`"nats://127.0.0.1:${n.gateway}"`);
  });

  it('a replica is healthy for `up` only once its /readyz says ok, not while degraded (etcd not reached yet)', async () => {
    const t = parseTopology(await readFile(DEFAULT_TOPOLOGY, 'utf8'), 'f');
    const plan = await makePlan(t, 'f');
    const health = replicaSpec(new StatePaths('/tmp/x'), plan, plan.clusters[0]!, 0).health;
    if (health.kind !== 'http' || !health.check) throw new Error(`unexpected health ${health.kind}`);
    expect(health.url).toBe(`http://127.0.0.1:${plan.clusters[0]!.replicaPorts[0]!.monitoring}/readyz`);
    expect(health.check(200, 'ok\n')).toBe(true); // as the replica writes it
    expect(health.check(200, 'ok')).toBe(true);
    expect(health.check(200, 'degraded: store unavailable since 2026-12-06T14:03:01.897Z')).toBe(false);
    expect(health.check(200, 'degraded: store unreachable, serving revision 27 from disk (age 19s)')).toBe(
      false,
    );
    expect(health.check(503, 'not ready: --ca-address is set but the CA is not loaded')).toBe(false);
  });
});
