// The addresses a replica listens on and advertises: parsing `host:port` settings, checking that
// each can be bound before anything starts, naming the failure, and choosing the host proxies and
// agents reach the replica at when it binds 0.0.0.0 (`--advertise-address`, else the host's first
// non-loopback address).
import { createServer } from 'node:net';
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import { ServerConfigError } from './errors.js';
import { isUnspecifiedHost } from './membership.js';
import type { ServerOptions } from './options.js';

/** How a replica's advertised host was chosen ({@link chooseAdvertiseAddress}). */
export interface AdvertiseChoice {
  /** The host; '' when there is none (nothing served to proxies, or no non-loopback address). */
  readonly host: string;
  /** `setting`: --advertise-address; `bind`: the bind host; `interface`: the first non-loopback address. */
  readonly source: 'setting' | 'bind' | 'interface' | 'none';
  /** The listen setting whose host was looked at (`--ca-address` or `--xds-address`). */
  readonly bindSetting?: string;
}

/**
 * The host the replica advertises: `--advertise-address` when given; else the bind host of
 * `--ca-address` (or, without a CA port, `--xds-address`) unless it is unspecified (`0.0.0.0`, `::`);
 * else the first non-loopback address of `interfaces` (IPv4 first, then IPv6 other than link-local,
 * which would need a zone index); else none. Pure given `interfaces`.
 */
export function chooseAdvertiseAddress(
  o: Pick<ServerOptions, 'advertiseAddress' | 'caAddress' | 'xdsAddress'>,
  interfaces: NodeJS.Dict<readonly NetworkInterfaceInfo[]> = networkInterfaces(),
): AdvertiseChoice {
  if (o.advertiseAddress !== '') return { host: o.advertiseAddress, source: 'setting' };
  const bindSetting = !isOff(o.caAddress)
    ? '--ca-address'
    : !isOff(o.xdsAddress)
      ? '--xds-address'
      : undefined;
  if (!bindSetting) return { host: '', source: 'none' };
  const bind = bindSetting === '--ca-address' ? o.caAddress : o.xdsAddress;
  const { host } = splitAddress(bind, bindSetting);
  if (!isUnspecifiedHost(host)) return { host, source: 'bind', bindSetting };
  const all = Object.values(interfaces).flatMap((list) => list ?? []);
  const found =
    all.find((a) => !a.internal && a.family === 'IPv4') ??
    all.find((a) => !a.internal && a.family === 'IPv6' && !/^fe[89ab]/i.test(a.address));
  return found
    ? { host: found.address, source: 'interface', bindSetting }
    : { host: '', source: 'none', bindSetting };
}

/** {@link chooseAdvertiseAddress}, saying in the log what was chosen and why. */
export function resolveAdvertiseAddress(
  o: Pick<ServerOptions, 'advertiseAddress' | 'caAddress' | 'xdsAddress'>,
  log: Pick<Logger, 'info' | 'warn'>,
  interfaces?: NodeJS.Dict<readonly NetworkInterfaceInfo[]>,
): string {
  const c = chooseAdvertiseAddress(o, interfaces);
  const bind = c.bindSetting === '--ca-address' ? o.caAddress : o.xdsAddress;
  if (c.source === 'interface')
    log.info(
      { advertiseAddress: c.host, [c.bindSetting ?? 'bind']: bind },
      `advertising ${c.host} to proxies and agents: ${c.bindSetting} binds ${bind}, so this host's first non-loopback address is used (--advertise-address or MERIDIAN_ADVERTISE_ADDRESS to choose)`,
    );
  else if (c.source === 'none' && c.bindSetting)
    log.warn(
      { [c.bindSetting]: bind },
      `no address to advertise: ${c.bindSetting} binds ${bind} and this host has no non-loopback address; set --advertise-address, else proxies are given no rate-limit or access-log address for this replica`,
    );
  else if (c.host !== '')
    log.info({ advertiseAddress: c.host, source: c.source }, `advertising ${c.host} to proxies and agents`);
  return c.host;
}

/** Whether a listen address setting turns its listener off. */
export function isOff(address: string): boolean {
  return address === 'off' || address === '';
}

/** `host:port` -> parts (IPv6 in brackets allowed). */
export function splitAddress(address: string, setting: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  if (!m) throw new ServerConfigError(setting, `expected host:port, got "${address}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new ServerConfigError(setting, `port out of range in "${address}"`);
  return { host: m[1] ?? m[2] ?? '', port };
}

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available on this host',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
};

/** A listen failure as a settings error naming `setting`: one line, no stack. */
export function listenFailure(setting: string, address: string, error: unknown): ServerConfigError {
  const code = (error as NodeJS.ErrnoException)?.code;
  const text = error instanceof Error ? error.message : String(error);
  const known = Object.keys(LISTEN_ERRORS).find((c) => c === code || text.includes(c));
  return new ServerConfigError(
    setting,
    `cannot listen on ${address}: ${known ? `${LISTEN_ERRORS[known]} (${known})` : text}`,
  );
}

/**
 * Checks that every listen address can be bound (free port, local address, resolvable host) and
 * that no two settings name the same one, before anything else starts: a taken port is a settings
 * error naming its setting, not a failure half-way through start-up.
 */
export async function checkListenAddresses(
  addresses: readonly { setting: string; host: string; port: number }[],
): Promise<void> {
  const seen = new Map<string, string>();
  for (const a of addresses) {
    const id = `${a.host}:${a.port}`;
    const other = seen.get(id);
    if (a.port !== 0 && other) throw new ServerConfigError(a.setting, `${id} is also ${other}`);
    seen.set(id, a.setting);
    await new Promise<void>((resolve, reject) => {
      const server = createServer();
      server.once('error', (error) => reject(listenFailure(a.setting, id, error)));
      server.listen({ port: a.port, host: a.host, exclusive: true }, () => server.close(() => resolve()));
    });
  }
}
