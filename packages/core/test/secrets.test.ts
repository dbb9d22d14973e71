import { describe, expect, it } from 'vitest';
import { CloudmuxError } from '../src/errors.js';
import {
  constantTimeEqual,
  createKeyring,
  createSecretBox,
  generateSecretKey,
  generateToken,
  hashToken,
  KEY_PURPOSES,
  Keyring,
  parseSecretKey,
  verifyToken,
} from '../src/secrets.js';

const HEX = '0123456789abcdef'.repeat(4);
const B64 = Buffer.alloc(32, 9).toString('base64');

function errorOf(fn: () => unknown): CloudmuxError | undefined {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof CloudmuxError)) throw new Error(`non-CloudmuxError thrown: ${String(error)}`);
    return error;
  }
  return undefined;
}

describe('secret keys', () => {
  it('parses hex, base64, base64url and explicit prefixes', () => {
    expect(parseSecretKey(HEX).equals(Buffer.from(HEX, 'hex'))).toBe(true);
    expect(parseSecretKey(B64).equals(Buffer.alloc(32, 9))).toBe(true);
    const url = Buffer.alloc(33, 0xfb).toString('base64url');
    expect(parseSecretKey(url).equals(Buffer.alloc(33, 0xfb))).toBe(true);
    expect(parseSecretKey(`hex:${HEX}`)).toHaveLength(32);
    // An all-hex string can be forced to base64.
    expect(parseSecretKey(`base64:${'ab'.repeat(32)}`)).toHaveLength(48);
    expect(parseSecretKey(`  ${HEX}\n`)).toHaveLength(32);
  });

  it('refuses short or malformed keys', () => {
    for (const bad of [
      '',
      'ab'.repeat(31),
      Buffer.alloc(31).toString('base64'),
      'not base64!'.repeat(5),
      `hex:${'zz'.repeat(32)}`,
    ]) {
      expect(errorOf(() => parseSecretKey(bad))?.code, bad).toBe('internal_error');
    }
    expect(errorOf(() => parseSecretKey(new Uint8Array(16)))?.message).toContain('at least 32 bytes');
  });

  it('generates fresh 32-byte keys', () => {
    const a = generateSecretKey();
    const b = generateSecretKey();
    expect(a).not.toBe(b);
    expect(parseSecretKey(a)).toHaveLength(32);
  });
});

describe('keyring and purpose derivation', () => {
  it('orders versions, picks the highest as active, and parses CLOUDMUX_SECRET_KEY lists', () => {
    const ring = createKeyring(`1:${HEX},3:${B64},2:hex:${HEX}`);
    expect(ring.versions).toEqual([3, 2, 1]);
    expect(ring.active).toBe(3);
    expect(createKeyring(HEX).versions).toEqual([1]);
    expect(
      new Keyring(
        [
          { version: 1, secret: HEX },
          { version: 2, secret: B64 },
        ],
        { active: 1 },
      ).active,
    ).toBe(1);
  });

  it('refuses bad versions and configurations', () => {
    for (const version of [0, 256, 1.5, -1]) {
      expect(errorOf(() => new Keyring([{ version, secret: HEX }]))?.code).toBe('internal_error');
    }
    expect(errorOf(() => new Keyring([]))?.code).toBe('internal_error');
    expect(
      errorOf(
        () =>
          new Keyring([
            { version: 1, secret: HEX },
            { version: 1, secret: B64 },
          ]),
      )?.code,
    ).toBe('internal_error');
    expect(errorOf(() => new Keyring([{ version: 1, secret: HEX }], { active: 2 }))?.code).toBe(
      'internal_error',
    );
    expect(errorOf(() => createKeyring(`1:${HEX},oops`))?.code).toBe('internal_error');
  });

  it('derives independent keys per purpose and per version, deterministically', () => {
    const ring = createKeyring(`1:${HEX},2:${B64}`);
    const derived = KEY_PURPOSES.map((p) => ring.derive(p, 1).toString('hex'));
    expect(new Set(derived).size).toBe(KEY_PURPOSES.length);
    // The id key and the credential key are different keys.
    expect(ring.derive('ids', 1, 64).subarray(0, 32).equals(ring.derive('credentials', 1))).toBe(false);
    expect(ring.derive('credentials', 1).equals(ring.derive('credentials', 2))).toBe(false);
    expect(ring.derive('credentials', 1).equals(createKeyring(`1:${HEX}`).derive('credentials', 1))).toBe(
      true,
    );
    expect(ring.derive('ids', 2, 64)).toHaveLength(64);
    expect(errorOf(() => ring.derive('IDS'))?.code).toBe('internal_error');
    expect(errorOf(() => ring.derive('ids', 9))?.code).toBe('internal_error');
  });

  it('adds and removes versions without changing the original keyring', () => {
    const ring = Keyring.fromSecret(HEX);
    const more = ring.withKey(2, B64);
    expect(ring.versions).toEqual([1]);
    expect(more.versions).toEqual([2, 1]);
    expect(more.without(2).active).toBe(1);
    expect(more.without(1).versions).toEqual([2]);
  });
});

