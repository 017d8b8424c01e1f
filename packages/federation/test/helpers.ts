/** Shared fixtures of the federation tests. */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import type {
  ExportedServiceState,
  FederatedEndpoint,
  FederationImporter,
  ImportChange,
  ImportedView,
} from '../src/index.js';

export const MESH = 'test';
export const log = pino({ level: process.env.FEDERATION_TEST_LOG ?? 'silent' });

/** A service `name.ns.svc.cluster.local` of cluster `cluster` with `n` endpoints (10.<k>.0.<i>). */
export function svc(
  cluster: string,
  name: string,
  n: number,
  opts: { ns?: string; k?: number; labels?: Record<string, string>; exportTo?: string[] } = {},
): ExportedServiceState {
  const ns = opts.ns ?? 'default';
  const endpoints: FederatedEndpoint[] = Array.from({ length: n }, (_, i) => ({
    address: `10.${opts.k ?? 1}.0.${i + 1}`,
    ports: { http: 8080 },
    labels: { app: name },
    locality: { region: cluster === 'east' ? 'us-east1' : 'us-west1', zone: 'a', subZone: '' },
    network: `net-${cluster}`,
    cluster,
    health: 'HEALTHY',
    serviceAccount: name,
    weight: 1,
  }));
  return {
    service: {
      hostname: `${name}.${ns}.svc.cluster.local`,
      namespace: ns,
      ports: [{ name: 'http', port: 80, protocol: 'HTTP', targetPort: 8080 }],
      labels: opts.labels ?? { app: name },
      exportTo: opts.exportTo ?? [],
      resolution: 'EDS',
    },
    endpoints,
  };
}

export async function natsConnect(
  url: string,
  extra: Parameters<typeof connect>[0] = {},
): Promise<NatsConnection> {
  return connect({ servers: url, reconnectTimeWait: 100, maxReconnectAttempts: -1, ...extra });
}

/** Resolves with the first view satisfying `pred` (checks the current view first). */
export function waitView(
  importer: FederationImporter,
  pred: (v: ImportedView) => boolean,
  timeoutMs = 15_000,
  what = 'view condition',
): Promise<ImportedView> {
  if (pred(importer.view)) return Promise.resolve(importer.view);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(
        new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; view version ${importer.view.version}, services ${[...importer.view.services.keys()].join(', ')}`,
        ),
      );
    }, timeoutMs);
    const off = importer.onChange((c: ImportChange) => {
      if (pred(c.view)) {
        clearTimeout(t);
        off();
        resolve(c.view);
      }
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
