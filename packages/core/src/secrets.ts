/**
 * Key material and secrets at rest.
 *
 * One operator secret per key version (`CLOUDMUX_SECRET_KEY`, ≥ 32 bytes, base64 or hex) feeds
 * HKDF-SHA256 (RFC 5869), which derives an independent key per purpose — ids, paging tokens,
 * credentials, webhooks — so no two features ever share a key. Credentials are sealed with
 * AES-256-GCM under a random 96-bit IV, the key version (kid) in every ciphertext and caller-supplied
 * associated data binding the ciphertext to its row and field.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { CloudmuxError } from './errors.js';

/** Purposes with their own derived key. Any other lowercase name works too; these are the known ones. */
export const KEY_PURPOSES = ['ids', 'paging', 'credentials', 'webhooks', 'sessions'] as const;
export type KnownKeyPurpose = (typeof KEY_PURPOSES)[number];
export type KeyPurpose = KnownKeyPurpose | (string & {});

/** Smallest operator secret accepted, in bytes. */
export const MIN_SECRET_BYTES = 32;
/** Key versions are one byte on the wire; 0 is reserved as a future format escape. */
export const MAX_KEY_VERSION = 255;

const HKDF_SALT = Buffer.from('cloudmux keyring v1', 'utf8');
const PURPOSE_RE = /^[a-z][a-z0-9_-]{0,63}$/;

function configError(message: string): CloudmuxError {
  // Configuration faults surface at startup; they are never a client's fault.
  return new CloudmuxError('internal_error', `[cloudmux] ${message}`);
}

/**
 * Decodes an operator secret: `hex:…` / `base64:…` prefixes are explicit; otherwise an even-length
 * all-hex string is hex and anything else is base64 or base64url. Must decode to ≥ 32 bytes.
 */
export function parseSecretKey(value: string | Uint8Array): Buffer {
  if (typeof value !== 'string') {
    if (!(value instanceof Uint8Array)) throw configError('secret key must be a string or bytes');
    if (value.length < MIN_SECRET_BYTES)
      throw configError(`secret key must be at least ${MIN_SECRET_BYTES} bytes`);
    return Buffer.from(value);
  }
  let text = value.trim();
  let encoding: 'hex' | 'base64' | undefined;
  if (text.startsWith('hex:')) {
    encoding = 'hex';
    text = text.slice(4);
  } else if (text.startsWith('base64:')) {
    encoding = 'base64';
    text = text.slice(7);
  }
  encoding ??= /^(?:[0-9a-fA-F]{2})+$/.test(text) ? 'hex' : 'base64';
  const valid = encoding === 'hex' ? /^(?:[0-9a-fA-F]{2})+$/ : /^[A-Za-z0-9+/_-]+={0,2}$/;
  if (!valid.test(text)) throw configError(`secret key is not valid ${encoding}`);
  const bytes = Buffer.from(text, encoding === 'hex' ? 'hex' : 'base64');
  if (bytes.length < MIN_SECRET_BYTES) {
    throw configError(`secret key must decode to at least ${MIN_SECRET_BYTES} bytes (got ${bytes.length})`);
  }
  return bytes;
}

/** A fresh 32-byte operator secret (base64url) for `CLOUDMUX_SECRET_KEY` or `cloudmux secret rotate`. */
export function generateSecretKey(): string {
  return randomBytes(32).toString('base64url');
}

export interface KeyringEntry {
  version: number;
  secret: string | Uint8Array;
}

/**
 * Versioned operator secrets. `active` (default: the highest version) is what new ciphertexts and
 * ids are minted under; every version present keeps decrypting.
 */
export class Keyring {
  readonly active: number;
  /** Versions, highest first. */
  readonly versions: readonly number[];
  readonly #secrets = new Map<number, Buffer>();
  readonly #derived = new Map<string, Buffer>();

