// The `mesh` benchmark's config, as config objects for the admin API: the translate bench's mesh
// (bench/translate.ts buildMesh: services, endpoints, DestinationRules and VirtualServices) written
// as ServiceEntries (STATIC, selecting their WorkloadEntries by `app` label) and WorkloadEntries, plus
// the edits each phase makes and the node each simulated sidecar presents.
import type { JsonValue } from '@meridian/envoy';
import { buildMesh } from '../translate.js';

/** A config object as the admin API takes it (JSON). */
export type RawObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
};

/** One WorkloadEntry of the mesh, and what its sidecar presents. */
export interface Workload {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly labels: Record<string, string>;
  readonly region: string;
  readonly zone: string;
  readonly serviceAccount: string;
  readonly ports: Record<string, number>;
  /** The service it backs (index into MeshObjects.hosts). */
  readonly service: number;
}

export interface MeshObjects {
  readonly serviceEntries: RawObject[];
  readonly workloadEntries: RawObject[];
  readonly destinationRules: RawObject[];
  readonly virtualServices: RawObject[];
  readonly workloads: Workload[];
  /** Every service's FQDN, by service index. */
  readonly hosts: string[];
}

const NETWORKING = 'networking.istio.io/v1';

/** The translate bench's mesh as ServiceEntries, WorkloadEntries, DestinationRules and VirtualServices. */
export function meshObjects(services: number, endpoints: number, rules: number): MeshObjects {
  const { config, registry } = buildMesh(services, endpoints, rules);
  const serviceEntries: RawObject[] = [];
  const workloadEntries: RawObject[] = [];
  const workloads: Workload[] = [];
  const hosts: string[] = [];
  registry.services.forEach((svc, i) => {
    const name = svc.hostname.split('.')[0]!;
    hosts.push(svc.hostname);
    serviceEntries.push({
      apiVersion: NETWORKING,
      kind: 'ServiceEntry',
      metadata: { name, namespace: svc.namespace },
      spec: {
        hosts: [svc.hostname],
        addresses: [...(svc.addresses ?? [])],
        ports: svc.ports.map((p) => ({ number: p.port, name: p.name, protocol: p.protocol })),
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        workloadSelector: { labels: { ...svc.labels } },
      },
    });
    (registry.endpoints.get(svc.hostname) ?? []).forEach((ep, j) => {
      const w: Workload = {
        name: `${name}-${j}`,
        namespace: svc.namespace,
        address: ep.address,
        labels: { ...ep.labels },
        region: ep.locality.region,
        zone: ep.locality.zone,
        serviceAccount: name,
        ports: Object.fromEntries(svc.ports.map((p) => [p.name, ep.ports[p.name] ?? p.port])),
        service: i,
      };
      workloads.push(w);
      workloadEntries.push(workloadEntry(w));
    });
  });
  const raw = (o: {
    apiVersion: string;
    kind: string;
    metadata: { name: string; namespace: string };
    spec: unknown;
  }): RawObject => ({
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: { name: o.metadata.name, namespace: o.metadata.namespace },
    spec: structuredClone(o.spec) as Record<string, unknown>,
  });
  return {
    serviceEntries,
    workloadEntries,
    destinationRules: config.destinationRules.map(raw),
    virtualServices: config.virtualServices.map(raw),
    workloads,
    hosts,
  };
}

/** The WorkloadEntry of `w`, with load-balancing `weight` when given. */
export function workloadEntry(w: Workload, weight?: number): RawObject {
  return {
    apiVersion: NETWORKING,
    kind: 'WorkloadEntry',
    metadata: { name: w.name, namespace: w.namespace },
    spec: {
      address: w.address,
      labels: { ...w.labels },
      ports: { ...w.ports },
      locality: `${w.region}/${w.zone}`,
      network: 'net1',
      serviceAccount: w.serviceAccount,
      ...(weight === undefined ? {} : { weight }),
    },
  };
}

/** The node an Istio sidecar of `w` would send (what parseNode reads: id, INSTANCE_IPS, NAMESPACE,
 * LABELS, SERVICE_ACCOUNT, CLUSTER_ID, locality). */
export function sidecarNode(
  w: Workload,
  clusterId: string,
): { id: string; metadata: { [key: string]: JsonValue }; locality: { region: string; zone: string } } {
  return {
    id: `sidecar~${w.address}~${w.name}.${w.namespace}~${w.namespace}.svc.cluster.local`,
    metadata: {
      NAMESPACE: w.namespace,
      INSTANCE_IPS: w.address,
      LABELS: { ...w.labels },
      SERVICE_ACCOUNT: w.serviceAccount,
      CLUSTER_ID: clusterId,
      NETWORK: 'net1',
      ISTIO_VERSION: '1.24.0',
    },
    locality: { region: w.region, zone: w.zone },
  };
}

/** `vs` with its weighted split set to `a`/`100 - a` (the second HTTP route of buildMesh's VS). */
export function withWeights(vs: RawObject, a: number): RawObject {
  const out = structuredClone(vs);
  const http = out.spec.http as { route: { weight?: number }[] }[];
  const split = http.find((h) => h.route.length === 2);
  if (!split)
    throw new Error(`VirtualService ${vs.metadata.namespace}/${vs.metadata.name} has no weighted split`);
  split.route[0]!.weight = a;
  split.route[1]!.weight = 100 - a;
  return out;
}

/** `dr` with its connection pool's `tcp.maxConnections` set to `n` (a cluster-only change). */
export function withMaxConnections(dr: RawObject, n: number): RawObject {
  const out = structuredClone(dr);
  const tp = out.spec.trafficPolicy as { connectionPool: { tcp: { maxConnections: number } } };
  tp.connectionPool.tcp.maxConnections = n;
  return out;
}

/** A VirtualService exported to every namespace for `host` (an FQDN every sidecar sees), with a
 * request timeout of `seconds` (each round changes it). */
export function meshWideVirtualService(host: string, namespace: string, seconds: number): RawObject {
  return {
    apiVersion: NETWORKING,
    kind: 'VirtualService',
    metadata: { name: 'bench-mesh-wide', namespace },
    spec: {
      hosts: [host],
      exportTo: ['*'],
      http: [{ route: [{ destination: { host, port: { number: 8080 } } }], timeout: `${seconds}s` }],
    },
  };
}
