/** The request as auth strategies see it: final URL, lowercase headers, normalized body. */
import type { Readable } from 'node:stream';

export interface PreparedRequest {
  /** Upper case. */
  method: string;
  url: URL;
  /** Lowercase names, string values. */
  headers: Record<string, string>;
  /** `undefined`, a `Buffer` (strings and byte arrays are converted), a `Readable`, or a FormData-like. */
  body: Buffer | Readable | undefined | unknown;
}

export interface QueryPair {
  key: string;
  value: string;
  /** `?uploads` has no `=`; it is kept that way on the wire. */
  hasValue: boolean;
}

function decode(component: string): string {
  try {
    return decodeURIComponent(component);
  } catch {
    return component;
  }
}

/** Splits a raw query (without `?`) into decoded pairs; `+` stays a plus sign, as AWS and Azure read it. */
export function parseRawQuery(search: string): QueryPair[] {
  const raw = search.startsWith('?') ? search.slice(1) : search;
  if (raw === '') return [];
  return raw
    .split('&')
    .filter((part) => part !== '')
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq === -1) return { key: decode(part), value: '', hasValue: false };
      return { key: decode(part.slice(0, eq)), value: decode(part.slice(eq + 1)), hasValue: true };
    });
}

/** RFC 3986 percent-encoding: everything except unreserved characters. */
export function rfc3986Encode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

export function isReadableStream(value: unknown): value is Readable {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { pipe?: unknown }).pipe === 'function' &&
    typeof (value as { on?: unknown }).on === 'function'
  );
}
