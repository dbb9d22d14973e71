/**
 * Kloudless object ids: opaque, URL-safe, deterministic, authenticated and bound to their account.
 *
 *   id = base64url(kv ‖ V ‖ C)              (no padding, ≤ 8,192 characters)
 *   (V ‖ C) = HMAC-SHA256-SIV/AES-256-CTR (ids-siv.ts) under the `ids` key of version kv, with
 *   AAD = encodeAad(["cloudmux/id", kv, service, accountId]) and
 *   plaintext = u8(|type|) ‖ type (ASCII) ‖ rawId (UTF-8)
 *
 * Byte layout and the choice of construction: docs/ids.md.
 */
import { CloudmuxError } from './errors.js';
import { encodeAad, SIV_BYTES, type SivKey, sivKeyFrom, sivOpen, sivSeal } from './ids-siv.js';
import type { Keyring } from './secrets.js';

export type { SivKey } from './ids-siv.js';
export { encodeAad, SIV_BYTES, sivKeyFrom, sivOpen, sivSeal } from './ids-siv.js';

/** Kloudless: ids are at most 8,192 characters. */
export const MAX_ID_LENGTH = 8192;
/** Bytes that fit in MAX_ID_LENGTH base64url characters. */
const MAX_ID_BYTES = Math.floor((MAX_ID_LENGTH * 6) / 8);
const AAD_LABEL = 'cloudmux/id';
const TYPE_RE = /^[a-z][a-z0-9_]{0,31}$/;
const SERVICE_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;
/** Raw ids longer than this are not cached (bounds the cache's memory to roughly size × 2 KiB). */
const MAX_CACHED_KEY = 1024;

/** The API overview's special ids, accepted wherever an id is, and mapped by the server. */
export const SPECIAL_IDS = ['root', 'trash'] as const;
export type SpecialId = (typeof SPECIAL_IDS)[number];

export function isSpecialId(id: unknown): id is SpecialId {
  return id === 'root' || id === 'trash';
}

/** Object types with ids; any other lowercase name (`contact`, `calendar`, …) works the same way. */
export type IdObjectType =
  | 'file'
  | 'folder'
  | 'link'
  | 'permission'
  | 'property'
  | 'multipart'
  | 'task'
  | 'event'
  | (string & {});

export interface IdContext {
  accountId: string | number;
  service: string;
}

export interface EncodeIdInput extends IdContext {
  type: IdObjectType;
  rawId: string;
}

export interface DecodeIdOptions extends IdContext {
  /** The type (or types) the caller accepts; anything else is `not_found`. */
  type: IdObjectType | readonly IdObjectType[];
}

export interface ResolveIdOptions extends DecodeIdOptions {
  /** The connector's root raw id: the literal id `root` maps onto it. */
  rootRawId?: string;
  /** The connector's trash raw id; `trash` is `not_found` when the connector has none. */
  trashRawId?: string;
}

export interface OpenedId {
  type: string;
  rawId: string;
  /** Key version the id was minted under. */
  version: number;
}

/** An id codec bound to one account and service: what a listing uses (validates and prepares once). */
export interface IdScope {
  readonly accountId: string;
  readonly service: string;
  encode(type: IdObjectType, rawId: string): string;
  decode(id: unknown, type: IdObjectType | readonly IdObjectType[]): string;
  open(id: unknown): OpenedId;
  resolve(id: unknown, type: IdObjectType | readonly IdObjectType[], special?: SpecialRawIds): string;
}

export interface SpecialRawIds {
  rootRawId?: string;
  trashRawId?: string;
}

export interface IdCodec {
  /** Key version new ids are minted under. */
  readonly version: number;
  encode(input: EncodeIdInput): string;
  /** The raw id, or `CloudmuxError('not_found')` for anything that is not a genuine id of this context. */
  decode(id: unknown, options: DecodeIdOptions): string;
  /** Decodes without a type expectation; the caller must check `type`. */
  open(id: unknown, context: IdContext): OpenedId;
  /** `decode`, plus the special ids `root` and `trash` (folders) mapped onto the connector's raw ids. */
  resolve(id: unknown, options: ResolveIdOptions): string;
  /** Validates the context once; `invalid_parameters` if it is not a valid account id / service. */
  bind(context: IdContext): IdScope;
  /** Largest raw id (UTF-8 bytes) that still fits in MAX_ID_LENGTH for `type`. */
  maxRawIdBytes(type: IdObjectType): number;
  cacheStats(): { hits: number; misses: number; size: number; capacity: number };
  clearCache(): void;
}

