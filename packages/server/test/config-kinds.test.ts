import { describe, expect, it } from 'vitest';
import { resolveKind, resourceName } from '../src/config-kinds.js';

describe('kinds as users type them', () => {
  it('accepts kind names, plurals, resource names and short names', () => {
    expect(resolveKind('vs')).toBe('VirtualService');
    expect(resolveKind('virtualservices')).toBe('VirtualService');
    expect(resolveKind('serviceentries.networking.istio.io')).toBe('ServiceEntry');
    expect(resolveKind('AuthorizationPolicy')).toBe('AuthorizationPolicy');
    expect(resolveKind('gateway')).toBeUndefined();
    expect(resourceName('AuthorizationPolicy')).toBe('authorizationpolicies.security.istio.io');
  });
});
