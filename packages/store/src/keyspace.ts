import { InvalidKeyError } from './errors.js';

/**
 * The mesh id every tool assumes when none is given: meridiand's `--mesh-id` and the `--mesh` of
 * every `meridian` command that addresses a cluster's keyspace. One value, so a CA or a token key
 * installed with the defaults lands where a replica started with the defaults looks.
 */
export const DEFAULT_MESH_ID = 'mesh1';

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._:~@=+-]*$/;

function checkSegment(segment: string, whole: string): string {
  if (!SEGMENT.test(segment)) {
    throw new InvalidKeyError(
      whole,
      `segment "${segment}" must be non-empty, start with a letter or digit and contain only letters, digits and ._:~@=+-`,
    );
  }
  return segment;
}

/**
 * The part of the store one mesh/cluster owns: every key lives under `/meridian/<mesh>/<cluster>/`.
 * Stores take a keyspace and only accept and return keys relative to it, so two meshes (or two
 * clusters of one mesh) can share one etcd without seeing each other.
 */
export class Keyspace {
  private constructor(
    /** The absolute prefix, always ending in `/`, e.g. `/meridian/prod/eu-1/`. */
    readonly root: string,
  ) {}

  /** The keyspace of one cluster of one mesh: `/meridian/<mesh>/<cluster>/`. */
  static of(mesh: string, cluster: string): Keyspace {
    const root = `/meridian/${mesh}/${cluster}/`;
    checkSegment(mesh, root);
    checkSegment(cluster, root);
    return new Keyspace(root);
  }

  /** A keyspace at an arbitrary absolute root (must start and end with `/`). */
  static at(root: string): Keyspace {
    if (!root.startsWith('/') || !root.endsWith('/')) {
      throw new InvalidKeyError(root, 'a keyspace root must start and end with "/"');
    }
    return new Keyspace(root);
  }

  /** Joins segments into a relative key: `key('config', 'VirtualService', 'ns', 'name')`. */
  key(...segments: string[]): string {
    const whole = segments.join('/');
    if (segments.length === 0) throw new InvalidKeyError(whole, 'a key needs at least one segment');
    for (const s of segments) checkSegment(s, whole);
    return whole;
  }

  /** Joins segments into a relative prefix ending in `/`: `prefix('config')` is `config/`. */
  prefix(...segments: string[]): string {
    return segments.length === 0 ? '' : `${this.key(...segments)}/`;
  }

  /** The absolute etcd key of a relative key. */
  absolute(relativeKey: string): string {
    if (relativeKey.startsWith('/')) {
      throw new InvalidKeyError(relativeKey, 'keys are relative to the keyspace and must not start with "/"');
    }
    return this.root + relativeKey;
  }

  /** The relative key of an absolute key, or undefined when it is outside this keyspace. */
  relative(absoluteKey: string): string | undefined {
    return absoluteKey.startsWith(this.root) ? absoluteKey.slice(this.root.length) : undefined;
  }
}
