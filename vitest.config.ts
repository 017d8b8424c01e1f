import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the "@meridian/source" export
// condition, so tests never depend on a stale dist/ build.
export default defineConfig({
  resolve: { conditions: ['@meridian/source', 'import', 'node', 'default'] },
  ssr: { resolve: { conditions: ['@meridian/source', 'import', 'node', 'default'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'chaos/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
