// The chaos scenarios, in priority order. Each one acts on the mesh's processes (by PID file) or its
// loopback ports, observes through the demo clients' own call records, the config writer's own log and
// etcd read directly, and restores the mesh with `meridian up`'s code.
// The scenarios themselves are in scenarios/, by what they break.
import type { Harness, Scenario } from './lib/harness.js';
import { caRootRotation } from './scenarios/ca.js';
import { etcdDiskFull, etcdLeaderKill, etcdQuorumLoss } from './scenarios/etcd.js';
import { clusterBackendsLost, gatewayLatency, gatewayPartition } from './scenarios/federation.js';
import { configFlood, nackingProxy, slowProxy, stuckProxy } from './scenarios/proxies.js';
import { replicaClockSkew, replicaKill, replicaRestartWithoutEtcd } from './scenarios/replicas.js';

/** Every scenario, in priority order. */
export const SCENARIOS: readonly Scenario[] = [
  replicaKill('leader'),
  replicaKill('follower'),
  etcdLeaderKill,
  clusterBackendsLost,
  nackingProxy,
  stuckProxy,
  slowProxy,
  configFlood,
  gatewayPartition('short'),
  gatewayPartition('long'),
  gatewayLatency,
  etcdQuorumLoss,
  etcdDiskFull,
  replicaRestartWithoutEtcd,
  replicaClockSkew,
  caRootRotation,
];

/** The short subset run by chaos/ci.test.ts. */
export const CI_SUBSET = ['replica-kill-leader', 'cluster-backends-lost', 'nacking-proxy'];

export function scenario(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`no scenario "${name}" (pnpm chaos --list names them)`);
  return s;
}

export type { Harness };
