import { cloudmuxVitestConfig } from '@cloudmux/vitest-config';

export default cloudmuxVitestConfig({
  test: {
    // --expose-gc: the memory test collects garbage before each sample.
    execArgv: ['--expose-gc'],
    // One file at a time on the shared 2-core machines: the 50 MiB conformance case spends most of
    // its time generating testkit's SHA-256 counter-mode bytes, and the memory test measures RSS.
    fileParallelism: false,
    testTimeout: 120_000,
  },
});