describe('credentials at rest (AES-256-GCM)', () => {
  const ring = Keyring.fromSecret(HEX);
  const box = createSecretBox({ keys: ring });
  const aad = '42|refresh_token';

  it('round-trips strings and bytes', () => {
    const sealed = box.encrypt('1//0g-refresh-token', aad);
    expect(sealed).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain('refresh');
    expect(box.decryptString(sealed, aad)).toBe('1//0g-refresh-token');
    const bytes = Buffer.from([0, 1, 2, 255]);
    expect(box.decrypt(box.encrypt(bytes, aad), aad).equals(bytes)).toBe(true);
    expect(box.decryptString(box.encrypt('', aad), aad)).toBe('');
  });

  it('uses a random IV: the same secret seals differently each time', () => {
    expect(box.encrypt('x', aad)).not.toBe(box.encrypt('x', aad));
  });

  it('carries the key id in every ciphertext', () => {
    const sealed = box.encrypt('x', aad);
    expect(Buffer.from(sealed, 'base64url')[1]).toBe(1);
    expect(box.keyVersionOf(sealed)).toBe(1);
    expect(box.keyVersionOf('garbage!')).toBeUndefined();
  });

  it('refuses another row or field (AAD mismatch)', () => {
    const sealed = box.encrypt('token', aad);
    for (const other of ['43|refresh_token', '42|access_token', '', `${aad} `]) {
      expect(errorOf(() => box.decrypt(sealed, other))?.code).toBe('internal_error');
    }
    // A list AAD never equals the string spelling of the same parts.
    const listSealed = box.encrypt('token', ['42', 'refresh_token']);
    expect(box.decryptString(listSealed, ['42', 'refresh_token'])).toBe('token');
    expect(errorOf(() => box.decrypt(listSealed, '42|refresh_token'))).toBeDefined();
    expect(errorOf(() => box.decrypt(listSealed, ['42|', 'refresh_token']))).toBeDefined();
  });

  it('refuses every single-bit flip and every truncation', () => {
    const sealed = box.encrypt('token-value', aad);
    const bytes = Buffer.from(sealed, 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[i]! ^= 1 << bit;
        expect(errorOf(() => box.decrypt(flipped.toString('base64url'), aad))?.code).toBe('internal_error');
      }
    }
    for (let n = 0; n < sealed.length; n++) {
      expect(errorOf(() => box.decrypt(sealed.slice(0, n), aad))?.code).toBe('internal_error');
    }
  });

  it('refuses the wrong key and garbage', () => {
    const sealed = box.encrypt('token', aad);
    const other = createSecretBox({ keys: Keyring.fromSecret(B64) });
    expect(errorOf(() => other.decrypt(sealed, aad))?.message).toContain('authentication failed');
    // Same secret, another purpose: the webhook key does not open credentials.
    const webhooks = createSecretBox({ keys: ring, purpose: 'webhooks' });
    expect(errorOf(() => webhooks.decrypt(sealed, aad))?.code).toBe('internal_error');
    for (const garbage of ['', 'abc', '!!!!', 'A'.repeat(200), 5, null, undefined]) {
      expect(errorOf(() => box.decrypt(garbage as never, aad))?.code).toBe('internal_error');
    }
  });

  it('rotates: old ciphertexts decrypt, new ones use the new kid, re-encrypt moves them', () => {
    const old = box.encrypt('token', aad);
    const rotatedRing = ring.withKey(2, B64);
    const rotated = createSecretBox({ keys: rotatedRing });
    expect(rotated.decryptString(old, aad)).toBe('token');
    const fresh = rotated.encrypt('token', aad);
    expect(rotated.keyVersionOf(fresh)).toBe(2);

    const moved = rotated.reencrypt(old, aad);
    expect(moved.changed).toBe(true);
    expect(rotated.keyVersionOf(moved.sealed)).toBe(2);
    expect(rotated.decryptString(moved.sealed, aad)).toBe('token');
    expect(rotated.reencrypt(moved.sealed, aad)).toEqual({ sealed: moved.sealed, changed: false });
    // Re-encrypting with the wrong AAD fails rather than laundering the value.
    expect(errorOf(() => rotated.reencrypt(old, 'other'))?.code).toBe('internal_error');

    const retired = createSecretBox({ keys: rotatedRing.without(1) });
    expect(retired.decryptString(moved.sealed, aad)).toBe('token');
    expect(errorOf(() => retired.decrypt(old, aad))?.message).toContain(
      'key version 1 is not in the keyring',
    );
  });
});

describe('hashed tokens', () => {
  it('hashes with SHA-256 (FIPS 180-2 "abc" vector)', () => {
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('verifies tokens against their stored hash', () => {
    const token = generateToken('cmx_');
    expect(token.startsWith('cmx_')).toBe(true);
    expect(Buffer.from(token.slice(4), 'base64url')).toHaveLength(32);
    const stored = hashToken(token);
    expect(verifyToken(token, stored)).toBe(true);
    expect(verifyToken(token, stored.toUpperCase())).toBe(true);
    expect(verifyToken(`${token}x`, stored)).toBe(false);
    expect(verifyToken(generateToken('cmx_'), stored)).toBe(false);
    expect(verifyToken(5 as never, stored)).toBe(false);
  });

  it('compares in constant time, across lengths', () => {
    expect(constantTimeEqual('abc', 'abc')).toBe(true);
    expect(constantTimeEqual('abc', 'abd')).toBe(false);
    expect(constantTimeEqual('abc', 'abcd')).toBe(false);
    expect(constantTimeEqual('', '')).toBe(true);
    expect(constantTimeEqual(Buffer.from('x'), 'x')).toBe(true);
  });
});
