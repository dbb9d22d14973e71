import { cloudmuxVitestConfig } from '@cloudmux/vitest-config';

// Files share one machine with real httpd processes and 50–256 MiB transfers: run them one at a time,
// and give a streamed 50 MiB round trip room on a loaded 2-core box (a limit, not a timing assertion).
export default cloudmuxVitestConfig({ test: { fileParallelism: false, testTimeout: 120_000 } });
