/**
 * Deterministic authenticated encryption on `node:crypto` (Node 20's OpenSSL has no SIV cipher):
 * the generic SIV composition of Rogaway & Shrimpton ("Deterministic Authenticated-Encryption",
 * EUROCRYPT 2006) — the construction RFC 5297 instantiates with CMAC — instantiated here with
 * HMAC-SHA256 as the PRF and AES-256-CTR as the IV-based cipher:
 *
 *   V = HMAC-SHA256(K_mac, u32be(|A|) ‖ A ‖ P)[0..16)     synthetic IV, over the whole AAD and plaintext
 *   C = AES-256-CTR(K_enc, initial counter block V, P)
 *   output V ‖ C
 *
 * Open recomputes V from the decrypted plaintext and compares it in constant time; nothing is
 * released when the comparison fails. Soundness rests on: HMAC-SHA256 being a PRF on an
 * unambiguously encoded (A, P) pair (A is length-prefixed, P is the rest), CTR with a
 * pseudo-random IV being IND$-CPA, and K_mac, K_enc being independent (both come from HKDF).
 * Equal (A, P) give equal outputs — the leak a deterministic scheme has by definition.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';

/** Bytes of the synthetic IV, which is also the authentication tag. */
export const SIV_BYTES = 16;

export interface SivKey {
  /** 32 bytes, HMAC-SHA256 key. */
  readonly mac: Buffer;
  /** 32 bytes, AES-256 key. */
  readonly enc: Buffer;
}

/** Splits 64 bytes of purpose-derived key material into the MAC and encryption halves. */
export function sivKeyFrom(material: Uint8Array): SivKey {
  if (material.length !== 64) throw new RangeError('SIV key material must be 64 bytes');
  const buf = Buffer.from(material);
  return { mac: buf.subarray(0, 32), enc: buf.subarray(32, 64) };
}

/** Unambiguous byte encoding of several associated-data components: u32be length ‖ bytes, each. */
export function encodeAad(parts: ReadonlyArray<string | Uint8Array>): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const bytes = typeof part === 'string' ? Buffer.from(part, 'utf8') : Buffer.from(part);
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(bytes.length, 0);
    chunks.push(len, bytes);
  }
  return Buffer.concat(chunks);
}

function syntheticIv(key: SivKey, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(aad.length, 0);
  return createHmac('sha256', key.mac)
    .update(len)
    .update(aad)
    .update(plaintext)
    .digest()
    .subarray(0, SIV_BYTES);
}

/**
 * Encrypts `plaintext` deterministically; returns `prefix ‖ V ‖ C` (the prefix, e.g. a key version
 * byte, is copied as is: authenticate it by putting it in `aad` too).
 */
export function sivSeal(key: SivKey, aad: Uint8Array, plaintext: Uint8Array, prefix?: Uint8Array): Buffer {
  const iv = syntheticIv(key, aad, plaintext);
  const pre = prefix?.length ?? 0;
  const out = Buffer.allocUnsafe(pre + SIV_BYTES + plaintext.length);
  if (prefix !== undefined) out.set(prefix, 0);
  iv.copy(out, pre);
  // SP 800-38A §6.5 CTR; OpenSSL increments the whole 128-bit block, and ids are far below 2^128 blocks.
  // CTR has no padding: update() returns every byte and final() would add nothing, so it is skipped.
  createCipheriv('aes-256-ctr', key.enc, iv)
    .update(plaintext)
    .copy(out, pre + SIV_BYTES);
  return out;
}

/** Opens `V ‖ C`; returns the plaintext, or `null` when it is not authentic under `key` and `aad`. */
export function sivOpen(key: SivKey, aad: Uint8Array, sealed: Uint8Array): Buffer | null {
  if (sealed.length < SIV_BYTES) return null;
  const iv = sealed.subarray(0, SIV_BYTES);
  const plaintext = createDecipheriv('aes-256-ctr', key.enc, iv).update(sealed.subarray(SIV_BYTES));
  const expected = syntheticIv(key, aad, plaintext);
  return timingSafeEqual(expected, iv) ? plaintext : null;
}
