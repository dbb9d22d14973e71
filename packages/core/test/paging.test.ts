import { describe, expect, it } from 'vitest';
import { CloudmuxError } from '../src/errors.js';
import { encodeAad, MAX_ID_LENGTH, sivKeyFrom, sivSeal } from '../src/ids.js';
import {
  assertPageExists,
  assertSafeCursor,
  createPageTokens,
  MAX_CURSOR_BYTES,
  type PageContext,
  pageResource,
  seekPage,
} from '../src/paging.js';
import { Keyring } from '../src/secrets.js';
import type { Page } from '../src/storage.js';

const keys = Keyring.fromSecret('b'.repeat(64));
const tokens = createPageTokens({ keys });
const ctx: PageContext = { accountId: 7, resource: 'folders/Zm9v/contents', pageSize: 100 };

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof CloudmuxError)) throw new Error(`non-CloudmuxError thrown: ${String(error)}`);
    return error.code;
  }
  return 'no error';
}

async function asyncCodeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (error) {
    if (!(error instanceof CloudmuxError)) throw new Error(`non-CloudmuxError thrown: ${String(error)}`);
    return error.code;
  }
  return 'no error';
}

describe('page parameter', () => {
  it('accepts the first page as absent, empty or 1', () => {
    for (const param of [undefined, null, '', '1', 1]) {
      expect(tokens.parse(param, ctx)).toEqual({ page: 1, source: 'first' });
    }
  });

  it('reads plain page numbers ≥ 2 as number pages', () => {
    expect(tokens.parse('2', ctx)).toEqual({ page: 2, source: 'number' });
    expect(tokens.parse(37, ctx)).toEqual({ page: 37, source: 'number' });
  });

  it('refuses 0, negatives, fractions, padding and other non-tokens with invalid_parameters', () => {
    const bad: unknown[] = [
      '0',
      '-1',
      '01',
      '1.5',
      ' 2',
      '2 ',
      '1e3',
      '9999999999',
      0,
      -3,
      1.5,
      NaN,
      ['2'],
      {},
      true,
    ];
    for (const param of bad) expect(codeOf(() => tokens.parse(param, ctx))).toBe('invalid_parameters');
  });
});

