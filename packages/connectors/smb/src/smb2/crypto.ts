/** SMB2/3 signing (HMAC-SHA256, AES-128-CMAC/GMAC), encryption (AES-128-GCM/CCM) and the SP800-108 KDF. */
import { createCipheriv, createDecipheriv, createHash, createHmac } from 'node:crypto';

/** RFC 4493 AES-CMAC with a 128-bit key. */
export function aesCmac(key: Buffer, message: Buffer): Buffer {
  const zero = Buffer.alloc(16);
  const ecb = createCipheriv('aes-128-ecb', key, null);
  ecb.setAutoPadding(false);
  const l = ecb.update(zero);
  const k1 = shiftLeft(l);
  const k2 = shiftLeft(k1);
  const blocks = Math.max(1, Math.ceil(message.length / 16));
  const complete = message.length > 0 && message.length % 16 === 0;
  const lastStart = (blocks - 1) * 16;
  const last = Buffer.alloc(16);
  message.copy(last, 0, lastStart);
  if (!complete) last[message.length - lastStart] = 0x80;
  const subkey = complete ? k1 : k2;
  for (let i = 0; i < 16; i++) last[i]! ^= subkey[i]!;
  const cbc = createCipheriv('aes-128-cbc', key, zero);
  cbc.setAutoPadding(false);
  // CBC-MAC: only the last ciphertext block matters; earlier output is dropped chunk by chunk.
  const step = 64 * 1024;
  for (let p = 0; p < lastStart; p += step) cbc.update(message.subarray(p, Math.min(lastStart, p + step)));
  return Buffer.from(cbc.update(last));
}

function shiftLeft(block: Buffer): Buffer {
  const out = Buffer.alloc(16);
  let carry = 0;
  for (let i = 15; i >= 0; i--) {
    const v = block[i]!;
    out[i] = ((v << 1) | carry) & 0xff;
    carry = v >> 7;
  }
  if (block[0]! & 0x80) out[15]! ^= 0x87;
  return out;
}

/** MS-SMB2 §3.1.4.2 / SP800-108 counter-mode KDF with HMAC-SHA256, L = 128. */
export function smb3Kdf(key: Buffer, label: string, context: Buffer): Buffer {
  const hmac = createHmac('sha256', key);
  hmac.update(Buffer.from([0, 0, 0, 1]));
  hmac.update(Buffer.from(label, 'latin1'));
  hmac.update(Buffer.from([0]));
  hmac.update(context);
  hmac.update(Buffer.from([0, 0, 0, 0x80]));
  return hmac.digest().subarray(0, 16);
}

export type SigningAlgorithm = 'hmac-sha256' | 'aes-cmac' | 'aes-gmac';

/**
 * AES-128-GMAC signing (MS-SMB2 §3.1.4.1, SMB 3.1.1 with SIGNING_CAPABILITIES): a GCM tag over the
 * message as AAD. The 12-byte nonce is the MessageId followed by a 32-bit word with bit 0 set on
 * server replies and bit 1 on CANCEL requests, both read from the header.
 */
export function aesGmac(key: Buffer, message: Buffer): Buffer {
  const nonce = Buffer.alloc(12);
  message.copy(nonce, 0, 24, 32);
  const flags = message.readUInt32LE(16);
  const cancel = message.readUInt16LE(12) === 0x000c;
  nonce.writeUInt32LE((flags & 0x1) | (cancel ? 0x2 : 0), 8);
  const gcm = createCipheriv('aes-128-gcm', key, nonce);
  gcm.setAAD(message);
  gcm.final();
  return gcm.getAuthTag();
}

/** MS-SMB2 §3.1.4.1: the signature of a message whose signature field is zero. */
export function signMessage(algorithm: SigningAlgorithm, key: Buffer, message: Buffer): Buffer {
  if (algorithm === 'hmac-sha256') return createHmac('sha256', key).update(message).digest().subarray(0, 16);
  if (algorithm === 'aes-gmac') return aesGmac(key, message);
  return aesCmac(key, message);
}

/** MS-SMB2 §3.2.5.2 / §3.3.5.5: SHA-512 chaining of the preauthentication integrity hash. */
export function preauthUpdate(previous: Buffer, message: Buffer): Buffer {
  return createHash('sha512').update(previous).update(message).digest();
}

export type CipherAlgorithm = 'aes-128-gcm' | 'aes-128-ccm';

/** Nonce length the transform header uses for each cipher (MS-SMB2 §2.2.41). */
export function nonceLength(cipher: CipherAlgorithm): number {
  return cipher === 'aes-128-gcm' ? 12 : 11;
}

/** MS-SMB2 §3.1.4.3: AEAD over the message; `aad` is the transform header from its Nonce field on. */
export function encryptMessage(
  cipher: CipherAlgorithm,
  key: Buffer,
  nonce: Buffer,
  aad: Buffer,
  message: Buffer,
): { ciphertext: Buffer; tag: Buffer } {
  if (cipher === 'aes-128-gcm') {
    const gcm = createCipheriv('aes-128-gcm', key, nonce);
    gcm.setAAD(aad);
    const ciphertext = Buffer.concat([gcm.update(message), gcm.final()]);
    return { ciphertext, tag: gcm.getAuthTag() };
  }
  const ccm = createCipheriv('aes-128-ccm', key, nonce, { authTagLength: 16 });
  ccm.setAAD(aad, { plaintextLength: message.length });
  const ciphertext = Buffer.concat([ccm.update(message), ccm.final()]);
  return { ciphertext, tag: ccm.getAuthTag() };
}

/** The inverse of `encryptMessage`; throws when the tag does not verify. */
export function decryptMessage(
  cipher: CipherAlgorithm,
  key: Buffer,
  nonce: Buffer,
  aad: Buffer,
  ciphertext: Buffer,
  tag: Buffer,
): Buffer {
  if (cipher === 'aes-128-gcm') {
    const gcm = createDecipheriv('aes-128-gcm', key, nonce);
    gcm.setAuthTag(tag);
    gcm.setAAD(aad);
    return Buffer.concat([gcm.update(ciphertext), gcm.final()]);
  }
  const ccm = createDecipheriv('aes-128-ccm', key, nonce, { authTagLength: 16 });
  ccm.setAuthTag(tag);
  ccm.setAAD(aad, { plaintextLength: ciphertext.length });
  return Buffer.concat([ccm.update(ciphertext), ccm.final()]);
}
