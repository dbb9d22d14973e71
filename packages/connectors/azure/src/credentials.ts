/**
 * The connect form / `POST /v1/accounts` fields, and what the connector derives from them: the
 * Blob service endpoint, the container, the base prefix inside it, and which of core's two Azure
 * strategies signs the account's requests (Shared Key when a key is present, else the SAS).
 */
import * as z from 'zod';

/** https://learn.microsoft.com/en-us/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata */
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$/;
/** Storage account names: 3–24 lowercase letters and digits (Azurite's dev account fits). */
const ACCOUNT_NAME = /^[a-z0-9]{3,24}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

// Connect forms post unused fields as "": an empty field counts as absent (core's `one_of` agrees).
const present = (v: string | undefined): v is string => v !== undefined && v !== '';

function httpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (
      (url.protocol === 'http:' || url.protocol === 'https:') &&
      url.search === '' &&
      url.hash === '' &&
      !url.username
    );
  } catch {
    return false;
  }
}

function validBasePrefix(value: string): boolean {
  const trimmed = value.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return true;
  return trimmed.split('/').every((s) => s !== '' && s !== '.' && s !== '..' && !/[\\\p{Cc}]/u.test(s));
}

export const azureCredentials = z
  .object({
    account_name: z
      .string()
      .trim()
      .regex(ACCOUNT_NAME, 'account_name must be 3-24 lowercase letters and digits')
      .describe('Storage account name (e.g. mystorageaccount; devstoreaccount1 for Azurite)'),
    account_key: z
      .string()
      .trim()
      .refine((v) => v === '' || BASE64.test(v), 'account_key must be the base64 access key')
      .optional()
      .describe('Storage account access key, base64 (secret); give this or a SAS token'),
    sas_token: z
      .string()
      .trim()
      .refine((v) => v === '' || (/(^|[?&])sig=/.test(v) && !/[#\s]/.test(v) && !/^https?:/i.test(v)), {
        message: 'sas_token must be the query string of a shared access signature (sv=…&sig=…), not a URL',
      })
      .optional()
      .describe(
        'Shared access signature query string, with or without the leading "?" (secret); used when no key is given',
      ),
    container: z
      .string()
      .trim()
      .regex(CONTAINER_NAME, 'container must be 3-63 lowercase letters, digits and single hyphens')
      .describe('Blob container that holds this account'),
    endpoint: z
      .string()
      .trim()
      .refine(
        (v) => v === '' || httpUrl(v),
        'endpoint must be an http(s) URL without query, fragment or user info',
      )
      .optional()
      .describe(
        'Blob service endpoint (default https://<account>.blob.core.windows.net); for Azurite or a ' +
          'custom endpoint e.g. http://127.0.0.1:10000/devstoreaccount1',
      ),
    base_prefix: z
      .string()
      .optional()
      .refine((v) => v === undefined || validBasePrefix(v), 'base_prefix must be a path such as "team/docs"')
      .describe('Optional folder inside the container to use as the root (e.g. "team/docs")'),
  })
  .refine((c) => present(c.account_key) || present(c.sas_token), {
    message: 'give account_key or sas_token',
    path: ['account_key'],
  });

export type AzureCredentials = z.output<typeof azureCredentials>;

export type AuthMode = 'shared_key' | 'sas';

export interface AzureSettings {
  accountName: string;
  container: string;
  /** Endpoint without a trailing slash (the account's Blob service root). */
  endpoint: string;
  /** '' or 'a/b/': every raw id of the account lies under `container/basePrefix`. */
  basePrefix: string;
  /** Mirrors core's `one_of` order: Shared Key when the key is present, else the SAS. */
  authMode: AuthMode;
  /** The SAS query without `?` (SAS accounts only): Copy Blob's source must carry it too. */
  sasQuery: string | null;
}

export function resolveSettings(credentials: AzureCredentials): AzureSettings {
  const given = present(credentials.endpoint)
    ? credentials.endpoint
    : `https://${credentials.account_name}.blob.core.windows.net`;
  const endpoint = given.replace(/\/+$/, '');
  const base = (credentials.base_prefix ?? '').replace(/^\/+|\/+$/g, '');
  const authMode: AuthMode = present(credentials.account_key) ? 'shared_key' : 'sas';
  const sas = credentials.sas_token?.replace(/^\?/, '') ?? '';
  return {
    accountName: credentials.account_name,
    container: credentials.container,
    endpoint,
    basePrefix: base === '' ? '' : `${base}/`,
    authMode,
    sasQuery: authMode === 'sas' ? sas : null,
  };
}
