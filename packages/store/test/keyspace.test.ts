import { InvalidKeyError, Keyspace } from '@meridian/store';
import { describe, expect, it } from 'vitest';

describe('Keyspace', () => {
  it('roots every key under /meridian/<mesh>/<cluster>/', () => {
    const ks = Keyspace.of('prod', 'eu-1');
    expect(ks.root).toBe('/meridian/prod/eu-1/');
    expect(ks.key('config', 'VirtualService', 'default', 'reviews')).toBe(
      'config/VirtualService/default/reviews',
    );
    expect(ks.prefix('config', 'VirtualService')).toBe('config/VirtualService/');
    expect(ks.prefix()).toBe('');
    expect(ks.absolute('config/a')).toBe('/meridian/prod/eu-1/config/a');
    expect(ks.relative('/meridian/prod/eu-1/config/a')).toBe('config/a');
    expect(ks.relative('/meridian/prod/eu-10/config/a')).toBeUndefined();
  });

  it('rejects segments that could escape or merge keyspaces', () => {
    expect(() => Keyspace.of('prod/x', 'c')).toThrow(
      new InvalidKeyError(
        '/meridian/prod/x/c/',
        'segment "prod/x" must be non-empty, start with a letter or digit and contain only letters, digits and ._:~@=+-',
      ),
    );
    expect(() => Keyspace.of('', 'c')).toThrow(InvalidKeyError);
    expect(() => Keyspace.of('m', '..')).toThrow(InvalidKeyError);
    expect(() => Keyspace.of('m', 'c').key('a', '')).toThrow(
      'invalid key "a/": segment "" must be non-empty',
    );
    expect(() => Keyspace.at('meridian/')).toThrow(
      new InvalidKeyError('meridian/', 'a keyspace root must start and end with "/"'),
    );
  });
});
