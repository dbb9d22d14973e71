/**
 * `next_page` tokens: opaque, authenticated, bound to the account, the listed resource and the page
 * size; they carry the connector's own cursor and the page number, never an upstream URL.
 *
 *   token = base64url(kv ‖ V ‖ C)     (V ‖ C) = HMAC-SHA256-SIV/AES-256-CTR under the `paging` key of kv,
 *   AAD = encodeAad(["cloudmux/page", kv, accountId, resource, pageSize]),
 *   plaintext = u32be(page) ‖ u8(hasCursor) ‖ cursor (UTF-8)
 *
 * Format: docs/ids.md. The first page is the `page` parameter absent, empty or `1`; a plain
 * integer `N ≥ 2` is an offset-style page number (what SDKs guess as `page + 1`).
 */
import { CloudmuxError } from './errors.js';
import { MAX_ID_LENGTH } from './ids.js';
import { encodeAad, SIV_BYTES, type SivKey, sivKeyFrom, sivOpen, sivSeal } from './ids-siv.js';
import type { Keyring } from './secrets.js';
import type { Page } from './storage.js';

const AAD_LABEL = 'cloudmux/page';
const MAX_TOKEN_BYTES = Math.floor((MAX_ID_LENGTH * 6) / 8);
/** Longest connector cursor (UTF-8 bytes) a token can carry within MAX_ID_LENGTH characters. */
export const MAX_CURSOR_BYTES = MAX_TOKEN_BYTES - 1 - SIV_BYTES - 5;
/** Highest page number accepted. */
export const MAX_PAGE_NUMBER = 999_999_999;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;
const PAGE_NUMBER_RE = /^[1-9][0-9]{0,8}$/;
/** Schemes the WHATWG URL parser treats as "special" (`https:host` parses as `https://host/`). */
const SPECIAL_SCHEMES = new Set(['http:', 'https:', 'ws:', 'wss:', 'ftp:', 'file:']);

export interface PageContext {
  accountId: string | number;
  /** What is listed, canonical (see `pageResource`): `folders/<id>/contents`, `search?q=…`. */
  resource: string;
  pageSize: number;
}

/** Where a request starts listing. */
export interface PagePosition {
  /** 1-based page number. */
  page: number;
  /** The connector cursor to pass on (`PageRequest.cursor`); absent on the first page and number pages. */
  cursor?: string;
  /** `first`: no/empty/`1`; `number`: a plain page number ≥ 2; `token`: one of our `next_page` tokens. */
  source: 'first' | 'number' | 'token';
}

export interface PageTokens {
  /** Mints a token for page `page` with the connector's `cursor`. */
  encode(context: PageContext, position: { page: number; cursor?: string | null }): string;
  /**
   * `next_page` after serving page `current`: a token for `current + 1`, or `null` when the
   * connector returned no cursor (`undefined`, `null` or `''`), i.e. the listing is done.
   */
  next(context: PageContext, current: number, cursor: string | null | undefined): string | null;
  /** Reads the `page` query parameter; a forged, foreign or garbage value is `invalid_parameters`. */
  parse(param: unknown, context: PageContext): PagePosition;
}

function invalidPage(): CloudmuxError {
  return new CloudmuxError('invalid_parameters', 'Invalid page parameter.');
}

function unsafeCursor(reason: string): CloudmuxError {
  // A connector bug, not the client's: fail loudly instead of handing out an SSRF path.
  return new CloudmuxError('internal_error', `Connector paging cursor refused: ${reason}.`);
}

function looksLikeUrl(text: string): boolean {
  // The WHATWG parser drops leading/trailing C0 controls and spaces and every tab/CR/LF.
  let t = text.replace(/[\t\n\r]/g, '');
  let start = 0;
  while (start < t.length && t.charCodeAt(start) <= 0x20) start++;
  t = t.slice(start);
  if (/^[\\/]{2}/.test(t)) return true;
  try {
    return SPECIAL_SCHEMES.has(new URL(t).protocol);
  } catch {
    return false;
  }
}

/**
 * Throws `internal_error` for a cursor that parses as an absolute http(s)/ws/ftp/file URL or as a
 * network-path reference (`//host`), raw or percent-decoded once, or that is too long.
 */
export function assertSafeCursor(cursor: string): void {
  if (typeof cursor !== 'string') throw unsafeCursor('not a string');
  if (Buffer.byteLength(cursor, 'utf8') > MAX_CURSOR_BYTES)
    throw unsafeCursor(`longer than ${MAX_CURSOR_BYTES} bytes`);
  let decoded = cursor;
  try {
    decoded = decodeURIComponent(cursor);
  } catch {
    // Not percent-encoded text; the raw check below is the one that matters.
  }
  if (looksLikeUrl(cursor) || looksLikeUrl(decoded))
    throw unsafeCursor('it is an absolute URL (never follow upstream links)');
}

/** Canonical resource string for binding: `path` plus its parameters sorted by name. */
export function pageResource(
  path: string,
  params: Record<string, string | readonly string[] | undefined> = {},
): string {
  const pairs: string[] = [];
  for (const name of Object.keys(params).sort()) {
    const value = params[name];
    if (value === undefined) continue;
    for (const v of typeof value === 'string' ? [value] : value) {
      pairs.push(`${encodeURIComponent(name)}=${encodeURIComponent(v)}`);
    }
  }
  return pairs.length === 0 ? path : `${path}?${pairs.join('&')}`;
}

