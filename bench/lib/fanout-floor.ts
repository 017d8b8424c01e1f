/**
 * The xDS fan-out floor of the replicas and federation benchmarks: three bare grpc-js servers
 * (packages/server/test/fixtures/fanout-server.ts) that write the same bytes a replica would, with no
 * etcd, translation or push queue behind them.
 */
import { fileURLToPath } from 'node:url';
import { spawnTs } from '../../packages/server/test/harness.js';

const FANOUT = fileURLToPath(
  new URL('../../packages/server/test/fixtures/fanout-server.ts', import.meta.url),
);

/**
 * Starts the three fan-out floor servers for `rounds` rounds debounced like the replicas; each child
 * is added to `children` (the caller stops them) as soon as it is spawned. Resolves with their xDS
 * addresses once every one has printed `ready <port>`.
 */
export async function startFloorServers(
  children: ReturnType<typeof spawnTs>[],
  rounds: number,
  debounceMs: number,
): Promise<string[]> {
  const addresses: string[] = [];
  for (let s = 0; s < 3; s++) {
    const child = spawnTs(FANOUT, [String(rounds), String(debounceMs)], {}, { stdin: true });
    children.push(child);
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /ready (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`fan-out server exited with ${code}`)));
    });
    addresses.push(`127.0.0.1:${port}`);
  }
  return addresses;
}
