import { cloudmuxVitestConfig } from '@cloudmux/vitest-config';

// Whole-workspace compiles are slow on two cores; the files run one after the other.
export default cloudmuxVitestConfig({ test: { testTimeout: 600_000, fileParallelism: false } });
