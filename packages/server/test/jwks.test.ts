// The replica's JWKS resolver against a real HTTPS server on loopback (a test CA): first fetch, key
// rotation, then failures: the last good key set stays served, metrics and status say so; recovery;
// discovery through the issuer's OpenID configuration; an untrusted server and a hanging one fail.

import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type ConfigObject, parseConfigDocuments } from '@meridian/api';
import {
  createIntermediateCa,
  createRootCa,
  type RootCa,
  SigningCa,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { parseNode } from '@meridian/envoy';
import { eventually } from '@meridian/testkit';
import { createConfigSnapshot, createRegistrySnapshot, translateProxy } from '@meridian/translate';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwksResolver } from '../src/jwks.js';

class TestReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

/** Sum of a counter's points, or the value of a gauge, with the given attributes. */
async function metric(reader: TestReader, name: string, attrs: Record<string, string> = {}): Promise<number> {
  const { resourceMetrics } = await reader.collect();
  let total = 0;
  for (const scope of resourceMetrics.scopeMetrics)
    for (const m of scope.metrics) {
      if (m.descriptor.name !== name) continue;
      for (const p of m.dataPoints)
        if (Object.entries(attrs).every(([k, v]) => p.attributes[k] === v)) total += p.value as number;
    }
  return total;
}

function keySet(...kids: string[]): string {
  return JSON.stringify({
    keys: kids.map((kid) => ({
      ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }),
      kid,
      use: 'sig',
      alg: 'ES256',
    })),
  });
}

let root: RootCa;
let server: Server;
let port = 0;
/** What the server does: serve `body`, answer 500, or never answer. */
const behaviour: { mode: 'ok' | 'error' | 'hang'; body: string; requests: number } = {
  mode: 'ok',
  body: keySet('k1'),
  requests: 0,
};

function resolverWith(
  reader: TestReader,
  changes: { n: number },
  extra: Partial<ConstructorParameters<typeof JwksResolver>[0]> = {},
) {
  return new JwksResolver({
    log: pino({ level: 'silent' }),
    onChange: () => {
      changes.n++;
    },
    refreshMs: 200,
    retryMs: 200,
    attempts: 2,
    backoffMs: 20,
    timeoutMs: 1000,
    ca: root.certPem,
    meter: new MeterProvider({ readers: [reader] }).getMeter('test'),
    ...extra,
  });
}

function requestAuthn(rules: string): ConfigObject[] {
  const r = parseConfigDocuments(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
${rules}`);
  if (!r.ok) throw new Error(r.error.message);
  return r.configs;
}

beforeAll(() => {
  root = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
  const issuer = new WorkloadCertificateIssuer(
    SigningCa.fromMaterial(
      createIntermediateCa({ root, clusterId: 'c1', trustDomain: 'cluster.local', keyType: 'ecdsa-p256' }),
    ),
  );
  const serving = issuer.issueServingCertificate(['localhost'], 3600);
  server = createServer(
    { cert: serving.certChain.slice(0, -1).join(''), key: serving.keyPem },
    (req, res) => {
      behaviour.requests++;
      if (behaviour.mode === 'hang') return;
      if (behaviour.mode === 'error') {
        res.writeHead(500).end('boom');
        return;
      }
      if (req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            issuer: `https://localhost:${port}`,
            jwks_uri: `https://localhost:${port}/keys`,
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(behaviour.body);
    },
  );
  return new Promise<void>((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      port = (server.address() as AddressInfo).port;
      resolve();
    }),
  );
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const WORKLOAD = parseNode({
  id: 'sidecar~10.0.0.1~a.default~default.svc.cluster.local',
  metadata: { NAMESPACE: 'default', LABELS: { app: 'a' }, INSTANCE_IPS: '10.0.0.1' },
});
const REGISTRY = createRegistrySnapshot(
  1,
  [
    {
      hostname: 'a.default.svc.cluster.local',
      namespace: 'default',
      ports: [{ name: 'http', port: 8080, protocol: 'HTTP' }],
      labels: { app: 'a' },
      exportTo: [],
      resolution: 'EDS',
    },
  ],
  new Map([
    [
      'a.default.svc.cluster.local',
      [
        {
          address: '10.0.0.1',
          ports: { http: 8080 },
          labels: { app: 'a' },
          locality: { region: '', zone: '', subZone: '' },
          network: '',
          clusterId: 'c1',
          health: 'HEALTHY' as const,
          serviceAccount: 'a',
          weight: 1,
        },
      ],
    ],
  ]),
);

