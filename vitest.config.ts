import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the "@meridian/source" export
// condition, so tests never depend on a stale dist/ build. Vitest also hands these conditions to its
// worker processes as Node `--conditions` flags, so the list must not name `import`: that would make
// `require()` in dependencies load ESM builds. Vite applies `import`/`require` by import kind itself.
const conditions = ['@meridian/source', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'chaos/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
