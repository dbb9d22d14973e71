import { runStorageConformance } from '@cloudmux/testkit';
import { describe, it } from 'vitest';
import { smb } from '../src/index.js';
import { sambaMissing, startSamba } from './server.js';

const missing = await sambaMissing();

if (missing && process.env.CI) throw new Error(`SMB conformance cannot run: ${missing}`);

if (missing) {
  describe('storage conformance: smb', () => {
    it.skip(`needs smbd (skipped: ${missing})`, () => {});
  });
} else {
  runStorageConformance({
    connector: smb,
    largeFileBytes: 50 * 1024 * 1024,
    setup: async () => {
      const samba = await startSamba();
      return { credentials: samba.credentials(), teardown: () => samba.stop() };
    },
  });
}
