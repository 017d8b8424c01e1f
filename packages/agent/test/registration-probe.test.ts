// The readiness rule and the probes against real local servers (HTTP statuses, a refused port, a
// server that never answers, TCP), and the registration options refused up front.
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket, type Server as TcpServer } from 'node:net';
import { freePort } from '@meridian/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentRegistration,
  AgentRegistrationError,
  nextReadiness,
  type ReadinessState,
  runProbe,
} from '../src/registration.js';

let app: Server;
let silentApp: TcpServer;
const silentSockets: Socket[] = [];
let appPort = 0;
let silentPort = 0;

beforeAll(async () => {
  app = createServer((req, res) => {
    const status = Number(req.url?.slice(1)) || 200;
    res.writeHead(status, status === 302 ? { location: '/elsewhere' } : {});
    res.end();
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as { port: number }).port;
  // Accepts connections and never answers.
  silentApp = createTcpServer((socket) => silentSockets.push(socket));
  await new Promise<void>((r) => silentApp.listen(0, '127.0.0.1', r));
  silentPort = (silentApp.address() as { port: number }).port;
});

afterAll(async () => {
  app.closeAllConnections();
  await new Promise((r) => app.close(r));
  for (const s of silentSockets) s.destroy();
  await new Promise((r) => silentApp.close(r));
});

describe('nextReadiness', () => {
  it('UNHEALTHY after K consecutive failures, HEALTHY after one success', () => {
    const results = [true, false, false, false, true, false, true, false, false];
    const seen: ReadinessState[] = [];
    let s: ReadinessState = { health: 'HEALTHY', consecutiveFailures: 0 };
    for (const ok of results) {
      s = nextReadiness(s, ok, 3);
      seen.push(s);
    }
    expect(seen.map((x) => `${x.health}/${x.consecutiveFailures}`)).toEqual([
      'HEALTHY/0',
      'HEALTHY/1',
      'HEALTHY/2',
      'UNHEALTHY/3',
      'HEALTHY/0',
      'HEALTHY/1',
      'HEALTHY/0',
      'HEALTHY/1',
      'HEALTHY/2',
    ]);
    // Starting unready: stays UNHEALTHY until a success.
    expect(nextReadiness({ health: 'UNHEALTHY', consecutiveFailures: 1 }, false, 3).health).toBe('UNHEALTHY');
  });
});

describe('runProbe', () => {
  it('HTTP: 2xx and 3xx are ready; 4xx/5xx, a refused port and a silent server are not', async () => {
    const get = (path: string, port = appPort) =>
      runProbe({ kind: 'http', url: `http://127.0.0.1:${port}${path}` }, 300);
    expect(await get('/200')).toEqual({ ok: true, detail: 'HTTP 200' });
    expect(await get('/204')).toEqual({ ok: true, detail: 'HTTP 204' });
    expect(await get('/302')).toEqual({ ok: true, detail: 'HTTP 302' });
    expect(await get('/404')).toEqual({ ok: false, detail: 'HTTP 404' });
    expect(await get('/503')).toEqual({ ok: false, detail: 'HTTP 503' });
    const refused = await get('/', await freePort());
    expect(refused.ok).toBe(false);
    expect(refused.detail).toContain('ECONNREFUSED');
    expect(await get('/', silentPort)).toEqual({ ok: false, detail: 'no answer within 300 ms' });
  });

  it('TCP: a connection that opens is ready', async () => {
    expect(await runProbe({ kind: 'tcp', port: appPort }, 300)).toEqual({ ok: true, detail: 'connected' });
    const refused = await runProbe({ kind: 'tcp', host: '127.0.0.1', port: await freePort() }, 300);
    expect(refused.ok).toBe(false);
    expect(refused.detail).toContain('ECONNREFUSED');
  });
});

describe('AgentRegistration options', () => {
  it('are refused naming the field', () => {
    const base = {
      workload: { name: 'reviews-1', namespace: 'bookinfo', address: '127.0.0.1', serviceAccount: 'reviews' },
      address: () => '127.0.0.1:15012',
    };
    const refused = (o: object) => {
      try {
        new AgentRegistration({ ...base, ...o });
      } catch (error) {
        expect(error).toBeInstanceOf(AgentRegistrationError);
        return [(error as AgentRegistrationError).field, (error as Error).message];
      }
      throw new Error('expected an AgentRegistrationError');
    };
    expect(refused({ workload: { ...base.workload, name: 'Reviews' } })).toEqual([
      'workload.name',
      'workload.name: "Reviews" is not a DNS-1123 label',
    ]);
    expect(refused({ workload: { ...base.workload, ports: { http: 0 } } })).toEqual([
      'workload.ports.http',
      'workload.ports.http: port must be 1..65535, got 0',
    ]);
    expect(refused({ probe: { kind: 'http', url: 'localhost:8080/ready' } })).toEqual([
      'probe.url',
      'probe.url: "localhost:8080/ready" is not an http(s) URL',
    ]);
    expect(refused({ probe: { kind: 'tcp', port: 70000 } })).toEqual([
      'probe.port',
      'probe.port: must be 1..65535, got 70000',
    ]);
    expect(refused({ failureThreshold: 0 })).toEqual([
      'failureThreshold',
      'failureThreshold: must be a positive integer, got 0',
    ]);
    expect(refused({ token: 't', credentials: {} })[0]).toBe('token');
  });
});
