import { cloudmuxVitestConfig } from '@cloudmux/vitest-config';

export default cloudmuxVitestConfig();
