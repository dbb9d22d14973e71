/**
 * Raw ids for path-addressed backends (a directory, WebDAV, FTP, SMB): a path from the account's
 * base, starting with `/` (`/` is the base itself). Every segment is checked, so a raw id can never
 * address anything above the base, and a malformed one reads as a missing item (`not_found`) —
 * raw ids come back from clients through the id codec, but a connector never trusts them.
 */
import { CloudmuxError } from './errors.js';
import { validateItemName } from './storage.js';

export interface PathIdOptions {
  service: string;
  /**
   * Names the connector keeps for itself (staging files or folders): refused as new names and
   * unreachable as ids. `depth` is the segment's index (0 = directly under the base).
   */
  reserved?: (segment: string, depth: number) => boolean;
  /** The message for a reserved name, e.g. `Names starting with ".cloudmux-upload-" are reserved.` */
  reservedMessage?: string;
  /** Extra rules for one name beyond `validateItemName` (e.g. characters SMB refuses); throws. */
  validateName?: (name: string) => void;
}

export interface PathIds {
  /** The segments of a raw id; anything malformed is `not_found`. */
  parse(rawId: string): string[];
  toRawId(segments: readonly string[]): string;
  /** Validates a new name (a single segment, not reserved at that depth); `invalid_parameters`. */
  checkName(name: string, depth?: number): string;
  child(parentRawId: string, name: string): string;
  /** The parent's raw id; `null` for the base. */
  parentOf(rawId: string): string | null;
  /** The last segment; `''` for the base. */
  nameOf(rawId: string): string;
}

/** C0 controls and DEL: never valid in a path segment (and CR/LF would end an FTP command line). */
export function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** `.`, `..`, a backslash or a control character: a segment no path-addressed backend may see. */
export function isBadPathSegment(segment: string): boolean {
  return segment === '.' || segment === '..' || segment.includes('\\') || hasControlCharacter(segment);
}

/**
 * A configured base path (FTP, WebDAV, … credentials) in raw-id form: absolute, no `.`/`..`
 * segments, no backslashes or control characters, no trailing slash (`/` for the root).
 */
export function normalizeBasePath(basePath: string): string {
  if (!basePath.startsWith('/'))
    throw new CloudmuxError('invalid_parameters', 'The base path must start with "/".');
  const segments = basePath.split('/').filter((s) => s !== '');
  if (segments.some(isBadPathSegment)) {
    throw new CloudmuxError(
      'invalid_parameters',
      'The base path cannot contain "." or ".." segments, backslashes or control characters.',
    );
  }
  return `/${segments.join('/')}`;
}

/**
 * The `ancestors` of an item at `segments` (base first, the item's own parent last; none for the
 * base itself), as raw ids of this form.
 */
export function pathAncestors(segments: readonly string[]): Array<{ rawId: string; name: string }> {
  if (segments.length === 0) return [];
  return [
    { rawId: '/', name: '' },
    ...segments.slice(0, -1).map((name, i) => ({ rawId: `/${segments.slice(0, i + 1).join('/')}`, name })),
  ];
}

export function pathIds(options: PathIdOptions): PathIds {
  const missing = () =>
    new CloudmuxError('not_found', 'No such file or folder.', { service: options.service });
  const validSegment = (segment: string, depth: number): boolean => {
    if (isBadPathSegment(segment)) return false;
    if (options.reserved?.(segment, depth)) return false;
    if (options.validateName) {
      try {
        options.validateName(segment);
      } catch {
        return false;
      }
    }
    return true;
  };
  const parse = (rawId: string): string[] => {
    if (typeof rawId !== 'string' || !rawId.startsWith('/')) throw missing();
    const segments = rawId.split('/').filter((s) => s !== '');
    if (!segments.every(validSegment)) throw missing();
    return segments;
  };
  const toRawId = (segments: readonly string[]) => `/${segments.join('/')}`;
  const checkName = (name: string, depth = 0): string => {
    validateItemName(name);
    options.validateName?.(name);
    if (options.reserved?.(name, depth)) {
      throw new CloudmuxError('invalid_parameters', options.reservedMessage ?? 'That name is reserved.', {
        service: options.service,
      });
    }
    return name;
  };
  return {
    parse,
    toRawId,
    checkName,
    child: (parentRawId, name) => {
      const segments = parse(parentRawId);
      return toRawId([...segments, checkName(name, segments.length)]);
    },
    parentOf: (rawId) => {
      const segments = parse(rawId);
      return segments.length === 0 ? null : toRawId(segments.slice(0, -1));
    },
    nameOf: (rawId) => parse(rawId).at(-1) ?? '',
  };
}
