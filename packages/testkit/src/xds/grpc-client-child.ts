// The child of GrpcClientProcess (grpc-client-process.ts): plain Node with @grpc/grpc-js-xds, which
// reads its bootstrap once per process and loads xxhash-wasm with `require` (in a vitest worker, started
// with the `import` export condition, that gets the ES module namespace instead of the function). Driven over the fork IPC channel. Messages: {id, op: 'bootstrap' | 'call' | 'many' |
// 'ready' | 'serve' | 'loadStart' | 'loadStop' | 'close' | 'exit', ...}; every answer is {id, result} or {id, error}.
import * as grpc from '@grpc/grpc-js';

const DEFAULT_METHOD = '/meridian.test.Echo/Call';
const clients = new Map<string, grpc.Client>();
/** With `xdsCredentials`: channels and servers take their (m)TLS settings from xDS (gRFC A29). */
let security: { channel: () => grpc.ChannelCredentials; server: () => grpc.ServerCredentials } | undefined;

interface CallResult {
  backend?: string;
  code: number;
  message?: string;
  ms: number;
  at: number;
}

function clientFor(target: string): grpc.Client {
  let c = clients.get(target);
  if (!c) {
    c = new grpc.Client(`xds:///${target}`, security?.channel() ?? grpc.credentials.createInsecure());
    clients.set(target, c);
  }
  return c;
}

function call(
  target: string,
  headers: Record<string, string>,
  deadlineMs: number,
  method = DEFAULT_METHOD,
): Promise<CallResult> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  const start = performance.now();
  return new Promise((resolve) => {
    clientFor(target).makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      metadata,
      { deadline: Date.now() + deadlineMs },
      (err, value) => {
        const ms = performance.now() - start;
        const at = Date.now();
        if (err) resolve({ code: err.code ?? grpc.status.UNKNOWN, message: err.message, ms, at });
        else resolve({ backend: value?.toString(), code: grpc.status.OK, ms, at });
      },
    );
  });
}

async function many(
  target: string,
  n: number,
  headers: Record<string, string>,
  concurrency: number,
  deadlineMs: number,
  method?: string,
): Promise<CallResult[]> {
  const results: CallResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      results.push(await call(target, headers, deadlineMs, method));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return results;
}

async function ready(
  target: string,
  headers: Record<string, string>,
  timeoutMs: number,
  method?: string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await call(target, headers, 2000, method);
    if (r.code === grpc.status.OK) return;
    if (Date.now() > until)
      throw new Error(`no successful call to ${target} within ${timeoutMs} ms (last status ${r.code})`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

const servers: { shutdown(): void }[] = [];

/** Starts a grpc-js-xds XdsServer on `127.0.0.1:port` answering with `name`; resolves once serving. */
async function serve(port: number, name: string, timeoutMs: number): Promise<void> {
  const xds = await import('@grpc/grpc-js-xds');
  const server = new xds.XdsServer();
  server.addService(
    {
      Call: {
        path: DEFAULT_METHOD,
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    { Call: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(name)) },
  );
  servers.push({ shutdown: () => server.forceShutdown() });
  const address = `127.0.0.1:${port}`;
  // XdsServer calls back once the port serves, i.e. once it accepted the listener resource.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    new Promise<void>((resolve, reject) =>
      server.bindAsync(address, security?.server() ?? grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    ),
    new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${address} not serving within ${timeoutMs} ms`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Continuous load: `concurrency` workers calling back to back until loadStop. */
let load: { stop: boolean; results: CallResult[]; done: Promise<unknown> } | undefined;

type Message = {
  id: number;
  op: string;
  bootstrap?: string;
  xdsCredentials?: boolean;
  target?: string;
  headers?: Record<string, string>;
  n?: number;
  concurrency?: number;
  deadlineMs?: number;
  timeoutMs?: number;
  pauseMs?: number;
  method?: string;
  port?: number;
  name?: string;
};

process.on('message', async (m: Message) => {
  try {
    let result: unknown;
    const target = m.target ?? '';
    const headers = m.headers ?? {};
    if (m.op === 'bootstrap') {
      process.env.GRPC_XDS_BOOTSTRAP_CONFIG = m.bootstrap;
      const xds = await import('@grpc/grpc-js-xds');
      xds.register();
      if (m.xdsCredentials)
        security = {
          channel: () => new xds.XdsChannelCredentials(grpc.credentials.createInsecure()),
          server: () => new xds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()),
        };
    } else if (m.op === 'call') result = await call(target, headers, m.deadlineMs ?? 10_000, m.method);
    else if (m.op === 'many')
      result = await many(target, m.n ?? 1, headers, m.concurrency ?? 10, m.deadlineMs ?? 10_000, m.method);
    else if (m.op === 'ready') await ready(target, headers, m.timeoutMs ?? 20_000, m.method);
    else if (m.op === 'serve') await serve(m.port ?? 0, m.name ?? 'xds-server', m.timeoutMs ?? 20_000);
    else if (m.op === 'loadStart') {
      const state = { stop: false, results: [] as CallResult[], done: Promise.resolve() as Promise<unknown> };
      const worker = async () => {
        while (!state.stop) {
          state.results.push(await call(target, headers, m.deadlineMs ?? 2000, m.method));
          await new Promise((r) => setTimeout(r, m.pauseMs ?? 5));
        }
      };
      state.done = Promise.all(Array.from({ length: m.concurrency ?? 4 }, worker));
      load = state;
    } else if (m.op === 'loadStop') {
      const state = load;
      load = undefined;
      if (state) {
        state.stop = true;
        await state.done;
      }
      result = state?.results ?? [];
    } else if (m.op === 'close') {
      clients.get(target)?.close();
      clients.delete(target);
    } else if (m.op === 'exit') {
      for (const c of clients.values()) c.close();
      for (const srv of servers) srv.shutdown();
      process.send?.({ id: m.id, result: null });
      setTimeout(() => process.exit(0), 10);
      return;
    } else throw new Error(`unknown op ${m.op}`);
    process.send?.({ id: m.id, result: result ?? null });
  } catch (error) {
    process.send?.({ id: m.id, error: (error as Error).message });
  }
});
process.on('disconnect', () => process.exit(0));
