/**
 * Raw ids are paths from the account's base path, starting with `/` (`/` is the base itself).
 * On the wire they become share-relative SMB paths with `\` separators. A segment can never be
 * `.`/`..`, contain a separator, NUL/control characters, or the characters SMB reserves: `:`
 * (which would name an alternate data stream), `*`, `?`, `<`, `>`, `"` (wildcards) and `|`.
 */
import { CloudmuxError, pathIds, validateItemName } from '@cloudmux/core';

/** Hidden folder under the base path where uploads and copies are written before their final rename. */
export const STAGING_DIR = '.cloudmux-uploads';

const SMB_RESERVED = /[:*?<>"|]/;

/** `validateItemName` plus the characters an SMB server refuses or interprets. */
export function validateSmbName(name: unknown): string {
  validateItemName(name);
  const text = name as string;
  if (SMB_RESERVED.test(text)) {
    throw new CloudmuxError('invalid_parameters', 'SMB names cannot contain : * ? < > " or |.');
  }
  return text;
}

function isValidSegment(segment: string): boolean {
  try {
    validateSmbName(segment);
    return true;
  } catch {
    return false;
  }
}

const ids = pathIds({
  service: 'smb',
  // The staging folder sits directly under the base path.
  reserved: (segment, depth) => depth === 0 && segment === STAGING_DIR,
  reservedMessage: 'That name is reserved.',
  validateName: (name) => {
    validateSmbName(name);
  },
});

/** Segments of a raw id; anything malformed reads as a missing item. */
export const parseRawId = ids.parse;
export const toRawId = ids.toRawId;
export const childRawId = ids.child;
export const parentOf = ids.parentOf;

/** The base path credential (`/`, `/a/b`, `a\\b`) as validated segments. */
export function parseBasePath(basePath: string): string[] {
  const segments = basePath.split(/[/\\]/).filter((s) => s !== '');
  for (const segment of segments) {
    if (!isValidSegment(segment))
      throw new CloudmuxError('invalid_parameters', `Invalid base path segment: ${JSON.stringify(segment)}`);
  }
  return segments;
}

/** Share-relative SMB path for `segments` under `base`. */
export function smbPath(base: readonly string[], segments: readonly string[]): string {
  return [...base, ...segments].join('\\');
}

/** Whether two names are the same on a case-insensitive server. */
export function sameNameIgnoringCase(a: string, b: string): boolean {
  return a === b || a.toLowerCase() === b.toLowerCase() || a.toUpperCase() === b.toUpperCase();
}
