// meridiand's log lines (issue 17, item 6): JSON with mesh, cluster and replica on every line, proxy
// and revision where the line is about them, credentials redacted; pino-pretty when asked (a TTY).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { spawnTs } from './harness.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/log-lines.ts', import.meta.url));

async function linesOf(mode: string): Promise<string> {
  const child = spawnTs(SCRIPT, [mode]);
  let text = '';
  child.stdout?.on('data', (c: Buffer) => {
    text += c.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code).toBe(0);
  return text;
}

describe('meridiand logger', () => {
  it('writes JSON lines with mesh, cluster, replica, proxy and revision', async () => {
    const lines = (await linesOf('json'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      level: 40,
      name: 'meridiand',
      mesh: 'mesh1',
      cluster: 'east',
      replica: 'east-1',
      part: 'xds',
      proxy: 'sidecar~10.0.0.1~a.ns~ns.svc.cluster.local',
      revision: '42',
      msg: 'NACK: bad',
    });
    expect(lines[1]).toMatchObject({ cluster: 'east', authorization: '[redacted]', msg: 'request' });
  });

  it('prints through pino-pretty for a person at a terminal', async () => {
    const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
    const text = (await linesOf('pretty')).replace(ansi, '');
    expect(text).not.toContain('{"level"');
    expect(text).toMatch(/WARN.*\(meridiand\): NACK: bad/);
    expect(text).toContain('cluster: "east"');
    expect(text).toContain('revision: "42"');
    expect(text).toContain('authorization: "[redacted]"');
  });
});
