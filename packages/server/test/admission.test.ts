// The admission webhook (issue 14, item 6): the pure decision (AdmissionReview in, answer out) with
// apply's validation and messages, then AdmissionReview objects POSTed over TLS to a real replica
// (etcd behind it): valid, invalid, DELETE, analyze's warnings against the applied config, nothing
// written, and client certificates required when a client CA is configured.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConfigObject, formatFieldError } from '@meridian/api';
import {
  CaAudit,
  createIntermediateCa,
  createRootCa,
  type RootCa,
  SigningCa,
  WorkloadCertificateIssuer,
} from '@meridian/ca';
import { Keyspace, MemoryStore } from '@meridian/store';
import { type EtcdCluster, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMISSION_PATH,
  AdmissionRequestError,
  reviewAdmission,
  startAdmissionWebhook,
} from '../src/admission.js';
import { ConfigService } from '../src/config-service.js';
import { AdminError } from '../src/errors.js';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { adminTokenFor } from './harness.js';

/** An AdmissionReview request as the API server sends it. */
function review(
  object: Record<string, unknown> | undefined,
  o: {
    uid?: string;
    operation?: string;
    kind?: { group: string; version: string; kind: string };
    namespace?: string;
    name?: string;
    apiVersion?: string;
    subResource?: string;
  } = {},
): Record<string, unknown> {
  const kind = o.kind ?? { group: 'networking.istio.io', version: 'v1', kind: 'VirtualService' };
  return {
    apiVersion: o.apiVersion ?? 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: o.uid ?? '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind,
      resource: { group: kind.group, version: kind.version, resource: `${kind.kind.toLowerCase()}s` },
      ...(o.subResource ? { subResource: o.subResource } : {}),
      name: o.name ?? (object?.metadata as { name?: string } | undefined)?.name,
      namespace: o.namespace ?? 'shop',
      operation: o.operation ?? 'CREATE',
      userInfo: { username: 'alice', groups: ['system:authenticated'] },
      ...(object ? { object } : {}),
      dryRun: false,
    },
  };
}

const vs = (weights: readonly number[], subset = 'v1'): Record<string, unknown> => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: {
    name: 'reviews',
    namespace: 'shop',
    uid: 'd3a4b6f0-0000-4000-8000-000000000001',
    creationTimestamp: '2026-12-06T10:00:00Z',
    generation: 1,
    managedFields: [{ manager: 'kubectl', operation: 'Update' }],
  },
  spec: {
    hosts: ['reviews'],
    http: [
      {
        route: weights.map((weight, i) => ({
          destination: { host: 'reviews', subset: i === 0 ? subset : `v${i + 1}` },
          weight,
        })),
      },
    ],
  },
});

/** apply's field errors for the same object, formatted without positions. */
async function applyErrors(object: Record<string, unknown>): Promise<string[]> {
  const config = new ConfigService(new MemoryStore({ keyspace: Keyspace.of('m', 'c') }), {
    unavailableSince: undefined,
  });
  const error = await config.applyText(JSON.stringify(object)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AdminError);
  const errors = (error as AdminError).toBody().errors ?? [];
  return errors.map((e) => formatFieldError({ object: e.object, path: e.path, message: e.message }));
}

