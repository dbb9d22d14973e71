import { runStorageConformance } from '@cloudmux/testkit';
import { describe, it } from 'vitest';
import { ftp } from '../src/index.js';
import { pureFtpdMissing, startPureFtpd } from './server.js';

const missing = await pureFtpdMissing();
if (missing && process.env.CI) throw new Error(`pure-ftpd is required under CI: ${missing}`);

if (missing) {
  describe('storage conformance: ftp', () => {
    it.skip(`plain FTP and explicit FTPS against pure-ftpd (skipped: ${missing})`, () => {});
  });
} else {
  for (const tls of [false, true]) {
    describe(tls ? 'explicit FTPS (AUTH TLS, PROT P)' : 'plain FTP', () => {
      runStorageConformance({
        connector: ftp,
        largeFileBytes: 50 * 1024 * 1024,
        setup: async () => {
          const server = await startPureFtpd({ tls });
          return { credentials: server.credentials(), teardown: server.teardown };
        },
      });
    });
  }
}
