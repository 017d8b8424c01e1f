/**
 * The names users type for config kinds, as kubectl and istioctl accept them: the kind in any case,
 * its plural, its resource name (`virtualservices.networking.istio.io`) or Istio's short name.
 */
import { ALL_KINDS, type KindName } from '@meridian/api';
import { AdminError } from './errors.js';

/** kubectl's resource name of a kind, e.g. `virtualservices.networking.istio.io`. */
export function resourceName(kind: KindName): string {
  const info = ALL_KINDS.find((k) => k.kind === kind);
  const k = kind.toLowerCase();
  return `${k.endsWith('y') ? `${k.slice(0, -1)}ies` : `${k}s`}.${info?.group ?? ''}`;
}

const SHORT_NAMES: Record<string, KindName> = {
  vs: 'VirtualService',
  dr: 'DestinationRule',
  se: 'ServiceEntry',
  we: 'WorkloadEntry',
  pa: 'PeerAuthentication',
  ap: 'AuthorizationPolicy',
  ra: 'RequestAuthentication',
};

/**
 * The kind a user typed: the kind itself in any case, its plural, its kubectl resource name or an
 * Istio short name (`vs`, `dr`, `se`, `we`). Undefined when unknown.
 */
export function resolveKind(text: string): KindName | undefined {
  const t = text.toLowerCase();
  if (SHORT_NAMES[t]) return SHORT_NAMES[t];
  for (const info of ALL_KINDS) {
    const k = info.kind.toLowerCase();
    const full = resourceName(info.kind);
    if (t === k || t === full || t === full.split('.')[0] || t === `${k}.${info.group}`) return info.kind;
  }
  return undefined;
}

/** A kind name or a `BAD_REQUEST` error listing the known kinds. */
export function requireKind(text: string): KindName {
  const kind = resolveKind(text);
  if (!kind) {
    throw new AdminError(
      'BAD_REQUEST',
      `the server doesn't have a resource type "${text}" (known: ${ALL_KINDS.map((k) => k.kind).join(', ')})`,
    );
  }
  return kind;
}
