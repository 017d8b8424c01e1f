import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * Lowest port the testkit hands out: above the default ports of the servers a developer may run beside
 * the tests (etcd 2379/2380, NATS 4222/6222/8222, meridiand and Envoy 150xx), so a test never takes one.
 */
export const PORT_RANGE_LOW = 20_000;

/**
 * Highest port handed out: just below the kernel's ephemeral range, so an outgoing connection's local
 * port never collides with a server we are about to start (falls back to 32767 when unreadable).
 */
export const PORT_RANGE_HIGH = ephemeralLow() - 1;

function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    if (Number.isInteger(n) && n > PORT_RANGE_LOW + 1000) return n;
  } catch {
    // not Linux, or /proc not mounted
  }
  return 32_768;
}

/** Ports handed out by this process; never handed out twice even if the server has not bound yet. */
const issued = new Set<number>();

/** True when `port` can be bound on `host` right now (listen, then close). */
export function canBind(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => {
      srv.close(() => resolve(true));
    });
  });
}

/**
 * A free loopback TCP port above 20000. Parallel vitest workers each pick at random in
 * [PORT_RANGE_LOW, PORT_RANGE_HIGH] and probe it with a bind, so two workers rarely meet; the rare
 * race between the probe and the server binding is handled by the start functions, which retry on
 * "address already in use".
 */
export async function freePort(): Promise<number> {
  const span = PORT_RANGE_HIGH - PORT_RANGE_LOW + 1;
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORT_RANGE_LOW + Math.floor(Math.random() * span);
    if (issued.has(port)) continue;
    issued.add(port);
    if (await canBind(port)) return port;
  }
  throw new Error(`freePort: no free loopback port found in ${PORT_RANGE_LOW}-${PORT_RANGE_HIGH}`);
}

/** `n` distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort());
  return out;
}
