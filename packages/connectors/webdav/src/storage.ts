/**
 * Storage over WebDAV (RFC 4918). Raw ids are paths from the base path. Listing is one PROPFIND
 * Depth 1, sorted here and paged by name (WebDAV has no server-side paging). Uploads are PUT to a
 * hidden temporary name in the target folder and then MOVEd onto the final name, so an interrupted
 * upload never shows under the final name. Copy is native COPY; delete is DELETE (recursive by
 * nature for collections, so emptiness is checked first when not recursive).
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable, type Transform } from 'node:stream';
import {
  type ByteRange,
  CloudmuxError,
  type DeleteOptions,
  type DownloadResult,
  errorFromNetworkError,
  isCloudmuxError,
  type MoveOptions,
  namingConflict,
  type Page,
  type PageRequest,
  pathAncestors,
  rangeSlice,
  type SearchOptions,
  type StorageApi,
  type StorageItem,
  type StorageItemType,
} from '@cloudmux/core';
import type { AxiosResponse } from 'axios';
import { badGateway, type DavClient, discard, isSlashRedirect, REDIRECTS, upstreamStatus } from './client.js';
import { checkName, childRawId, parentOf, parseRawId, SERVICE, toRawId, UPLOAD_PREFIX } from './paths.js';
import { type DavResponse, isCollection, propText } from './xml.js';

/** Bounds of one search call: collections walked (one PROPFIND Depth 1 each). */
export const SEARCH_MAX_FOLDERS = 500;

export interface WebDavStorageOptions {
  client: DavClient;
  /** Collections one search may walk (default {@link SEARCH_MAX_FOLDERS}). */
  searchMaxFolders?: number;
  /** Temporary upload names (default: the reserved prefix and 96 random bits). */
  tempName?: () => string;
}

function notFound(message = 'No such file or folder.'): CloudmuxError {
  return new CloudmuxError('not_found', message, { service: SERVICE });
}

function parseDate(value: string | undefined): Date | null {
  if (!value) return null;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : new Date(t);
}

function parseSize(value: string | undefined): number | null {
  if (value === undefined || !/^\d+$/.test(value)) return null;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : null;
}

/** `Content-Range: bytes 0-9/300` (RFC 9110 §14.4). */
function parseContentRange(value: string | undefined): { start: number; end: number; total: number } | null {
  const match = value ? /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value) : null;
  if (!match) return null;
  const total = match[3] === '*' ? Number.NaN : Number(match[3]);
  return { start: Number(match[1]), end: Number(match[2]), total };
}

