// Which replica an agent should use: pure ranking by locality, then measured round-trip time, then
// load. Tiers, nearest first (as Istio's locality load balancing orders endpoints): same zone of the
// same cluster's region, same region, same cluster, then other clusters.
import type { DiscoveredReplica } from '@meridian/registry';

/** Where the agent (its workload) runs. */
export interface AgentPlace {
  readonly clusterId: string;
  /** `region/zone/subzone` (any part may be empty). */
  readonly locality: string;
}

/** A replica the agent can reach, with what it measured of it. */
export interface Candidate {
  readonly replica: DiscoveredReplica;
  /** The address the agent dials (the TLS port when it uses mTLS, else plaintext xDS). */
  readonly address: string;
  /** Round-trip time of the last discovery call to it; undefined when it did not answer. */
  readonly rttMs: number | undefined;
}

const part = (locality: string, i: number): string => locality.split('/')[i] ?? '';

/** 0 same zone, 1 same region, 2 same cluster, 3 another cluster. */
export function localityTier(place: AgentPlace, replica: DiscoveredReplica): number {
  if (replica.clusterId !== place.clusterId) return 3;
  const region = part(place.locality, 0);
  const zone = part(place.locality, 1);
  if (region !== '' && part(replica.locality, 0) === region) {
    return zone !== '' && part(replica.locality, 1) === zone ? 0 : 1;
  }
  return 2;
}

/** Round-trip times within this many ms count as equal, so load and id decide (no flapping on noise). */
export const RTT_BUCKET_MS = 5;

/**
 * Reachable candidates, best first: locality tier, then RTT (bucketed), then fewer connections, then
 * id (stable). Candidates that did not answer (`rttMs` undefined) are left out.
 */
export function rankCandidates(place: AgentPlace, candidates: readonly Candidate[]): Candidate[] {
  return candidates
    .filter((c) => c.rttMs !== undefined && c.address !== '')
    .sort((a, b) => {
      const tier = localityTier(place, a.replica) - localityTier(place, b.replica);
      if (tier !== 0) return tier;
      const rtt = Math.floor(a.rttMs! / RTT_BUCKET_MS) - Math.floor(b.rttMs! / RTT_BUCKET_MS);
      if (rtt !== 0) return rtt;
      const load = a.replica.connections - b.replica.connections;
      if (load !== 0) return load;
      return a.replica.id < b.replica.id ? -1 : a.replica.id > b.replica.id ? 1 : 0;
    });
}
