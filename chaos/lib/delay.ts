// Added latency on a loopback TCP link without `tc netem` (absent on this kernel): a userspace proxy
// that forwards every chunk after a fixed delay (in order), and an iptables REDIRECT (nat OUTPUT) that
// sends new connections to the target port through it. The proxy's own upstream connections leave
// from a reserved source-port range the rule does not match, so they reach the real target. Each rule
// carries a comment naming the run; `stop()` deletes exactly the rules it inserted and closes the proxy.
import { execFileSync } from 'node:child_process';
import net from 'node:net';

/** Source ports of the proxies' upstream connections (excluded from the REDIRECT). */
const SOURCE_PORTS: readonly [number, number] = [10_500, 10_599];
let nextSourcePort = SOURCE_PORTS[0];

export class DelayProxy {
  readonly #server = net.createServer((down) => this.#accept(down));
  readonly #sockets = new Set<net.Socket>();
  readonly #rules: string[][] = [];
  readonly #tag = `meridian-chaos-delay-${process.pid}-${Date.now().toString(36)}`;
  /** Connections relayed, and bytes each way (the proxy's own observation that the link went through it). */
  connections = 0;
  bytesToTarget = 0;
  bytesFromTarget = 0;
  port = 0;

  /** `delayMs` is added to each direction of every connection to `targetPort`. */
  constructor(
    readonly targetPort: number,
    readonly delayMs: number,
  ) {}

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.#server.address() as net.AddressInfo).port;
    const rule = [
      'OUTPUT',
      ...['-o', 'lo', '-p', 'tcp', '-d', '127.0.0.1', '--dport', String(this.targetPort)],
      ...['!', '--sport', `${SOURCE_PORTS[0]}:${SOURCE_PORTS[1]}`],
      ...['-m', 'comment', '--comment', this.#tag],
      ...['-j', 'REDIRECT', '--to-ports', String(this.port)],
    ];
    execFileSync('iptables', ['-t', 'nat', '-I', ...rule]);
    this.#rules.push(rule);
  }

  #accept(down: net.Socket): void {
    this.connections++;
    const up = this.#connectUpstream();
    this.#sockets.add(down).add(up);
    const pipe = (from: net.Socket, to: net.Socket, count: (n: number) => void) => {
      from.on('data', (chunk) => {
        count(chunk.length);
        setTimeout(() => {
          if (!to.destroyed) to.write(chunk);
        }, this.delayMs);
      });
      from.on('end', () => setTimeout(() => to.end(), this.delayMs));
      from.on('close', () => setTimeout(() => to.destroy(), this.delayMs));
      from.on('error', () => to.destroy());
    };
    pipe(down, up, (n) => {
      this.bytesToTarget += n;
    });
    pipe(up, down, (n) => {
      this.bytesFromTarget += n;
    });
    down.on('close', () => this.#sockets.delete(down));
    up.on('close', () => this.#sockets.delete(up));
  }

  #connectUpstream(): net.Socket {
    const localPort = nextSourcePort;
    nextSourcePort = nextSourcePort >= SOURCE_PORTS[1] ? SOURCE_PORTS[0] : nextSourcePort + 1;
    return net.connect({ host: '127.0.0.1', port: this.targetPort, localAddress: '127.0.0.1', localPort });
  }

  /** Deletes the rule (new connections go straight to the target again) and closes every relayed connection. */
  stop(): void {
    while (this.#rules.length > 0) {
      const rule = this.#rules.pop()!;
      try {
        execFileSync('iptables', ['-t', 'nat', '-D', ...rule], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    for (const s of this.#sockets) s.destroy();
    this.#server.close();
  }
}

/**
 * Ends the established TCP connections to `port` on loopback (`ss -K`), so they are made again (through
 * a REDIRECT inserted meanwhile). Returns false when the kernel cannot (no sock_destroy).
 */
export function killConnections(port: number): boolean {
  try {
    execFileSync('ss', ['-K', 'dst', '127.0.0.1', 'dport', '=', `:${port}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
