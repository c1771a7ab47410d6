import { defineConfig } from 'vitest/config';

const shared = { pool: 'forks' as const, maxWorkers: 2, testTimeout: 90_000, hookTimeout: 180_000 };

/**
 * Two projects, one `npm test`: `*.unit.test.ts` are pure (no servers, no global setup), everything else runs against
 * the Temporal dev server and the Postgres database that test/support/global-setup.ts provides.
 */
export default defineConfig({
  test: {
    projects: [
      { test: { ...shared, name: 'unit', include: ['test/**/*.unit.test.ts'] } },
      {
        test: {
          ...shared,
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.unit.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
    ],
  },
});
