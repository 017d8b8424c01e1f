import net from 'node:net';
import { type TcpProxy, tcpProxy } from '@meridian/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** A line-oriented client: send a line, wait (bounded) for the echoed line. */
class LineClient {
  readonly sock: net.Socket;
  #buf = '';
  #waiters: ((line: string) => void)[] = [];
  closed: Promise<Error | undefined>;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.#buf += d;
      for (let i = this.#buf.indexOf('\n'); i >= 0; i = this.#buf.indexOf('\n')) {
        const line = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 1);
        this.#waiters.shift()?.(line);
      }
    });
    this.closed = new Promise((resolve) => {
      let error: Error | undefined;
      sock.on('error', (e) => {
        error = e;
      });
      sock.on('close', () => resolve(error));
    });
  }

  static connect(port: number): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port }, () => resolve(new LineClient(sock)));
      sock.once('error', reject);
    });
  }

  /** Sends `line`; resolves with the echo and the round-trip time, or undefined after `timeoutMs`. */
  roundTrip(line: string, timeoutMs = 2_000): Promise<{ echo: string; ms: number } | undefined> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== onLine);
        resolve(undefined);
      }, timeoutMs);
      const onLine = (echo: string) => {
        clearTimeout(timer);
        resolve({ echo, ms: performance.now() - t0 });
      };
      this.#waiters.push(onLine);
      this.sock.write(`${line}\n`);
    });
  }
}

describe('tcpProxy in front of a real TCP echo server', () => {
  let echo: net.Server;
  let echoPort: number;
  let proxy: TcpProxy;

  beforeAll(async () => {
    echo = net.createServer((s) => {
      s.on('error', () => {}); // the proxy's cut() resets the upstream side too
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    proxy = await tcpProxy({ target: { host: '127.0.0.1', port: echoPort } });
  });
  afterAll(async () => {
    await proxy?.close();
    await new Promise((r) => echo?.close(r));
  });

  it('passes bytes through', async () => {
    expect(proxy.port).toBeGreaterThan(20000);
    expect(proxy.address).toBe(`127.0.0.1:${proxy.port}`);
    const c = await LineClient.connect(proxy.port);
    expect((await c.roundTrip('hello'))?.echo).toBe('hello');
    expect(proxy.connections).toBe(1);
    c.sock.destroy();
  });

  it('setDelay adds latency in each direction and keeps order', async () => {
    const c = await LineClient.connect(proxy.port);
    const fast = await c.roundTrip('a');
    proxy.setDelay(150);
    const slowP = c.roundTrip('b');
    const nextP = c.roundTrip('c');
    const [slow, next] = await Promise.all([slowP, nextP]);
    console.log(
      `echo round trip: ${fast?.ms.toFixed(1)} ms direct, ${slow?.ms.toFixed(1)} ms with 150 ms delay`,
    );
    expect(slow?.echo).toBe('b');
    expect(next?.echo).toBe('c');
    // Two one-way delays of 150 ms: timers never fire early.
    expect(slow!.ms).toBeGreaterThanOrEqual(280);
    proxy.setDelay(0);
    expect((await c.roundTrip('d'))?.echo).toBe('d');
    expect(() => proxy.setDelay(-1)).toThrow(
      new RangeError('tcpProxy.setDelay: delay must be >= 0 ms, got -1'),
    );
    c.sock.destroy();
  });

  it('blackhole accepts connections but drops bytes until switched off', async () => {
    const c = await LineClient.connect(proxy.port);
    proxy.blackhole(true);
    expect(await c.roundTrip('lost', 300)).toBeUndefined();
    const c2 = await LineClient.connect(proxy.port); // still accepted
    expect(await c2.roundTrip('lost too', 300)).toBeUndefined();
    proxy.blackhole(false);
    expect((await c.roundTrip('back'))?.echo).toBe('back');
    c.sock.destroy();
    c2.sock.destroy();
  });

  it('cut resets open connections and refuses new ones; heal restores the same port', async () => {
    const c = await LineClient.connect(proxy.port);
    expect((await c.roundTrip('x'))?.echo).toBe('x');
    const port = proxy.port;
    await proxy.cut();
    const err = await c.closed;
    expect((err as NodeJS.ErrnoException | undefined)?.code).toBe('ECONNRESET');
    const refused = await LineClient.connect(port).catch((e: NodeJS.ErrnoException) => e);
    expect((refused as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    await proxy.heal();
    expect(proxy.port).toBe(port);
    const c2 = await LineClient.connect(port);
    expect((await c2.roundTrip('healed'))?.echo).toBe('healed');
    c2.sock.destroy();
  });
});
