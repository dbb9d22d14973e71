import { cloudmuxVitestConfig } from '@cloudmux/vitest-config';

// --expose-gc: the memory test collects garbage before it takes its baseline.
export default cloudmuxVitestConfig({ test: { execArgv: ['--expose-gc'] } });
