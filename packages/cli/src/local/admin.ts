// Calls from `up`, `status` and `demo` to the replicas' authenticated admin API of a local mesh,
// with the admin credential `up` saved in the state dir's credentials file.
import { readCredentials, selectContext } from '@meridian/auth/credentials';
import { adminUrl, type ClusterPlan, contextName, type MeshPlan, type StatePaths } from './plan.js';

/** The admin token of cluster `c`, from the state dir's credentials file. */
export async function clusterToken(
  paths: StatePaths,
  plan: MeshPlan,
  c: ClusterPlan,
): Promise<string | undefined> {
  const creds = await readCredentials(paths.credentials);
  return selectContext(creds, contextName(plan, c))?.token;
}

/** GET a JSON admin path of replica `i` of `c`; undefined when it does not answer 200. */
export async function adminGet<T>(
  c: ClusterPlan,
  i: number,
  token: string | undefined,
  path: string,
): Promise<T | undefined> {
  try {
    const res = await fetch(`${adminUrl(c, i)}${path}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(3000),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      return undefined;
    }
    return (await res.json()) as T;
  } catch {
    return undefined;
  }
}

/** POST YAML to `/apis/v1/apply` of replica `i` of `c`; throws with the server's message on refusal. */
export async function adminApply(c: ClusterPlan, i: number, token: string, yaml: string): Promise<void> {
  const res = await fetch(`${adminUrl(c, i)}/apis/v1/apply?source=meridian-up`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' },
    body: yaml,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (res.status !== 200) {
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // not JSON
    }
    throw new Error(`apply to ${c.name} refused (HTTP ${res.status}): ${message}`);
  }
}

/** What `/debug/replica` answers. */
export interface ReplicaInfo {
  id: string;
  clusterId: string;
  locality: string;
  store?: string;
  connections?: number;
  registrations?: number;
  isLeader?: boolean;
  startedAt?: string;
}

/** What `/debug/leader` answers. */
export interface LeaderInfo {
  replicaId: string;
  isLeader: boolean;
  /** The leader's replica id. */
  leader?: string;
}

/** What `/debug/federation` answers. */
export interface FederationInfo {
  cluster: string;
  natsConnected: boolean;
  exporting: boolean;
  exportedServices: number;
  importedServices: number;
  remoteClusters: {
    cluster: string;
    stale: boolean;
    synced: boolean;
    heardAgoMs?: number;
    services: number;
  }[];
}
