// The `mesh` benchmark's fan-out floor (forked by bench/mesh.ts, driven over IPC): a bare grpc-js
// server with the replica's ADS service definition and channel options that, on `write`, writes
// the given DiscoveryResponse bytes (captured from a real sidecar of the same run) to every open
// stream: no etcd, no watch, no translation, no encoding.
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { adsServiceDefinition, XdsServer, xdsLogger } from '@meridian/xds';

const epochNow = (): number => performance.timeOrigin + performance.now();
const streams = new Set<ServerDuplexStream<Buffer, Buffer>>();
const options = new XdsServer({ logger: xdsLogger({ level: 'warn' }) }).grpcServerOptions();
const server = new Server(options);
server.addService(adsServiceDefinition, {
  StreamAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => {
    streams.add(call);
    call.on('data', () => {});
    call.on('error', () => streams.delete(call));
    call.on('close', () => streams.delete(call));
  },
  DeltaAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => call.end(),
});

type Command = { id: number } & ({ cmd: 'start' } | { cmd: 'write'; buffers: string[] } | { cmd: 'stop' });

process.on('message', async (m: Command) => {
  const reply = (r: unknown) => process.send?.({ id: m.id, reply: r });
  if (m.cmd === 'start') {
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    reply({ port });
  } else if (m.cmd === 'write') {
    const buffers = m.buffers.map((b) => Buffer.from(b, 'base64'));
    const at = epochNow();
    for (const call of streams) for (const b of buffers) call.write(b);
    reply({ at, streams: streams.size, bytes: buffers.reduce((n, b) => n + b.length, 0) });
  } else if (m.cmd === 'stop') {
    server.forceShutdown();
    reply({ ok: true });
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0));
