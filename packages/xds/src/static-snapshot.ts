import type { ResourceTypeUrl } from '@meridian/envoy';
import type { ProxyContext, ResourceMap, XdsSnapshot } from './types.js';

/**
 * A snapshot that serves the same resources to every proxy (optionally narrowed per proxy by
 * `select`). The maps are shared, so streams share response bodies too.
 */
export class StaticSnapshot implements XdsSnapshot {
  constructor(
    readonly version: string,
    readonly byType: ReadonlyMap<ResourceTypeUrl, ResourceMap>,
    private readonly select?: (proxy: ProxyContext, type: ResourceTypeUrl, all: ResourceMap) => ResourceMap,
  ) {}

  resources(proxy: ProxyContext, typeUrl: ResourceTypeUrl): ResourceMap | undefined {
    const all = this.byType.get(typeUrl);
    if (!all || !this.select) return all;
    return this.select(proxy, typeUrl, all);
  }
}
