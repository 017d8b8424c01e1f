import net from 'node:net';
import {
  eventually,
  type NatsSupercluster,
  natsMonitor,
  pidAlive,
  ServerStartError,
  startNats,
  startNatsSupercluster,
} from '@meridian/testkit';
import { afterAll, describe, expect, it } from 'vitest';

/** Just enough of the NATS client protocol (INFO/CONNECT/SUB/PUB/MSG/PING/PONG) to test servers. */
class WireClient {
  readonly #sock: net.Socket;
  #buf = Buffer.alloc(0);
  #pongs: (() => void)[] = [];
  #sid = 0;
  readonly #subs = new Map<string, (payload: string) => void>();

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.on('data', (d) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#parse();
    });
  }

  static connect(url: string): Promise<WireClient> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: hostname, port: Number(port) }, () => {
        const c = new WireClient(sock);
        sock.write('CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n');
        c.flush().then(() => resolve(c), reject);
      });
      sock.once('error', reject);
    });
  }

  #parse(): void {
    for (;;) {
      const eol = this.#buf.indexOf('\r\n');
      if (eol < 0) return;
      const line = this.#buf.subarray(0, eol).toString();
      if (line.startsWith('MSG ')) {
        const parts = line.split(' ');
        const size = Number(parts[parts.length - 1]);
        if (this.#buf.length < eol + 2 + size + 2) return;
        const payload = this.#buf.subarray(eol + 2, eol + 2 + size).toString();
        this.#buf = this.#buf.subarray(eol + 2 + size + 2);
        this.#subs.get(parts[2]!)?.(payload);
        continue;
      }
      this.#buf = this.#buf.subarray(eol + 2);
      if (line === 'PING') this.#sock.write('PONG\r\n');
      else if (line === 'PONG') this.#pongs.shift()?.();
    }
  }

  /** Round trip to the server: everything sent before has been processed. */
  flush(): Promise<void> {
    return new Promise((resolve) => {
      this.#pongs.push(resolve);
      this.#sock.write('PING\r\n');
    });
  }

  subscribe(subject: string, onMsg: (payload: string) => void): void {
    const sid = String(++this.#sid);
    this.#subs.set(sid, onMsg);
    this.#sock.write(`SUB ${subject} ${sid}\r\n`);
  }

  publish(subject: string, payload: string, reply?: string): void {
    const body = Buffer.from(payload);
    this.#sock.write(`PUB ${subject}${reply ? ` ${reply}` : ''} ${body.length}\r\n${payload}\r\n`);
  }

  async request(subject: string, payload: string): Promise<string> {
    const inbox = `_INBOX.${Math.random().toString(36).slice(2)}`;
    const reply = new Promise<string>((resolve) => this.subscribe(inbox, resolve));
    await this.flush();
    this.publish(subject, payload, inbox);
    return reply;
  }

  close(): void {
    this.#sock.destroy();
  }
}

describe('startNats', () => {
  it('starts with JetStream on loopback ports above 20000; streams survive a restart of the same store dir', async () => {
    const t0 = performance.now();
    await using nats = await startNats({ jetstream: true });
    console.log(`nats-server with JetStream ready in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    expect(nats.port).toBeGreaterThan(20000);
    expect(nats.monitorPort).toBeGreaterThan(20000);
    expect(nats.storeDir?.startsWith('/tmp/meridian-test-nats-')).toBe(true);
    const jsz = await natsMonitor<{ config?: { store_dir?: string } }>(nats.monitorPort, 'jsz');
    expect(jsz.config?.store_dir).toBe(`${nats.storeDir}/jetstream`);

    let c = await WireClient.connect(nats.url);
    const created = JSON.parse(
      await c.request(
        '$JS.API.STREAM.CREATE.ORDERS',
        JSON.stringify({ name: 'ORDERS', subjects: ['orders.>'] }),
      ),
    ) as { config?: { name?: string }; error?: unknown };
    expect(created.error).toBeUndefined();
    expect(created.config?.name).toBe('ORDERS');
    c.close();

    const oldPid = nats.pid!;
    await nats.restart();
    expect(pidAlive(oldPid)).toBe(false);
    expect(nats.pid).not.toBe(oldPid);
    c = await WireClient.connect(nats.url);
    const info = JSON.parse(await c.request('$JS.API.STREAM.INFO.ORDERS', '')) as {
      config?: { name?: string };
    };
    expect(info.config?.name).toBe('ORDERS');
    c.close();
  });

  it('appends configExtra; a bad config is one clear ServerStartError with the server output', async () => {
    await using nats = await startNats({ configExtra: 'max_payload: 65536' });
    const varz = await natsMonitor<{ max_payload?: number }>(nats.monitorPort, 'varz');
    expect(varz.max_payload).toBe(65536);

    const err = await startNats({ configExtra: 'this is { not valid' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServerStartError);
    expect((err as ServerStartError).message).toMatch(/^nats exited during start-up \(code \d+\)/);
    expect((err as ServerStartError).outputTail.join('\n')).toMatch(/Parse error on line \d+/);
  });
});

describe('startNatsSupercluster (2 clusters x 1 server, JetStream)', () => {
  let sc: NatsSupercluster;
  afterAll(async () => {
    await sc?.stop();
  });

  it('resolves with every gateway connected; a message published in one cluster is received in the other', async () => {
    const t0 = performance.now();
    sc = await startNatsSupercluster({ clusters: [{ name: 'east' }, { name: 'west' }], jetstream: true });
    console.log(`NATS supercluster (2x1, JetStream) ready in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(Object.keys(sc.clusters)).toEqual(['east', 'west']);
    const east = sc.clusters.east![0]!;
    const west = sc.clusters.west![0]!;
    expect(east.gatewayPort).toBeGreaterThan(20000);
    const gz = await natsMonitor<{ outbound_gateways: Record<string, unknown> }>(
      east.monitorPort,
      'gatewayz',
    );
    expect(Object.keys(gz.outbound_gateways)).toContain('west');

    const sub = await WireClient.connect(west.url);
    const pub = await WireClient.connect(east.url);
    const got: string[] = [];
    sub.subscribe('mesh.endpoints', (p) => got.push(p));
    await sub.flush();
    // Interest crosses the gateway asynchronously: publish until it arrives (bounded).
    await eventually(
      'a message across the gateway',
      async () => {
        pub.publish('mesh.endpoints', 'hello from east');
        await pub.flush();
        return got.length > 0;
      },
      10_000,
      50,
    );
    expect(got[0]).toBe('hello from east');
    sub.close();
    pub.close();
  });

  it('kill and restart one server: gateways reconnect', async () => {
    const west = sc.clusters.west![0]!;
    await west.kill();
    expect(west.running).toBe(false);
    await west.restart();
    const t0 = performance.now();
    await sc.waitConnected();
    console.log(`gateways reconnected ${(performance.now() - t0).toFixed(0)} ms after the restart`);
  });
});

describe('startNatsSupercluster (3 clusters, one of 2 routed servers)', () => {
  it('routes within a cluster and gateways between all', async () => {
    const t0 = performance.now();
    await using sc = await startNatsSupercluster({
      clusters: [{ name: 'a', size: 2 }, { name: 'b' }, { name: 'c' }],
    });
    console.log(`NATS supercluster (2+1+1) ready in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(sc.servers).toHaveLength(4);
    const routez = await natsMonitor<{ num_routes: number }>(sc.clusters.a![0]!.monitorPort, 'routez');
    expect(routez.num_routes).toBeGreaterThanOrEqual(1);
  });
});
