// Last-known-good xDS state on disk: what each local client last held (SotW: the last ACKed
// response per type; Delta: every resource it holds), one file per client and variant, written
// atomically with a SHA-256 checksum. A client that (re)starts while no replica is reachable is
// served this; a corrupt, truncated or foreign file is refused (logged) and never served.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DeltaResponseView, SotwResponseView } from './wire.js';

const FORMAT = 'meridian-agent-lkg/v1';

/** What is saved for one client. */
export interface SavedState {
  readonly proxyId: string;
  readonly variant: 'sotw' | 'delta';
  readonly savedAt: string;
  readonly sotw?: Record<string, SotwResponseView>;
  readonly delta?: Record<string, DeltaResponseView>;
}

interface FileBody {
  format: string;
  proxyId: string;
  variant: 'sotw' | 'delta';
  savedAt: string;
  sotw?: Record<string, { versionInfo: string; typeUrl: string; resources: string[] }>;
  delta?: Record<
    string,
    { typeUrl: string; resources: { name: string; version: string; encoded: string }[] }
  >;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

/** The on-disk cache of one agent. */
export class LastKnownGood {
  constructor(
    readonly dir: string,
    private readonly log: Logger,
    /** Largest state saved per client (default 64 MiB); a larger one is not saved (logged). */
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  #file(proxyId: string, variant: string): string {
    return join(
      this.dir,
      `${createHash('sha256').update(`${variant}\n${proxyId}`).digest('hex').slice(0, 32)}.json`,
    );
  }

  /** Saves `state` for `proxyId` (atomically: temp file, then rename). */
  save(proxyId: string, variant: 'sotw' | 'delta', state: Pick<SavedState, 'sotw' | 'delta'>): void {
    const body: FileBody = { format: FORMAT, proxyId, variant, savedAt: new Date().toISOString() };
    if (state.sotw)
      body.sotw = Object.fromEntries(
        Object.entries(state.sotw).map(([t, r]) => [
          t,
          { versionInfo: r.versionInfo, typeUrl: r.typeUrl, resources: r.resources.map(b64) },
        ]),
      );
    if (state.delta)
      body.delta = Object.fromEntries(
        Object.entries(state.delta).map(([t, r]) => [
          t,
          {
            typeUrl: r.typeUrl,
            resources: r.resources.map((x) => ({
              name: x.name,
              version: x.version,
              encoded: b64(x.encoded),
            })),
          },
        ]),
      );
    const payload = JSON.stringify(body);
    if (payload.length > this.maxBytes) {
      this.log.warn(
        { proxy: proxyId, bytes: payload.length, max: this.maxBytes },
        'last-known-good state too large; not saved',
      );
      return;
    }
    const sum = createHash('sha256').update(payload).digest('hex');
    const file = this.#file(proxyId, variant);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, `${sum}\n${payload}`, { mode: 0o600 });
      renameSync(tmp, file);
    } catch (error) {
      this.log.warn({ err: error, file }, 'could not save last-known-good state');
    }
  }

  /** The saved state of `proxyId`, or undefined (absent, corrupt or another client's: logged). */
  load(proxyId: string, variant: 'sotw' | 'delta'): SavedState | undefined {
    const file = this.#file(proxyId, variant);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    const nl = text.indexOf('\n');
    const sum = text.slice(0, nl);
    const payload = text.slice(nl + 1);
    if (nl < 0 || createHash('sha256').update(payload).digest('hex') !== sum) {
      this.log.error({ file }, 'last-known-good file fails its checksum: refused');
      return undefined;
    }
    let body: FileBody;
    try {
      body = JSON.parse(payload) as FileBody;
    } catch {
      this.log.error({ file }, 'last-known-good file is not JSON: refused');
      return undefined;
    }
    if (body.format !== FORMAT || body.proxyId !== proxyId || body.variant !== variant) {
      this.log.error(
        { file, format: body.format, proxy: body.proxyId },
        'last-known-good file is for another client or format: refused',
      );
      return undefined;
    }
    return {
      proxyId,
      variant,
      savedAt: body.savedAt,
      ...(body.sotw
        ? {
            sotw: Object.fromEntries(
              Object.entries(body.sotw).map(([t, r]) => [
                t,
                {
                  versionInfo: r.versionInfo,
                  typeUrl: r.typeUrl,
                  nonce: '',
                  resources: r.resources.map(unb64),
                },
              ]),
            ),
          }
        : {}),
      ...(body.delta
        ? {
            delta: Object.fromEntries(
              Object.entries(body.delta).map(([t, r]) => [
                t,
                {
                  systemVersionInfo: '',
                  typeUrl: r.typeUrl,
                  nonce: '',
                  removed: [],
                  resources: r.resources.map((x) => ({
                    name: x.name,
                    version: x.version,
                    encoded: unb64(x.encoded),
                  })),
                },
              ]),
            ),
          }
        : {}),
    };
  }
}
