/**
 * NATS-side trust between clusters: one NATS user per cluster, identified by an nkey
 * (ed25519; the server config holds only public keys), allowed to publish only on its own federation
 * subjects and its own KV bucket, plus the read-only JetStream API calls an importer needs. Every
 * cluster may read (subscribe to) every cluster's subjects. Documented in deploy/nats/README.md.
 */
import { nkeys } from '@nats-io/transport-node';
import { checkId, Subjects } from './naming.js';

/** Publish and subscribe permissions of one cluster's federation user (nats-server `permissions`). */
export interface ClusterPermissions {
  readonly publish: { readonly allow: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[] };
}

/**
 * What cluster `cluster` of `mesh` may do. Publish: its own `meridian.<mesh>.fed.<cluster>.>` and
 * `$KV.meridian_fed_<mesh>_<cluster>.>`, creating/updating only its own bucket stream, and read-only
 * JetStream API calls (info, stream names, message get, ephemeral consumers) on any stream.
 * Telemetry: publish on `meridian.telemetry.<topic>.<mesh>.<cluster>.<replica>` for its own
 * cluster only, subscribe to every cluster's.
 * Subscribe: every cluster's federation subjects and telemetry subjects, and the reply inboxes.
 */
export function clusterPermissions(mesh: string, cluster: string): ClusterPermissions {
  checkId('cluster', cluster);
  const s = new Subjects(mesh);
  const stream = s.stream(cluster);
  return {
    publish: {
      allow: [
        s.clusterAll(cluster),
        `$KV.${s.bucket(cluster)}.>`,
        // Its replicas' telemetry summaries (graph, convergence), on its own cluster token.
        `meridian.telemetry.*.${mesh}.${cluster}.*`,
        `$JS.API.STREAM.CREATE.${stream}`,
        `$JS.API.STREAM.UPDATE.${stream}`,
        '$JS.API.INFO',
        '$JS.API.STREAM.INFO.*',
        '$JS.API.STREAM.NAMES',
        '$JS.API.STREAM.MSG.GET.*',
        '$JS.API.DIRECT.GET.*',
        '$JS.API.DIRECT.GET.*.>',
        '$JS.API.CONSUMER.CREATE.*',
        '$JS.API.CONSUMER.CREATE.*.>',
        '$JS.API.CONSUMER.INFO.*.*',
        '$JS.API.CONSUMER.MSG.NEXT.*.*',
        '$JS.API.CONSUMER.DELETE.*.*',
        '$JS.FC.>',
      ],
    },
    subscribe: { allow: [`${s.root}.>`, `meridian.telemetry.*.${mesh}.*.*`, '_INBOX.>'] },
  };
}

/** One cluster's NATS identity: the public key goes into the server config, the seed to its replicas. */
export interface ClusterCredentials {
  readonly cluster: string;
  /** `U...`: the user's public nkey. */
  readonly publicKey: string;
  /** `SU...`: the user's seed (secret). Absent when only the public key was supplied. */
  readonly seed?: string;
}

/** Generates a fresh user nkey pair for `cluster`. */
export function generateClusterCredentials(cluster: string): ClusterCredentials {
  checkId('cluster', cluster);
  const kp = nkeys.createUser();
  return {
    cluster,
    publicKey: kp.getPublicKey(),
    seed: new TextDecoder().decode(kp.getSeed()),
  };
}

/** The public key of a user seed (`SU...`); throws when the seed is not a user seed. */
export function publicKeyOfSeed(seed: string): string {
  const kp = nkeys.fromSeed(new TextEncoder().encode(seed.trim()));
  const pub = kp.getPublicKey();
  if (!pub.startsWith('U'))
    throw new RangeError(`nkey seed is not a user seed (public key ${pub.slice(0, 1)}...)`);
  return pub;
}

/** Options of `renderNatsAuthorization`. */
export interface NatsAuthorizationOptions {
  readonly mesh: string;
  /** One entry per cluster of the mesh. */
  readonly clusters: readonly { readonly cluster: string; readonly publicKey: string }[];
  /**
   * Extra users appended verbatim inside `users: [...]` (e.g. an operator's admin user). Anything
   * given here is outside the federation trust model.
   */
  readonly extraUsers?: readonly string[];
}

const q = (s: string) => JSON.stringify(s);

/**
 * Renders a nats-server `authorization { users: [...] }` block with one nkey user per cluster and its
 * permissions (`clusterPermissions`). Put the same block on every server of every NATS cluster of the
 * supercluster (e.g. `include "meridian-federation-auth.conf"`).
 */
export function renderNatsAuthorization(opts: NatsAuthorizationOptions): string {
  new Subjects(opts.mesh);
  const seen = new Set<string>();
  const users = opts.clusters.map(({ cluster, publicKey }) => {
    checkId('cluster', cluster);
    if (seen.has(cluster)) throw new RangeError(`cluster ${q(cluster)} is listed twice`);
    seen.add(cluster);
    if (!/^U[A-Z2-7]{55}$/.test(publicKey))
      throw new RangeError(`public key of cluster ${q(cluster)} is not a user nkey: ${q(publicKey)}`);
    const p = clusterPermissions(opts.mesh, cluster);
    const list = (xs: readonly string[]) => xs.map(q).join(', ');
    return [
      `    # cluster ${cluster}: publishes only its own federation subjects and KV bucket`,
      '    {',
      `      nkey: ${q(publicKey)}`,
      '      permissions: {',
      `        publish: { allow: [${list(p.publish.allow)}] }`,
      `        subscribe: { allow: [${list(p.subscribe.allow)}] }`,
      '      }',
      '    }',
    ].join('\n');
  });
  const extra = (opts.extraUsers ?? []).map((u) => `    ${u}`);
  return [
    `# Meridian federation users for mesh ${q(opts.mesh)} (generated; see deploy/nats/README.md).`,
    'authorization {',
    '  users: [',
    ...users,
    ...extra,
    '  ]',
    '}',
    '',
  ].join('\n');
}