function headerOf(response: AxiosResponse, name: string): string | undefined {
  const value = (response.headers as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

/**
 * The body stream with its failures (server gone mid-transfer, reset, truncated reply) turned into
 * catalog errors, and the upstream response closed when the consumer stops early.
 */
function mappedStream(source: Readable, through: Transform | PassThrough = new PassThrough()): Readable {
  source.on('error', (err) =>
    through.destroy(isCloudmuxError(err) ? err : errorFromNetworkError(SERVICE, err)),
  );
  // A reply that ends before its Content-Length is reported as aborted, not as a clean end.
  source.on('aborted', () =>
    through.destroy(
      errorFromNetworkError(SERVICE, Object.assign(new Error('aborted'), { code: 'ECONNRESET' })),
    ),
  );
  through.on('close', () => source.destroy());
  through.on('end', () => source.destroy());
  source.pipe(through);
  return through;
}

function nameCompare(a: StorageItem, b: StorageItem): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export class WebDavStorage implements StorageApi {
  readonly rootRawId = '/';
  readonly #client: DavClient;
  readonly #searchMaxFolders: number;
  readonly #tempName: () => string;

  constructor(options: WebDavStorageOptions) {
    this.#client = options.client;
    this.#searchMaxFolders = options.searchMaxFolders ?? SEARCH_MAX_FOLDERS;
    this.#tempName = options.tempName ?? (() => `${UPLOAD_PREFIX}${randomBytes(12).toString('hex')}`);
  }

  get #location() {
    return this.#client.location;
  }

  /** The account root must be a readable collection. */
  async validate(): Promise<void> {
    let root: StorageItem;
    try {
      root = await this.#stat('/');
    } catch (error) {
      const status = upstreamStatus(error);
      if (status === 404) throw notFound('The WebDAV URL or base path does not exist on the server.');
      if (status === 405 || status === 501) {
        throw new CloudmuxError(
          'invalid_parameters',
          'The server refused PROPFIND: the URL is not a WebDAV folder.',
          {
            service: SERVICE,
          },
        );
      }
      throw error;
    }
    if (root.type !== 'folder') {
      throw new CloudmuxError(
        'invalid_parameters',
        'The WebDAV URL and base path name a file, not a folder.',
        {
          service: SERVICE,
        },
      );
    }
  }

  #toItem(rawId: string, response: DavResponse): StorageItem {
    const segments = parseRawId(rawId);
    const folder = isCollection(response);
    const name = segments.length === 0 ? '' : segments[segments.length - 1]!;
    const ancestors = pathAncestors(segments);
    const contentType = propText(response, 'getcontenttype') ?? null;
    const etag = propText(response, 'getetag') ?? null;
    return {
      type: folder ? 'folder' : 'file',
      rawId,
      name,
      size: folder ? null : parseSize(propText(response, 'getcontentlength')),
      created: parseDate(propText(response, 'creationdate')),
      modified: parseDate(propText(response, 'getlastmodified')),
      parentRawId: segments.length === 0 ? null : toRawId(segments.slice(0, -1)),
      path: rawId,
      mimeType: folder ? null : contentType,
      ancestors,
      raw: {
        href: response.href,
        etag,
        getcontenttype: contentType,
        getlastmodified: propText(response, 'getlastmodified') ?? null,
        creationdate: propText(response, 'creationdate') ?? null,
        getcontentlength: propText(response, 'getcontentlength') ?? null,
        collection: folder,
      },
      downloadable: !folder,
      canCreateFolders: folder,
      canUploadFiles: folder,
    };
  }

  /**
   * PROPFIND Depth 0 of one item. The root and known collections are asked with a trailing slash;
   * anything else without, taking a slash-only redirect (collections on Apache).
   */
  async #stat(rawId: string, collection = rawId === '/'): Promise<StorageItem> {
    const url = this.#location.url(rawId, collection || parseRawId(rawId).length === 0);
    let result: Awaited<ReturnType<DavClient['propfind']>>;
    try {
      result = await this.#client.propfind(url, 0);
    } catch (error) {
      if (upstreamStatus(error) === 400 && !(await this.#parentIsFolder(rawId))) throw notFound();
      throw error;
    }
    for (const response of result.responses) {
      if (this.#location.rawIdOfHref(response.href, result.url) !== rawId) continue;
      if (!response.found) throw notFound();
      return this.#toItem(rawId, response);
    }
    throw badGateway(
      'The WebDAV server answered PROPFIND without an entry for the requested path.',
      'DAV_NO_ENTRY',
    );
  }

  /**
   * Whether the parent of `rawId` is an existing folder. Asked only after a 400: Apache answers a
   * path below a file with 400 ("extraneous path components") where others say 404 or 409.
   */
  async #parentIsFolder(rawId: string): Promise<boolean> {
    const parent = parentOf(rawId);
    if (parent === null) return true;
    const item = await this.#statOrNull(parent);
    return item?.type === 'folder';
  }

  async #statOrNull(rawId: string): Promise<StorageItem | null> {
    try {
      return await this.#stat(rawId);
    } catch (error) {
      if (error instanceof CloudmuxError && error.code === 'not_found') return null;
      throw error;
    }
  }

  async #statTyped(rawId: string, type: StorageItemType): Promise<StorageItem> {
    const item = await this.#stat(rawId, type === 'folder');
    if (item.type !== type) throw notFound(`No such ${type}.`);
    return item;
  }

  async get(rawId: string, type: StorageItemType): Promise<StorageItem> {
    // A file asked with a slash fails differently per server (Apache: 400), so files go without.
    if (type === 'file') {
      const item = await this.#stat(rawId);
      if (item.type !== 'file') throw notFound('No such file.');
      return item;
    }
    try {
      return await this.#statTyped(rawId, 'folder');
    } catch (error) {
      if (upstreamStatus(error) === 400 || upstreamStatus(error) === 409) {
        const item = await this.#stat(rawId);
        if (item.type !== 'folder') throw notFound('No such folder.');
        return item;
      }
      throw error;
    }
  }

  /** Visible children of a folder, sorted by name (one PROPFIND Depth 1). */
  async #children(folderRawId: string): Promise<StorageItem[]> {
    const segments = parseRawId(folderRawId);
    let result: Awaited<ReturnType<DavClient['propfind']>>;
    try {
      result = await this.#client.propfind(this.#location.url(folderRawId, true), 1);
    } catch (error) {
      // A file addressed as a collection: Apache says 400, others 404/409.
      const status = upstreamStatus(error);
      if (status === 400 || status === 409) {
        const item = await this.#stat(folderRawId);
        if (item.type !== 'folder') throw notFound('No such folder.');
      }
      throw error;
    }
    const seen = new Set<string>();
    const items: StorageItem[] = [];
    let self: DavResponse | undefined;
    for (const response of result.responses) {
      const rawId = this.#location.rawIdOfHref(response.href, result.url);
      if (rawId === null) continue; // another host, outside the account, or undecodable: ignored
      const childSegments = parseRawIdOrNull(rawId);
      if (childSegments === null) continue;
      if (childSegments.length === segments.length && rawId === toRawId(segments)) {
        self = response;
        continue;
      }
      if (childSegments.length !== segments.length + 1) continue;
      if (!segments.every((s, i) => childSegments[i] === s)) continue;
      if (!response.found) continue;
      if (seen.has(rawId)) continue;
      seen.add(rawId);
      items.push(this.#toItem(rawId, response));
    }
    if (self && !isCollection(self)) throw notFound('No such folder.');
    return items.sort(nameCompare);
  }

  async list(folderRawId: string, page: PageRequest): Promise<Page<StorageItem>> {
    const all = await this.#children(folderRawId);
    const after = page.cursor;
    const start = after === undefined ? 0 : all.findIndex((i) => i.name > after);
    const from = start === -1 ? all.length : start;
    const items = all.slice(from, from + page.pageSize);
    const more = from + items.length < all.length;
    // Keyset paging on the sorted name: inserts between pages neither repeat nor skip items.
    return {
      items,
      cursor: more && items.length > 0 ? items[items.length - 1]!.name : null,
      total: all.length,
    };
  }

  async lookup(parentRawId: string, name: string): Promise<StorageItem | null> {
    const rawId = childRawId(parentRawId, name);
    return this.#statOrNull(rawId);
  }

  async createFolder(parentRawId: string, name: string): Promise<StorageItem> {
    const rawId = childRawId(parentRawId, name);
    let status: number;
    try {
      status = await this.#client.mkcol(this.#location.url(rawId, true));
    } catch (error) {
      // Apache answers 400 to `file.txt/` (a file of that name exists) and below a file.
      if (upstreamStatus(error) === 400) {
        const existing = await this.#statOrNull(rawId);
        if (existing) {
          throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
        }
        if (!(await this.#parentIsFolder(rawId))) throw notFound('The parent folder does not exist.');
      }
      throw error;
    }
    if (status === 405 || REDIRECTS.has(status)) {
      // §9.3.1: 405 = the resource already exists.
      const existing = await this.#statOrNull(rawId);
      throw namingConflict(
        existing?.rawId ?? rawId,
        'A file or folder with that name already exists.',
        SERVICE,
      );
    }
    return this.#statTyped(rawId, 'folder');
  }

  /** PUT to a hidden temporary name in the folder, then MOVE onto `rawId`; the temp is removed on failure. */
  async #write(
    rawId: string,
    body: Readable,
    options: { size?: number | null; mimeType?: string | null; signal?: AbortSignal; overwrite: boolean },
  ): Promise<StorageItem> {
    const segments = parseRawId(rawId);
    const tempSegments = [...segments.slice(0, -1), this.#tempName()];
    const tempUrl = this.#location.urlOfSegments(tempSegments, false);
    try {
      await this.#client.put(tempUrl, body, options);
    } catch (error) {
      body.destroy();
      await this.#removeQuietly(tempUrl);
      if (upstreamStatus(error) === 400 && !(await this.#parentIsFolder(rawId))) {
        throw notFound('The parent folder does not exist.');
      }
      throw error;
    }
    try {
      await this.#transfer('MOVE', tempUrl, rawId, {
        overwrite: options.overwrite,
        collection: false,
        destCollection: false,
      });
    } catch (error) {
      await this.#removeQuietly(tempUrl);
      throw error;
    }
    return this.#statTyped(rawId, 'file');
  }

  /** MOVE/COPY; a redirected destination lookup means something already sits there. */
  async #transfer(
    method: 'MOVE' | 'COPY',
    from: string,
    dest: string,
    options: { overwrite: boolean; collection: boolean; destCollection: boolean },
  ): Promise<void> {
    const status = await this.#client.transfer(
      method,
      from,
      this.#location.url(dest, options.destCollection),
      {
        overwrite: options.overwrite,
        conflictRawId: dest,
        collection: options.collection,
      },
    );
    if (REDIRECTS.has(status)) {
      const existing = await this.#statOrNull(dest);
      if (existing)
        throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
      throw badGateway(
        `The WebDAV server answered ${method} with a redirect (HTTP ${status}); not followed.`,
        'DAV_REDIRECT',
      );
    }
  }

  async #removeQuietly(url: string): Promise<void> {
    try {
      await this.#client.delete(url);
    } catch {
      // Best effort: a temp left behind stays hidden (reserved prefix) and is never listed.
    }
  }

  async upload(
    parentRawId: string,
    name: string,
    body: Readable,
    options: {
      size?: number | null;
      ifExists: 'replace' | 'fail';
      mimeType?: string | null;
      signal?: AbortSignal;
    },
  ): Promise<StorageItem> {
    const rawId = childRawId(parentRawId, name);
    // Decided before the body is read (the contract): an existing name fails, a folder is never replaced.
    const existing = await this.#statOrNull(rawId);
    if (existing && (options.ifExists === 'fail' || existing.type === 'folder')) {
      throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
    }
    return this.#write(rawId, body, {
      size: options.size ?? null,
      mimeType: options.mimeType ?? null,
      ...(options.signal ? { signal: options.signal } : {}),
      overwrite: options.ifExists === 'replace',
    });
  }

  async updateContents(
    rawId: string,
    body: Readable,
    options: { size?: number | null; signal?: AbortSignal } = {},
  ): Promise<StorageItem> {
    const existing = await this.#statTyped(rawId, 'file');
    return this.#write(rawId, body, {
      size: options.size ?? null,
      mimeType: existing.mimeType ?? null,
      ...(options.signal ? { signal: options.signal } : {}),
      overwrite: true,
    });
  }

  async download(
    rawId: string,
    options: { range?: ByteRange; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
    const { range, signal } = options;
    if (range && (range.start < 0 || (range.end !== undefined && range.end < range.start))) {
      throw new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.', {
        service: SERVICE,
      });
    }
    const url = this.#location.url(rawId, false);
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
    if (range) headers.Range = `bytes=${range.start}-${range.end ?? ''}`;
    let response: AxiosResponse<Readable>;
    try {
      // RFC 4918 §9.4 GET, with RFC 9110 §14.2 Range
      response = await this.#client.http.request<Readable>({
        method: 'GET',
        url,
        headers,
        responseType: 'stream',
        decompress: false,
        validateStatus: (s) => s === 200 || s === 206 || REDIRECTS.has(s),
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (upstreamStatus(error) === 416) {
        throw new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.', {
          service: SERVICE,
        });
      }
      throw error;
    }
    if (REDIRECTS.has(response.status)) {
      const folder = isSlashRedirect(response, url);
      discard(response);
      if (folder) throw notFound('No such file: that is a folder.');
      throw badGateway(
        `The WebDAV server answered GET with a redirect (HTTP ${response.status}); not followed.`,
        'DAV_REDIRECT',
      );
    }
    const contentType = headerOf(response, 'content-type') ?? null;
    const length = parseSize(headerOf(response, 'content-length'));
    if (response.status === 206) {
      const served = parseContentRange(headerOf(response, 'content-range'));
      if (!served || !range || served.start !== range.start) {
        discard(response);
        throw badGateway(
          'The WebDAV server sent a partial reply that does not match the asked range.',
          'DAV_BAD_RANGE',
        );
      }
      return {
        stream: mappedStream(response.data),
        size: length ?? served.end - served.start + 1,
        contentType,
        range: {
          start: served.start,
          end: served.end,
          total: Number.isNaN(served.total) ? served.end + 1 : served.total,
        },
      };
    }
    if (!range) return { stream: mappedStream(response.data), size: length, contentType, range: null };
    // 200 to a Range request: the server ignored it, so the bytes are cut here.
    if (length === null) {
      discard(response);
      throw badGateway('The WebDAV server ignored the Range header and sent no length.', 'DAV_BAD_RANGE');
    }
    if (range.start >= length) {
      discard(response);
      throw new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.', {
        service: SERVICE,
      });
    }
    const end = Math.min(range.end ?? length - 1, length - 1);
    const sliced = mappedStream(response.data, rangeSlice(range.start, end - range.start + 1));
    return {
      stream: sliced,
      size: end - range.start + 1,
      contentType,
      range: { start: range.start, end, total: length },
    };
  }

  /** The destination raw id of a move/copy, checked: a real target folder, not inside the source. */
  async #destination(
    rawId: string,
    type: StorageItemType,
    parentRawId: string | undefined,
    name: string,
  ): Promise<string> {
    const currentParent = parentOf(rawId)!;
    const parent = parentRawId ?? currentParent;
    const dest = childRawId(parent, name);
    if (type === 'folder' && dest.startsWith(`${rawId}/`)) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be moved or copied into itself.', {
        service: SERVICE,
      });
    }
    if (parent !== currentParent) {
      // Servers answer a missing destination parent inconsistently (409, or Apache's 500).
      await this.get(parent, 'folder');
    }
    return dest;
  }

  async move(rawId: string, type: StorageItemType, options: MoveOptions): Promise<StorageItem> {
    if (parseRawId(rawId).length === 0) {
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be moved.', { service: SERVICE });
    }
    if (options.name !== undefined) checkName(options.name);
    const source = await this.get(rawId, type);
    const dest = await this.#destination(rawId, type, options.parentRawId, options.name ?? source.name);
    if (dest === rawId) return source;
    const folder = type === 'folder';
    await this.#transfer('MOVE', this.#location.url(rawId, folder), dest, {
      overwrite: false,
      collection: folder,
      destCollection: folder,
    });
    return this.#statTyped(dest, type);
  }

  async copy(
    rawId: string,
    type: StorageItemType,
    options: { parentRawId: string; name: string },
  ): Promise<StorageItem> {
    checkName(options.name);
    if (parseRawId(rawId).length === 0 && type === 'folder') {
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be copied into itself.', {
        service: SERVICE,
      });
    }
    await this.get(rawId, type);
    const dest = await this.#destination(rawId, type, options.parentRawId, options.name);
    if (dest === rawId)
      throw namingConflict(rawId, 'A file or folder with that name already exists.', SERVICE);
    const folder = type === 'folder';
    await this.#transfer('COPY', this.#location.url(rawId, folder), dest, {
      overwrite: false,
      collection: folder,
      destCollection: folder,
    });
    return this.#statTyped(dest, type);
  }

  async delete(rawId: string, type: StorageItemType, options: DeleteOptions): Promise<void> {
    if (parseRawId(rawId).length === 0) {
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be deleted.', {
        service: SERVICE,
      });
    }
    await this.get(rawId, type);
    if (type === 'folder' && !options.recursive) {
      // DELETE of a collection removes its members too (§9.6.1), so emptiness is checked here.
      const children = await this.#children(rawId);
      if (children.length > 0) {
        throw new CloudmuxError('folder_not_empty', undefined, { service: SERVICE });
      }
    }
    await this.#client.delete(this.#location.url(rawId, type === 'folder'));
  }

  /**
   * Name search as a breadth-first walk of Depth-1 listings, at most `searchMaxFolders` collections
   * per call. DAV SEARCH (RFC 5323) would do it server-side but few servers implement it.
   * The cursor is the number of matches already returned; each page walks again from the start.
   */
  async search(query: string, options: SearchOptions): Promise<Page<StorageItem>> {
    const needle = query.trim().toLowerCase();
    if (needle === '')
      throw new CloudmuxError('invalid_parameters', 'A search query is required.', { service: SERVICE });
    const offset = options.cursor ? Number(options.cursor) : 0;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new CloudmuxError('invalid_parameters', 'Invalid search cursor.', { service: SERVICE });
    }
    const want = offset + options.pageSize + 1;
    const queue = [...new Set(options.parents?.length ? options.parents : [this.rootRawId])];
    const matches: StorageItem[] = [];
    let walked = 0;
    while (queue.length > 0 && walked < this.#searchMaxFolders && matches.length < want) {
      const folder = queue.shift()!;
      walked += 1;
      let children: StorageItem[];
      try {
        children = await this.#children(folder);
      } catch (error) {
        // A folder that vanished or is unreadable mid-walk is skipped, not fatal.
        if (
          error instanceof CloudmuxError &&
          (error.code === 'not_found' || error.code === 'service_forbidden') &&
          walked > 1
        )
          continue;
        throw error;
      }
      for (const item of children) {
        if (item.name.toLowerCase().includes(needle)) matches.push(item);
        if (item.type === 'folder') queue.push(item.rawId);
      }
    }
    const items = matches.slice(offset, offset + options.pageSize);
    const more = matches.length > offset + items.length;
    return { items, cursor: more ? String(offset + items.length) : null };
  }
}

function parseRawIdOrNull(rawId: string): string[] | null {
  try {
    return parseRawId(rawId);
  } catch {
    return null;
  }
}
