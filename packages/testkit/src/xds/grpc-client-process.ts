// A proxyless gRPC client in its own plain-Node process: @grpc/grpc-js-xds reads its bootstrap once
// per process and loads xxhash-wasm with `require` (vitest's module runner breaks that), so tests fork
// grpc-client-child.ts and drive it over the IPC channel. Calls go to `/meridian.test.Echo/Call` on
// `xds:///<target>`; a backend answers with its name.
//
//   const c = await GrpcClientProcess.start(bootstrapJson);
//   countByBackend(await c.many('echo.default:7070', 100, { headers: { 'x-user': 'a' } }));
//   await c.stop();
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD_SCRIPT = fileURLToPath(
  new URL(
    import.meta.url.endsWith('.ts') ? './grpc-client-child.ts' : './grpc-client-child.js',
    import.meta.url,
  ),
);

/** One call's outcome: the answering backend's name, or the gRPC status code of the failure. */
export interface GrpcCallResult {
  readonly backend?: string;
  readonly code: number;
  /** The failure's message (absent on success). */
  readonly message?: string;
  /** Duration of the call (ms). */
  readonly ms: number;
  /** Completion time, ms since the Unix epoch (comparable with the test process's clock). */
  readonly at: number;
}

/** Options of one call. */
export interface GrpcCallOptions {
  /** Request metadata. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Per-call deadline (ms); default 10 000. */
  readonly deadlineMs?: number;
  /** The unary method's path; default `/meridian.test.Echo/Call`. */
  readonly method?: string;
}

/**
 * The bootstrap of a grpc-js-xds client in namespace `default`, locality r1/z1, node
 * `sidecar~127.0.0.1~<pod>.default~default.svc.cluster.local` (with `CLUSTER_ID` when `clusterId` is
 * given), reading xDS over plaintext from `xdsAddress` (host:port).
 */
export function plaintextXdsBootstrap(xdsAddress: string, pod: string, clusterId?: string): object {
  return {
    xds_servers: [
      {
        server_uri: xdsAddress,
        channel_creds: [{ type: 'insecure' }],
        server_features: ['xds_v3'],
      },
    ],
    node: {
      id: `sidecar~127.0.0.1~${pod}.default~default.svc.cluster.local`,
      metadata: { NAMESPACE: 'default', GENERATOR: 'grpc', ...(clusterId ? { CLUSTER_ID: clusterId } : {}) },
      locality: { region: 'r1', zone: 'z1' },
    },
  };
}

/** The grpc-js-xds client process (one bootstrap per process). */
export class GrpcClientProcess {
  readonly #child: ChildProcess;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor() {
    this.#child = fork(CHILD_SCRIPT, [], {
      execArgv: ['--conditions=@meridian/source', '--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.result);
    });
    this.#child.on('exit', (code) => {
      for (const p of this.#pending.values()) p.reject(new Error(`client process exited with ${code}`));
      this.#pending.clear();
    });
  }

  /**
   * Forks the process and registers grpc-js-xds with `bootstrap` (the bootstrap JSON, text or object).
   * `xdsCredentials`: channels and servers use grpc-js-xds's XdsChannelCredentials/XdsServerCredentials
   * (plaintext fallback), so the (m)TLS of clusters and listeners comes from xDS (certificate
   * providers of the bootstrap); default plaintext credentials.
   */
  static async start(
    bootstrap: string | object,
    options: { xdsCredentials?: boolean } = {},
  ): Promise<GrpcClientProcess> {
    const c = new GrpcClientProcess();
    try {
      await c.#send({
        op: 'bootstrap',
        bootstrap: typeof bootstrap === 'string' ? bootstrap : JSON.stringify(bootstrap),
        xdsCredentials: options.xdsCredentials === true,
      });
    } catch (error) {
      await c.stop();
      throw error;
    }
    return c;
  }

  #send(message: Record<string, unknown>): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#child.send({ id, ...message });
    });
  }

  /** One call to `xds:///<target>`. */
  call(target: string, options: GrpcCallOptions = {}): Promise<GrpcCallResult> {
    return this.#send({
      op: 'call',
      target,
      method: options.method,
      headers: options.headers ?? {},
      deadlineMs: options.deadlineMs ?? 10_000,
    }) as Promise<GrpcCallResult>;
  }

  /** `n` calls, `concurrency` (default 10) at a time. */
  many(
    target: string,
    n: number,
    options: GrpcCallOptions & { concurrency?: number } = {},
  ): Promise<GrpcCallResult[]> {
    return this.#send({
      op: 'many',
      target,
      method: options.method,
      n,
      headers: options.headers ?? {},
      concurrency: options.concurrency ?? 10,
      deadlineMs: options.deadlineMs ?? 10_000,
    }) as Promise<GrpcCallResult[]>;
  }

  /** Calls (2 s deadline, 100 ms apart) until one succeeds; rejects after `timeoutMs` (default 20 s). */
  ready(
    target: string,
    options: { headers?: Readonly<Record<string, string>>; timeoutMs?: number; method?: string } = {},
  ): Promise<void> {
    return this.#send({
      op: 'ready',
      target,
      method: options.method,
      headers: options.headers ?? {},
      timeoutMs: options.timeoutMs ?? 20_000,
    }) as Promise<void>;
  }

  /** Starts a grpc-js-xds XdsServer on 127.0.0.1:`port` answering with `name`; resolves once it serves. */
  serve(port: number, name: string, timeoutMs = 20_000): Promise<void> {
    return this.#send({ op: 'serve', port, name, timeoutMs }) as Promise<void>;
  }

  /** Starts continuous load: `concurrency` (default 4) callers back to back, `pauseMs` (default 5) apart. */
  loadStart(
    target: string,
    options: GrpcCallOptions & { concurrency?: number; pauseMs?: number } = {},
  ): Promise<void> {
    return this.#send({
      op: 'loadStart',
      target,
      method: options.method,
      headers: options.headers ?? {},
      concurrency: options.concurrency ?? 4,
      deadlineMs: options.deadlineMs ?? 2000,
      pauseMs: options.pauseMs ?? 5,
    }) as Promise<void>;
  }

  /** Stops the load; the results of every call it made. */
  loadStop(): Promise<GrpcCallResult[]> {
    return this.#send({ op: 'loadStop' }) as Promise<GrpcCallResult[]>;
  }

  /** Closes the channel to `xds:///<target>` (a later call opens a new one). */
  close(target: string): Promise<void> {
    return this.#send({ op: 'close', target }) as Promise<void>;
  }

  /** Ends the process (closing its channels and servers); kills it if it does not exit within 2 s. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#send({ op: 'exit' }).catch(() => undefined);
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}

/** Counts results by backend name (failures under `status:<code>`). */
export function countByBackend(results: readonly GrpcCallResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) {
    const key = r.backend ?? `status:${r.code}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}
