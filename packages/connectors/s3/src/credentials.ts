/**
 * The connect form / `POST /v1/accounts` fields, and the endpoint they resolve to. The auth
 * strategy (`aws_sigv4`) reads `access_key_id`, `secret_access_key`, `session_token` and `region`
 * from the parsed credentials, so those names are part of the definition.
 */
import { isIP } from 'node:net';
import { validateItemName } from '@cloudmux/core';
import * as z from 'zod';

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
const noControl = (v: string) => !/[\u0000-\u001f\u007f]/.test(v);

/** `team/docs`, `/team/docs/` → `team/docs/`; empty → ``. Every segment must be a valid item name. */
export function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? '').replace(/^\/+/, '').replace(/\/+$/, '');
  if (trimmed === '') return '';
  for (const segment of trimmed.split('/')) validateItemName(segment);
  return `${trimmed}/`;
}

function validEndpoint(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'endpoint must be a URL such as https://minio.example.com:9000';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'endpoint must use http:// or https://';
  if (url.username || url.password) return 'endpoint cannot carry credentials';
  if (url.search || url.hash) return 'endpoint cannot have a query or a fragment';
  return null;
}

export const s3Credentials = z.object({
  access_key_id: z
    .string()
    .trim()
    .min(1)
    .refine(noControl, 'access_key_id cannot contain control characters')
    .describe('Access key ID'),
  secret_access_key: z
    .string()
    .min(1)
    .refine(noControl, 'secret_access_key cannot contain control characters')
    .describe('Secret access key (secret)'),
  // Empty strings (a connect form's untouched optional fields) count as absent.
  session_token: z
    .string()
    .trim()
    .refine(noControl, 'session_token cannot contain control characters')
    .optional()
    .describe('Session token for temporary credentials (secret, optional)'),
  region: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'region must look like us-east-1')
    .default('us-east-1')
    .describe('Region the bucket lives in (default us-east-1; "auto" for Cloudflare R2)'),
  bucket: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9._-]{1,255}$/, 'bucket must be a bucket name (letters, digits, ".", "-", "_")')
    .describe('Bucket name'),
  endpoint: z
    .string()
    .trim()
    .refine(
      (v) => v === '' || validEndpoint(v) === null,
      'endpoint must be an http(s) URL without credentials, query or fragment',
    )
    .optional()
    .describe(
      'S3-compatible endpoint URL (MinIO, Ceph, R2, …): https://minio.example.com:9000; empty: Amazon S3',
    ),
  path_style: z
    .boolean()
    .optional()
    .describe('Address the bucket as endpoint/bucket (default: on for custom endpoints, off for Amazon S3)'),
  base_prefix: z
    .string()
    .default('')
    .refine((v) => {
      try {
        normalizePrefix(v);
        return true;
      } catch {
        return false;
      }
    }, 'base_prefix must be a key prefix of valid folder names, e.g. team/docs')
    .describe('Key prefix inside the bucket that is the root of this account (optional)'),
});

export type S3CredentialsInput = z.input<typeof s3Credentials>;
export type S3Credentials = z.output<typeof s3Credentials>;

/** Where requests go: `origin + basePath` is the bucket, object keys are appended as `/key`. */
export interface S3Endpoint {
  origin: string;
  /** Path of the bucket on `origin`, without a trailing slash: `/bucket` (path style), `` (virtual host). */
  basePath: string;
  pathStyle: boolean;
  custom: boolean;
}

export interface ResolvedS3Settings {
  bucket: string;
  region: string;
  prefix: string;
  endpoint: S3Endpoint;
}

export function resolveSettings(credentials: S3Credentials): ResolvedS3Settings {
  const { bucket, region } = credentials;
  const custom = Boolean(credentials.endpoint);
  const url = new URL(credentials.endpoint || `https://s3.${region}.amazonaws.com`);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  // Virtual-hosted style needs a DNS name: IP literals, and (over TLS) dotted bucket names that
  // break the wildcard certificate, are addressed path style.
  const forcedPath = isIP(host) !== 0 || (url.protocol === 'https:' && bucket.includes('.'));
  const pathStyle = forcedPath || (credentials.path_style ?? custom);
  const endpointPath = url.pathname.replace(/\/+$/, '');
  const encodedBucket = encodeURIComponent(bucket);
  if (pathStyle) {
    return {
      bucket,
      region,
      prefix: normalizePrefix(credentials.base_prefix),
      endpoint: { origin: url.origin, basePath: `${endpointPath}/${encodedBucket}`, pathStyle, custom },
    };
  }
  const port = url.port ? `:${url.port}` : '';
  return {
    bucket,
    region,
    prefix: normalizePrefix(credentials.base_prefix),
    endpoint: {
      origin: `${url.protocol}//${bucket}.${url.hostname}${port}`,
      basePath: endpointPath,
      pathStyle,
      custom,
    },
  };
}