describe('reviewAdmission (pure)', () => {
  it('allows a valid VirtualService, echoing uid and apiVersion', () => {
    const dr = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'reviews', namespace: 'shop' },
      spec: { host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }] },
    };
    const answer = reviewAdmission(review(vs([100]), { uid: 'uid-1' }), {
      currentConfig: () => [dr as unknown as ConfigObject],
    });
    expect(answer).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'uid-1', allowed: true },
    });
  });

  it("denies an invalid VirtualService with apply's messages, naming the object and the field", async () => {
    const bad = vs([60, 30]);
    const answer = reviewAdmission(review(bad, { uid: 'uid-2' }));
    expect(answer.response.uid).toBe('uid-2');
    expect(answer.response.allowed).toBe(false);
    expect(answer.response.status?.code).toBe(422);
    expect(answer.response.status?.reason).toBe('Invalid');
    const lines = answer.response.status!.message.split('\n');
    expect(lines).toEqual(await applyErrors(bad));
    expect(lines).toEqual([
      'VirtualService shop/reviews: spec.http[0].route[1].weight: weights must sum to 100, got 90',
    ]);
    expect(answer.response.status?.details).toEqual({
      name: 'reviews',
      group: 'networking.istio.io',
      kind: 'VirtualService',
      causes: [
        {
          reason: 'FieldValueInvalid',
          field: 'spec.http[0].route[1].weight',
          message: 'weights must sum to 100, got 90',
        },
      ],
    });
  });

  it('takes the namespace and name from the request when the object omits them', () => {
    const obj = vs([60, 30]);
    obj.metadata = {};
    const answer = reviewAdmission(review(obj, { namespace: 'payments', name: 'ratings' }));
    expect(answer.response.allowed).toBe(false);
    expect(answer.response.status?.message).toMatch(/^VirtualService payments\/ratings: spec\.http\[0\]/);
  });

  it('validates UPDATE like CREATE; allows DELETE, CONNECT and writes to the status subresource', () => {
    expect(reviewAdmission(review(vs([60, 30]), { operation: 'UPDATE' })).response.allowed).toBe(false);
    for (const operation of ['DELETE', 'CONNECT'])
      expect(reviewAdmission(review(undefined, { operation, uid: `u-${operation}` })).response).toEqual({
        uid: `u-${operation}`,
        allowed: true,
      });
    expect(
      reviewAdmission(review(vs([60, 30]), { operation: 'UPDATE', subResource: 'status' })).response.allowed,
    ).toBe(true);
  });

  it('answers in the apiVersion of the request (v1beta1 too) and accepts older Istio versions', () => {
    const a = reviewAdmission(
      review(
        { ...vs([100]), apiVersion: 'networking.istio.io/v1alpha3' },
        {
          apiVersion: 'admission.k8s.io/v1beta1',
          kind: { group: 'networking.istio.io', version: 'v1alpha3', kind: 'VirtualService' },
        },
      ),
    );
    expect(a.apiVersion).toBe('admission.k8s.io/v1beta1');
    expect(a.response.allowed).toBe(true);
  });

  it("carries analyze's findings as warnings, checked against the current config", () => {
    const alone = reviewAdmission(review(vs([100], 'v9')));
    expect(alone.response.allowed).toBe(true);
    expect(alone.response.warnings).toEqual([
      '[IST0101] VirtualService shop/reviews: spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v9"',
    ]);
    const policy = {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'jwt', namespace: 'shop' },
      spec: { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] },
    };
    const ap = reviewAdmission(
      review(policy, { kind: { group: 'security.istio.io', version: 'v1', kind: 'AuthorizationPolicy' } }),
    );
    expect(ap.response.allowed).toBe(true);
    expect(ap.response.warnings?.[0]).toMatch(
      /^\[MER0001\] AuthorizationPolicy shop\/jwt: spec\.rules\[0\]\.from\[0\]\.source\.requestPrincipals: /,
    );
  });

  it('denies a kind Meridian does not validate, naming it', () => {
    const a = reviewAdmission(
      review(
        { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'g' }, spec: {} },
        { kind: { group: 'networking.istio.io', version: 'v1', kind: 'Gateway' } },
      ),
    );
    expect(a.response.allowed).toBe(false);
    expect(a.response.status?.message).toMatch(
      /^Gateway\.networking\.istio\.io\/v1: not a kind Meridian validates/,
    );
  });

  it('refuses what is not an AdmissionReview request, naming the field', () => {
    const fieldOf = (body: unknown) => {
      try {
        reviewAdmission(body);
      } catch (error) {
        expect(error).toBeInstanceOf(AdmissionRequestError);
        return (error as AdmissionRequestError).field;
      }
      return 'accepted';
    };
    expect(fieldOf([])).toBe('body');
    expect(fieldOf({ ...review(vs([100])), apiVersion: 'admission.k8s.io/v2' })).toBe('apiVersion');
    const noUid = review(vs([100]));
    delete (noUid.request as Record<string, unknown>).uid;
    expect(fieldOf(noUid)).toBe('request.uid');
    expect(fieldOf(review(vs([100]), { operation: 'PATCH' }))).toBe('request.operation');
    expect(fieldOf(review(undefined))).toBe('request.object');
  });
});

