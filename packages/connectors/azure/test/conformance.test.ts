import { runStorageConformance } from '@cloudmux/testkit';
import { describe, it } from 'vitest';
import { azure } from '../src/index.js';
import { azuriteMissing, startAzurite } from './server.js';

const missing = azuriteMissing();
if (missing && process.env.CI) throw new Error(`Azurite is required under CI: ${missing}`);

if (missing) {
  describe('storage conformance: azure', () => {
    it.skip(`Shared Key and SAS against Azurite (skipped: ${missing})`, () => {});
  });
} else {
  describe('Shared Key, whole container', () => {
    runStorageConformance({
      connector: azure,
      largeFileBytes: 50 * 1024 * 1024,
      setup: async () => {
        const server = await startAzurite();
        await server.createContainer('conformance');
        return { credentials: server.credentials('conformance'), teardown: server.teardown };
      },
    });
  });

  describe('SAS (no key), under a base prefix', () => {
    runStorageConformance({
      connector: azure,
      // Several blocks (4 MiB each) through the SAS path; the 50 MiB case runs above.
      largeFileBytes: 13 * 1024 * 1024,
      setup: async () => {
        const server = await startAzurite();
        await server.createContainer('sas-conformance');
        const sas = server.sas('sas-conformance', {
          permissions: 'racwdl',
          expiresOn: new Date(Date.now() + 3_600_000),
        });
        const { account_key: _key, ...rest } = server.credentials('sas-conformance');
        return {
          credentials: { ...rest, sas_token: `?${sas}`, base_prefix: 'team/docs' },
          teardown: server.teardown,
        };
      },
    });
  });
}
