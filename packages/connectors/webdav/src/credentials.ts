/**
 * The connect form / `POST /v1/accounts` fields. Kloudless pre-filled WebDAV forms through
 * `extra_data` as `{"domain": "https://dav.example.com/remote.php/dav/files/alice/"}`, so `domain` is
 * accepted beside `url`. The parsed output is normalized (one `url`, ending in `/`) and parses again
 * as input, because the server stores the output and re-parses it.
 */
import { hasControlCharacter, normalizeBasePath } from '@cloudmux/core';
import * as z from 'zod';

/** Why `value` is not a usable WebDAV root URL, or null. */
function urlProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute http:// or https:// URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must use http:// or https://';
  if (url.username || url.password) return 'cannot carry credentials (use username and password)';
  if (url.search || url.hash) return 'cannot carry a query or a fragment';
  if (!url.hostname) return 'has no host';
  try {
    for (const segment of url.pathname.split('/')) {
      const decoded = decodeURIComponent(segment);
      if (decoded.includes('/') || hasControlCharacter(decoded)) return 'has an invalid path';
    }
  } catch {
    return 'has an invalid percent-encoding in its path';
  }
  return null;
}

/** `https://host/dav` → `https://host/dav/` (the root is a collection). */
export function normalizeRootUrl(value: string): string {
  const url = new URL(value.trim());
  if (!url.pathname.endsWith('/')) url.pathname = `${url.pathname}/`;
  return url.href;
}

const pem = z
  .string()
  .refine((v) => v.includes('-----BEGIN CERTIFICATE-----'), 'ca must be PEM certificates');

const noNul = (v: string) => !v.includes('\u0000');

export const webdavCredentials = z
  .object({
    url: z
      .string()
      .trim()
      .min(1)
      .optional()
      .describe('URL of the WebDAV root, e.g. https://cloud.example.com/remote.php/dav/files/alice/'),
    domain: z
      .string()
      .trim()
      .min(1)
      .optional()
      .describe('Same as url (the field name Kloudless connect forms used); give one of the two'),
    username: z
      .string()
      .min(1)
      .refine((v) => noNul(v) && !v.includes(':'), 'username cannot contain ":" or NUL')
      .describe('Username (HTTP basic authentication)'),
    password: z.string().refine(noNul, 'password cannot contain NUL').describe('Password (secret)'),
    base_path: z
      .string()
      .default('/')
      .refine((v) => {
        try {
          normalizeBasePath(v);
          return true;
        } catch {
          return false;
        }
      }, 'base_path must be an absolute path without "." or ".." segments')
      .describe('Folder under the WebDAV root that is the root of this account (default /)'),
    ca: pem
      .optional()
      .describe('PEM certificate(s) of a private CA or of a self-signed server certificate to trust'),
    insecure: z
      .boolean()
      .default(false)
      .describe('Accept any TLS certificate, unverified (insecure; for testing only). Default false'),
  })
  .superRefine((value, ctx) => {
    const given = value.url ?? value.domain;
    if (!given) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'url (or domain) is required' });
      return;
    }
    if (value.url && value.domain && normalizeOrNull(value.url) !== normalizeOrNull(value.domain)) {
      ctx.addIssue({ code: 'custom', path: ['domain'], message: 'url and domain disagree; give one' });
    }
    const problem = urlProblem(given);
    if (problem)
      ctx.addIssue({ code: 'custom', path: [value.url ? 'url' : 'domain'], message: `url ${problem}` });
  })
  .transform((value) => ({
    url: normalizeRootUrl((value.url ?? value.domain)!),
    username: value.username,
    password: value.password,
    base_path: normalizeBasePath(value.base_path),
    ...(value.ca !== undefined ? { ca: value.ca } : {}),
    insecure: value.insecure,
  }));

function normalizeOrNull(value: string): string | null {
  try {
    return normalizeRootUrl(value);
  } catch {
    return null;
  }
}

export type WebDavCredentialsInput = z.input<typeof webdavCredentials>;
export type WebDavCredentials = z.output<typeof webdavCredentials>;
