/**
 * The federation wire format, version 1 (documented in ../PROTOCOL.md). JSON, UTF-8. Within a major
 * version, fields are only ever added: decoders ignore fields they do not know, and never require a
 * field that version 1 did not have. A message with another `v` is rejected as `unsupported_version`.
 */
import { type RejectReason, WireFormatError } from './errors.js';
import { isExportableHostname, isNamespace } from './naming.js';

/** The protocol version this package writes and the only one it reads. */
export const PROTOCOL_VERSION = 1;

/** Endpoint health as exported (the registry's values; only HEALTHY endpoints get new traffic). */
export type EndpointHealth = 'HEALTHY' | 'UNHEALTHY' | 'DRAINING';
const HEALTH: readonly EndpointHealth[] = ['HEALTHY', 'UNHEALTHY', 'DRAINING'];

/**
 * How the service's endpoints are found, as Istio's `model.Resolution` (the registry's values): `EDS`
 * (endpoints are addresses: Kubernetes services, ServiceEntry STATIC), `DNS`, `DNS_ROUND_ROBIN`,
 * `PASSTHROUGH` (ServiceEntry NONE).
 */
export type Resolution = 'EDS' | 'DNS' | 'DNS_ROUND_ROBIN' | 'PASSTHROUGH';
const RESOLUTION: readonly Resolution[] = ['EDS', 'DNS', 'DNS_ROUND_ROBIN', 'PASSTHROUGH'];

/** Where an endpoint runs (Istio locality: `region/zone/subZone`); empty strings when unknown. */
export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
}

/** One service port. */
export interface ServicePort {
  readonly name: string;
  readonly port: number;
  /** `HTTP`, `HTTP2`, `GRPC`, `TCP`, `TLS`, ... (Istio port protocols; not interpreted here). */
  readonly protocol: string;
  readonly targetPort?: number;
}

/** A service as exported by its origin cluster. */
export interface FederatedService {
  readonly hostname: string;
  readonly namespace: string;
  readonly ports: readonly ServicePort[];
  readonly labels: Readonly<Record<string, string>>;
  /** Istio `exportTo` of the service at its origin (informational on the wire: selection happens at export). */
  readonly exportTo: readonly string[];
  readonly resolution: Resolution;
}

/** One endpoint of a federated service. */
export interface FederatedEndpoint {
  readonly address: string;
  /** Port name -> endpoint port. */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly locality: Locality;
  /** Istio network (`topology.istio.io/network`); `''` = the origin cluster's default network. */
  readonly network: string;
  /** Cluster id the endpoint belongs to (the origin cluster). */
  readonly cluster: string;
  readonly health: EndpointHealth;
  /** Service account name (identity: `spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>`). */
  readonly serviceAccount: string;
  /** Load-balancing weight, 1..2^31-1. */
  readonly weight: number;
}

/** A service with its endpoints: what an exporter is fed. */
export interface ExportedServiceState {
  readonly service: FederatedService;
  readonly endpoints: readonly FederatedEndpoint[];
}

/**
 * One version of one service of one origin cluster. Published on
 * `meridian.<mesh>.fed.<origin>.svc.<namespace>.<hostname>` and stored under KV key
 * `svc.<namespace>.<hostname>` of bucket `meridian_fed_<mesh>_<origin>`. `(epoch, seq)` orders versions
 * of the same key: a record replaces another only when its pair is greater.
 */
export interface ServiceRecord {
  readonly v: 1;
  readonly kind: 'service';
  readonly mesh: string;
  readonly origin: string;
  /** Exporter epoch: bumped on every leader change (the caller's election revision). */
  readonly epoch: number;
  /** Per-exporter sequence, from 1 in each epoch, incremented for every record of any service. */
  readonly seq: number;
  readonly namespace: string;
  readonly hostname: string;
  /** True when the service is no longer exported (a tombstone; `service` absent, `endpoints` empty). */
  readonly deleted: boolean;
  readonly service?: FederatedService;
  readonly endpoints: readonly FederatedEndpoint[];
  /** Wall-clock time of export (ISO 8601), informational only: ordering never uses clocks. */
  readonly exportedAt: string;
}

/** Liveness and anti-entropy: published on `meridian.<mesh>.fed.<origin>.hb` every interval. */
export interface Heartbeat {
  readonly v: 1;
  readonly kind: 'heartbeat';
  readonly mesh: string;
  readonly origin: string;
  readonly epoch: number;
  /** Every record with seq <= this (in `epoch`) is stored in JetStream and was published. */
  readonly seq: number;
  /** Services currently exported. */
  readonly services: number;
  /** The exporter's heartbeat interval (ms). */
  readonly intervalMs: number;
  readonly sentAt: string;
}

