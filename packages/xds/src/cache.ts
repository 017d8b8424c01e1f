import { createHash } from 'node:crypto';
import { type EnvoyJson, encodeResource, type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import type { EncodedResource, ResourceMap } from './types.js';
import { deltaFrameOf, sotwFrameOf } from './wire.js';

/** A resource that has no name where its type keeps one. */
export class ResourceNameError extends Error {
  override readonly name = 'ResourceNameError';
  constructor(
    readonly typeUrl: string,
    readonly field: string,
  ) {
    super(`${typeUrl}: ${field} is empty; every xDS resource needs a name`);
  }
}

/** The field holding a resource's name: `cluster_name` for ClusterLoadAssignment, `name` elsewhere. */
export function resourceNameField(typeUrl: ResourceTypeUrl): string {
  return typeUrl === TypeUrl.ClusterLoadAssignment ? 'cluster_name' : 'name';
}

/** The version of encoded bytes: the first 16 hex digits of their SHA-256. */
export function versionOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/**
 * An encoded resource held once: its SotW frame is one buffer, `bytes` a view of that buffer's end,
 * and the Delta frame is built the first time a Delta stream needs it (a mesh of SotW sidecars never
 * pays for it). A 500 KB route configuration used to be held three times.
 */
class Encoded implements EncodedResource {
  readonly sotwFrame: Buffer;
  readonly bytes: Uint8Array;
  #deltaFrame: Buffer | undefined;

  constructor(
    readonly typeUrl: ResourceTypeUrl,
    readonly name: string,
    readonly version: string,
    bytes: Uint8Array,
  ) {
    this.sotwFrame = sotwFrameOf(typeUrl, bytes);
    this.bytes = this.sotwFrame.subarray(this.sotwFrame.length - bytes.length);
  }

  get deltaFrame(): Buffer {
    this.#deltaFrame ??= deltaFrameOf(this.sotwFrame, this.name, this.version);
    return this.#deltaFrame;
  }
}

/** Builds an EncodedResource from bytes encoded elsewhere (the version is their hash). */
export function encodedResource(typeUrl: ResourceTypeUrl, name: string, bytes: Uint8Array): EncodedResource {
  return new Encoded(typeUrl, name, versionOf(bytes), bytes);
}

/**
 * Encoded resources keyed by content. `intern` encodes a resource given in Envoy JSON; the same
 * content interned again (by any caller, for any proxy) returns the same object, so its bytes are
 * shared by every stream. Content is identified by the encoded bytes' hash (the version), so finding
 * a duplicate costs one encoding and no second pass over the JSON. Entries not interned since the
 * previous `sweep` are dropped by it.
 */
export class ResourceCache {
  #byContent = new Map<string, EncodedResource>();
  #usedThisGeneration = new Set<string>();
  #hits = 0;
  #encodes = 0;

  /** Encodes (or finds) a resource. Throws EnvoySchemaError for a resource Envoy would reject. */
  intern(typeUrl: ResourceTypeUrl, json: EnvoyJson): EncodedResource {
    const nameField = resourceNameField(typeUrl);
    const name = typeof json[nameField] === 'string' ? (json[nameField] as string) : '';
    if (name === '') throw new ResourceNameError(typeUrl, nameField);
    const bytes = encodeResource(typeUrl, json);
    this.#encodes++;
    const version = versionOf(bytes);
    const key = `${typeUrl}\n${name}\n${version}`;
    this.#usedThisGeneration.add(key);
    const found = this.#byContent.get(key);
    if (found) {
      this.#hits++;
      return found;
    }
    const resource: EncodedResource = new Encoded(typeUrl, name, version, bytes);
    this.#byContent.set(key, resource);
    return resource;
  }

  /** Interns resources of one type into a map by name (the shape XdsSnapshot returns). */
  internAll(typeUrl: ResourceTypeUrl, resources: readonly EnvoyJson[]): ResourceMap {
    const out = new Map<string, EncodedResource>();
    for (const json of resources) {
      const r = this.intern(typeUrl, json);
      out.set(r.name, r);
    }
    return out;
  }

  /** Ends a generation: drops every entry not interned since the previous call. */
  sweep(): void {
    for (const key of this.#byContent.keys())
      if (!this.#usedThisGeneration.has(key)) this.#byContent.delete(key);
    this.#usedThisGeneration = new Set();
  }

  /** Counts for tests and debug output. */
  stats(): { entries: number; hits: number; encodes: number } {
    return { entries: this.#byContent.size, hits: this.#hits, encodes: this.#encodes };
  }
}
