// Minimal protobuf reading/writing of xDS requests and responses for the simulated proxies: only the
// top-level fields a proxy needs, so thousands of simulated proxies cost little CPU next to the server.
import { lengthDelimited, protobufFields, stringField } from '@meridian/xds';

const ld = lengthDelimited;
const str = stringField;
const varint = (value: number): number[] => {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
};

function status(code: number, message: string): Buffer {
  return Buffer.concat([Buffer.from([0x08, ...varint(code)]), str(2, message)]);
}

/** A SotW DiscoveryRequest. `node` is an encoded `envoy.config.core.v3.Node`. */
export function sotwRequestBytes(req: {
  node?: Uint8Array;
  typeUrl: string;
  resourceNames?: readonly string[];
  versionInfo?: string;
  responseNonce?: string;
  error?: { code: number; message: string };
}): Buffer {
  const parts = [str(1, req.versionInfo)];
  if (req.node) parts.push(ld(2, req.node));
  for (const n of req.resourceNames ?? []) parts.push(ld(3, Buffer.from(n, 'utf8')));
  parts.push(str(4, req.typeUrl), str(5, req.responseNonce));
  if (req.error) parts.push(ld(6, status(req.error.code, req.error.message)));
  return Buffer.concat(parts);
}

/** A DeltaDiscoveryRequest. */
export function deltaRequestBytes(req: {
  node?: Uint8Array;
  typeUrl: string;
  subscribe?: readonly string[];
  unsubscribe?: readonly string[];
  initialResourceVersions?: ReadonlyMap<string, string>;
  responseNonce?: string;
  error?: { code: number; message: string };
}): Buffer {
  const parts: Buffer[] = [];
  if (req.node) parts.push(ld(1, req.node));
  parts.push(str(2, req.typeUrl));
  for (const n of req.subscribe ?? []) parts.push(ld(3, Buffer.from(n, 'utf8')));
  for (const n of req.unsubscribe ?? []) parts.push(ld(4, Buffer.from(n, 'utf8')));
  for (const [k, v] of req.initialResourceVersions ?? [])
    parts.push(ld(5, Buffer.concat([str(1, k), str(2, v)])));
  parts.push(str(6, req.responseNonce));
  if (req.error) parts.push(ld(7, status(req.error.code, req.error.message)));
  return Buffer.concat(parts);
}

/** Iterates the fields of a message (see @meridian/xds protobufFields). */
export const fields = protobufFields;

const text = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('utf8') : '');

/** The top level of a DiscoveryResponse. */
export interface SotwResponseView {
  readonly versionInfo: string;
  readonly typeUrl: string;
  readonly nonce: string;
  /** Each resource's `Any.value` bytes. */
  readonly resources: readonly Uint8Array[];
  readonly resourceBytes: number;
}

export function readSotwResponse(buf: Uint8Array): SotwResponseView {
  let versionInfo = '';
  let typeUrl = '';
  let nonce = '';
  const resources: Uint8Array[] = [];
  let resourceBytes = 0;
  for (const f of fields(buf)) {
    if (f.field === 1) versionInfo = text(f.bytes);
    else if (f.field === 2 && f.bytes) {
      resourceBytes += f.bytes.length;
      for (const a of fields(f.bytes)) if (a.field === 2 && a.bytes) resources.push(a.bytes);
    } else if (f.field === 4) typeUrl = text(f.bytes);
    else if (f.field === 5) nonce = text(f.bytes);
  }
  return { versionInfo, typeUrl, nonce, resources, resourceBytes };
}

/** The `name` of an xDS resource (field 1 of Listener, Cluster, ClusterLoadAssignment's
 * cluster_name, RouteConfiguration and Secret), or '' when absent. */
export function resourceName(resource: Uint8Array): string {
  for (const f of fields(resource)) if (f.field === 1) return text(f.bytes);
  return '';
}

/** The top level of a DeltaDiscoveryResponse. */
export interface DeltaResponseView {
  readonly systemVersionInfo: string;
  readonly typeUrl: string;
  readonly nonce: string;
  readonly resources: readonly { name: string; version: string; value: Uint8Array | undefined }[];
  readonly removed: readonly string[];
  readonly resourceBytes: number;
}

export function readDeltaResponse(buf: Uint8Array): DeltaResponseView {
  let systemVersionInfo = '';
  let typeUrl = '';
  let nonce = '';
  const resources: { name: string; version: string; value: Uint8Array | undefined }[] = [];
  const removed: string[] = [];
  let resourceBytes = 0;
  for (const f of fields(buf)) {
    if (f.field === 1) systemVersionInfo = text(f.bytes);
    else if (f.field === 2 && f.bytes) {
      resourceBytes += f.bytes.length;
      let name = '';
      let version = '';
      let value: Uint8Array | undefined;
      for (const r of fields(f.bytes)) {
        if (r.field === 1) version = text(r.bytes);
        else if (r.field === 3) name = text(r.bytes);
        else if (r.field === 2 && r.bytes)
          for (const a of fields(r.bytes)) if (a.field === 2) value = a.bytes;
      }
      resources.push({ name, version, value });
    } else if (f.field === 4) typeUrl = text(f.bytes);
    else if (f.field === 5) nonce = text(f.bytes);
    else if (f.field === 6) removed.push(text(f.bytes));
  }
  return { systemVersionInfo, typeUrl, nonce, resources, removed, resourceBytes };
}
