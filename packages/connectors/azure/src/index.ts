import { defineConnector } from '@cloudmux/core';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { BlobClient } from './blob-api.js';
import { azureCredentials, resolveSettings } from './credentials.js';
import { BlobPaths } from './paths.js';
import { AzureStorage } from './storage.js';

export type { BlobListing, BlobProperties } from './blob-api.js';
export { AZURE_VERSION, BlobClient } from './blob-api.js';
export type { AuthMode, AzureCredentials, AzureSettings } from './credentials.js';
export { azureCredentials, resolveSettings } from './credentials.js';
export { BlobPaths, encodeBlobPath } from './paths.js';
export type { AzureStorageOptions } from './storage.js';
export { AzureStorage, MAX_TREE_BLOBS } from './storage.js';
export {
  blockId,
  blockSizeForIndex,
  blockSizeForSize,
  MAX_BLOCK_SIZE,
  MAX_BLOCKS,
  MIN_BLOCK_SIZE,
} from './upload.js';
export { parseXml } from './xml.js';

/**
 * Azure Blob Storage, one container per account. Shared Key when the account has a key, else its
 * SAS: core's `one_of` picks per request by which credential fields are present. `self_hosted`,
 * because the endpoint is the account's own (Azurite, Azure Stack, private endpoints); operators
 * narrow it with CLOUDMUX_ALLOWED_NETWORKS.
 */
export const azure = defineConnector({
  service: 'azure',
  name: 'Azure Storage',
  version: pkg.version,
  category: 'object_storage',
  apis: ['storage'],
  auth: {
    type: 'one_of',
    strategies: [
      { type: 'azure_shared_key', accountNameField: 'account_name', accountKeyField: 'account_key' },
      { type: 'azure_sas', sasTokenField: 'sas_token' },
    ],
  },
  network: 'self_hosted',
  credentials: azureCredentials,
  passThrough: { kind: 'account_host', baseUrl: (credentials) => resolveSettings(credentials).endpoint },
  // Raw ids are `<container>/<blob name>`; folders end in `/` (see paths.ts).
  rawId: {
    attributes: z.object({
      container_name: z.string().min(1).describe('Name of container.'),
      id: z.string().describe('Object path within container (folders end in "/").'),
    }),
    toRawId: (attributes) =>
      `${String(attributes.container_name)}/${String(attributes.id).replace(/^\/+/, '')}`,
  },
  create: (ctx) => {
    const settings = resolveSettings(ctx.credentials);
    const storage = new AzureStorage(
      new BlobClient(ctx.http, settings),
      new BlobPaths(settings.container, settings.basePrefix),
    );
    // Nothing pooled here: HTTP keep-alive sockets belong to core's guarded agents.
    return { storage, validate: () => storage.validate(), dispose: async () => {} };
  },
});

export default azure;
