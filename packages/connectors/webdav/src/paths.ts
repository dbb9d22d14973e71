/**
 * Raw ids are paths from the account's base path, starting with `/` (`/` is the base path itself).
 * URLs are built only from the configured root URL plus our own percent-encoded segments; hrefs the
 * server sends are only ever turned back into raw ids (and dropped when they name another host or
 * lie outside the account), never requested.
 */
import { CloudmuxError, isBadPathSegment, normalizeBasePath, pathIds } from '@cloudmux/core';

export const SERVICE = 'webdav';

/** Uploads are written under this prefix in the target folder, then moved; such names stay hidden. */
export const UPLOAD_PREFIX = '.cloudmux-upload-';

export function isHiddenName(name: string): boolean {
  return name.startsWith(UPLOAD_PREFIX);
}

const ids = pathIds({
  service: SERVICE,
  reserved: isHiddenName,
  reservedMessage: `Names starting with "${UPLOAD_PREFIX}" are reserved.`,
});

export const parseRawId = ids.parse;
export const toRawId = ids.toRawId;
/** Validates `name` as one segment and refuses the reserved upload prefix. */
export const checkName = (name: string): string => ids.checkName(name);
export const childRawId = ids.child;
export const parentOf = ids.parentOf;

/** RFC 3986 §2.3: everything but the unreserved characters is percent-encoded (UTF-8). */
export function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** Decoded path segments of a URL path; null when one is malformed or decodes to `/` or a control. */
export function decodePath(pathname: string): string[] | null {
  const out: string[] = [];
  for (const part of pathname.split('/')) {
    if (part === '') continue;
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      return null;
    }
    if (decoded.includes('/') || isBadPathSegment(decoded)) return null;
    out.push(decoded);
  }
  return out;
}

/**
 * Where the account lives on the server: the root URL's origin and the decoded segments of the root
 * URL's path plus the base path. Every request URL comes from here.
 */
export class DavLocation {
  readonly origin: string;
  readonly host: string;
  readonly rootSegments: readonly string[];

  constructor(rootUrl: string, basePath: string) {
    const url = new URL(rootUrl);
    this.origin = url.origin;
    this.host = url.host.toLowerCase();
    const rootPath = decodePath(url.pathname);
    if (!rootPath) throw new CloudmuxError('invalid_parameters', 'The WebDAV URL has an invalid path.');
    this.rootSegments = [...rootPath, ...parseRawId(normalizeBasePath(basePath))];
  }

  /** Absolute URL of `rawId`; collections end with `/` (servers such as Apache redirect otherwise). */
  url(rawId: string, collection: boolean): string {
    return this.urlOfSegments(parseRawId(rawId), collection);
  }

  /** Like `url`, for segments already checked (the hidden temporary upload names). */
  urlOfSegments(relative: readonly string[], collection: boolean): string {
    const segments = [...this.rootSegments, ...relative];
    const path = segments.map(encodeSegment).join('/');
    if (path === '') return `${this.origin}/`;
    return `${this.origin}/${path}${collection ? '/' : ''}`;
  }

  /**
   * The raw id an href (absolute URL or path, percent-encoded, resolved against the request URL)
   * names, or null when it names another host, lies outside the account or cannot be decoded.
   */
  rawIdOfHref(href: string, requestUrl: string): string | null {
    let url: URL;
    try {
      url = new URL(href.trim(), requestUrl);
    } catch {
      return null;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    // Scheme may differ behind a TLS-terminating proxy; the host (and port) may not.
    if (url.host.toLowerCase() !== this.host) return null;
    const segments = decodePath(url.pathname);
    if (!segments || segments.length < this.rootSegments.length) return null;
    for (let i = 0; i < this.rootSegments.length; i++) if (segments[i] !== this.rootSegments[i]) return null;
    return toRawId(segments.slice(this.rootSegments.length));
  }
}
