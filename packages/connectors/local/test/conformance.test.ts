import { makeTempDir, runStorageConformance } from '@cloudmux/testkit';
import { local } from '../src/index.js';

runStorageConformance({
  connector: local,
  largeFileBytes: 32 * 1024 * 1024,
  setup: async () => {
    const dir = await makeTempDir('cloudmux-local-');
    return { credentials: { root: dir.path }, teardown: dir.remove };
  },
});
