// The address a replica advertises to proxies and agents (issue 16: global rate limits and access
// logs with replicas bound to 0.0.0.0, as the Kubernetes manifests bind them): the setting and its
// errors, the default (bind host, else the first non-loopback address, logged), the serving
// certificate's names, and the addresses membership records turn into.
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ServerConfigError } from '../src/errors.js';
import { chooseAdvertiseAddress, resolveAdvertiseAddress } from '../src/listen-address.js';
import { advertisedAddress } from '../src/membership.js';
import { servingCertificateNames } from '../src/mtls.js';
import { resolveOptions } from '../src/options.js';
import { rateLimitServiceAddresses } from '../src/ratelimit-service.js';

const nic = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
  ({
    address,
    family,
    internal,
    netmask: '',
    mac: '00:00:00:00:00:00',
    cidr: null,
    ...(family === 'IPv6' ? { scopeid: 0 } : {}),
  }) as NetworkInterfaceInfo;

const HOST_NICS = {
  lo: [nic('127.0.0.1', 'IPv4', true), nic('::1', 'IPv6', true)],
  eth0: [nic('fe80::1', 'IPv6'), nic('fd00::2', 'IPv6'), nic('10.1.2.3', 'IPv4')],
  eth1: [nic('10.9.9.9', 'IPv4')],
};

describe('--advertise-address and --serving-names', () => {
  it('are read from flag, environment and file, hosts stored without brackets', () => {
    expect(resolveOptions(['--advertise-address', '10.1.2.3'], {}).advertiseAddress).toBe('10.1.2.3');
    expect(resolveOptions([], { MERIDIAN_ADVERTISE_ADDRESS: 'meridiand-0.example' }).advertiseAddress).toBe(
      'meridiand-0.example',
    );
    expect(resolveOptions(['--advertise-address=[fd00::7]'], {}).advertiseAddress).toBe('fd00::7');
    expect(resolveOptions(['--advertise-address', 'fd00::7'], {}).advertiseAddress).toBe('fd00::7');
    expect(resolveOptions([], {}).advertiseAddress).toBe('');
    expect(resolveOptions([], {}).servingNames).toEqual([]);
    expect(
      resolveOptions([], { MERIDIAN_SERVING_NAMES: 'meridiand.meridian-system.svc, [::1],10.0.0.1' })
        .servingNames,
    ).toEqual(['meridiand.meridian-system.svc', '::1', '10.0.0.1']);
    expect(
      resolveOptions(['--serving-names', 'a.example', '--serving-names', 'b.example'], {}).servingNames,
    ).toEqual(['a.example', 'b.example']);
  });

  it('refuses what no one can connect to or a certificate cannot name, naming the setting and why', () => {
    const bad = (value: string, why: string, env = false) =>
      expect(() =>
        env
          ? resolveOptions([], { MERIDIAN_ADVERTISE_ADDRESS: value })
          : resolveOptions(['--advertise-address', value], {}),
      ).toThrow(new ServerConfigError(env ? 'MERIDIAN_ADVERTISE_ADDRESS' : '--advertise-address', why));
    bad(
      '0.0.0.0',
      '"0.0.0.0" is the unspecified address, which no one can connect to: give this replica\'s own address (e.g. the pod IP)',
    );
    bad(
      '::',
      '"::" is the unspecified address, which no one can connect to: give this replica\'s own address (e.g. the pod IP)',
      true,
    );
    bad(
      '10.1.2.3:15012',
      'expected a host without a port (the ports are those of --ca-address and --xds-address), got "10.1.2.3:15012"',
    );
    bad(
      '[fd00::7]:15012',
      'expected a host without a port (the ports are those of --ca-address and --xds-address), got "[fd00::7]:15012"',
    );
    bad(
      'https://meridiand.example',
      'expected a host without a scheme (an IP address or a DNS name), got "https://meridiand.example"',
    );
    bad(
      'fe80::1%eth0',
      '"fe80::1%eth0" has an IPv6 zone index, which a certificate cannot name: give a routable address',
    );
    bad('*.meridian.svc', 'a wildcard cannot be connected to, got "*.meridian.svc"');
    bad(
      'meridian_0.svc',
      'expected an IP address or a DNS name (letters, digits, "-" and "." only), got "meridian_0.svc"',
    );
    bad(
      'meridiand.svc.',
      'expected an IP address or a DNS name (letters, digits, "-" and "." only), got "meridiand.svc."',
    );
    bad('[]', 'expected an IP address or a DNS name, got ""');
    expect(() => resolveOptions(['--serving-names', 'ok.example,0.0.0.0'], {})).toThrow(
      new ServerConfigError(
        '--serving-names',
        '"0.0.0.0" is the unspecified address, which no one can connect to: give this replica\'s own address (e.g. the pod IP)',
      ),
    );
    expect(() => resolveOptions(['--serving-names', ' , '], {})).toThrow(
      new ServerConfigError('--serving-names', 'needs at least one value'),
    );
  });

  it('defaults to the bind host, else the first non-loopback address (IPv4 first), and says so', () => {
    const o = (caAddress: string, xdsAddress = 'off', advertiseAddress = '') => ({
      caAddress,
      xdsAddress,
      advertiseAddress,
    });
    expect(chooseAdvertiseAddress(o('0.0.0.0:15012', 'off', 'pod.example'), HOST_NICS)).toEqual({
      host: 'pod.example',
      source: 'setting',
    });
    expect(chooseAdvertiseAddress(o('10.0.0.5:15012', '0.0.0.0:15010'), HOST_NICS)).toEqual({
      host: '10.0.0.5',
      source: 'bind',
      bindSetting: '--ca-address',
    });
    expect(chooseAdvertiseAddress(o('', '127.0.0.1:15010'), HOST_NICS)).toEqual({
      host: '127.0.0.1',
      source: 'bind',
      bindSetting: '--xds-address',
    });
    expect(chooseAdvertiseAddress(o('0.0.0.0:15012'), HOST_NICS)).toEqual({
      host: '10.1.2.3',
      source: 'interface',
      bindSetting: '--ca-address',
    });
    expect(
      chooseAdvertiseAddress(o('[::]:15012'), { lo: HOST_NICS.lo, eth0: HOST_NICS.eth0.slice(0, 2) }),
    ).toEqual({ host: 'fd00::2', source: 'interface', bindSetting: '--ca-address' });
    expect(chooseAdvertiseAddress(o('0.0.0.0:15012'), { lo: HOST_NICS.lo })).toEqual({
      host: '',
      source: 'none',
      bindSetting: '--ca-address',
    });
    expect(chooseAdvertiseAddress(o('off', 'off'), HOST_NICS)).toEqual({ host: '', source: 'none' });

    const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
    const log = {
      info: (fields: Record<string, unknown>, msg: string) => lines.push({ level: 'info', fields, msg }),
      warn: (fields: Record<string, unknown>, msg: string) => lines.push({ level: 'warn', fields, msg }),
    } as unknown as Parameters<typeof resolveAdvertiseAddress>[1];
    expect(resolveAdvertiseAddress(o('0.0.0.0:15012'), log, HOST_NICS)).toBe('10.1.2.3');
    expect(lines.pop()).toEqual({
      level: 'info',
      fields: { advertiseAddress: '10.1.2.3', '--ca-address': '0.0.0.0:15012' },
      msg: "advertising 10.1.2.3 to proxies and agents: --ca-address binds 0.0.0.0:15012, so this host's first non-loopback address is used (--advertise-address or MERIDIAN_ADVERTISE_ADDRESS to choose)",
    });
    expect(resolveAdvertiseAddress(o('0.0.0.0:15012'), log, { lo: HOST_NICS.lo })).toBe('');
    expect(lines.pop()).toMatchObject({
      level: 'warn',
      msg: 'no address to advertise: --ca-address binds 0.0.0.0:15012 and this host has no non-loopback address; set --advertise-address, else proxies are given no rate-limit or access-log address for this replica',
    });
  });

  it('the serving certificate names localhost, a specific bind host, the advertised host and the extra names', () => {
    expect(servingCertificateNames('0.0.0.0', '10.1.2.3', ['meridiand.meridian-system.svc'])).toEqual([
      'localhost',
      '10.1.2.3',
      'meridiand.meridian-system.svc',
    ]);
    expect(servingCertificateNames('::', 'fd00::2')).toEqual(['localhost', 'fd00::2']);
    expect(servingCertificateNames('127.0.0.1', '127.0.0.1', ['localhost'])).toEqual([
      'localhost',
      '127.0.0.1',
    ]);
    expect(servingCertificateNames('127.0.0.1', undefined)).toEqual(['localhost', '127.0.0.1']);
  });
});

