import { runStorageConformance } from '@cloudmux/testkit';
import { describe, it } from 'vitest';
import { webdav } from '../src/index.js';
import { apacheMissing, startApacheDav } from './server.js';

const missing = await apacheMissing();
if (missing && process.env.CI) throw new Error(`Apache mod_dav is required under CI: ${missing}`);

if (missing) {
  describe('storage conformance: webdav', () => {
    it.skip(`plain HTTP and HTTPS against Apache mod_dav (skipped: ${missing})`, () => {});
  });
} else {
  for (const tls of [false, true]) {
    describe(tls ? 'HTTPS (self-signed certificate trusted via ca)' : 'plain HTTP', () => {
      runStorageConformance({
        connector: webdav,
        largeFileBytes: 50 * 1024 * 1024,
        setup: async () => {
          const server = await startApacheDav({ tls });
          return { credentials: server.credentials(), teardown: server.teardown };
        },
      });
    });
  }
}
