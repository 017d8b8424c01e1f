import { createHash } from 'node:crypto';
import { type EnvoyJson, encodeResource, type ResourceTypeUrl, TypeUrl } from '@meridian/envoy';
import type { EncodedResource, ResourceMap } from './types.js';
import { frameResource } from './wire.js';

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

/** Builds an EncodedResource from bytes encoded elsewhere (the version is their hash). */
export function encodedResource(typeUrl: ResourceTypeUrl, name: string, bytes: Uint8Array): EncodedResource {
  const version = versionOf(bytes);
  return { typeUrl, name, version, bytes, ...frameResource(typeUrl, name, version, bytes) };
}

/**
 * Encoded resources keyed by content. `intern` encodes a resource given in Envoy JSON once; the same
 * content interned again (by any caller, for any proxy) returns the same object, so its bytes are
 * shared by every stream. Entries not used by the last `retain` generations are dropped.
 */
export class ResourceCache {
  #byContent = new Map<string, EncodedResource>();
  #usedThisGeneration = new Set<string>();
  #hits = 0;
  #encodes = 0;

  /** Encodes (or finds) a resource. Throws EnvoySchemaError for a resource Envoy would reject. */
  intern(typeUrl: ResourceTypeUrl, json: EnvoyJson): EncodedResource {
    // Equal JSON (keys in any order) gives an equal key: hash a canonical form.
    const key = `${typeUrl}\n${canonicalJson(json)}`;
    const digest = createHash('sha256').update(key).digest('base64');
    this.#usedThisGeneration.add(digest);
    const found = this.#byContent.get(digest);
    if (found) {
      this.#hits++;
      return found;
    }
    const nameField = resourceNameField(typeUrl);
    const name = typeof json[nameField] === 'string' ? (json[nameField] as string) : '';
    if (name === '') throw new ResourceNameError(typeUrl, nameField);
    const resource = encodedResource(typeUrl, name, encodeResource(typeUrl, json));
    this.#encodes++;
    this.#byContent.set(digest, resource);
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

/** JSON with object keys sorted, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .filter((k) => obj[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
    .join(',')}}`;
}
