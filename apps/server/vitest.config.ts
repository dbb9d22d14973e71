import { cloudmuxVitestConfig } from '@cloudmux/vitest-config';

// Server tests start real HTTP servers and databases; files run in parallel workers, tests within a file in order.
export default cloudmuxVitestConfig();