export interface IdCodecOptions {
  keys: Keyring;
  /** Mint under this version, not `keys.active`: the credential key can rotate without changing ids. */
  version?: number;
  /** Entries per cache (one for encode, one for decode); 0 disables caching. Default 10,000. */
  cacheSize?: number;
}

function notFound(): CloudmuxError {
  return new CloudmuxError('not_found');
}

/** Insertion-ordered Map as an LRU: a hit moves the entry to the end, the oldest is evicted. */
class Lru<V> {
  readonly #map = new Map<string, V>();
  hits = 0;
  misses = 0;
  constructor(readonly capacity: number) {}
  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.#map.delete(key);
    this.#map.set(key, value);
    return value;
  }
  set(key: string, value: V): void {
    if (this.capacity === 0 || key.length > MAX_CACHED_KEY) return;
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.capacity) this.#map.delete(this.#map.keys().next().value!);
  }
  get size(): number {
    return this.#map.size;
  }
  clear(): void {
    this.#map.clear();
    this.hits = 0;
    this.misses = 0;
  }
}

function accountString(accountId: unknown): string | undefined {
  if (typeof accountId === 'number') return Number.isSafeInteger(accountId) ? String(accountId) : undefined;
  if (typeof accountId !== 'string' || accountId.length === 0 || accountId.length > 256) return undefined;
  return accountId;
}

// `String.prototype.isWellFormed` (Node ≥ 20) is not in the ES2023 lib typings.
const isWellFormed = (text: string): boolean =>
  (text as unknown as { isWellFormed(): boolean }).isWellFormed();

function accepts(expected: unknown, type: string): boolean {
  if (typeof expected === 'string') return expected === type;
  return Array.isArray(expected) && expected.includes(type);
}