describe('next_page tokens', () => {
  it('round-trip the connector cursor and the page number', () => {
    const token = tokens.next(ctx, 1, 'CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA')!;
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(tokens.parse(token, ctx)).toEqual({
      page: 2,
      cursor: 'CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA',
      source: 'token',
    });
    const later = tokens.next(ctx, 41, 'offset:4100')!;
    expect(tokens.parse(later, ctx)).toEqual({ page: 42, cursor: 'offset:4100', source: 'token' });
  });

  it('carry no cursor when minted for a number-style page', () => {
    const token = tokens.encode(ctx, { page: 3 });
    expect(tokens.parse(token, ctx)).toEqual({ page: 3, source: 'token' });
  });

  it('are null when the connector returned no cursor (the listing is done)', () => {
    expect(tokens.next(ctx, 1, undefined)).toBeNull();
    expect(tokens.next(ctx, 1, null)).toBeNull();
    expect(tokens.next(ctx, 1, '')).toBeNull();
  });

  it('do not reveal the cursor', () => {
    const token = tokens.next(ctx, 1, 'secret-marker-1234')!;
    expect(Buffer.from(token, 'base64url').toString('latin1')).not.toContain('secret-marker');
  });

  it('are bound to the account, the resource and the page size', () => {
    const token = tokens.next(ctx, 1, 'c1')!;
    const foreign: PageContext[] = [
      { ...ctx, accountId: 8 },
      { ...ctx, accountId: '7 ' },
      { ...ctx, resource: 'folders/YmFy/contents' },
      { ...ctx, resource: pageResource('search', { q: 'x' }) },
      { ...ctx, pageSize: 101 },
    ];
    for (const other of foreign) expect(codeOf(() => tokens.parse(token, other))).toBe('invalid_parameters');
    expect(tokens.parse(token, { ...ctx, accountId: '7' }).cursor).toBe('c1');
  });

  it('forged tokens are invalid_parameters: every bit flip, truncation, other keys', () => {
    const token = tokens.next(ctx, 1, 'cursor-value')!;
    const bytes = Buffer.from(token, 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[i]! ^= 1 << bit;
        expect(codeOf(() => tokens.parse(flipped.toString('base64url'), ctx))).toBe('invalid_parameters');
      }
    }
    for (let n = 1; n < token.length; n++) {
      expect(codeOf(() => tokens.parse(token.slice(0, n), ctx))).toBe('invalid_parameters');
    }
    const otherKey = createPageTokens({ keys: Keyring.fromSecret('c'.repeat(64)) });
    expect(codeOf(() => otherKey.parse(token, ctx))).toBe('invalid_parameters');
  });

  it('are sealed with the paging key: the same bytes under the ids key of the same secret are refused', () => {
    const plaintext = Buffer.from([0, 0, 0, 2, 1, ...Buffer.from('c1')]);
    const aad = encodeAad(['cloudmux/page', Uint8Array.of(1), '7', ctx.resource, '100']);
    const genuine = sivSeal(sivKeyFrom(keys.derive('paging', 1, 64)), aad, plaintext, Uint8Array.of(1));
    // Proves the format above is what the tokens use, then swaps only the key.
    expect(tokens.parse(genuine.toString('base64url'), ctx)).toEqual({
      page: 2,
      cursor: 'c1',
      source: 'token',
    });
    const withIdsKey = sivSeal(sivKeyFrom(keys.derive('ids', 1, 64)), aad, plaintext, Uint8Array.of(1));
    expect(codeOf(() => tokens.parse(withIdsKey.toString('base64url'), ctx))).toBe('invalid_parameters');
  });

  it('fuzzed garbage is invalid_parameters and nothing else', () => {
    let s = 12345;
    const rand = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 2 ** 32;
    };
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=%&? ';
    for (let i = 0; i < 3000; i++) {
      let t = '';
      const len = 1 + Math.floor(rand() * 100);
      for (let j = 0; j < len; j++) t += alphabet[Math.floor(rand() * alphabet.length)];
      if (/^[1-9][0-9]{0,8}$/.test(t)) continue;
      expect(codeOf(() => tokens.parse(t, ctx))).toBe('invalid_parameters');
    }
    expect(codeOf(() => tokens.parse('A'.repeat(MAX_ID_LENGTH + 4), ctx))).toBe('invalid_parameters');
  });

  it('garbage contexts never crash the parser', () => {
    const token = tokens.next(ctx, 1, 'c')!;
    for (const bad of [
      undefined,
      {},
      { ...ctx, pageSize: 0 },
      { ...ctx, pageSize: 1.5 },
      { ...ctx, accountId: {} },
    ]) {
      expect(codeOf(() => tokens.parse(token, bad as never))).toBe('invalid_parameters');
    }
  });

  it('older key versions keep parsing after a key is added', () => {
    const token = tokens.next(ctx, 1, 'c-old')!;
    const rotated = createPageTokens({ keys: keys.withKey(2, 'd'.repeat(64)) });
    expect(rotated.parse(token, ctx).cursor).toBe('c-old');
    expect(Buffer.from(rotated.next(ctx, 1, 'c-new')!, 'base64url')[0]).toBe(2);
    const retired = createPageTokens({ keys: keys.withKey(2, 'd'.repeat(64)).without(1) });
    expect(codeOf(() => retired.parse(token, ctx))).toBe('invalid_parameters');
  });

  it('fit the longest cursor in 8,192 characters and refuse longer cursors', () => {
    const token = tokens.next(ctx, 1, 'x'.repeat(MAX_CURSOR_BYTES))!;
    expect(token.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
    expect(tokens.parse(token, ctx).cursor).toHaveLength(MAX_CURSOR_BYTES);
    expect(codeOf(() => tokens.next(ctx, 1, 'x'.repeat(MAX_CURSOR_BYTES + 1)))).toBe('internal_error');
  });
});

