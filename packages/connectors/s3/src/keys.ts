/**
 * Raw ids are `<bucket>/<object key>` — the `bucket_name` and `id` of `encode_raw_id` joined —
 * with folders ending in `/` (S3's folder convention). The account root is `<bucket>/<base prefix>`.
 * Every segment below the base prefix must be a valid item name, so no raw id can address a key
 * outside the account's prefix or carry `.`/`..`/control characters into a URL.
 */
import { CloudmuxError, validateItemName } from '@cloudmux/core';

export const SERVICE = 's3';

function notFound(): CloudmuxError {
  return new CloudmuxError('not_found', 'No such file or folder.', { service: SERVICE });
}

export function isValidName(name: string): boolean {
  try {
    validateItemName(name);
    return true;
  } catch {
    return false;
  }
}

export class KeySpace {
  constructor(
    readonly bucket: string,
    /** `` or `a/b/`. */
    readonly prefix: string,
  ) {}

  get rootRawId(): string {
    return `${this.bucket}/${this.prefix}`;
  }

  rawIdOf(key: string): string {
    return `${this.bucket}/${key}`;
  }

  /** The object key of a raw id of this account; anything else is `not_found`. */
  keyOf(rawId: string): string {
    if (typeof rawId !== 'string' || !rawId.startsWith(`${this.bucket}/`)) throw notFound();
    const key = rawId.slice(this.bucket.length + 1);
    if (!key.startsWith(this.prefix)) throw notFound();
    const rel = key.slice(this.prefix.length);
    if (rel === '') return key;
    const body = rel.endsWith('/') ? rel.slice(0, -1) : rel;
    for (const segment of body.split('/')) if (!isValidName(segment)) throw notFound();
    return key;
  }

  isRoot(key: string): boolean {
    return key === this.prefix;
  }

  isFolderKey(key: string): boolean {
    return key === this.prefix || key.endsWith('/');
  }

  /** Path below the root as the API shows it: `/a/b.txt`, `/a/sub` (no trailing slash), `/` for the root. */
  displayPath(key: string): string {
    const rel = key.slice(this.prefix.length).replace(/\/$/, '');
    return `/${rel}`;
  }

  nameOf(key: string): string {
    if (this.isRoot(key)) return '';
    const body = key.replace(/\/$/, '');
    return body.slice(body.lastIndexOf('/') + 1);
  }

  /** Key of the parent folder; null for the root. */
  parentKey(key: string): string | null {
    if (this.isRoot(key)) return null;
    const body = key.replace(/\/$/, '');
    return body.slice(0, body.lastIndexOf('/') + 1);
  }

  childKey(folderKey: string, name: string, folder: boolean): string {
    validateItemName(name);
    return `${folderKey}${name}${folder ? '/' : ''}`;
  }

  /** Ancestors from the root down to the parent. */
  ancestors(key: string): Array<{ rawId: string; name: string }> {
    const out: Array<{ rawId: string; name: string }> = [];
    let parent = this.parentKey(key);
    while (parent !== null) {
      out.unshift({ rawId: this.rawIdOf(parent), name: this.nameOf(parent) });
      parent = this.parentKey(parent);
    }
    return out;
  }
}