describe('membership records with an advertised host', () => {
  it("stand for the unspecified bind host of the replica's addresses, not a specific one", () => {
    expect(advertisedAddress('0.0.0.0:15012', '10.1.2.3')).toBe('10.1.2.3:15012');
    expect(advertisedAddress('[::]:15012', 'fd00::2')).toBe('[fd00::2]:15012');
    expect(advertisedAddress('[::]:15012', 'meridiand-0.example')).toBe('meridiand-0.example:15012');
    expect(advertisedAddress('127.0.0.1:15010', '10.1.2.3')).toBe('127.0.0.1:15010');
    expect(advertisedAddress('[::1]:15010', '10.1.2.3')).toBe('[::1]:15010');
    expect(advertisedAddress('0.0.0.0:15012', undefined)).toBe('0.0.0.0:15012');
    expect(advertisedAddress('', '10.1.2.3')).toBe('');
    expect(advertisedAddress(undefined, '10.1.2.3')).toBe('');
  });

  it('give the rate-limit and access-log clusters the advertised hosts; a 0.0.0.0 record without one is left out', () => {
    const replicas = [
      { id: 'b', xdsAddress: '', caAddress: '0.0.0.0:15012', advertiseAddress: 'meridiand-b.example' },
      { id: 'a', xdsAddress: '0.0.0.0:15010', caAddress: '0.0.0.0:15012', advertiseAddress: '10.1.2.3' },
      { id: 'c', xdsAddress: '0.0.0.0:15010', caAddress: '0.0.0.0:15012' },
      { id: 'd', xdsAddress: '127.0.0.1:15010', caAddress: '10.0.0.4:15012', advertiseAddress: '10.1.2.4' },
    ];
    expect(rateLimitServiceAddresses('', replicas, 'mtls')).toEqual([
      { host: '10.1.2.3', port: 15012, mtls: true },
      { host: 'meridiand-b.example', port: 15012, mtls: true },
      { host: '10.0.0.4', port: 15012, mtls: true },
    ]);
    expect(rateLimitServiceAddresses('', replicas, 'plaintext')).toEqual([
      { host: '10.1.2.3', port: 15010 },
      { host: '127.0.0.1', port: 15010 },
    ]);
  });
});
