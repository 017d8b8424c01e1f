// The xDS message fields the relay reads and rewrites, at the protobuf wire level: it passes every
// message through as bytes and only looks at top-level fields (type URL, nonce, names, versions), so
// relaying costs little and never drops a field it does not know. Field numbers are those of
// envoy/service/discovery/v3/discovery.proto.
import { anyMessage, lengthDelimited, protobufFields, stringField } from '@meridian/xds';

export { anyMessage };

const fields = protobufFields;
const ld = lengthDelimited;
const str = stringField;

const text = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('utf8') : '');

/** A SotW DiscoveryRequest's top level (`node` kept as its encoded bytes). */
export interface SotwRequestView {
  readonly versionInfo: string;
  readonly node: Uint8Array | undefined;
  readonly resourceNames: readonly string[];
  readonly typeUrl: string;
  readonly responseNonce: string;
  /** Whether `error_detail` is set (a NACK). */
  readonly nack: boolean;
}

export function readSotwRequest(buf: Uint8Array): SotwRequestView {
  let versionInfo = '';
  let node: Uint8Array | undefined;
  const resourceNames: string[] = [];
  let typeUrl = '';
  let responseNonce = '';
  let nack = false;
  for (const f of fields(buf)) {
    if (f.field === 1) versionInfo = text(f.bytes);
    else if (f.field === 2) node = f.bytes;
    else if (f.field === 3) resourceNames.push(text(f.bytes));
    else if (f.field === 4) typeUrl = text(f.bytes);
    else if (f.field === 5) responseNonce = text(f.bytes);
    else if (f.field === 6) nack = true;
  }
  return { versionInfo, node, resourceNames, typeUrl, responseNonce, nack };
}

/** A SotW DiscoveryRequest. */
export function sotwRequest(req: {
  node?: Uint8Array | undefined;
  typeUrl: string;
  resourceNames: readonly string[];
  versionInfo?: string;
  responseNonce?: string;
}): Buffer {
  const parts = [str(1, req.versionInfo)];
  if (req.node) parts.push(ld(2, req.node));
  for (const n of req.resourceNames) parts.push(ld(3, Buffer.from(n, 'utf8')));
  parts.push(str(4, req.typeUrl), str(5, req.responseNonce));
  return Buffer.concat(parts);
}

/** A DeltaDiscoveryRequest's top level. */
export interface DeltaRequestView {
  readonly node: Uint8Array | undefined;
  readonly typeUrl: string;
  readonly subscribe: readonly string[];
  readonly unsubscribe: readonly string[];
  readonly initialResourceVersions: ReadonlyMap<string, string>;
  readonly responseNonce: string;
  readonly nack: boolean;
}

export function readDeltaRequest(buf: Uint8Array): DeltaRequestView {
  let node: Uint8Array | undefined;
  let typeUrl = '';
  const subscribe: string[] = [];
  const unsubscribe: string[] = [];
  const initialResourceVersions = new Map<string, string>();
  let responseNonce = '';
  let nack = false;
  for (const f of fields(buf)) {
    if (f.field === 1) node = f.bytes;
    else if (f.field === 2) typeUrl = text(f.bytes);
    else if (f.field === 3) subscribe.push(text(f.bytes));
    else if (f.field === 4) unsubscribe.push(text(f.bytes));
    else if (f.field === 5 && f.bytes) {
      let k = '';
      let v = '';
      for (const e of fields(f.bytes)) {
        if (e.field === 1) k = text(e.bytes);
        else if (e.field === 2) v = text(e.bytes);
      }
      initialResourceVersions.set(k, v);
    } else if (f.field === 6) responseNonce = text(f.bytes);
    else if (f.field === 7) nack = true;
  }
  return { node, typeUrl, subscribe, unsubscribe, initialResourceVersions, responseNonce, nack };
}

