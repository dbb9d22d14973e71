/**
 * Azure Storage Shared Key and SAS, following "Authorize with Shared Key"
 * (https://learn.microsoft.com/en-us/rest/api/storageservices/authorize-with-shared-key), the
 * Blob/Queue/File string-to-sign for version 2015-02-21 and later (a zero Content-Length is signed
 * as the empty string).
 */
import { createHmac } from 'node:crypto';
import { type PreparedRequest, parseRawQuery } from './prepared.js';

/** `x-ms-version` sent when the connector sets none. */
export const AZURE_STORAGE_VERSION = '2021-08-06';

const STANDARD_HEADERS = [
  'content-encoding',
  'content-language',
  'content-length',
  'content-md5',
  'content-type',
  'date',
  'if-modified-since',
  'if-match',
  'if-none-match',
  'if-unmodified-since',
  'range',
] as const;

/** Each `x-ms-*` header as `name:value\n`, names lowercased and sorted, values unfolded and trimmed. */
export function azureCanonicalizedHeaders(headers: Record<string, string>): string {
  return Object.entries(headers)
    .map(([name, value]) => [name.toLowerCase(), value] as const)
    .filter(([name]) => name.startsWith('x-ms-'))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}:${value.replace(/\r?\n[ \t]*/g, ' ').trim()}\n`)
    .join('');
}

/**
 * `/{account}{encoded path}` then, per query parameter (names lowercased and sorted, values
 * URL-decoded, several values sorted and comma-joined), `\nname:value`.
 */
export function azureCanonicalizedResource(url: URL, accountName: string): string {
  let resource = `/${accountName}${url.pathname === '' ? '/' : url.pathname}`;
  const params = new Map<string, string[]>();
  for (const { key, value } of parseRawQuery(url.search)) {
    const name = key.toLowerCase();
    const values = params.get(name) ?? [];
    values.push(value);
    params.set(name, values);
  }
  for (const name of [...params.keys()].sort()) {
    resource += `\n${name}:${(params.get(name) ?? []).sort().join(',')}`;
  }
  return resource;
}

export function azureSharedKeyStringToSign(req: PreparedRequest, accountName: string): string {
  const h = req.headers;
  const fields = STANDARD_HEADERS.map((name) => {
    const value = h[name] ?? '';
    if (name === 'content-length') return value === '0' ? '' : value;
    // x-ms-date wins over Date, which is then signed as empty.
    if (name === 'date') return h['x-ms-date'] !== undefined ? '' : value;
    return value;
  });
  const standard = [req.method.toUpperCase(), ...fields].join('\n');
  return `${standard}\n${azureCanonicalizedHeaders(h)}${azureCanonicalizedResource(req.url, accountName)}`;
}

export interface SharedKeyOptions {
  accountName: string;
  /** Base64, as the portal shows it. */
  accountKey: string;
  date: Date;
}

/** Adds `x-ms-date`, `x-ms-version` (if absent) and `Authorization: SharedKey account:signature`. */
export function signAzureSharedKey(req: PreparedRequest, options: SharedKeyOptions): void {
  req.headers['x-ms-date'] = options.date.toUTCString();
  req.headers['x-ms-version'] ??= AZURE_STORAGE_VERSION;
  delete req.headers.authorization;
  const stringToSign = azureSharedKeyStringToSign(req, options.accountName);
  const signature = createHmac('sha256', Buffer.from(options.accountKey, 'base64'))
    .update(stringToSign, 'utf8')
    .digest('base64');
  req.headers.authorization = `SharedKey ${options.accountName}:${signature}`;
}

/** Appends a SAS token (with or without its leading `?`) to the request's query. */
export function appendSas(url: URL, sasToken: string): void {
  const sas = sasToken.startsWith('?') ? sasToken.slice(1) : sasToken;
  if (sas === '') return;
  url.search = url.search && url.search !== '?' ? `${url.search}&${sas}` : `?${sas}`;
}
