import { isAbsolute } from 'node:path';
import { defineConnector } from '@cloudmux/core';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { LocalStorage } from './storage.js';

export { STAGING_DIR } from './paths.js';
export { LocalStorage } from './storage.js';

export const localCredentials = z.object({
  root: z
    .string()
    .min(1)
    .refine((p) => isAbsolute(p) && !p.includes('\u0000'), 'root must be an absolute directory path')
    .describe('Absolute directory on the server that holds this account'),
});

/** Storage over a directory on the server's disk: the embedded default's demo and the reference connector. */
export const local = defineConnector({
  service: 'local',
  name: 'Local Disk',
  version: pkg.version,
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'protocol' },
  network: 'none',
  credentials: localCredentials,
  // Raw ids are paths relative to the root, starting with `/`.
  rawId: {
    attributes: z.object({ id: z.string().startsWith('/') }),
    toRawId: (attributes) => String(attributes.id),
  },
  create: (ctx) => {
    const storage = new LocalStorage(ctx.credentials.root);
    return { storage, validate: () => storage.validate(), dispose: async () => {} };
  },
});

export default local;
