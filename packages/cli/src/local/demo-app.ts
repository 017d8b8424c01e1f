#!/usr/bin/env node
// The demo application of `meridian up`, one program with two roles:
//   demo-app backend --cluster east --v1 PORT --v2 PORT --state-dir DIR
//     two versions of the gRPC service echo (plain grpc-js servers on loopback), answering each call
//     with "<cluster>/<version>"; each version is registered with Meridian by its own meridian-agent.
//   demo-app client --cluster east --target HOST:PORT --rps N --out FILE --state-dir DIR
//     a proxyless gRPC client (@grpc/grpc-js-xds, bootstrap in GRPC_XDS_BOOTSTRAP pointing at its
//     meridian-agent) calling xds:///HOST:PORT at N requests per second; every half second it writes
//     the last minute of calls (time, serving cluster or failure) to FILE for `meridian status` and
//     `meridian demo failover`.
import { renameSync, writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** The method every demo call uses. */
export const DEMO_METHOD = '/meridian.demo.Echo/Call';

/** One call of the client: when it ended (ms), which cluster answered ('' = failed), gRPC status. */
export type CallRecord = [at: number, cluster: string, code: number];

/** What the client writes to its traffic file. */
export interface TrafficFile {
  readonly cluster: string;
  readonly pid: number;
  readonly updatedAt: number;
  readonly total: { readonly ok: Record<string, number>; readonly failed: number };
  /** The last minute of calls, oldest first. */
  readonly recent: readonly CallRecord[];
  readonly lastError?: string;
}

const pass = (b: Buffer) => b;

function flags(argv: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    m.set(a.slice(2), argv[i + 1] ?? '');
    i++;
  }
  return m;
}

function need(f: Map<string, string>, name: string): string {
  const v = f.get(name);
  if (!v) {
    process.stderr.write(`demo-app: --${name} is required\n`);
    process.exit(2);
  }
  return v;
}

async function backend(f: Map<string, string>): Promise<void> {
  const cluster = need(f, 'cluster');
  const servers: grpc.Server[] = [];
  for (const version of ['v1', 'v2']) {
    const port = Number(need(f, version));
    const server = new grpc.Server();
    const answer = Buffer.from(`${cluster}/${version}`);
    server.addService(
      {
        Call: {
          path: DEMO_METHOD,
          requestStream: false,
          responseStream: false,
          requestSerialize: pass,
          requestDeserialize: pass,
          responseSerialize: pass,
          responseDeserialize: pass,
        },
      },
      { Call: (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, answer) },
    );
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    servers.push(server);
    process.stdout.write(`echo ${cluster}/${version} serving on 127.0.0.1:${port}\n`);
  }
  const stop = () => {
    for (const s of servers) s.forceShutdown();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function client(f: Map<string, string>): Promise<void> {
  const cluster = need(f, 'cluster');
  const target = need(f, 'target');
  const out = need(f, 'out');
  const rps = Number(f.get('rps') ?? '20');
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();
  const channel = new grpc.Client(`xds:///${target}`, grpc.credentials.createInsecure());
  const recent: CallRecord[] = [];
  const ok: Record<string, number> = {};
  let failed = 0;
  let inFlight = 0;
  let lastError: string | undefined;
  const call = () => {
    if (inFlight >= rps * 2) return; // bounded: a stuck channel does not pile up calls
    inFlight++;
    channel.makeUnaryRequest(
      DEMO_METHOD,
      pass,
      pass,
      Buffer.alloc(0),
      { deadline: Date.now() + 1000 },
      (err, value) => {
        inFlight--;
        const at = Date.now();
        if (err || !value) {
          failed++;
          lastError = `${err?.code ?? 'no answer'}: ${err?.details ?? ''}`;
          recent.push([at, '', err?.code ?? grpc.status.UNKNOWN]);
          return;
        }
        const from = value.toString().split('/')[0] ?? '?';
        ok[from] = (ok[from] ?? 0) + 1;
        recent.push([at, from, 0]);
      },
    );
  };
  const write = () => {
    const cutoff = Date.now() - 60_000;
    while (recent.length > 0 && recent[0]![0] < cutoff) recent.shift();
    const file: TrafficFile = {
      cluster,
      pid: process.pid,
      updatedAt: Date.now(),
      total: { ok, failed },
      recent,
      ...(lastError ? { lastError } : {}),
    };
    writeFileSync(`${out}.tmp`, JSON.stringify(file));
    renameSync(`${out}.tmp`, out);
  };
  const timers = [setInterval(call, Math.max(1, Math.round(1000 / rps))), setInterval(write, 500)];
  const stop = () => {
    for (const t of timers) clearInterval(t);
    write();
    channel.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'backend') await backend(flags(rest));
else if (role === 'client') await client(flags(rest));
else {
  process.stderr.write('usage: demo-app backend|client --cluster NAME ... --state-dir DIR\n');
  process.exit(2);
}
