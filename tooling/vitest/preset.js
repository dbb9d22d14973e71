// Shared vitest preset: tests run against TypeScript source through the `@cloudmux/source`
// export condition (no build in the test loop), and every package writes a JSON report that
// `.ci/run` sums into one `tests: N passed, N failed` line.
import { defineConfig, mergeConfig } from 'vitest/config';

export const SOURCE_CONDITION = '@cloudmux/source';

/** @param {import('vitest/config').UserConfig} [overrides] */
export function cloudmuxVitestConfig(overrides = {}) {
  return mergeConfig(
    defineConfig({
      resolve: { conditions: [SOURCE_CONDITION, 'node', 'default'] },
      ssr: { resolve: { conditions: [SOURCE_CONDITION, 'node', 'default'] } },
      test: {
        include: ['test/**/*.test.ts'],
        environment: 'node',
        // Real servers on a shared 2-core machine: slow is not broken. (No test asserts timing.)
        testTimeout: 60_000,
        hookTimeout: 120_000,
        reporters: ['default', ['json', { outputFile: 'test-report.json' }]],
      },
    }),
    overrides,
  );
}
