// Hand-written protobuf framing of DiscoveryResponse / DeltaDiscoveryResponse around resource bytes
// that are already encoded (envoy/service/discovery/v3/discovery.proto field numbers), so a response
// costs one concatenation of shared buffers instead of a protobufjs encode per stream.
import { decodeResource, type EnvoyJson, envoyRoot } from '@meridian/envoy';
import type protobuf from 'protobufjs';
import type { EncodedResource } from './types.js';

function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A length-delimited field (wire type 2): tag, length, payload. */
export function lengthDelimited(field: number, payload: Uint8Array): Buffer {
  return Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
}

/** A string field (omitted when empty, as proto3 does). */
export function stringField(field: number, value: string | undefined): Buffer {
  return value === undefined || value === ''
    ? Buffer.alloc(0)
    : lengthDelimited(field, Buffer.from(value, 'utf8'));
}

/** `google.protobuf.Any { type_url = 1; value = 2 }` (`typeUrl` in full: `type.googleapis.com/...`). */
export function anyMessage(typeUrl: string, value: Uint8Array): Buffer {
  return Buffer.concat([stringField(1, typeUrl), lengthDelimited(2, value)]);
}

/** One top-level field of an encoded message: a varint's value or a length-delimited field's bytes. */
export interface ProtobufField {
  readonly field: number;
  readonly bytes?: Uint8Array;
  readonly value?: number;
}

/**
 * Iterates the top-level fields of an encoded message without decoding it (fixed-width fields are
 * skipped): for relays and simulated proxies that only read a message's envelope.
 */
