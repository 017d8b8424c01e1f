import type { ProxyInfo, ResourceTypeUrl } from '@meridian/envoy';

/**
 * One resource, encoded once and shared by every stream that receives it. `version` is a hash of
 * `bytes`, so the same resource has the same version on every replica (DESIGN.md "Same inputs, same
 * bytes"). `sotwFrame` and `deltaFrame` are the resource already framed as field 2 of a
 * DiscoveryResponse (an `Any`) and of a DeltaDiscoveryResponse (a `Resource`), so a response is the
 * concatenation of shared bytes plus a few header fields.
 */
export interface EncodedResource {
  readonly typeUrl: ResourceTypeUrl;
  readonly name: string;
  readonly version: string;
  readonly bytes: Uint8Array;
  readonly sotwFrame: Buffer;
  readonly deltaFrame: Buffer;
}

/** The resources of one type a proxy should have, by name. Treat as immutable: the server keys
 * caches by the map's identity, so return the same map object for proxies that see the same set. */
export type ResourceMap = ReadonlyMap<string, EncodedResource>;

/** The identity and facts of the proxy on one stream, handed to the snapshot. */
export interface ProxyContext {
  /** Stream-unique connection id (`<node id>-<counter>`), as in istiod's `ConID`. */
  readonly connectionId: string;
  readonly proxy: ProxyInfo;
  /**
   * The identity the transport proved (the SPIFFE URI SAN of the TLS peer certificate), or
   * undefined on a plaintext stream. Decisions about Secrets must use this, never node metadata.
   */
  readonly authenticatedIdentity: string | undefined;
  /** The peer address as grpc-js reports it. */
  readonly peer: string;
}

/**
 * Thrown by {@link XdsSnapshot.resources} when the proxy's resources could not be built (a translation
 * or encoding error). The stream then sends nothing for that push, so the proxy keeps its last good
 * config; the failure is counted, logged and shown in `/debug/syncz`, and the next snapshot is tried.
 */
export class ProxyTranslationError extends Error {
  override readonly name = 'ProxyTranslationError';
  readonly code = 'translation_failed';
  constructor(
    readonly proxyId: string,
    /** The snapshot version that failed. */
    readonly snapshotVersion: string,
    cause: unknown,
  ) {
    super(
      `resources for proxy ${proxyId} could not be built from snapshot ${snapshotVersion}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
  }
}

/**
 * The seam between translation and transport: "these are the resources for this proxy". The replica
 * implements it over translate's output; the server asks it on every push and never mutates what it
 * returns. `undefined` means "this snapshot serves no resources of this type to this proxy".
 */
export interface XdsSnapshot {
  /** A label for logs and debug output (for example the etcd revision the snapshot was built from). */
  readonly version: string;
  /** Throws {@link ProxyTranslationError} when the proxy's resources cannot be built. */
  resources(proxy: ProxyContext, typeUrl: ResourceTypeUrl): ResourceMap | undefined;
}

/**
 * What changed, as the push pipeline needs to know it (Istio's PushRequest): either everything
 * (`full`), or the resources of some types, optionally by name. A proxy is pushed only when the
 * change can affect it: a type it watches by wildcard is in `types`, or one of the `names` is a
 * resource it subscribed to by name (see {@link changeAffects}).
 */
export interface ChangeEvent {
  /** Everything may have changed (new proxy-independent config, a new snapshot kind). */
  readonly full: boolean;
  /** Types whose resource sets may have changed. */
  readonly types?: ReadonlySet<ResourceTypeUrl>;
  /** Per type, the names that changed (added, updated or removed). Absent: any name of `types`. */
  readonly names?: ReadonlyMap<ResourceTypeUrl, ReadonlySet<string>>;
  /** Why: config kinds or services, for logs and the push-trigger metric. */
  readonly reason: readonly string[];
  /** The config objects that changed, `kind/namespace/name` (Istio's ConfigsUpdated). */
  readonly configs?: ReadonlySet<string>;
  /** Hostnames of services whose endpoints changed. */
  readonly services?: ReadonlySet<string>;
  /** When the first change merged into this event happened (`performance.now()` milliseconds). */
  readonly at: number;
}

/** Merges two change events into one that covers both (the push queue's merge rule). */
export function mergeChanges(a: ChangeEvent, b: ChangeEvent): ChangeEvent {
  const at = Math.min(a.at, b.at);
  const reason = [...new Set([...a.reason, ...b.reason])];
  const what = {
    ...(a.configs || b.configs ? { configs: new Set([...(a.configs ?? []), ...(b.configs ?? [])]) } : {}),
    ...(a.services || b.services
      ? { services: new Set([...(a.services ?? []), ...(b.services ?? [])]) }
      : {}),
  };
  if (a.full || b.full) return { full: true, reason, at, ...what };
  const types = new Set<ResourceTypeUrl>([...(a.types ?? []), ...(b.types ?? [])]);
  let names: Map<ResourceTypeUrl, Set<string>> | undefined;
  for (const type of types) {
    const an = a.types?.has(type) ? a.names?.get(type) : new Set<string>();
    const bn = b.types?.has(type) ? b.names?.get(type) : new Set<string>();
    // A type present in an event without a name list means "any name": the merge keeps that.
    if (an === undefined || bn === undefined) continue;
    names ??= new Map();
    names.set(type, new Set([...an, ...bn]));
  }
  return names
    ? { full: false, types, names, reason, at, ...what }
    : { full: false, types, reason, at, ...what };
}
