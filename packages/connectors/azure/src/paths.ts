/**
 * Raw ids are native: `<container>/<blob name>` for files and `<container>/<prefix>/` (ending in
 * `/`) for folders, the attributes of `encode_raw_id` (`container_name` + `id`). A raw id of
 * another container, outside the base prefix, or with `.`/`..`/empty segments is `not_found`: blob
 * names are sent percent-encoded, but URL parsers still collapse dot segments, and the base prefix
 * is a boundary.
 */
import { CloudmuxError } from '@cloudmux/core';

const BAD_SEGMENT = /\p{Cc}/u;

export function notFound(what = 'No such file or folder.'): CloudmuxError {
  return new CloudmuxError('not_found', what, { service: 'azure' });
}

export class BlobPaths {
  constructor(
    readonly container: string,
    /** '' or 'a/b/'. */
    readonly basePrefix: string,
  ) {}

  get rootRawId(): string {
    return `${this.container}/${this.basePrefix}`;
  }

  rawIdOf(blobNameOrPrefix: string): string {
    return `${this.container}/${blobNameOrPrefix}`;
  }

  private nameOf(rawId: string): string {
    if (typeof rawId !== 'string' || !rawId.startsWith(`${this.container}/`)) throw notFound();
    const name = rawId.slice(this.container.length + 1);
    if (!name.startsWith(this.basePrefix)) throw notFound();
    const rel = name.slice(this.basePrefix.length);
    if (rel === '') return name;
    const segments = (rel.endsWith('/') ? rel.slice(0, -1) : rel).split('/');
    if (segments.some((s) => s === '' || s === '.' || s === '..' || BAD_SEGMENT.test(s))) throw notFound();
    return name;
  }

  /** The blob name of a file raw id (never the root, never ending in `/`). */
  fileName(rawId: string): string {
    const name = this.nameOf(rawId);
    if (name === this.basePrefix || name.endsWith('/')) throw notFound('No such file.');
    return name;
  }

  /** The listing prefix of a folder raw id: '' / the base prefix for the root, else ending in `/`. */
  folderPrefix(rawId: string): string {
    const withSlash = typeof rawId === 'string' && !rawId.endsWith('/') ? `${rawId}/` : rawId;
    return this.nameOf(withSlash);
  }

  isRoot(prefix: string): boolean {
    return prefix === this.basePrefix;
  }

  /** `a/b/c.txt` → `a/b/`; `a/b/` → `a/`; the root's parent is null. */
  parentPrefix(nameOrPrefix: string): string | null {
    if (this.isRoot(nameOrPrefix)) return null;
    const trimmed = nameOrPrefix.endsWith('/') ? nameOrPrefix.slice(0, -1) : nameOrPrefix;
    const slash = trimmed.lastIndexOf('/');
    return slash < 0 ? '' : trimmed.slice(0, slash + 1);
  }

  leafName(nameOrPrefix: string): string {
    if (this.isRoot(nameOrPrefix)) return '';
    const trimmed = nameOrPrefix.endsWith('/') ? nameOrPrefix.slice(0, -1) : nameOrPrefix;
    return trimmed.slice(trimmed.lastIndexOf('/') + 1);
  }

  /** Display path from the root: `/`, `/a/b.txt`. */
  displayPath(nameOrPrefix: string): string {
    const rel = nameOrPrefix.slice(this.basePrefix.length);
    return `/${rel.endsWith('/') ? rel.slice(0, -1) : rel}`;
  }

  /** Ancestors from the root down to the parent. */
  ancestors(nameOrPrefix: string): Array<{ rawId: string; name: string }> {
    const out: Array<{ rawId: string; name: string }> = [];
    let parent = this.parentPrefix(nameOrPrefix);
    while (parent !== null) {
      out.unshift({ rawId: this.rawIdOf(parent), name: this.leafName(parent) });
      parent = this.parentPrefix(parent);
    }
    return out;
  }
}

/**
 * The URL path of a blob: each segment percent-encoded (RFC 3986 unreserved kept), `/` kept.
 * Shared Key signs this exact path, so the bytes signed are the bytes sent.
 */
export function encodeBlobPath(name: string): string {
  return name
    .split('/')
    .map((segment) =>
      encodeURIComponent(segment).replace(
        /[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      ),
    )
    .join('/');
}