export function* protobufFields(buf: Uint8Array): Generator<ProtobufField> {
  let i = 0;
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++];
      if (b === undefined) throw new Error('truncated varint');
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const tag = readVarint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) yield { field, value: readVarint() };
    else if (wire === 2) {
      const len = readVarint();
      if (i + len > buf.length) throw new Error('truncated field');
      const bytes = buf.subarray(i, i + len);
      i += len;
      yield { field, bytes };
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

/**
 * `bytes` framed as one SotW `resources` entry (field 2: an `Any` of `typeUrl`), in one allocation:
 * the resource's own bytes can then be a view of its end, so the two are not two copies.
 */
export function sotwFrameOf(typeUrl: string, bytes: Uint8Array): Buffer {
  const typeField = stringField(1, typeUrl);
  const valueHead = Buffer.concat([varint((2 << 3) | 2), varint(bytes.length)]);
  const anyLength = typeField.length + valueHead.length + bytes.length;
  const head = Buffer.concat([varint((2 << 3) | 2), varint(anyLength)]);
  const out = Buffer.allocUnsafeSlow(head.length + anyLength);
  let at = head.copy(out, 0);
  at += typeField.copy(out, at);
  at += valueHead.copy(out, at);
  out.set(bytes, at);
  return out;
}

/** A Delta `resources` entry (field 2: `Resource { version = 1; resource = 2; name = 3 }`) from the
 * SotW frame of the same resource (its `Any` is reused as the resource field). */
export function deltaFrameOf(sotwFrame: Buffer, name: string, version: string): Buffer {
  const any = sotwFrame.subarray(fieldHeadLength(sotwFrame));
  const resource = Buffer.concat([stringField(1, version), lengthDelimited(2, any), stringField(3, name)]);
  return lengthDelimited(2, resource);
}

/** Length of a length-delimited field's tag and length varints at the start of `frame`. */
function fieldHeadLength(frame: Uint8Array): number {
  let i = 0;
  while ((frame[i]! & 0x80) !== 0) i++; // tag
  i++;
  while ((frame[i]! & 0x80) !== 0) i++; // length
  return i + 1;
}

/** The frames of one resource for both response kinds (see EncodedResource). */
export function frameResource(
  typeUrl: string,
  name: string,
  version: string,
  bytes: Uint8Array,
): { sotwFrame: Buffer; deltaFrame: Buffer } {
  const sotwFrame = sotwFrameOf(typeUrl, bytes);
  return { sotwFrame, deltaFrame: deltaFrameOf(sotwFrame, name, version) };
}

/** DiscoveryResponse { version_info = 1; resources = 2; type_url = 4; nonce = 5 }. */
export function sotwResponse(
  versionInfo: string,
  resources: readonly EncodedResource[],
  typeUrl: string,
  nonce: string,
): Buffer {
  const parts: Buffer[] = [stringField(1, versionInfo)];
  for (const r of resources) parts.push(r.sotwFrame);
  parts.push(stringField(4, typeUrl), stringField(5, nonce));
  return Buffer.concat(parts);
}

/** DeltaDiscoveryResponse { system_version_info = 1; resources = 2; type_url = 4; nonce = 5;
 * removed_resources = 6 }. */
export function deltaResponse(
  systemVersion: string,
  resources: readonly EncodedResource[],
  removed: readonly string[],
  typeUrl: string,
  nonce: string,
): Buffer {
  const parts: Buffer[] = [stringField(1, systemVersion)];
  for (const r of resources) parts.push(r.deltaFrame);
  parts.push(stringField(4, typeUrl), stringField(5, nonce));
  for (const name of removed) parts.push(lengthDelimited(6, Buffer.from(name, 'utf8')));
  return Buffer.concat(parts);
}

/** The parts of a DiscoveryRequest the server uses (SotW). */
export interface SotwRequest {
  readonly versionInfo: string;
  readonly node: EnvoyJson | undefined;
  readonly resourceNames: readonly string[];
  readonly typeUrl: string;
  readonly responseNonce: string;
  /** The NACK's message when `error_detail` is set. */
  readonly errorDetail: { readonly code: number; readonly message: string } | undefined;
}

/** The parts of a DeltaDiscoveryRequest the server uses. */
export interface DeltaRequest {
  readonly node: EnvoyJson | undefined;
  readonly typeUrl: string;
  readonly subscribe: readonly string[];
  readonly unsubscribe: readonly string[];
  readonly initialResourceVersions: ReadonlyMap<string, string>;
  readonly responseNonce: string;
  readonly errorDetail: { readonly code: number; readonly message: string } | undefined;
}

let requestTypes: { sotw: protobuf.Type; delta: protobuf.Type } | undefined;
function types(): { sotw: protobuf.Type; delta: protobuf.Type } {
  requestTypes ??= {
    sotw: envoyRoot().lookupType('envoy.service.discovery.v3.DiscoveryRequest'),
    delta: envoyRoot().lookupType('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
  };
  return requestTypes;
}

type Raw = { [key: string]: unknown };

function nodeOf(raw: Raw, bytes: Uint8Array, typeName: string): EnvoyJson | undefined {
  if (raw.node === undefined || raw.node === null) return undefined;
  // The node's Struct metadata needs the JSON mapping; decode the whole request that way only when a
  // node is present (the first request of a stream, for Envoy and grpc-js-xds).
  const json = decodeResource(typeName, bytes);
  const node = json.node;
  return node && typeof node === 'object' && !Array.isArray(node) ? (node as EnvoyJson) : undefined;
}

function errorDetailOf(raw: Raw): SotwRequest['errorDetail'] {
  const detail = raw.error_detail as Raw | undefined | null;
  if (!detail) return undefined;
  return { code: Number(detail.code ?? 0), message: String(detail.message ?? '') };
}

/** Decodes a DiscoveryRequest. Throws protobufjs' error on bytes that are not one. */
export function decodeSotwRequest(bytes: Uint8Array): SotwRequest {
  const raw = types().sotw.decode(bytes) as unknown as Raw;
  return {
    versionInfo: String(raw.version_info ?? ''),
    node: nodeOf(raw, bytes, 'envoy.service.discovery.v3.DiscoveryRequest'),
    resourceNames: (raw.resource_names as string[] | undefined) ?? [],
    typeUrl: String(raw.type_url ?? ''),
    responseNonce: String(raw.response_nonce ?? ''),
    errorDetail: errorDetailOf(raw),
  };
}

/** Decodes a DeltaDiscoveryRequest. */
export function decodeDeltaRequest(bytes: Uint8Array): DeltaRequest {
  const raw = types().delta.decode(bytes) as unknown as Raw;
  const initial = (raw.initial_resource_versions as Record<string, string> | undefined) ?? {};
  return {
    node: nodeOf(raw, bytes, 'envoy.service.discovery.v3.DeltaDiscoveryRequest'),
    typeUrl: String(raw.type_url ?? ''),
    subscribe: (raw.resource_names_subscribe as string[] | undefined) ?? [],
    unsubscribe: (raw.resource_names_unsubscribe as string[] | undefined) ?? [],
    initialResourceVersions: new Map(Object.entries(initial)),
    responseNonce: String(raw.response_nonce ?? ''),
    errorDetail: errorDetailOf(raw),
  };
}