// --- over TLS, against a real replica ------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'meridian-admission-test-'));
let etcd: EtcdCluster | undefined;
let replica: Replica | undefined;
let root: RootCa;
let issuer: WorkloadCertificateIssuer;

function issueTo(dir: string, names: readonly string[]): { cert: string; key: string } {
  const out = issuer.issueServingCertificate(names, 3600);
  const cert = join(dir, `${names[0]}-cert.pem`);
  const key = join(dir, `${names[0]}-key.pem`);
  writeFileSync(cert, out.certChain.slice(0, -1).join(''));
  writeFileSync(key, out.keyPem, { mode: 0o600 });
  return { cert, key };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function post(
  address: string,
  body: unknown,
  o: { path?: string; method?: string; cert?: string; key?: string; type?: string } = {},
): Promise<Answer> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path: o.path ?? ADMISSION_PATH,
        method: o.method ?? 'POST',
        servername: 'localhost',
        ca: root.certPem,
        ...(o.cert ? { cert: o.cert, key: o.key } : {}),
        headers: { 'content-type': o.type ?? 'application/json' },
        timeout: 15_000,
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

beforeAll(async () => {
  root = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
  const material = createIntermediateCa({
    root,
    clusterId: 'c1',
    trustDomain: 'cluster.local',
    keyType: 'ecdsa-p256',
  });
  issuer = new WorkloadCertificateIssuer(SigningCa.fromMaterial(material), { audit: CaAudit.silent() });
  etcd = await startEtcd();
}, 60_000);

afterAll(async () => {
  await replica?.stop().catch(() => undefined);
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('admission webhook over TLS on a replica', () => {
  it('answers valid and invalid reviews with apply’s messages, warnings from the live config, and writes nothing', async () => {
    const serving = issueTo(tmp, ['localhost']);
    replica = await Replica.start(
      resolveOptions(
        [
          ...['--mesh-id', 'admission', '--cluster-id', 'c1', '--replica-id', 'adm-a'],
          ...['--etcd-endpoints', etcd!.endpoints.join(','), '--debounce-ms', '10'],
          ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
          ...['--monitoring-address', '127.0.0.1:0', '--snapshot-dir', 'off'],
          ...['--webhook-address', '127.0.0.1:0'],
          ...['--webhook-cert-file', serving.cert, '--webhook-key-file', serving.key],
        ],
        {},
      ),
      { logger: pino({ level: 'silent' }) },
    );
    const at = replica.webhookAddress;
    expect(at).toMatch(/^127\.0\.0\.1:\d+$/);

    const valid = await post(at, review(vs([100], 'v9'), { uid: 'a-1' }));
    expect(valid.status).toBe(200);
    expect(valid.body).toMatchObject({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'a-1', allowed: true },
    });
    // The subset is not defined yet: analyze says so.
    expect((valid.body.response as { warnings: string[] }).warnings).toEqual([
      '[IST0101] VirtualService shop/reviews: spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v9"',
    ]);

    const bad = vs([60, 30]);
    const invalid = await post(at, review(bad, { uid: 'a-2' }));
    expect(invalid.status).toBe(200);
    const r = invalid.body.response as {
      uid: string;
      allowed: boolean;
      status: { code: number; message: string };
    };
    expect([r.uid, r.allowed, r.status.code]).toEqual(['a-2', false, 422]);
    expect(r.status.message.split('\n')).toEqual(await applyErrors(bad));

    const del = await post(at, review(undefined, { uid: 'a-3', operation: 'DELETE', name: 'reviews' }));
    expect(del.body.response).toEqual({ uid: 'a-3', allowed: true });

    // Nothing written by reviews; after the DestinationRule is applied through the admin API, the
    // same review carries no warning (the webhook reads the replica's live config).
    const token = await adminTokenFor(etcd!.endpoints, 'admission', 'c1');
    const admin = (method: string, path: string, body?: string) =>
      fetch(`http://${replica!.adminAddress}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' },
        ...(body ? { body } : {}),
      }).then(async (res) => ({ status: res.status, json: (await res.json()) as Record<string, unknown> }));
    expect((await admin('GET', '/apis/v1/config/virtualservice')).json.items).toEqual([]);
    const applied = await admin(
      'POST',
      '/apis/v1/apply',
      'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\nspec: {host: reviews, subsets: [{name: v9, labels: {version: v9}}]}\n',
    );
    expect(applied.status).toBe(200);
    const revision = applied.json.revision as number;
    let again: Answer | undefined;
    const until = Date.now() + 20_000;
    do {
      again = await post(at, review(vs([100], 'v9'), { uid: 'a-4' }));
      if ((again.body.response as { warnings?: unknown }).warnings === undefined) break;
      await new Promise((res) => setTimeout(res, 100));
    } while (Date.now() < until);
    expect(again.body.response).toEqual({ uid: 'a-4', allowed: true });
    const listed = await admin('GET', '/apis/v1/config/virtualservice');
    expect(listed.json.items).toEqual([]);
    // The DestinationRule is as applied (its resourceVersion is the etcd revision that last wrote it;
    // the store's own revision moves with leases and replica status, so it proves nothing).
    const drs = (await admin('GET', '/apis/v1/config/destinationrule')).json.items as {
      metadata: { name: string; resourceVersion: string };
    }[];
    expect(drs.map((d) => [d.metadata.name, d.metadata.resourceVersion])).toEqual([
      ['reviews', String(revision)],
    ]);

    // Only POST /validate with JSON is served.
    expect((await post(at, '{}', { path: '/apis/v1/apply' })).status).toBe(404);
    expect((await post(at, 'x', { type: 'application/yaml' })).status).toBe(415);
    const notReview = await post(at, {
      kind: 'AdmissionReview',
      apiVersion: 'admission.k8s.io/v1',
      request: {},
    });
    expect(notReview.status).toBe(400);
    expect(notReview.body.message).toBe('request.uid: missing');
  }, 90_000);

  it('with a client CA, refuses callers without a certificate it signed', async () => {
    const serving = issueTo(tmp, ['localhost']);
    const client = issueTo(tmp, ['kube-apiserver']);
    const caFile = join(tmp, 'client-ca.pem');
    writeFileSync(caFile, root.certPem);
    const hook = await startAdmissionWebhook(
      { host: '127.0.0.1', port: 0, certFile: serving.cert, keyFile: serving.key, clientCaFile: caFile },
      { log: pino({ level: 'silent' }) },
    );
    try {
      const at = `127.0.0.1:${hook.port}`;
      await expect(post(at, review(vs([100])))).rejects.toThrow();
      const ok = await post(at, review(vs([100]), { uid: 'c-1' }), {
        cert: readFileSync(client.cert, 'utf8'),
        key: readFileSync(client.key, 'utf8'),
      });
      expect(ok.body.response).toMatchObject({ uid: 'c-1', allowed: true });
    } finally {
      await new Promise<void>((resolve) => {
        hook.server.close(() => resolve());
        hook.server.closeAllConnections();
      });
    }
  });

  it('refuses --webhook-address without a certificate and key, naming the setting', () => {
    expect(() => resolveOptions(['--webhook-address', '127.0.0.1:0'], {})).toThrow(
      /--webhook-address.*--webhook-cert-file/,
    );
  });
});