/** The exporter's epoch marker, KV key `meta`: importers ignore records older than its epoch. */
export interface EpochMarker {
  readonly v: 1;
  readonly kind: 'epoch';
  readonly mesh: string;
  readonly origin: string;
  readonly epoch: number;
  readonly startedAt: string;
}

export type FederationMessage = ServiceRecord | Heartbeat | EpochMarker;

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** JSON-encodes a message (UTF-8). */
export function encodeMessage(m: FederationMessage): Uint8Array {
  return enc.encode(JSON.stringify(m));
}

type Obj = Record<string, unknown>;

class Reader {
  constructor(readonly subject: string | undefined) {}
  fail(field: string, why: string, reason: RejectReason = 'malformed'): never {
    const where = this.subject === undefined ? '' : ` (from ${this.subject})`;
    throw new WireFormatError(`federation message${where}: ${field ? `${field} ` : ''}${why}`, {
      reason,
      field,
      subject: this.subject,
    });
  }
  obj(v: unknown, field: string): Obj {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, 'must be an object');
    return v as Obj;
  }
  str(o: Obj, key: string, field: string, opts: { optional?: boolean; nonEmpty?: boolean } = {}): string {
    const v = o[key];
    if (v === undefined && opts.optional) return '';
    if (typeof v !== 'string') this.fail(field, 'must be a string');
    if (opts.nonEmpty && v.length === 0) this.fail(field, 'must not be empty');
    return v;
  }
  int(o: Obj, key: string, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
      this.fail(field, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v) ?? 'nothing'}`);
    return v;
  }
  bool(o: Obj, key: string, field: string): boolean {
    const v = o[key];
    if (typeof v !== 'boolean') this.fail(field, 'must be a boolean');
    return v;
  }
  strMap(o: Obj, key: string, field: string): Record<string, string> {
    const v = o[key];
    if (v === undefined) return {};
    const m = this.obj(v, field);
    const out: Record<string, string> = {};
    // Keys sorted: decoded records are canonical, so equal content serializes to equal JSON.
    for (const k of Object.keys(m).sort()) {
      const val = m[k];
      if (typeof val !== 'string') this.fail(`${field}.${k}`, 'must be a string');
      out[k] = val;
    }
    return out;
  }
  arr(o: Obj, key: string, field: string): unknown[] {
    const v = o[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) this.fail(field, 'must be an array');
    return v;
  }
  oneOf<T extends string>(o: Obj, key: string, field: string, allowed: readonly T[]): T {
    const v = this.str(o, key, field);
    if (!allowed.includes(v as T))
      this.fail(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  }
}

function readHeader(r: Reader, o: Obj): { mesh: string; origin: string; epoch: number } {
  if (o.v !== PROTOCOL_VERSION)
    r.fail(
      'v',
      `protocol version ${JSON.stringify(o.v)} is not supported (this importer reads ${PROTOCOL_VERSION})`,
      'unsupported_version',
    );
  return {
    mesh: r.str(o, 'mesh', 'mesh', { nonEmpty: true }),
    origin: r.str(o, 'origin', 'origin', { nonEmpty: true }),
    epoch: r.int(o, 'epoch', 'epoch', 0),
  };
}

function readService(r: Reader, v: unknown, f: string): FederatedService {
  const o = r.obj(v, f);
  const hostname = r.str(o, 'hostname', `${f}.hostname`);
  if (!isExportableHostname(hostname))
    r.fail(`${f}.hostname`, `is not a lower-case DNS name: ${JSON.stringify(hostname)}`);
  const namespace = r.str(o, 'namespace', `${f}.namespace`);
  if (!isNamespace(namespace)) r.fail(`${f}.namespace`, `is not a DNS label: ${JSON.stringify(namespace)}`);
  const ports = r.arr(o, 'ports', `${f}.ports`).map((p, i): ServicePort => {
    const pf = `${f}.ports[${i}]`;
    const po = r.obj(p, pf);
    const port: ServicePort = {
      name: r.str(po, 'name', `${pf}.name`),
      port: r.int(po, 'port', `${pf}.port`, 1, 65535),
      protocol: r.str(po, 'protocol', `${pf}.protocol`, { optional: true }),
    };
    return po.targetPort === undefined
      ? port
      : { ...port, targetPort: r.int(po, 'targetPort', `${pf}.targetPort`, 1, 65535) };
  });
  const exportTo = r.arr(o, 'exportTo', `${f}.exportTo`).map((e, i) => {
    if (typeof e !== 'string') r.fail(`${f}.exportTo[${i}]`, 'must be a string');
    return e;
  });
  return {
    hostname,
    namespace,
    ports,
    labels: r.strMap(o, 'labels', `${f}.labels`),
    exportTo,
    resolution: o.resolution === undefined ? 'EDS' : r.oneOf(o, 'resolution', `${f}.resolution`, RESOLUTION),
  };
}

function readEndpoint(r: Reader, v: unknown, f: string): FederatedEndpoint {
  const o = r.obj(v, f);
  const ports: Record<string, number> = {};
  const po = r.obj(o.ports ?? {}, `${f}.ports`);
  for (const k of Object.keys(po).sort()) ports[k] = r.int(po, k, `${f}.ports.${k}`, 1, 65535);
  const lo = r.obj(o.locality ?? {}, `${f}.locality`);
  return {
    address: r.str(o, 'address', `${f}.address`, { nonEmpty: true }),
    ports,
    labels: r.strMap(o, 'labels', `${f}.labels`),
    locality: {
      region: r.str(lo, 'region', `${f}.locality.region`, { optional: true }),
      zone: r.str(lo, 'zone', `${f}.locality.zone`, { optional: true }),
      subZone: r.str(lo, 'subZone', `${f}.locality.subZone`, { optional: true }),
    },
    network: r.str(o, 'network', `${f}.network`, { optional: true }),
    cluster: r.str(o, 'cluster', `${f}.cluster`, { nonEmpty: true }),
    health: r.oneOf(o, 'health', `${f}.health`, HEALTH),
    serviceAccount: r.str(o, 'serviceAccount', `${f}.serviceAccount`, { optional: true }),
    weight: o.weight === undefined ? 1 : r.int(o, 'weight', `${f}.weight`, 1, 2 ** 31 - 1),
  };
}

/**
 * Decodes and validates one message. Throws WireFormatError (with `reason` and `field`) when it is not
 * valid JSON, has another protocol version, or a field has the wrong type or range. Does not check the
 * subject: see `checkRecordAgainstSubject`.
 */
export function decodeMessage(data: Uint8Array, subject?: string): FederationMessage {
  const r = new Reader(subject);
  let raw: unknown;
  try {
    raw = JSON.parse(dec.decode(data));
  } catch (err) {
    throw new WireFormatError(
      `federation message${subject ? ` (from ${subject})` : ''}: not valid UTF-8 JSON`,
      {
        reason: 'malformed',
        field: '',
        subject,
        cause: err,
      },
    );
  }
  const o = r.obj(raw, '');
  const h = readHeader(r, o);
  switch (o.kind) {
    case 'service': {
      const seq = r.int(o, 'seq', 'seq', 1);
      const namespace = r.str(o, 'namespace', 'namespace');
      const hostname = r.str(o, 'hostname', 'hostname');
      const deleted = r.bool(o, 'deleted', 'deleted');
      const endpoints = r
        .arr(o, 'endpoints', 'endpoints')
        .map((e, i) => readEndpoint(r, e, `endpoints[${i}]`));
      const exportedAt = r.str(o, 'exportedAt', 'exportedAt', { optional: true });
      if (deleted) {
        if (endpoints.length > 0) r.fail('endpoints', 'must be empty in a deleted record');
        return { v: 1, kind: 'service', ...h, seq, namespace, hostname, deleted, endpoints, exportedAt };
      }
      const service = readService(r, o.service, 'service');
      if (service.namespace !== namespace || service.hostname !== hostname)
        r.fail(
          'service',
          `names ${service.namespace}/${service.hostname}, the record ${namespace}/${hostname}`,
          'origin_mismatch',
        );
      endpoints.forEach((e, i) => {
        if (e.cluster !== h.origin)
          r.fail(
            `endpoints[${i}].cluster`,
            `is ${JSON.stringify(e.cluster)}, the origin is ${JSON.stringify(h.origin)}`,
            'origin_mismatch',
          );
      });
      return {
        v: 1,
        kind: 'service',
        ...h,
        seq,
        namespace,
        hostname,
        deleted,
        service,
        endpoints,
        exportedAt,
      };
    }
    case 'heartbeat':
      return {
        v: 1,
        kind: 'heartbeat',
        ...h,
        seq: r.int(o, 'seq', 'seq', 0),
        services: r.int(o, 'services', 'services', 0),
        intervalMs: r.int(o, 'intervalMs', 'intervalMs', 1),
        sentAt: r.str(o, 'sentAt', 'sentAt', { optional: true }),
      };
    case 'epoch':
      return { v: 1, kind: 'epoch', ...h, startedAt: r.str(o, 'startedAt', 'startedAt', { optional: true }) };
    default:
      return r.fail('kind', `must be "service", "heartbeat" or "epoch", got ${JSON.stringify(o.kind)}`);
  }
}

/** `(a.epoch, a.seq) > (b.epoch, b.seq)`: `a` is a newer version than `b`. */
export function isNewer(a: { epoch: number; seq: number }, b: { epoch: number; seq: number }): boolean {
  return a.epoch > b.epoch || (a.epoch === b.epoch && a.seq > b.seq);
}