describe('upstream URLs never become cursors', () => {
  const refused = [
    'https://graph.microsoft.com/v1.0/me/drive/root/children?$skiptoken=abc',
    'http://169.254.169.254/latest/meta-data/',
    'HTTPS://EXAMPLE.COM',
    '  https://example.com',
    'https:example.com/x',
    'ht\ttps://example.com',
    'h\nttp://example.com',
    '\u0000https://example.com',
    '//evil.example/x',
    '\\\\evil.example\\x',
    '/\\evil.example',
    'https%3A%2F%2Fevil.example%2F',
    '%2F%2Fevil.example',
    'wss://evil.example',
    'ftp://evil.example',
    'file:///etc/passwd',
  ];
  const allowed = [
    'CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA',
    'offset:100',
    'id:6e7mtBeH4sAAAAAAAADLaA',
    'page=2&marker=abc',
    '/v1.0/me/drive/items?$skiptoken=abc',
    'eyJrIjoiZm9vIn0=',
    'mailto:x',
    '%zz',
  ];

  it('refuses absolute URLs and network-path references at creation time', () => {
    for (const cursor of refused) {
      expect(
        codeOf(() => assertSafeCursor(cursor)),
        cursor,
      ).toBe('internal_error');
      expect(
        codeOf(() => tokens.next(ctx, 1, cursor)),
        cursor,
      ).toBe('internal_error');
    }
  });

  it('accepts opaque cursors', () => {
    for (const cursor of allowed) {
      expect(tokens.parse(tokens.next(ctx, 1, cursor)!, ctx).cursor).toBe(cursor);
    }
  });
});

describe('page past the end', () => {
  it('a number page that comes back empty is not_found; the first page and token pages may be empty', () => {
    expect(codeOf(() => assertPageExists({ page: 3, source: 'number' }, { itemCount: 0 }, 100))).toBe(
      'not_found',
    );
    expect(codeOf(() => assertPageExists({ page: 1, source: 'first' }, { itemCount: 0 }, 100))).toBe(
      'no error',
    );
    expect(
      codeOf(() => assertPageExists({ page: 2, source: 'token', cursor: 'c' }, { itemCount: 0 }, 100)),
    ).toBe('no error');
    expect(codeOf(() => assertPageExists({ page: 3, source: 'number' }, { itemCount: 5 }, 100))).toBe(
      'no error',
    );
  });

  it('a page starting at or beyond a known total is not_found', () => {
    expect(
      codeOf(() => assertPageExists({ page: 3, source: 'token' }, { itemCount: 0, total: 200 }, 100)),
    ).toBe('not_found');
    expect(
      codeOf(() => assertPageExists({ page: 2, source: 'number' }, { itemCount: 50, total: 150 }, 100)),
    ).toBe('no error');
  });

  function pagedSource(pages: string[][]) {
    const calls: Array<string | undefined> = [];
    const fetchPage = async (cursor: string | undefined): Promise<Page<string>> => {
      calls.push(cursor);
      const index = cursor === undefined ? 0 : Number(cursor);
      const items = pages[index] ?? [];
      return { items, cursor: index + 1 < pages.length ? String(index + 1) : null };
    };
    return { calls, fetchPage };
  }

  it('seekPage follows cursors to a number page', async () => {
    const src = pagedSource([['a'], ['b'], ['c']]);
    const page = await seekPage({ page: 3, source: 'number' }, src.fetchPage);
    expect(page.items).toEqual(['c']);
    expect(src.calls).toEqual([undefined, '1', '2']);
  });

  it('seekPage past the end is not_found; huge page numbers are refused before any fetch', async () => {
    const src = pagedSource([['a'], ['b']]);
    expect(await asyncCodeOf(() => seekPage({ page: 4, source: 'number' }, src.fetchPage))).toBe('not_found');
    const calls = src.calls.length;
    expect(await asyncCodeOf(() => seekPage({ page: 101, source: 'number' }, src.fetchPage))).toBe(
      'invalid_parameters',
    );
    expect(src.calls.length).toBe(calls);
  });

  it('seekPage passes token cursors straight through', async () => {
    const src = pagedSource([['a'], ['b']]);
    const page = await seekPage({ page: 2, cursor: '1', source: 'token' }, src.fetchPage);
    expect(page.items).toEqual(['b']);
    expect(src.calls).toEqual(['1']);
  });
});

describe('pageResource', () => {
  it('is canonical: parameter order does not matter, values are encoded', () => {
    const a = pageResource('search', { q: 'a b&c', parents: ['x', 'y'] });
    const b = pageResource('search', { parents: ['x', 'y'], q: 'a b&c' });
    expect(a).toBe(b);
    expect(a).toBe('search?parents=x&parents=y&q=a%20b%26c');
    expect(pageResource('folders/x/contents')).toBe('folders/x/contents');
    expect(pageResource('search', { q: 'a', lang: undefined })).toBe('search?q=a');
  });
});
