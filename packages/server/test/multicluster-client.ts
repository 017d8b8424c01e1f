// The proxyless gRPC client process of the multi-cluster tests: plain Node with @grpc/grpc-js-xds
// (it reads its bootstrap once per process, and loads xxhash-wasm with `require`, which vitest's
// module runner breaks). Driven over the fork IPC channel by multicluster-harness.ts. Messages:
// {id, op: 'bootstrap' | 'call' | 'many' | 'loadStart' | 'loadStop' | 'exit', ...}; every answer is
// {id, result} or {id, error}.
import * as grpc from '@grpc/grpc-js';

const METHOD = '/meridian.test.Echo/Call';
const clients = new Map<string, grpc.Client>();

interface CallResult {
  backend?: string;
  code: number;
  /** Completion time (ms since the Unix epoch, so the test process can compare with its clock). */
  at: number;
}

function clientFor(target: string): grpc.Client {
  let c = clients.get(target);
  if (!c) {
    c = new grpc.Client(`xds:///${target}`, grpc.credentials.createInsecure());
    clients.set(target, c);
  }
  return c;
}

function call(target: string, deadlineMs: number): Promise<CallResult> {
  return new Promise((resolve) => {
    clientFor(target).makeUnaryRequest(
      METHOD,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, value) => {
        if (err) resolve({ code: err.code ?? grpc.status.UNKNOWN, at: Date.now() });
        else resolve({ backend: value?.toString(), code: grpc.status.OK, at: Date.now() });
      },
    );
  });
}

async function many(
  target: string,
  n: number,
  concurrency: number,
  deadlineMs: number,
): Promise<CallResult[]> {
  const results: CallResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      results.push(await call(target, deadlineMs));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return results;
}

/** Continuous load: `concurrency` workers calling back to back until loadStop. */
let load: { stop: boolean; results: CallResult[]; done: Promise<unknown> } | undefined;

type Message = {
  id: number;
  op: string;
  bootstrap?: string;
  target?: string;
  n?: number;
  concurrency?: number;
  deadlineMs?: number;
  pauseMs?: number;
};

process.on('message', async (m: Message) => {
  try {
    let result: unknown;
    const target = m.target ?? '';
    if (m.op === 'bootstrap') {
      process.env.GRPC_XDS_BOOTSTRAP_CONFIG = m.bootstrap;
      const xds = await import('@grpc/grpc-js-xds');
      xds.register();
    } else if (m.op === 'call') result = await call(target, m.deadlineMs ?? 10_000);
    else if (m.op === 'many')
      result = await many(target, m.n ?? 1, m.concurrency ?? 10, m.deadlineMs ?? 10_000);
    else if (m.op === 'loadStart') {
      const state = { stop: false, results: [] as CallResult[], done: Promise.resolve() as Promise<unknown> };
      const worker = async () => {
        while (!state.stop) {
          state.results.push(await call(target, m.deadlineMs ?? 2000));
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
    } else if (m.op === 'exit') {
      for (const c of clients.values()) c.close();
      process.send?.({ id: m.id, result: null });
      setTimeout(() => process.exit(0), 10);
      return;
    }
    process.send?.({ id: m.id, result: result ?? null });
  } catch (error) {
    process.send?.({ id: m.id, error: (error as Error).message });
  }
});
process.on('disconnect', () => process.exit(0));
