import net from 'node:net';
import { freePort } from './ports.js';

/**
 * A userspace TCP proxy in front of one target (an etcd member, a NATS server, an xDS server) that
 * injects network faults: latency, a blackhole (connections accepted, bytes dropped), and a cut
 * (every connection reset, new ones refused) until `heal()`.
 */
export interface TcpProxy extends AsyncDisposable {
  /** Always `127.0.0.1`. */
  readonly host: string;
  /** The port clients connect to (kept across cut/heal). */
  readonly port: number;
  /** `host:port` of the listener. */
  readonly address: string;
  /** Proxied connections currently open. */
  readonly connections: number;
  /** Extra one-way delay applied to every chunk in both directions (order is kept). */
  setDelay(ms: number): void;
  /** While on, connections are still accepted but every byte, in both directions, is dropped. */
  blackhole(on: boolean): void;
  /** Resets (RST) every open connection and stops listening, so new connections are refused. */
  cut(): Promise<void>;
  /** Undoes `cut()` and `blackhole(true)`: listens again on the same port. The delay is kept. */
  heal(): Promise<void>;
  /** Resets every connection and closes the listener for good. Idempotent. */
  close(): Promise<void>;
}

/** Options of `tcpProxy`. */
export interface TcpProxyOptions {
  target: { host: string; port: number };
  /** Initial one-way delay in ms (default 0). */
  delayMs?: number;
  /** Port to listen on (default: `freePort()`, on 127.0.0.1). */
  port?: number;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  timers: Set<NodeJS.Timeout>;
}

class TcpProxyImpl implements TcpProxy {
  readonly host = '127.0.0.1';
  #port = 0;
  #delayMs: number;
  #blackholed = false;
  #cut = false;
  #closed = false;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<Pair>();
  #server: net.Server | undefined;

  constructor(opts: TcpProxyOptions) {
    this.#target = opts.target;
    this.#delayMs = opts.delayMs ?? 0;
    this.#port = opts.port ?? 0;
  }

  get port(): number {
    return this.#port;
  }

  get address(): string {
    return `${this.host}:${this.#port}`;
  }

  get connections(): number {
    return this.#pairs.size;
  }

  async listen(): Promise<void> {
    const server = net.createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port: this.#port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }

  #accept(client: net.Socket): void {
    client.setNoDelay(true);
    const upstream = net.connect({ host: this.#target.host, port: this.#target.port });
    upstream.setNoDelay(true);
    const pair: Pair = { client, upstream, timers: new Set() };
    this.#pairs.add(pair);
    const drop = () => {
      if (!this.#pairs.delete(pair)) return;
      for (const t of pair.timers) clearTimeout(t);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    this.#forward(pair, client, upstream);
    this.#forward(pair, upstream, client);
  }

  /** Copies `from` to `to`, applying the blackhole and the delay; keeps chunk order. */
  #forward(pair: Pair, from: net.Socket, to: net.Socket): void {
    let lastDue = 0;
    const later = (fn: () => void) => {
      const due = Math.max(Date.now() + this.#delayMs, lastDue);
      lastDue = due;
      const t = setTimeout(() => {
        pair.timers.delete(t);
        fn();
      }, due - Date.now());
      pair.timers.add(t);
    };
    from.on('data', (chunk: Buffer) => {
      if (this.#blackholed) return;
      if (this.#delayMs <= 0 && pair.timers.size === 0) {
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
        return;
      }
      later(() => {
        if (!to.destroyed) to.write(chunk);
      });
    });
    from.on('end', () => {
      if (this.#delayMs <= 0 && pair.timers.size === 0) to.end();
      else later(() => to.end());
    });
  }

  setDelay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0)
      throw new RangeError(`tcpProxy.setDelay: delay must be >= 0 ms, got ${ms}`);
    this.#delayMs = ms;
  }

  blackhole(on: boolean): void {
    this.#blackholed = on;
  }

  #resetAll(): void {
    for (const pair of [...this.#pairs]) {
      this.#pairs.delete(pair);
      for (const t of pair.timers) clearTimeout(t);
      pair.client.resetAndDestroy();
      if (pair.upstream.connecting) pair.upstream.destroy();
      else pair.upstream.resetAndDestroy();
    }
  }

  async #unlisten(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async cut(): Promise<void> {
    if (this.#closed) return;
    this.#cut = true;
    this.#resetAll();
    await this.#unlisten();
  }

  async heal(): Promise<void> {
    if (this.#closed) throw new Error(`tcpProxy ${this.address} is closed`);
    this.#blackholed = false;
    if (this.#cut) {
      this.#cut = false;
      await this.listen();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#resetAll();
    await this.#unlisten();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a fault-injecting TCP proxy on 127.0.0.1 in front of `target`. Point a client at
 * `proxy.port` instead of the server's port, then `setDelay`, `blackhole`, `cut` and `heal`.
 */
export async function tcpProxy(opts: TcpProxyOptions): Promise<TcpProxy> {
  if (opts.port !== undefined) {
    const proxy = new TcpProxyImpl(opts);
    await proxy.listen();
    return proxy;
  }
  // A port below the ephemeral range, so no outgoing connection takes it between cut() and heal().
  for (let attempt = 1; ; attempt++) {
    const proxy = new TcpProxyImpl({ ...opts, port: await freePort() });
    try {
      await proxy.listen();
      return proxy;
    } catch (err) {
      if (attempt >= 5 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}
