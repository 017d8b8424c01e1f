import { describe, expect, test } from 'vitest';
import {
  clusterPermissions,
  generateClusterCredentials,
  publicKeyOfSeed,
  renderNatsAuthorization,
} from '../src/index.js';

describe('NATS trust configuration', () => {
  test('a cluster may publish only its own subjects and bucket', () => {
    const p = clusterPermissions('prod', 'east');
    expect(p.publish.allow).toContain('meridian.prod.fed.east.>');
    expect(p.publish.allow).toContain('$KV.meridian_fed_prod_east.>');
    expect(p.publish.allow).toContain('$JS.API.STREAM.CREATE.KV_meridian_fed_prod_east');
    expect(
      p.publish.allow.filter(
        (s) => s.includes('west') || s === '>' || s === '$JS.API.>' || s.startsWith('$KV.*'),
      ),
    ).toEqual([]);
    expect(p.publish.allow.some((s) => s.includes('DELETE') && s.includes('STREAM'))).toBe(false);
    expect(p.publish.allow).toContain('meridian.telemetry.*.prod.east.*');
    expect(p.subscribe.allow).toEqual(['meridian.prod.fed.>', 'meridian.telemetry.*.prod.*.*', '_INBOX.>']);
  });

  test('credentials: seeds map to their public keys', () => {
    const c = generateClusterCredentials('east');
    expect(c.publicKey).toMatch(/^U[A-Z2-7]{55}$/);
    expect(c.seed).toMatch(/^SU[A-Z2-7]{56}$/);
    expect(publicKeyOfSeed(c.seed!)).toBe(c.publicKey);
  });

  test('renders an authorization block with one nkey user per cluster', () => {
    const east = generateClusterCredentials('east');
    const west = generateClusterCredentials('west');
    const text = renderNatsAuthorization({ mesh: 'prod', clusters: [east, west] });
    expect(text).toContain(`nkey: "${east.publicKey}"`);
    expect(text).toContain(`nkey: "${west.publicKey}"`);
    expect(text).not.toContain(east.seed!);
    expect(text).toContain('publish: { allow: ["meridian.prod.fed.west.>", "$KV.meridian_fed_prod_west.>"');
  });

  test('refuses bad input, naming it', () => {
    const east = generateClusterCredentials('east');
    expect(() => renderNatsAuthorization({ mesh: 'prod', clusters: [east, east] })).toThrow(
      'cluster "east" is listed twice',
    );
    expect(() =>
      renderNatsAuthorization({ mesh: 'prod', clusters: [{ cluster: 'east', publicKey: 'nope' }] }),
    ).toThrow('public key of cluster "east" is not a user nkey: "nope"');
    expect(() => clusterPermissions('prod', 'e.ast')).toThrow('invalid cluster "e.ast"');
  });
});
