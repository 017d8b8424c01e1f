// Golden files of the generated Envoy JSON for representative configs. Every resource must encode
// with Envoy's own protos; the output must not change unintentionally. Regenerate after an
// intended change with `UPDATE_GOLDEN=1 pnpm exec vitest run packages/translate/test/golden.test.ts`
// and review the diff against Envoy's documentation.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkResource, encodeResource, TypeUrl } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';
import { type ProxyResources, resourcesByTypeUrl, Translator, translateProxy } from '../src/index.js';
import { scenarios } from './fixtures.js';

const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), 'testdata', 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

function render(resources: ProxyResources): string {
  const out: Record<string, unknown> = {};
  for (const [typeUrl, list] of resourcesByTypeUrl(resources)) {
    out[typeUrl.slice(typeUrl.lastIndexOf('.') + 1)] = list.map((r) => r.resource);
  }
  return `${JSON.stringify(out, null, 2)}\n`;
}

describe('golden configs', () => {
  for (const scenario of scenarios()) {
    it(`${scenario.name}: every resource passes Envoy's schema and matches the golden file`, () => {
      const resources = translateProxy(scenario.config, scenario.registry, scenario.proxy);
      for (const [typeUrl, list] of resourcesByTypeUrl(resources)) {
        for (const r of list) {
          expect(checkResource(typeUrl, r.resource), `${r.name}`).toEqual([]);
          expect(r.resource.name ?? r.resource.cluster_name).toBe(r.name);
        }
      }
      const file = join(GOLDEN_DIR, `${scenario.name}.json`);
      const text = render(resources);
      if (update || !existsSync(file)) {
        if (!update) throw new Error(`missing golden file ${file}; run with UPDATE_GOLDEN=1`);
        writeFileSync(file, text);
      }
      expect(text).toBe(readFileSync(file, 'utf8'));
    });
  }

  it('is deterministic: same inputs give byte-identical encodings, cached or not', () => {
    const translator = new Translator();
    for (const s of scenarios()) {
      const a = translateProxy(s.config, s.registry, s.proxy);
      const b = translator.translate(s.config, s.registry, s.proxy);
      const c = translator.translate(s.config, s.registry, s.proxy);
      for (const r of [b, c]) {
        const left = resourcesByTypeUrl(a);
        for (const [typeUrl, list] of resourcesByTypeUrl(r)) {
          const other = left.get(typeUrl) ?? [];
          expect(list.map((x) => x.name)).toEqual(other.map((x) => x.name));
          list.forEach((x, i) => {
            expect(Buffer.from(encodeResource(typeUrl, x.resource))).toEqual(
              Buffer.from(encodeResource(typeUrl, (other[i] as { resource: typeof x.resource }).resource)),
            );
          });
        }
      }
    }
    expect(TypeUrl.Listener).toContain('Listener');
  });
});
