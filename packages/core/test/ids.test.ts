import { createCipheriv, createHmac, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
// Direct module imports: these tests do not depend on the rest of core loading.
import { CloudmuxError } from '../src/errors.js';
import { createIdCodec, type IdCodec, isSpecialId, MAX_ID_LENGTH } from '../src/ids.js';
import { Keyring } from '../src/secrets.js';

const SECRET_1 = 'a'.repeat(64); // hex, 32 bytes
const SECRET_2 = Buffer.alloc(32, 7).toString('base64');
const ctx = { accountId: 42, service: 'dropbox' } as const;
const file = { ...ctx, type: 'file' } as const;

function codec(options: { keys?: Keyring; cacheSize?: number; version?: number } = {}): IdCodec {
  return createIdCodec({ keys: options.keys ?? Keyring.fromSecret(SECRET_1), ...options });
}

/** Runs `fn` and returns the CloudmuxError code it threw; fails the test on anything else. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof CloudmuxError)) throw new Error(`non-CloudmuxError thrown: ${String(error)}`);
    return error.code;
  }
  return 'no error';
}

// Deterministic PRNG so a failing fuzz case can be replayed.
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RAW_IDS = [
  'id:6e7mtBeH4sAAAAAAAADLaA',
  '/Documents/report.pdf',
  '',
  'root',
  'ünïcødé/ファイル/😀.txt',
  'a|b\u0000c\n',
  'x'.repeat(1000),
];

describe('id codec: round trip and format', () => {
  it('round-trips raw ids of every kind, with and without the cache', () => {
    for (const cacheSize of [0, 100]) {
      const c = codec({ cacheSize });
      for (const rawId of RAW_IDS) {
        for (const type of ['file', 'folder', 'link', 'contact']) {
          const id = c.encode({ ...ctx, type, rawId });
          expect(c.decode(id, { ...ctx, type })).toBe(rawId);
          expect(c.open(id, ctx)).toEqual({ type, rawId, version: 1 });
        }
      }
    }
  });

  it('is URL-safe base64url without padding', () => {
    const c = codec();
    for (const rawId of RAW_IDS) {
      const id = c.encode({ ...file, rawId });
      expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(encodeURIComponent(id)).toBe(id);
    }
  });

  it('is deterministic across codec instances and processes with the same key', () => {
    const a = codec().encode({ ...file, rawId: 'id:abc' });
    const b = codec({ cacheSize: 0 }).encode({ ...file, rawId: 'id:abc' });
    expect(a).toBe(b);
    expect(a).toBe(codec().encode({ accountId: '42', service: 'dropbox', type: 'file', rawId: 'id:abc' }));
    // Pinned: a change of byte layout or key derivation would silently re-id every stored object.
    expect(a).toBe('Ab9_eOcrYd_JHP274FTjMIU889FjLQ0RmEpwDg');
  });

  // kv ‖ V = HMAC-SHA256(k_mac, u32(|A|) ‖ A ‖ P)[:16] ‖ AES-256-CTR(k_enc, V, P)
  it('follows the byte layout documented in docs/ids.md', () => {
    const rawId = 'id:layout/ü';
    const id = codec().encode({ ...file, rawId });
    const bytes = Buffer.from(id, 'base64url');
    // Independent recomputation from docs/ids.md.
    const material = Buffer.from(
      hkdfSync('sha256', Buffer.from(SECRET_1, 'hex'), 'cloudmux keyring v1', 'cloudmux/ids/64', 64),
    );
    const [kMac, kEnc] = [material.subarray(0, 32), material.subarray(32)];
    const part = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
    const aad = Buffer.concat([
      part(Buffer.from('cloudmux/id')),
      part(Buffer.from([1])),
      part(Buffer.from('dropbox')),
      part(Buffer.from('42')),
    ]);
    const plaintext = Buffer.concat([Buffer.from([4]), Buffer.from('file'), Buffer.from(rawId, 'utf8')]);
    const aadLen = Buffer.alloc(4);
    aadLen.writeUInt32BE(aad.length);
    const v = createHmac('sha256', kMac)
      .update(aadLen)
      .update(aad)
      .update(plaintext)
      .digest()
      .subarray(0, 16);
    // CTR keystream from single-block ECB encryptions of V, V+1, … (SP 800-38A), not node's CTR mode.
    const ecb = createCipheriv('aes-256-ecb', kEnc, null).setAutoPadding(false);
    const counters = Buffer.alloc(Math.ceil(plaintext.length / 16) * 16);
    for (let i = 0; i < counters.length / 16; i++) {
      const block = Buffer.from(v);
      let carry = i;
      for (let j = 15; j >= 0 && carry > 0; j--) {
        const sum = block[j]! + (carry & 0xff);
        block[j] = sum & 0xff;
        carry = (carry >>> 8) + (sum >> 8);
      }
      block.copy(counters, i * 16);
    }
    const stream = ecb.update(counters);
    const c = Buffer.from(plaintext.map((b, i) => b ^ stream[i]!));
    expect(bytes[0]).toBe(1);
    expect(bytes.subarray(1, 17).equals(v)).toBe(true);
    expect(bytes.subarray(17).equals(c)).toBe(true);
  });

  it('fits the largest raw id in 8,192 characters and refuses a longer one at encode time', () => {
    const c = codec();
    for (const type of ['file', 'folder', 'permission']) {
      const max = c.maxRawIdBytes(type);
      const id = c.encode({ ...ctx, type, rawId: 'r'.repeat(max) });
      expect(id.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
      expect(c.decode(id, { ...ctx, type })).toBe('r'.repeat(max));
      const error = (() => {
        try {
          c.encode({ ...ctx, type, rawId: 'r'.repeat(max + 1) });
        } catch (e) {
          return e as CloudmuxError;
        }
      })();
      expect(error).toBeInstanceOf(CloudmuxError);
      expect(error!.code).toBe('invalid_parameters');
      expect(error!.message).toContain(`at most ${max} bytes`);
    }
    // Multi-byte characters count as their UTF-8 bytes.
    const max = c.maxRawIdBytes('file');
    expect(codeOf(() => c.encode({ ...file, rawId: 'é'.repeat(Math.floor(max / 2) + 1) }))).toBe(
      'invalid_parameters',
    );
  });

  it('refuses invalid input at encode time with invalid_parameters', () => {
    const c = codec();
    expect(codeOf(() => c.encode({ ...file, rawId: '\uD800' }))).toBe('invalid_parameters');
    expect(codeOf(() => c.encode({ ...file, rawId: 5 as unknown as string }))).toBe('invalid_parameters');
    expect(codeOf(() => c.encode({ ...ctx, type: 'File', rawId: 'x' }))).toBe('invalid_parameters');
    expect(codeOf(() => c.encode({ ...ctx, type: 'a|b', rawId: 'x' }))).toBe('invalid_parameters');
    expect(codeOf(() => c.encode({ ...file, service: 'Drop|box', rawId: 'x' }))).toBe('invalid_parameters');
    expect(codeOf(() => c.encode({ ...file, accountId: '', rawId: 'x' }))).toBe('invalid_parameters');
    expect(codeOf(() => c.encode({ ...file, accountId: 1.5, rawId: 'x' }))).toBe('invalid_parameters');
    expect(codeOf(() => c.bind({ accountId: 42, service: '' }))).toBe('invalid_parameters');
  });
});

describe('id codec: binding and confusion', () => {
  const c = codec();
  const id = c.encode({ ...file, rawId: 'id:shared' });

  it('an id of account A is not_found on account B', () => {
    expect(codeOf(() => c.decode(id, { ...file, accountId: 43 }))).toBe('not_found');
    expect(codeOf(() => c.decode(id, { ...file, accountId: '420' }))).toBe('not_found');
    // Equal raw ids in two accounts give unrelated ids.
    expect(c.encode({ ...file, accountId: 43, rawId: 'id:shared' })).not.toBe(id);
  });

  it('an id of one service is not_found on another', () => {
    expect(codeOf(() => c.decode(id, { ...file, service: 'gdrive' }))).toBe('not_found');
    expect(c.encode({ ...file, service: 'gdrive', rawId: 'id:shared' })).not.toBe(id);
  });

  it('a folder id used as a file id is not_found, and vice versa', () => {
    const folderId = c.encode({ ...ctx, type: 'folder', rawId: 'id:shared' });
    expect(folderId).not.toBe(id);
    expect(codeOf(() => c.decode(folderId, { ...ctx, type: 'file' }))).toBe('not_found');
    expect(codeOf(() => c.decode(id, { ...ctx, type: 'folder' }))).toBe('not_found');
    expect(c.decode(folderId, { ...ctx, type: ['file', 'folder'] })).toBe('id:shared');
  });

  it('the cache never answers for another context', () => {
    const cached = codec({ cacheSize: 1000 });
    const a = cached.encode({ ...file, rawId: 'id:x' });
    expect(cached.decode(a, file)).toBe('id:x');
    expect(codeOf(() => cached.decode(a, { ...file, accountId: 7 }))).toBe('not_found');
    expect(codeOf(() => cached.decode(a, { ...file, service: 'box' }))).toBe('not_found');
    expect(codeOf(() => cached.decode(a, { ...ctx, type: 'folder' }))).toBe('not_found');
    // Account 4 + service "2|dropbox" cannot alias account 42 + "dropbox": such services are refused.
    expect(codeOf(() => cached.decode(a, { ...file, accountId: 4, service: '2|dropbox' }))).toBe('not_found');
    expect(cached.cacheStats().hits).toBeGreaterThan(0);
  });

  it('a bound scope behaves like the unbound calls', () => {
    const scope = c.bind(ctx);
    expect(scope.encode('file', 'id:shared')).toBe(id);
    expect(scope.decode(id, 'file')).toBe('id:shared');
    expect(codeOf(() => c.bind({ ...ctx, accountId: 43 }).decode(id, 'file'))).toBe('not_found');
  });
});

describe('id codec: key versions', () => {
  const v1 = Keyring.fromSecret(SECRET_1);
  const v12 = v1.withKey(2, SECRET_2);
  const oldId = codec({ keys: v1 }).encode({ ...file, rawId: 'id:k' });

  it('old ids keep decoding after a key is added; new ids use the new key', () => {
    const c = codec({ keys: v12 });
    expect(c.version).toBe(2);
    expect(c.decode(oldId, file)).toBe('id:k');
    expect(c.open(oldId, ctx).version).toBe(1);
    const newId = c.encode({ ...file, rawId: 'id:k' });
    expect(newId).not.toBe(oldId);
    expect(Buffer.from(newId, 'base64url')[0]).toBe(2);
    expect(c.open(newId, ctx).version).toBe(2);
  });

  it('minting can stay on an older version so ids do not change when only the credential key rotates', () => {
    expect(codec({ keys: v12, version: 1 }).encode({ ...file, rawId: 'id:k' })).toBe(oldId);
    expect(codeOf(() => createIdCodec({ keys: v1, version: 3 }))).toBe('internal_error');
  });

  it('an id under a removed key is not_found', () => {
    const v2 = v12.without(1);
    const c = codec({ keys: v2 });
    expect(codeOf(() => c.decode(oldId, file))).toBe('not_found');
    expect(c.decode(c.encode({ ...file, rawId: 'id:k' }), file)).toBe('id:k');
  });

  it('an id under a different secret with the same version is not_found', () => {
    const other = codec({ keys: Keyring.fromSecret(SECRET_2) });
    expect(codeOf(() => other.decode(oldId, file))).toBe('not_found');
  });
});

describe('id codec: tamper, truncation and garbage → not_found, never another exception', () => {
  const c = codec();
  const id = c.encode({ ...file, rawId: 'id:6e7mtBeH4sAAAAAAAADLaA' });
  const bytes = Buffer.from(id, 'base64url');

  it('every single-bit flip of the id bytes is not_found', () => {
    let checked = 0;
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[i]! ^= 1 << bit;
        expect(codeOf(() => c.decode(flipped.toString('base64url'), file))).toBe('not_found');
        checked++;
      }
    }
    expect(checked).toBe(bytes.length * 8);
  });

  it('every single-bit flip of the id characters is not_found (incl. non-canonical last characters)', () => {
    for (let i = 0; i < id.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const ch = String.fromCharCode(id.charCodeAt(i) ^ (1 << bit));
        const tampered = id.slice(0, i) + ch + id.slice(i + 1);
        expect(codeOf(() => c.decode(tampered, file))).toBe('not_found');
      }
    }
  });

  it('non-canonical spellings of a genuine id (other spare bits in the last character) are not_found', () => {
    const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    let aliases = 0;
    // Raw ids of three lengths, so the byte count hits every remainder mod 3.
    for (const rawId of ['id:a', 'id:ab', 'id:abc']) {
      const genuine = c.encode({ ...file, rawId });
      for (const ch of b64) {
        const variant = genuine.slice(0, -1) + ch;
        if (variant === genuine) continue;
        if (Buffer.from(variant, 'base64url').equals(Buffer.from(genuine, 'base64url'))) aliases++;
        expect(codeOf(() => c.decode(variant, file))).toBe('not_found');
      }
    }
    // Two of the three lengths leave spare bits, so aliases exist and were refused.
    expect(aliases).toBeGreaterThan(0);
  });

  it('every truncation and every extension is not_found', () => {
    for (let n = 0; n < id.length; n++)
      expect(codeOf(() => c.decode(id.slice(0, n), file))).toBe('not_found');
    for (const suffix of ['A', 'AA', 'AAAA', '=', '==', '%3D', '.', ' ']) {
      expect(codeOf(() => c.decode(id + suffix, file))).toBe('not_found');
    }
    expect(codeOf(() => c.decode(` ${id}`, file))).toBe('not_found');
  });

  it('fuzzed strings and bytes are not_found', () => {
    const rand = prng(20260501);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=%. \u0000é😀';
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(rand() * 120);
      let s = '';
      for (let j = 0; j < len; j++) s += alphabet[Math.floor(rand() * alphabet.length)];
      expect(codeOf(() => c.decode(s, file))).toBe('not_found');
      // Random bytes with a valid key-version byte, in canonical base64url.
      const b = Buffer.from(
        Array.from({ length: 1 + Math.floor(rand() * 90) }, () => Math.floor(rand() * 256)),
      );
      b[0] = 1;
      expect(codeOf(() => c.open(b.toString('base64url'), ctx))).toBe('not_found');
    }
  });

  it('non-string, over-long and special inputs are not_found', () => {
    const values: unknown[] = [
      undefined,
      null,
      0,
      1,
      NaN,
      true,
      {},
      [],
      [id],
      { toString: () => id },
      Symbol('x'),
      10n,
      Buffer.from(id),
      'A'.repeat(MAX_ID_LENGTH + 4),
      `${id}${'A'.repeat(MAX_ID_LENGTH)}`,
      'root',
      'trash',
    ];
    for (const value of values) expect(codeOf(() => c.decode(value, file))).toBe('not_found');
  });

  it('garbage decode options are not_found, not a crash', () => {
    const bad: unknown[] = [
      undefined,
      null,
      {},
      { ...ctx },
      { ...ctx, type: 5 },
      { accountId: {}, service: 'x', type: 'file' },
    ];
    for (const options of bad) {
      expect(codeOf(() => c.decode(id, options as never))).toBe('not_found');
      expect(codeOf(() => c.resolve(id, options as never))).toBe('not_found');
    }
    expect(codeOf(() => c.open(id, undefined as never))).toBe('not_found');
  });
});

describe('special ids', () => {
  const c = codec();
  const special = { rootRawId: '/', trashRawId: '.trash' };

  it('root and trash resolve to the connector raw ids for folders', () => {
    expect(isSpecialId('root')).toBe(true);
    expect(isSpecialId('trash')).toBe(true);
    expect(isSpecialId('ROOT')).toBe(false);
    expect(c.resolve('root', { ...ctx, type: 'folder', ...special })).toBe('/');
    expect(c.resolve('trash', { ...ctx, type: ['file', 'folder'], ...special })).toBe('.trash');
    const id = c.encode({ ...ctx, type: 'folder', rawId: '/a' });
    expect(c.resolve(id, { ...ctx, type: 'folder', ...special })).toBe('/a');
  });

  it('root as a file id, or trash on a connector without trash, is not_found', () => {
    expect(codeOf(() => c.resolve('root', { ...ctx, type: 'file', ...special }))).toBe('not_found');
    expect(codeOf(() => c.resolve('trash', { ...ctx, type: 'folder', rootRawId: '/' }))).toBe('not_found');
    expect(codeOf(() => c.bind(ctx).resolve('trash', 'folder'))).toBe('not_found');
  });
});

describe('cache', () => {
  it('is bounded and counts hits', () => {
    const c = codec({ cacheSize: 50 });
    for (let i = 0; i < 500; i++) c.encode({ ...file, rawId: `id:${i}` });
    expect(c.cacheStats().size).toBeLessThanOrEqual(100);
    const before = c.cacheStats().hits;
    c.encode({ ...file, rawId: 'id:499' });
    expect(c.cacheStats().hits).toBe(before + 1);
    c.clearCache();
    expect(c.cacheStats().size).toBe(0);
  });

  it('evicts the least recently used entry', () => {
    const c = codec({ cacheSize: 2 });
    c.encode({ ...file, rawId: 'a' });
    c.encode({ ...file, rawId: 'b' });
    c.encode({ ...file, rawId: 'a' }); // a is now most recent
    c.encode({ ...file, rawId: 'c' }); // evicts b
    const hits = c.cacheStats().hits;
    c.encode({ ...file, rawId: 'a' });
    expect(c.cacheStats().hits).toBe(hits + 1);
    c.encode({ ...file, rawId: 'b' });
    expect(c.cacheStats().hits).toBe(hits + 1);
  });
});
