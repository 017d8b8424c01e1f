/**
 * The identities of a service's workloads, for the upstream peer check (Istio's service accounts of a
 * service, `PushContext.ServiceAccounts`): the service account of every endpoint, in the endpoint's
 * namespace (the service's unless the registry says otherwise), sorted and de-duplicated so every
 * replica produces the same bytes. Pure; memoized per immutable endpoint list.
 */
import type { Endpoint, WorkloadServiceAccount } from './types.js';
import { compareStrings } from './util.js';

/** A service's accounts and a string that is equal exactly when two account lists are. */
export interface ServiceAccounts {
  readonly list: readonly WorkloadServiceAccount[];
  readonly key: string;
}

const EMPTY: ServiceAccounts = Object.freeze({ list: Object.freeze([]), key: '' });
const memo = new WeakMap<readonly Endpoint[], Map<string, ServiceAccounts>>();

/** The service accounts of `endpoints` of a service in `serviceNamespace` (see the module comment). */
export function serviceAccountsOf(serviceNamespace: string, endpoints: readonly Endpoint[]): ServiceAccounts {
  if (endpoints.length === 0) return EMPTY;
  let byNamespace = memo.get(endpoints);
  const hit = byNamespace?.get(serviceNamespace);
  if (hit) return hit;
  const seen = new Map<string, WorkloadServiceAccount>();
  for (const e of endpoints) {
    if (e.serviceAccount === '') continue;
    const namespace = e.namespace || serviceNamespace;
    const id = JSON.stringify([namespace, e.serviceAccount]);
    if (!seen.has(id)) seen.set(id, { namespace, serviceAccount: e.serviceAccount });
  }
  const list = [...seen.values()].sort(
    (a, b) => compareStrings(a.namespace, b.namespace) || compareStrings(a.serviceAccount, b.serviceAccount),
  );
  const out: ServiceAccounts =
    list.length === 0
      ? EMPTY
      : Object.freeze({
          list: Object.freeze(list),
          key: JSON.stringify(list.map((a) => [a.namespace, a.serviceAccount])),
        });
  if (!byNamespace) {
    byNamespace = new Map();
    memo.set(endpoints, byNamespace);
  }
  byNamespace.set(serviceNamespace, out);
  return out;
}