function contextAad(kv: number, context: PageContext): Buffer | undefined {
  const account = context?.accountId;
  const accountText =
    typeof account === 'number' && Number.isSafeInteger(account)
      ? String(account)
      : typeof account === 'string' && account.length > 0 && account.length <= 256
        ? account
        : undefined;
  const { resource, pageSize } = context ?? ({} as PageContext);
  if (accountText === undefined || typeof resource !== 'string' || resource.length > 16_384) return undefined;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) return undefined;
  return encodeAad([AAD_LABEL, Uint8Array.of(kv), accountText, resource, String(pageSize)]);
}

export function createPageTokens(options: { keys: Keyring }): PageTokens {
  const { keys } = options;
  const sivKeys = new Map<number, SivKey>();
  function keyFor(kv: number): SivKey | undefined {
    let key = sivKeys.get(kv);
    if (key === undefined && keys.has(kv)) {
      key = sivKeyFrom(keys.derive('paging', kv, 64));
      sivKeys.set(kv, key);
    }
    return key;
  }

  function encode(context: PageContext, position: { page: number; cursor?: string | null }): string {
    const kv = keys.active;
    const aad = contextAad(kv, context);
    if (aad === undefined) throw new CloudmuxError('internal_error', 'Invalid paging context.');
    const { page } = position;
    if (!Number.isSafeInteger(page) || page < 1 || page > MAX_PAGE_NUMBER) {
      throw new CloudmuxError('internal_error', `Invalid page number ${String(page)}.`);
    }
    const cursor = position.cursor ?? undefined;
    if (cursor !== undefined) assertSafeCursor(cursor);
    const cursorBytes = cursor === undefined ? Buffer.alloc(0) : Buffer.from(cursor, 'utf8');
    const plaintext = Buffer.allocUnsafe(5 + cursorBytes.length);
    plaintext.writeUInt32BE(page, 0);
    plaintext[4] = cursor === undefined ? 0 : 1;
    cursorBytes.copy(plaintext, 5);
    return sivSeal(keyFor(kv)!, aad, plaintext, Uint8Array.of(kv)).toString('base64url');
  }

  function decodeToken(token: string, context: PageContext): PagePosition {
    if (token.length > MAX_ID_LENGTH || !B64URL_RE.test(token) || token.length % 4 === 1) throw invalidPage();
    const bytes = Buffer.from(token, 'base64url');
    if (bytes.length < 1 + SIV_BYTES + 5 || bytes.toString('base64url') !== token) throw invalidPage();
    const kv = bytes[0]!;
    const key = keyFor(kv);
    const aad = contextAad(kv, context);
    if (key === undefined || aad === undefined) throw invalidPage();
    const plaintext = sivOpen(key, aad, bytes.subarray(1));
    if (plaintext === null) throw invalidPage();
    const page = plaintext.readUInt32BE(0);
    const flag = plaintext[4];
    if (page < 1 || page > MAX_PAGE_NUMBER || (flag !== 0 && flag !== 1)) throw invalidPage();
    const position: PagePosition = { page, source: 'token' };
    if (flag === 1) position.cursor = plaintext.toString('utf8', 5);
    return position;
  }

  return {
    encode,
    next(context, current, cursor) {
      if (cursor === undefined || cursor === null || cursor === '') return null;
      return encode(context, { page: current + 1, cursor });
    },
    parse(param, context) {
      if (param === undefined || param === null || param === '') return { page: 1, source: 'first' };
      if (typeof param === 'number') {
        if (!Number.isSafeInteger(param) || param < 1 || param > MAX_PAGE_NUMBER) throw invalidPage();
        return param === 1 ? { page: 1, source: 'first' } : { page: param, source: 'number' };
      }
      if (typeof param !== 'string') throw invalidPage();
      if (param === '1') return { page: 1, source: 'first' };
      if (PAGE_NUMBER_RE.test(param)) return { page: Number(param), source: 'number' };
      return decodeToken(param, context);
    },
  };
}

/**
 * "Page past the end" → `not_found`. A page number ≥ 2 (a client's `page + 1` guess) that turns
 * out empty is past the end; so is any page ≥ 2 that starts at or beyond a known `total`. A token
 * page may legitimately be empty (an upstream that reports "more" and then has none).
 */
export function assertPageExists(
  position: PagePosition,
  result: { itemCount: number; total?: number },
  pageSize: number,
): void {
  if (position.page < 2) return;
  if (result.total !== undefined && (position.page - 1) * pageSize >= result.total) {
    throw new CloudmuxError('not_found', 'The requested page is past the end of the listing.');
  }
  if (position.source === 'number' && result.itemCount === 0) {
    throw new CloudmuxError('not_found', 'The requested page is past the end of the listing.');
  }
}

/**
 * For a plain page number on a cursor-paged connector: follows cursors from the first page to page
 * `position.page`. Past the end → `not_found`; pages beyond `maxPages` are refused up front
 * (`invalid_parameters`) so a client cannot make one request fan out into thousands upstream.
 */
export async function seekPage<T>(
  position: PagePosition,
  fetchPage: (cursor: string | undefined) => Promise<Page<T>>,
  options: { maxPages?: number } = {},
): Promise<Page<T>> {
  if (position.source !== 'number') return fetchPage(position.cursor);
  const maxPages = options.maxPages ?? 100;
  if (position.page > maxPages) {
    throw new CloudmuxError('invalid_parameters', `Page numbers above ${maxPages} need the next_page token.`);
  }
  let cursor: string | undefined;
  let page: Page<T> | undefined;
  for (let n = 1; n <= position.page; n++) {
    page = await fetchPage(cursor);
    if (n === position.page) break;
    const next = page.cursor;
    if (next === undefined || next === null || next === '') {
      throw new CloudmuxError('not_found', 'The requested page is past the end of the listing.');
    }
    cursor = next;
  }
  if (page!.items.length === 0)
    throw new CloudmuxError('not_found', 'The requested page is past the end of the listing.');
  return page!;
}
