// The topology of a local mesh (deploy/local/two-clusters.yaml): clusters with their region, zones
// and how many etcd members, NATS servers and replicas each runs, and the demo application. Parsed
// strictly: an unknown or wrong field is a TopologyError naming it.
import { parse } from 'yaml';
import { UsageError } from '../context.js';

/** One cluster of the local mesh. */
export interface ClusterTopology {
  readonly name: string;
  readonly region: string;
  /** Replica i runs in zones[i % zones.length]. */
  readonly zones: readonly string[];
  readonly replicas: number;
  readonly etcdMembers: number;
  readonly natsServers: number;
}

/** A local mesh: its id, trust domain, clusters and demo. */
export interface Topology {
  readonly mesh: string;
  readonly trustDomain: string;
  readonly clusters: readonly ClusterTopology[];
  readonly demo: { readonly enabled: boolean; readonly rps: number };
}

/** A topology file or override is wrong; the message names the field. */
export class TopologyError extends UsageError {
  override readonly name = 'TopologyError';
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$/;
const CLUSTER_FIELDS = ['name', 'region', 'zones', 'replicas', 'etcdMembers', 'natsServers'];
const TOP_FIELDS = ['mesh', 'trustDomain', 'clusters', 'demo'];

function count(v: unknown, field: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new TopologyError(
      `${field}: must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`,
    );
  return v;
}

function name(v: unknown, field: string): string {
  if (typeof v !== 'string' || !NAME.test(v))
    throw new TopologyError(
      `${field}: must be a lowercase DNS label (a-z, 0-9, -; at most 32), got ${JSON.stringify(v)}`,
    );
  return v;
}

function unknownFields(o: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      throw new TopologyError(`${where}${k}: unknown field (known: ${allowed.join(', ')})`);
}

/** Parses a topology file's text; `file` names it in errors. */
export function parseTopology(text: string, file: string): Topology {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (error) {
    throw new TopologyError(`${file}: not YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new TopologyError(`${file}: must be a mapping with mesh, clusters and demo`);
  const o = raw as Record<string, unknown>;
  const at = (f: string) => `${file}: ${f}`;
  unknownFields(o, TOP_FIELDS, `${file}: `);
  const mesh = name(o.mesh ?? 'local', at('mesh'));
  const trustDomain = o.trustDomain ?? 'cluster.local';
  if (typeof trustDomain !== 'string' || !/^[a-z0-9.-]+$/.test(trustDomain))
    throw new TopologyError(`${at('trustDomain')}: must be a DNS name, got ${JSON.stringify(trustDomain)}`);
  if (!Array.isArray(o.clusters) || o.clusters.length === 0)
    throw new TopologyError(`${at('clusters')}: must be a non-empty list`);
  const clusters = o.clusters.map((c: unknown, i): ClusterTopology => {
    const f = (k: string) => at(`clusters[${i}].${k}`);
    if (typeof c !== 'object' || c === null || Array.isArray(c))
      throw new TopologyError(`${at(`clusters[${i}]`)}: must be a mapping`);
    const r = c as Record<string, unknown>;
    unknownFields(r, CLUSTER_FIELDS, `${at(`clusters[${i}]`)}.`);
    const cluster = name(r.name, f('name'));
    const region = name(r.region ?? `region-${cluster}`, f('region'));
    const zones = r.zones ?? [`${region}-a`];
    if (!Array.isArray(zones) || zones.length === 0)
      throw new TopologyError(`${f('zones')}: must be a non-empty list`);
    return {
      name: cluster,
      region,
      zones: zones.map((z, j) => name(z, `${f('zones')}[${j}]`)),
      replicas: count(r.replicas, f('replicas'), 1, 9, 3),
      etcdMembers: count(r.etcdMembers, f('etcdMembers'), 1, 5, 3),
      natsServers: count(r.natsServers, f('natsServers'), 1, 5, 3),
    };
  });
  const seen = new Set<string>();
  for (const [i, c] of clusters.entries()) {
    if (seen.has(c.name)) throw new TopologyError(`${at(`clusters[${i}].name`)}: "${c.name}" appears twice`);
    seen.add(c.name);
  }
  const demoRaw = (o.demo ?? {}) as Record<string, unknown>;
  if (typeof demoRaw !== 'object' || Array.isArray(demoRaw))
    throw new TopologyError(`${at('demo')}: must be a mapping`);
  unknownFields(demoRaw, ['enabled', 'rps'], `${file}: demo.`);
  if (demoRaw.enabled !== undefined && typeof demoRaw.enabled !== 'boolean')
    throw new TopologyError(`${at('demo.enabled')}: must be true or false`);
  return {
    mesh,
    trustDomain,
    clusters,
    demo: { enabled: demoRaw.enabled ?? true, rps: count(demoRaw.rps, at('demo.rps'), 1, 500, 20) },
  };
}

/**
 * Applies `--clusters N` (the first N clusters; more than the file has are added as c3, c4, ... in
 * the last cluster's shape) and `--replicas N` (every cluster).
 */
export function overrideTopology(t: Topology, o: { clusters?: number; replicas?: number }): Topology {
  let clusters = [...t.clusters];
  if (o.clusters !== undefined) {
    const last = clusters.at(-1)!;
    clusters = clusters.slice(0, o.clusters);
    for (let i = clusters.length; i < o.clusters; i++) {
      const n = `c${i + 1}`;
      clusters.push({ ...last, name: n, region: `region-${n}`, zones: [`region-${n}-a`, `region-${n}-b`] });
    }
  }
  if (o.replicas !== undefined) clusters = clusters.map((c) => ({ ...c, replicas: o.replicas! }));
  return { ...t, clusters };
}

/** Commander parser of `--clusters` and `--replicas`: a whole number from 1 to 9. */
export function parseCount(flag: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1 || n > 9) throw new TopologyError(`${flag}: must be 1 to 9, got "${v}"`);
    return n;
  };
}
