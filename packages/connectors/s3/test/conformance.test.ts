import { runStorageConformance } from '@cloudmux/testkit';
import { describe, it } from 'vitest';
import { s3 } from '../src/index.js';
import { s3rverMissing, startS3rver } from './server.js';

const missing = s3rverMissing();
if (missing && process.env.CI) throw new Error(`s3rver is required under CI: ${missing}`);

if (missing) {
  describe('storage conformance: s3', () => {
    it.skip(`against s3rver (skipped: ${missing})`, () => {});
  });
} else {
  for (const basePrefix of ['', 'accounts/tenant-1']) {
    describe(basePrefix ? `s3rver, base prefix ${basePrefix}` : 's3rver, bucket root', () => {
      runStorageConformance({
        connector: s3,
        largeFileBytes: 50 * 1024 * 1024,
        setup: async () => {
          const server = await startS3rver();
          return {
            credentials: server.credentials(basePrefix ? { base_prefix: basePrefix } : {}),
            teardown: server.teardown,
          };
        },
      });
    });
  }
}