export function createIdCodec(options: IdCodecOptions): IdCodec {
  const { keys } = options;
  const version = options.version ?? keys.active;
  if (!keys.has(version)) {
    throw new CloudmuxError('internal_error', `[cloudmux] id key version ${version} is not in the keyring`);
  }
  const capacity = options.cacheSize ?? 10_000;
  const encodeCache = new Lru<string>(capacity);
  const decodeCache = new Lru<OpenedId>(capacity);
  const sivKeys = new Map<number, SivKey>();
  const scopes = new Map<string, IdScope>();

  function keyFor(kv: number): SivKey | undefined {
    let key = sivKeys.get(kv);
    if (key === undefined && keys.has(kv)) {
      key = sivKeyFrom(keys.derive('ids', kv, 64));
      sivKeys.set(kv, key);
    }
    return key;
  }

  function maxRawIdBytes(type: IdObjectType): number {
    return MAX_ID_BYTES - 1 - SIV_BYTES - 1 - type.length;
  }

  function makeScope(account: string, service: string): IdScope {
    // Length-prefixing the account keeps cache keys unambiguous; service and type cannot contain `|`.
    const prefix = `${account.length}:${account}|${service}|`;
    const aads = new Map<number, Buffer>();
    const aadFor = (kv: number): Buffer => {
      let aad = aads.get(kv);
      if (aad === undefined) {
        aad = encodeAad([AAD_LABEL, Uint8Array.of(kv), service, account]);
        aads.set(kv, aad);
      }
      return aad;
    };
    const versionByte = Uint8Array.of(version);

    function encode(type: IdObjectType, rawId: string): string {
      if (typeof type !== 'string' || !TYPE_RE.test(type)) {
        throw new CloudmuxError('invalid_parameters', 'Invalid object type for an object id.');
      }
      if (typeof rawId !== 'string' || !isWellFormed(rawId)) {
        // A lone surrogate would UTF-8-encode to U+FFFD and not round-trip.
        throw new CloudmuxError('invalid_parameters', 'A raw id must be a well-formed string.');
      }
      const cacheKey = capacity === 0 ? '' : `${prefix}${type}|${rawId}`;
      if (capacity !== 0) {
        const cached = encodeCache.get(cacheKey);
        if (cached !== undefined) return cached;
      }
      // u8(|type|) ‖ type ‖ rawId in one UTF-8 encoding: the length byte (< 33) and the type are ASCII.
      const plaintext = Buffer.from(`${String.fromCharCode(type.length)}${type}${rawId}`, 'utf8');
      const max = maxRawIdBytes(type);
      if (plaintext.length - 1 - type.length > max) {
        throw new CloudmuxError(
          'invalid_parameters',
          `Raw id is ${plaintext.length - 1 - type.length} bytes; at most ${max} bytes fit in a ` +
            `${MAX_ID_LENGTH}-character ${type} id.`,
        );
      }
      const id = sivSeal(keyFor(version)!, aadFor(version), plaintext, versionByte).toString('base64url');
      if (capacity !== 0) encodeCache.set(cacheKey, id);
      return id;
    }

    function open(id: unknown): OpenedId {
      if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) throw notFound();
      const cacheKey = capacity === 0 ? '' : prefix + id;
      if (capacity !== 0) {
        const cached = decodeCache.get(cacheKey);
        if (cached !== undefined) return cached;
      }
      if (!B64URL_RE.test(id) || id.length % 4 === 1) throw notFound();
      const bytes = Buffer.from(id, 'base64url');
      // Non-canonical spellings (stray low bits in the last character) are not the id we minted.
      if (bytes.length < 1 + SIV_BYTES + 2 || bytes.toString('base64url') !== id) throw notFound();
      const kv = bytes[0]!;
      const key = keyFor(kv);
      if (key === undefined) throw notFound();
      const plaintext = sivOpen(key, aadFor(kv), bytes.subarray(1));
      if (plaintext === null) throw notFound();
      const typeLength = plaintext[0]!;
      if (typeLength === 0 || 1 + typeLength > plaintext.length) throw notFound();
      const opened: OpenedId = Object.freeze({
        type: plaintext.toString('latin1', 1, 1 + typeLength),
        rawId: plaintext.toString('utf8', 1 + typeLength),
        version: kv,
      });
      if (capacity !== 0) decodeCache.set(cacheKey, opened);
      return opened;
    }

    function decode(id: unknown, type: IdObjectType | readonly IdObjectType[]): string {
      const opened = open(id);
      if (!accepts(type, opened.type)) throw notFound();
      return opened.rawId;
    }

    return Object.freeze({
      accountId: account,
      service,
      encode,
      open,
      decode,
      resolve(id: unknown, type: IdObjectType | readonly IdObjectType[], special: SpecialRawIds = {}) {
        if (isSpecialId(id)) {
          const raw = id === 'root' ? special?.rootRawId : special?.trashRawId;
          if (!accepts(type, 'folder') || typeof raw !== 'string') throw notFound();
          return raw;
        }
        return decode(id, type);
      },
    });
  }

  /** The scope for a context, or undefined when the context is not valid. */
  function scopeFor(context: IdContext | undefined): IdScope | undefined {
    const account = accountString(context?.accountId);
    const service = context?.service;
    if (account === undefined || typeof service !== 'string' || !SERVICE_RE.test(service)) return undefined;
    const key = `${account.length}:${account}|${service}`;
    let scope = scopes.get(key);
    if (scope === undefined) {
      // Bounded: a burst of distinct accounts just rebuilds scopes, which is cheap.
      if (scopes.size >= 1024) scopes.clear();
      scope = makeScope(account, service);
      scopes.set(key, scope);
    }
    return scope;
  }

  function bind(context: IdContext): IdScope {
    const scope = scopeFor(context);
    if (scope === undefined)
      throw new CloudmuxError('invalid_parameters', 'Invalid account id or service for object ids.');
    return scope;
  }

  return Object.freeze({
    version,
    bind,
    encode: (input: EncodeIdInput) => bind(input).encode(input.type, input.rawId),
    open(id: unknown, context: IdContext) {
      const scope = scopeFor(context);
      if (scope === undefined) throw notFound();
      return scope.open(id);
    },
    decode(id: unknown, options: DecodeIdOptions) {
      const scope = scopeFor(options);
      if (scope === undefined) throw notFound();
      return scope.decode(id, options.type);
    },
    resolve(id: unknown, options: ResolveIdOptions) {
      const scope = scopeFor(options);
      if (scope === undefined) throw notFound();
      return scope.resolve(id, options?.type, options);
    },
    maxRawIdBytes,
    cacheStats: () => ({
      hits: encodeCache.hits + decodeCache.hits,
      misses: encodeCache.misses + decodeCache.misses,
      size: encodeCache.size + decodeCache.size,
      capacity: capacity * 2,
    }),
    clearCache() {
      encodeCache.clear();
      decodeCache.clear();
    },
  });
}
