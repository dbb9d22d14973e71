/**
 * Raw ids are paths from the account's base path, starting with `/` (`/` is the base path itself).
 * Every segment is checked, so a raw id can never address anything above the base path, and names
 * that would break an FTP command line (CR, LF, NUL) never reach the wire.
 */
import { pathIds } from '@cloudmux/core';
import { SERVICE } from './errors.js';

/** Uploads are written under this prefix in the target folder, then renamed; such names stay hidden. */
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
export const nameOf = ids.nameOf;

/** Absolute server path of a raw id under the base path. */
export function serverPath(basePath: string, rawId: string): string {
  const segments = parseRawId(rawId);
  if (segments.length === 0) return basePath;
  return `${basePath === '/' ? '' : basePath}/${segments.join('/')}`;
}

export function serverChildPath(basePath: string, parentRawId: string, name: string): string {
  return serverPath(basePath, childRawId(parentRawId, name));
}