const kidsOf = (text: string | undefined) =>
  text === undefined ? [] : (JSON.parse(text) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

describe('JwksResolver over real HTTPS', () => {
  it('fetches, follows a rotation, keeps the last good key set through failures, recovers', async () => {
    behaviour.mode = 'ok';
    behaviour.body = keySet('k1');
    const reader = new TestReader();
    const changes = { n: 0 };
    const resolver = resolverWith(reader, changes);
    try {
      const uri = `https://localhost:${port}/jwks.json`;
      const objects = requestAuthn(`  - {issuer: "https://issuer.test", jwksUri: "${uri}"}`);
      expect(resolver.resolve(objects).size).toBe(0);
      await eventually('first fetch', () => resolver.jwks.has(uri), 10_000, 50);
      expect(kidsOf(resolver.jwks.get(uri))).toEqual(['k1']);
      expect(changes.n).toBe(1);

      // The resolved key set reaches the translated jwt_authn filter, inlined.
      const config = createConfigSnapshot(1, objects, { jwks: resolver.resolve(objects) });
      const out = translateProxy(config, REGISTRY, WORKLOAD);
      expect(out.warnings ?? []).toEqual([]);
      const inbound = JSON.stringify(out.listeners.find((l) => l.name === 'virtualInbound')?.resource);
      expect(inbound).toContain('envoy.filters.http.jwt_authn');
      expect(inbound).toContain('\\"kid\\":\\"k1\\"');
      // Before any fetch, the same policy fails closed and says so.
      const before = translateProxy(createConfigSnapshot(1, objects), REGISTRY, WORKLOAD);
      expect(before.warnings?.[0]).toMatch(/has not been fetched: its tokens are refused/);

      // Rotation: the next refresh serves the new keys.
      behaviour.body = keySet('k2', 'k3');
      await eventually('rotation', () => kidsOf(resolver.jwks.get(uri)).includes('k2'), 10_000, 50);
      expect(kidsOf(resolver.jwks.get(uri))).toEqual(['k2', 'k3']);
      const successAt = await metric(reader, 'meridian_jwks_last_success_timestamp_seconds', {
        issuer: 'https://issuer.test',
      });
      expect(successAt).toBeGreaterThan(0);

      // Failure: the last good key set stays; status, metrics and the stale gauge say so.
      behaviour.mode = 'error';
      await eventually('a failed refresh', () => resolver.status()[0]?.lastError !== undefined, 10_000, 50);
      await eventually(
        'two failed refreshes',
        async () => (await metric(reader, 'meridian_jwks_fetch', { result: 'failure' })) >= 2,
        10_000,
        50,
      );
      expect(kidsOf(resolver.jwks.get(uri))).toEqual(['k2', 'k3']);
      const status = resolver.status()[0]!;
      expect(status).toMatchObject({
        issuer: 'https://issuer.test',
        uri,
        stale: true,
        keys: 2,
        kids: ['k2', 'k3'],
      });
      expect(status.lastError?.message).toBe(`${uri}: HTTP 500`);
      expect(await metric(reader, 'meridian_jwks_stale', { issuer: 'https://issuer.test' })).toBe(1);
      expect(await metric(reader, 'meridian_jwks_fetch', { result: 'success' })).toBeGreaterThanOrEqual(2);
      // The last success is the one before the failures.
      expect(
        await metric(reader, 'meridian_jwks_last_success_timestamp_seconds', {
          issuer: 'https://issuer.test',
        }),
      ).toBeLessThanOrEqual(Date.parse(status.lastError!.at) / 1000);

      // Recovery: the next good answer is served and the failure is cleared.
      behaviour.mode = 'ok';
      behaviour.body = keySet('k4');
      await eventually('recovery', () => kidsOf(resolver.jwks.get(uri)).includes('k4'), 10_000, 50);
      expect(resolver.status()[0]).toMatchObject({ stale: false, keys: 1 });
      expect(resolver.status()[0]?.lastError).toBeUndefined();
      expect(await metric(reader, 'meridian_jwks_stale', { issuer: 'https://issuer.test' })).toBe(0);

      // A source no policy names any more is dropped.
      resolver.resolve([]);
      expect(resolver.jwks.size).toBe(0);
      expect(resolver.status()).toEqual([]);
    } finally {
      resolver.stop();
    }
  }, 60_000);

  it('discovers the JWKS URI from a URL issuer', async () => {
    behaviour.mode = 'ok';
    behaviour.body = keySet('d1');
    const resolver = resolverWith(new TestReader(), { n: 0 });
    try {
      const issuer = `https://localhost:${port}`;
      resolver.resolve(requestAuthn(`  - {issuer: "${issuer}"}`));
      await eventually('discovered fetch', () => resolver.jwks.has(`issuer:${issuer}`), 10_000, 50);
      expect(kidsOf(resolver.jwks.get(`issuer:${issuer}`))).toEqual(['d1']);
      expect(resolver.status()[0]?.uri).toBe(`https://localhost:${port}/keys`);
    } finally {
      resolver.stop();
    }
  }, 30_000);

  it('refuses a server its CA does not trust, and a server that never answers; no keys are served', async () => {
    behaviour.mode = 'ok';
    const untrusting = resolverWith(
      new TestReader(),
      { n: 0 },
      { ca: createRootCa({ trustDomain: 'other.local', keyType: 'ecdsa-p256' }).certPem },
    );
    const reader = new TestReader();
    const hanging = resolverWith(reader, { n: 0 }, { timeoutMs: 300 });
    try {
      untrusting.resolve(requestAuthn(`  - {issuer: "a", jwksUri: "https://localhost:${port}/a"}`));
      await eventually('TLS failure', () => untrusting.status()[0]?.lastError !== undefined, 10_000, 50);
      expect(untrusting.status()[0]?.lastError?.message).toMatch(/certificate/);
      expect(untrusting.jwks.size).toBe(0);

      behaviour.mode = 'hang';
      hanging.resolve(
        requestAuthn(`  - {issuer: "b", jwksUri: "https://localhost:${port}/b", timeout: 300ms}`),
      );
      await eventually('timeout', () => hanging.status()[0]?.lastError !== undefined, 10_000, 50);
      expect(hanging.status()[0]?.lastError?.message).toMatch(/timed out after 300 ms/);
      expect(hanging.status()[0]).toMatchObject({ stale: false, keys: 0 });
      expect(await metric(reader, 'meridian_jwks_fetch', { result: 'failure' })).toBeGreaterThanOrEqual(1);
    } finally {
      untrusting.stop();
      hanging.stop();
      behaviour.mode = 'ok';
      server.closeAllConnections();
    }
  }, 30_000);
});
