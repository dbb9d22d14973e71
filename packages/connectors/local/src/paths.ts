/**
 * Raw ids of the local connector are paths relative to the account root, starting with `/`
 * (`/` is the root). Every path is checked so it can never leave the root: no `..`, no NUL, and
 * symlinks are followed only when their target stays inside the root.
 */
import { lstat, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { CloudmuxError, pathIds } from '@cloudmux/core';

/** The hidden folder under the root where uploads are written before they are renamed into place. */
export const STAGING_DIR = '.cloudmux-uploads';

const ids = pathIds({
  service: 'local',
  // The staging folder sits directly under the root.
  reserved: (segment, depth) => depth === 0 && segment === STAGING_DIR,
  reservedMessage: 'That name is reserved.',
});

export const parseRawId = ids.parse;
export const toRawId = ids.toRawId;
export const childRawId = ids.child;
export const parentOf = ids.parentOf;

export function isInside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Absolute path of a raw id under `realRoot` (the root's realpath). When the path exists, its
 * realpath must stay inside the root (a symlink pointing outside reads as missing).
 */
export async function resolveExisting(realRoot: string, rawId: string): Promise<string> {
  const path = join(realRoot, ...parseRawId(rawId));
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    throw fsError(err);
  }
  if (!isInside(realRoot, real)) throw new CloudmuxError('not_found', 'No such file or folder.');
  return path;
}

/** Whether `path` is a symlink whose target leaves the root (such entries are hidden). */
export async function escapesRoot(realRoot: string, path: string): Promise<boolean> {
  const info = await lstat(path).catch(() => null);
  if (!info?.isSymbolicLink()) return false;
  const real = await realpath(path).catch(() => null);
  return real === null || !isInside(realRoot, real);
}

/** Maps a Node fs error onto the Kloudless catalog. */
export function fsError(err: unknown): CloudmuxError {
  if (err instanceof CloudmuxError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new CloudmuxError('not_found', 'No such file or folder.', { service: 'local', cause: err });
    case 'EEXIST':
      return new CloudmuxError('naming_conflict', undefined, { service: 'local', cause: err });
    case 'ENOTEMPTY':
      return new CloudmuxError('folder_not_empty', undefined, { service: 'local', cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new CloudmuxError('service_forbidden', 'The local file system denied access.', {
        service: 'local',
        cause: err,
      });
    case 'ENOSPC':
    case 'EDQUOT':
      return new CloudmuxError('insufficient_storage', undefined, { service: 'local', cause: err });
    case 'ENAMETOOLONG':
      return new CloudmuxError('invalid_parameters', 'The name is too long for the file system.', {
        service: 'local',
        cause: err,
      });
    default:
      return new CloudmuxError('internal_error', `Local file system error${code ? ` (${code})` : ''}.`, {
        service: 'local',
        cause: err,
      });
  }
}