/** A DeltaDiscoveryRequest. */
export function deltaRequest(req: {
  node?: Uint8Array | undefined;
  typeUrl: string;
  subscribe?: readonly string[];
  initialResourceVersions?: ReadonlyMap<string, string>;
}): Buffer {
  const parts: Buffer[] = [];
  if (req.node) parts.push(ld(1, req.node));
  parts.push(str(2, req.typeUrl));
  for (const n of req.subscribe ?? []) parts.push(ld(3, Buffer.from(n, 'utf8')));
  for (const [k, v] of req.initialResourceVersions ?? [])
    parts.push(ld(5, Buffer.concat([str(1, k), str(2, v)])));
  return Buffer.concat(parts);
}

/** A SotW DiscoveryResponse's top level; `resources` are the encoded `Any` messages. */
export interface SotwResponseView {
  readonly versionInfo: string;
  readonly typeUrl: string;
  readonly nonce: string;
  readonly resources: readonly Uint8Array[];
}

export function readSotwResponse(buf: Uint8Array): SotwResponseView {
  let versionInfo = '';
  let typeUrl = '';
  let nonce = '';
  const resources: Uint8Array[] = [];
  for (const f of fields(buf)) {
    if (f.field === 1) versionInfo = text(f.bytes);
    else if (f.field === 2 && f.bytes) resources.push(f.bytes);
    else if (f.field === 4) typeUrl = text(f.bytes);
    else if (f.field === 5) nonce = text(f.bytes);
  }
  return { versionInfo, typeUrl, nonce, resources };
}

/** A SotW DiscoveryResponse from its parts (`resources`: encoded `Any` messages). */
export function sotwResponse(r: SotwResponseView): Buffer {
  return Buffer.concat([
    str(1, r.versionInfo),
    ...r.resources.map((a) => ld(2, a)),
    str(4, r.typeUrl),
    str(5, r.nonce),
  ]);
}

/** One resource of a Delta response: name, version and the encoded `Resource` message. */
export interface DeltaResourceView {
  readonly name: string;
  readonly version: string;
  /** The whole encoded `envoy.service.discovery.v3.Resource`. */
  readonly encoded: Uint8Array;
}

/** A DeltaDiscoveryResponse's top level. */
export interface DeltaResponseView {
  readonly systemVersionInfo: string;
  readonly typeUrl: string;
  readonly nonce: string;
  readonly resources: readonly DeltaResourceView[];
  readonly removed: readonly string[];
}

export function readDeltaResponse(buf: Uint8Array): DeltaResponseView {
  let systemVersionInfo = '';
  let typeUrl = '';
  let nonce = '';
  const resources: DeltaResourceView[] = [];
  const removed: string[] = [];
  for (const f of fields(buf)) {
    if (f.field === 1) systemVersionInfo = text(f.bytes);
    else if (f.field === 2 && f.bytes) {
      let name = '';
      let version = '';
      for (const r of fields(f.bytes)) {
        if (r.field === 1) version = text(r.bytes);
        else if (r.field === 3) name = text(r.bytes);
      }
      resources.push({ name, version, encoded: f.bytes });
    } else if (f.field === 4) typeUrl = text(f.bytes);
    else if (f.field === 5) nonce = text(f.bytes);
    else if (f.field === 6) removed.push(text(f.bytes));
  }
  return { systemVersionInfo, typeUrl, nonce, resources, removed };
}

/** A DeltaDiscoveryResponse from its parts. */
export function deltaResponse(r: DeltaResponseView): Buffer {
  return Buffer.concat([
    str(1, r.systemVersionInfo),
    ...r.resources.map((x) => ld(2, x.encoded)),
    str(4, r.typeUrl),
    str(5, r.nonce),
    ...r.removed.map((n) => ld(6, Buffer.from(n, 'utf8'))),
  ]);
}

/** The `id` of an encoded `envoy.config.core.v3.Node` (field 1). */
export function nodeId(node: Uint8Array | undefined): string {
  if (!node) return '';
  for (const f of fields(node)) if (f.field === 1) return text(f.bytes);
  return '';
}

/** An encoded Delta `Resource` { version = 1; resource = 2; name = 3 }. */
export function deltaResourceBytes(name: string, version: string, any: Uint8Array): Buffer {
  return Buffer.concat([str(1, version), ld(2, any), str(3, name)]);
}
