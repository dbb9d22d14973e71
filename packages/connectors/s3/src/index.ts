import { defineConnector, type Logger } from '@cloudmux/core';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { type Http, S3Client } from './client.js';
import { type ResolvedS3Settings, resolveSettings, s3Credentials } from './credentials.js';
import { KeySpace } from './keys.js';
import { S3Storage, type S3StorageOptions } from './storage.js';

export type { Body, ConditionalSupport, ListResult, ObjectHead } from './client.js';
export { KeyExistsError, S3Client } from './client.js';
export type { ResolvedS3Settings, S3Credentials, S3CredentialsInput, S3Endpoint } from './credentials.js';
export { normalizePrefix, resolveSettings, s3Credentials } from './credentials.js';
export { mapS3Error } from './errors.js';
export { KeySpace } from './keys.js';
export { S3Storage } from './storage.js';
export {
  ChunkReader,
  COPY_MAX,
  DEFAULT_PART_SIZE,
  DEFAULT_UPLOAD_LIMITS,
  MAX_PART_SIZE,
  MAX_PARTS,
  MEMORY_PART_MAX,
  MIN_PART_SIZE,
  partSizeForSize,
  partSizeForUnknown,
  SINGLE_PUT_MAX,
  type UploadLimits,
} from './upload.js';
export { parseXml } from './xml.js';

/** The storage for one account (what `create` builds; tests build it directly with other limits). */
export function createS3Storage(
  http: Http,
  settings: ResolvedS3Settings,
  options: { scratchDir: string; log: Logger } & Partial<
    Pick<S3StorageOptions, 'searchScanLimit' | 'listRequestsPerPage' | 'limits'>
  >,
): S3Storage {
  const client = new S3Client(http, settings, options.log);
  return new S3Storage({ client, keys: new KeySpace(settings.bucket, settings.prefix), ...options });
}

/**
 * Amazon S3 and S3-compatible endpoints. The network mode is chosen per account: `saas` for AWS,
 * `self_hosted` for a custom endpoint (which may live on a private host; never a metadata address).
 */
export const s3 = defineConnector({
  service: 's3',
  name: 'Amazon S3',
  version: pkg.version,
  category: 'object_storage',
  apis: ['storage'],
  auth: {
    type: 'aws_sigv4',
    signingService: 's3',
    regionField: 'region',
    accessKeyIdField: 'access_key_id',
    secretAccessKeyField: 'secret_access_key',
    sessionTokenField: 'session_token',
  },
  // AWS's own endpoints are public (`saas`: private and metadata addresses refused); a custom
  // endpoint (MinIO, Ceph, s3rver) is the user's own server and may be private.
  network: (credentials) => (credentials.endpoint ? 'self_hosted' : 'saas'),
  credentials: s3Credentials,
  // Pass-through requests are relative to the bucket (signed by core like every other request).
  passThrough: {
    kind: 'account_host',
    baseUrl: (credentials) => {
      const { endpoint } = resolveSettings(credentials);
      return `${endpoint.origin}${endpoint.basePath}/`;
    },
  },
  // Raw ids are `<bucket>/<object key>`; folder keys end with `/`.
  rawId: {
    attributes: z.object({
      bucket_name: z.string().regex(/^[A-Za-z0-9._-]{1,255}$/),
      id: z.string(),
    }),
    toRawId: (attributes) => `${String(attributes.bucket_name)}/${String(attributes.id).replace(/^\/+/, '')}`,
  },
  policies: {
    rateLimit: { requestsPerSecond: 50, burst: 100 },
    pagination: { defaultPageSize: 100, maxPageSize: 1000 },
  },
  create: (ctx) => {
    const storage = createS3Storage(ctx.http, resolveSettings(ctx.credentials), {
      scratchDir: ctx.scratchDir,
      log: ctx.log,
    });
    return {
      storage,
      validate: () => storage.validate(),
      // Nothing pooled here: connections are keep-alive sockets of the guard's agents.
      dispose: async () => {},
    };
  },
});

export default s3;