  constructor(entries: readonly KeyringEntry[], options: { active?: number } = {}) {
    if (entries.length === 0) throw configError('keyring needs at least one key');
    for (const entry of entries) {
      const { version } = entry;
      if (!Number.isInteger(version) || version < 1 || version > MAX_KEY_VERSION) {
        throw configError(`key version must be an integer in 1..${MAX_KEY_VERSION} (got ${String(version)})`);
      }
      if (this.#secrets.has(version)) throw configError(`key version ${version} appears twice`);
      this.#secrets.set(version, parseSecretKey(entry.secret));
    }
    this.versions = Object.freeze([...this.#secrets.keys()].sort((a, b) => b - a));
    const active = options.active ?? this.versions[0]!;
    if (!this.#secrets.has(active)) throw configError(`active key version ${active} is not in the keyring`);
    this.active = active;
  }

  /** One secret as version 1 (or `version`). */
  static fromSecret(secret: string | Uint8Array, version = 1): Keyring {
    return new Keyring([{ version, secret }]);
  }

  /**
   * Parses `CLOUDMUX_SECRET_KEY`: either one secret (version 1) or a comma-separated list of
   * `version:secret` pairs, e.g. `2:base64…,1:hex:…`. The highest version is active.
   */
  static parse(spec: string): Keyring {
    if (typeof spec !== 'string' || spec.trim() === '') throw configError('secret key is empty');
    const items = spec.split(',').map((s) => s.trim());
    if (items.length === 1 && !/^\d{1,3}:/.test(items[0]!)) return Keyring.fromSecret(items[0]!);
    return new Keyring(
      items.map((item) => {
        const match = /^(\d{1,3}):(.+)$/.exec(item);
        if (!match) throw configError('each keyring item must be "version:secret"');
        return { version: Number(match[1]), secret: match[2]! };
      }),
    );
  }

  has(version: number): boolean {
    return this.#secrets.has(version);
  }

  /** Adds a new version (active unless `active` says otherwise); the original is unchanged. */
  withKey(version: number, secret: string | Uint8Array, options: { active?: number } = {}): Keyring {
    const entries = [...this.#secrets].map(([v, s]) => ({ version: v, secret: s as Uint8Array }));
    return new Keyring([...entries, { version, secret }], options);
  }

  /** Drops a retired version; ids and ciphertexts under it stop decoding. */
  without(version: number): Keyring {
    const entries = [...this.#secrets]
      .filter(([v]) => v !== version)
      .map(([v, s]) => ({ version: v, secret: s }));
    const active = this.active === version ? undefined : this.active;
    return new Keyring(entries, active === undefined ? {} : { active });
  }

  /**
   * HKDF-SHA256(secret_v, salt = "cloudmux keyring v1", info = "cloudmux/<purpose>/<length>", length).
   * Different purposes give independent keys; the length is in `info` too, so a shorter key of one
   * purpose is never a prefix of a longer one. Results are cached per keyring.
   */
  derive(purpose: KeyPurpose, version: number = this.active, length = 32): Buffer {
    if (!PURPOSE_RE.test(purpose)) throw configError(`invalid key purpose "${purpose}"`);
    const secret = this.#secrets.get(version);
    if (secret === undefined) throw configError(`key version ${version} is not in the keyring`);
    const cacheKey = `${purpose}/${version}/${length}`;
    let key = this.#derived.get(cacheKey);
    if (key === undefined) {
      // RFC 5869 HKDF with SHA-256.
      key = Buffer.from(hkdfSync('sha256', secret, HKDF_SALT, `cloudmux/${purpose}/${length}`, length));
      this.#derived.set(cacheKey, key);
    }
    return key;
  }
}

export function createKeyring(
  entries: readonly KeyringEntry[] | string,
  options: { active?: number } = {},
): Keyring {
  return typeof entries === 'string' ? Keyring.parse(entries) : new Keyring(entries, options);
}

// --- credentials at rest ----------------------------------------------------------------------

/** Format byte of sealed secrets; the kid follows it. */
const SECRET_FORMAT = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 2;

/** Associated data: a string, or parts encoded unambiguously (`["42", "refresh_token"]`). */
export type SecretAad = string | readonly string[];

function aadBytes(header: Buffer, aad: SecretAad): Buffer {
  if (typeof aad === 'string') return Buffer.concat([header, Buffer.from(aad, 'utf8')]);
  if (!Array.isArray(aad) || aad.some((p) => typeof p !== 'string')) {
    throw new CloudmuxError('internal_error', 'Associated data must be a string or a list of strings.');
  }
  const parts = aad.map((p) => {
    const bytes = Buffer.from(p, 'utf8');
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(bytes.length, 0);
    return Buffer.concat([len, bytes]);
  });
  // 0xff marks the list form so "a|b" as a string never equals any list.
  return Buffer.concat([header, Buffer.from([0xff]), ...parts]);
}

function decryptError(message: string): CloudmuxError {
  return new CloudmuxError('internal_error', `Stored secret could not be decrypted: ${message}.`);
}

export interface SecretBox {
  /** Seals under the active key: base64url(0x01 ‖ kid ‖ iv[12] ‖ ciphertext ‖ tag[16]). */
  encrypt(plaintext: string | Uint8Array, aad: SecretAad): string;
  /** Opens with whichever key the kid names; wrong key, AAD or any tampering → `internal_error`. */
  decrypt(sealed: string, aad: SecretAad): Buffer;
  decryptString(sealed: string, aad: SecretAad): string;
  /** The key version a sealed value was made under, or `undefined` if it is not one. */
  keyVersionOf(sealed: string): number | undefined;
  /** For `cloudmux secret rotate`: re-seals under the active key; `changed` is false if already current. */
  reencrypt(sealed: string, aad: SecretAad): { sealed: string; changed: boolean };
}

export function createSecretBox(options: { keys: Keyring; purpose?: KeyPurpose }): SecretBox {
  const { keys } = options;
  const purpose = options.purpose ?? 'credentials';

  function parse(sealed: string): { kid: number; bytes: Buffer } | undefined {
    if (typeof sealed !== 'string' || !/^[A-Za-z0-9_-]+$/.test(sealed)) return undefined;
    const bytes = Buffer.from(sealed, 'base64url');
    if (bytes.length < HEADER_BYTES + IV_BYTES + TAG_BYTES || bytes[0] !== SECRET_FORMAT) return undefined;
    return { kid: bytes[1]!, bytes };
  }

  function encrypt(plaintext: string | Uint8Array, aad: SecretAad): string {
    const data = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : Buffer.from(plaintext);
    const kid = keys.active;
    const header = Buffer.from([SECRET_FORMAT, kid]);
    const iv = randomBytes(IV_BYTES);
    // NIST SP 800-38D AES-GCM; random 96-bit IVs are fine far below 2^32 messages per key.
    const cipher = createCipheriv('aes-256-gcm', keys.derive(purpose, kid), iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aadBytes(header, aad));
    const body = Buffer.concat([cipher.update(data), cipher.final()]);
    return Buffer.concat([header, iv, body, cipher.getAuthTag()]).toString('base64url');
  }

  function decrypt(sealed: string, aad: SecretAad): Buffer {
    const parsed = parse(sealed);
    if (parsed === undefined) throw decryptError('not a sealed value');
    const { kid, bytes } = parsed;
    if (!keys.has(kid)) throw decryptError(`key version ${kid} is not in the keyring`);
    const iv = bytes.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES);
    const tag = bytes.subarray(bytes.length - TAG_BYTES);
    const body = bytes.subarray(HEADER_BYTES + IV_BYTES, bytes.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv('aes-256-gcm', keys.derive(purpose, kid), iv, {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(aadBytes(bytes.subarray(0, HEADER_BYTES), aad));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]);
    } catch {
      throw decryptError('authentication failed (wrong key, wrong associated data or tampered)');
    }
  }

  return {
    encrypt,
    decrypt,
    decryptString: (sealed, aad) => decrypt(sealed, aad).toString('utf8'),
    keyVersionOf: (sealed) => parse(sealed)?.kid,
    reencrypt(sealed, aad) {
      const plaintext = decrypt(sealed, aad);
      if (parse(sealed)!.kid === keys.active) return { sealed, changed: false };
      return { sealed: encrypt(plaintext, aad), changed: true };
    },
  };
}

// --- API keys and bearer tokens, stored hashed -------------------------------------------------

/**
 * A new high-entropy token (32 random bytes, base64url), optionally prefixed (`cmx_live_`).
 * Tokens we mint are 256-bit random, which is why a plain SHA-256 is enough to store them: brute
 * force over 2^256 is out of reach, so a slow password hash would add nothing but latency.
 */
export function generateToken(prefix = ''): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** Hex SHA-256 of a token, for storage and lookup by index. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * Constant-time equality. Both sides are hashed first so unequal lengths take the same time; equal
 * SHA-256 digests mean equal inputs (collision resistance).
 */
export function constantTimeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Checks a presented token against a stored `hashToken` value in constant time. */
export function verifyToken(token: string, storedHash: string): boolean {
  if (typeof token !== 'string' || typeof storedHash !== 'string') return false;
  return constantTimeEqual(hashToken(token), storedHash.toLowerCase());
}
