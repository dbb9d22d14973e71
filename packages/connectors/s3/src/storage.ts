/**
 * The Storage API over one bucket (optionally below a base prefix). S3 has keys, not folders: a
 * folder is a zero-byte `prefix/` marker object, and listings also show "implicit" folders that
 * exist only as common prefixes of deeper keys. Rename and move are copy + delete (every key under
 * a folder's prefix); copy is CopyObject (UploadPartCopy above 5 GiB); search lists and filters.
 */
import type { Readable } from 'node:stream';
import {
  type ByteRange,
  CloudmuxError,
  type DeleteOptions,
  type DownloadResult,
  forEachLimit,
  type Logger,
  type MoveOptions,
  mimeTypeFor,
  type NativeMultipart,
  namingConflict,
  type Page,
  type PageRequest,
  rangeSlice,
  type SearchOptions,
  type StorageApi,
  type StorageItem,
  type StorageItemType,
  type UploadOptions,
  validateItemName,
} from '@cloudmux/core';
import { KeyExistsError, type ListedObject, type ObjectHead, type S3Client } from './client.js';
import { garbage } from './errors.js';
import { isValidName, type KeySpace, SERVICE } from './keys.js';
import {
  ChunkReader,
  COPY_MAX,
  DEFAULT_UPLOAD_LIMITS,
  exactLength,
  MAX_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  MiB,
  type UploadLimits,
  uploadMultipart,
} from './upload.js';

const FOLDER_CONTENT_TYPE = 'application/x-directory';
/** Parallel CopyObject / UploadPartCopy requests in a folder copy or move. */
const COPY_CONCURRENCY = 4;
/** Part size of a multipart copy (raised to fit 10,000 parts). */
const COPY_PART_SIZE = 512 * MiB;

export interface S3StorageOptions {
  client: S3Client;
  keys: KeySpace;
  scratchDir: string;
  log: Logger;
  /** Most keys one `search` call lists before it answers (with a cursor to go on). */
  searchScanLimit?: number;
  /** Most ListObjectsV2 requests one `list` call makes to fill a page. */
  listRequestsPerPage?: number;
  limits?: Partial<UploadLimits>;
}

function notFound(what = 'file or folder'): CloudmuxError {
  return new CloudmuxError('not_found', `No such ${what}.`, { service: SERVICE });
}

/** S3 orders keys by their UTF-8 bytes (which differs from UTF-16 order above U+D7FF). */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Sorts after every key that starts with `prefix`, for `start-after` past a whole common prefix. */
const pastPrefix = (prefix: string) => `${prefix}\u{10FFFF}`;

type ListCursor = { t: string } | { a: string };
interface SearchCursor {
  /** Index into the searched roots. */
  p: number;
  /** Last key fully handled. */
  a?: string;
  /** Matches of the next key already returned. */
  s?: number;
}

function encodeCursor(value: object): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new CloudmuxError('invalid_parameters', 'Invalid page cursor.', { service: SERVICE });
}

interface MultipartSession {
  k: string;
  u: string;
  /** 1: ifExists fail. */
  f: 0 | 1;
  p: Array<[number, string]>;
}

/** Skips `skip` bytes and passes at most `limit` more: for servers that answer a Range with 200. */
function sliceStream(source: Readable, skip: number, limit: number): Readable {
  const slicer = rangeSlice(skip, limit, () => {
    source.unpipe(slicer);
    source.destroy();
  });
  source.on('error', (err) => slicer.destroy(err));
  return source.pipe(slicer);
}

export class S3Storage implements StorageApi {
  readonly rootRawId: string;
  readonly multipart: NativeMultipart;
  private readonly client: S3Client;
  private readonly keys: KeySpace;
  private readonly scratchDir: string;
  private readonly log: Logger;
  private readonly searchScanLimit: number;
  private readonly listRequestsPerPage: number;
  private readonly limits: UploadLimits;

  constructor(options: S3StorageOptions) {
    this.limits = { ...DEFAULT_UPLOAD_LIMITS, ...options.limits };
    this.client = options.client;
    this.keys = options.keys;
    this.scratchDir = options.scratchDir;
    this.log = options.log;
    this.searchScanLimit = options.searchScanLimit ?? 10_000;
    this.listRequestsPerPage = options.listRequestsPerPage ?? 5;
    this.rootRawId = this.keys.rootRawId;
    this.multipart = this.nativeMultipart();
  }

  /** Lists one key under the base prefix: proves the bucket, the endpoint and the credentials. */
  async validate(): Promise<void> {
    await this.client.listObjects({ prefix: this.keys.prefix, maxKeys: 1 });
  }

  // ---- items ----

  private fileItem(
    key: string,
    info: { size: number; lastModified: Date | null; contentType?: string | null },
    raw: unknown,
  ): StorageItem {
    const name = this.keys.nameOf(key);
    return {
      type: 'file',
      rawId: this.keys.rawIdOf(key),
      name,
      size: info.size,
      // S3 keeps no creation time; LastModified is when this version was written.
      created: null,
      modified: info.lastModified,
      parentRawId: this.keys.rawIdOf(this.keys.parentKey(key)!),
      path: this.keys.displayPath(key),
      mimeType: info.contentType ?? mimeTypeFor(name),
      ancestors: this.keys.ancestors(key),
      raw,
      downloadable: true,
      canCreateFolders: false,
      canUploadFiles: false,
    };
  }

  private folderItem(key: string, lastModified: Date | null, raw: unknown): StorageItem {
    const parent = this.keys.parentKey(key);
    return {
      type: 'folder',
      rawId: this.keys.rawIdOf(key),
      name: this.keys.nameOf(key),
      size: null,
      created: null,
      modified: lastModified,
      parentRawId: parent === null ? null : this.keys.rawIdOf(parent),
      path: this.keys.displayPath(key),
      mimeType: null,
      ancestors: this.keys.ancestors(key),
      raw,
      downloadable: false,
      canCreateFolders: true,
      canUploadFiles: true,
    };
  }

  private headItem(head: ObjectHead): StorageItem {
    return this.fileItem(head.key, head, {
      Key: head.key,
      Size: head.size,
      ETag: head.etag,
      LastModified: head.lastModified?.toISOString() ?? null,
      ContentType: head.contentType,
      Metadata: head.metadata,
    });
  }

  private listedItem(object: ListedObject): StorageItem {
    return this.fileItem(
      object.key,
      { size: object.size, lastModified: object.lastModified },
      {
        Key: object.key,
        Size: object.size,
        ETag: object.etag,
        LastModified: object.lastModified?.toISOString() ?? null,
        StorageClass: object.storageClass,
      },
    );
  }

  // ---- keys and existence ----

  private fileKey(rawId: string): string {
    const key = this.keys.keyOf(rawId);
    if (this.keys.isFolderKey(key)) throw notFound('file');
    return key;
  }

  private folderKey(rawId: string): string {
    const key = this.keys.keyOf(rawId);
    if (!this.keys.isFolderKey(key)) throw notFound('folder');
    return key;
  }

  /**
   * One listing of the prefix tells whether a folder exists: its marker (`key` itself) sorts
   * before every key below it, and any key below it makes it an implicit folder.
   */
  private async folderInfo(key: string, signal?: AbortSignal): Promise<StorageItem | null> {
    const result = await this.client.listObjects({ prefix: key, maxKeys: 1, ...(signal ? { signal } : {}) });
    const first = result.objects[0];
    if (first?.key === key) {
      return this.folderItem(key, first.lastModified, { Key: key, ETag: first.etag, Marker: true });
    }
    if (first || result.prefixes.length > 0)
      return this.folderItem(key, null, { Prefix: key, Marker: false });
    return null;
  }

  private async requireFolder(key: string, signal?: AbortSignal): Promise<void> {
    if (this.keys.isRoot(key)) return;
    if (!(await this.folderInfo(key, signal))) throw notFound('folder');
  }

  /** What occupies the name `name` in `folderKey`: a file, a folder (marker or implicit), or nothing. */
  private async occupant(fileKey: string, signal?: AbortSignal): Promise<StorageItem | null> {
    const [head, folder] = await Promise.all([
      this.client.headOrNull(fileKey, signal),
      this.folderInfo(`${fileKey}/`, signal),
    ]);
    if (head) return this.headItem(head);
    return folder;
  }

  // ---- reads ----

  async get(rawId: string, type: StorageItemType): Promise<StorageItem> {
    if (type === 'file') return this.headItem(await this.client.headObject(this.fileKey(rawId)));
    const key = this.folderKey(rawId);
    if (this.keys.isRoot(key)) return this.folderItem(key, null, { Prefix: key, Root: true });
    const folder = await this.folderInfo(key);
    if (!folder) throw notFound('folder');
    return folder;
  }

  async list(folderRawId: string, page: PageRequest): Promise<Page<StorageItem>> {
    const prefix = this.folderKey(folderRawId);
    const pageSize = Math.max(1, Math.min(1000, Math.floor(page.pageSize)));
    let token: string | undefined;
    let after: string | undefined;
    if (page.cursor) {
      const c = decodeCursor(page.cursor);
      if (typeof c.t === 'string') token = c.t;
      else if (typeof c.a === 'string' && c.a.startsWith(prefix)) after = c.a;
      else throw new CloudmuxError('invalid_parameters', 'Invalid page cursor.', { service: SERVICE });
    }
    const items: StorageItem[] = [];
    for (let request = 0; request < this.listRequestsPerPage; request++) {
      const room = pageSize - items.length;
      const result = await this.client.listObjects({
        prefix,
        delimiter: '/',
        maxKeys: room,
        ...(token ? { continuationToken: token } : after ? { startAfter: after } : {}),
      });
      if (
        request === 0 &&
        !page.cursor &&
        !this.keys.isRoot(prefix) &&
        result.objects.length === 0 &&
        result.prefixes.length === 0
      ) {
        throw notFound('folder');
      }
      const entries: Array<{ key: string; item: StorageItem }> = [];
      for (const object of result.objects) {
        const name = object.key.slice(prefix.length);
        // The folder's own marker, and keys no item name can carry (`a//b`, backslashes, controls).
        if (object.key === prefix || !object.key.startsWith(prefix) || !isValidName(name)) continue;
        entries.push({ key: object.key, item: this.listedItem(object) });
      }
      for (const p of result.prefixes) {
        if (!p.startsWith(prefix) || !p.endsWith('/') || !isValidName(p.slice(prefix.length, -1))) continue;
        entries.push({ key: p, item: this.folderItem(p, null, { Prefix: p, Marker: null }) });
      }
      entries.sort((x, y) => compareKeys(x.key, y.key));
      if (entries.length > room) {
        // More than asked (some servers leave common prefixes out of max-keys): cut the page and
        // go on after the last entry shown, skipping the whole prefix when that entry is a folder.
        const taken = entries.slice(0, room);
        items.push(...taken.map((e) => e.item));
        const last = taken[taken.length - 1]!;
        const cursor: ListCursor = { a: last.item.type === 'folder' ? pastPrefix(last.key) : last.key };
        return { items, cursor: encodeCursor(cursor) };
      }
      items.push(...entries.map((e) => e.item));
      if (!result.truncated) return { items, cursor: null };
      if (result.objects.length + result.prefixes.length > room) {
        // The server did not count common prefixes in max-keys (s3rver); its token resumes after
        // its last key and would repeat prefixes listed past it. Go on after the last entry instead.
        const lastObject = result.objects.at(-1)?.key;
        const lastPrefix = [...result.prefixes].sort(compareKeys).at(-1);
        const prefixLast =
          lastPrefix !== undefined && (lastObject === undefined || compareKeys(lastPrefix, lastObject) > 0);
        token = undefined;
        after = prefixLast ? pastPrefix(lastPrefix!) : lastObject!;
      } else {
        token = result.nextToken!;
        after = undefined;
      }
      if (items.length >= pageSize) break;
    }
    const cursor: ListCursor = token !== undefined ? { t: token } : { a: after! };
    return { items, cursor: encodeCursor(cursor) };
  }

  async lookup(parentRawId: string, name: string): Promise<StorageItem | null> {
    validateItemName(name);
    const parent = this.folderKey(parentRawId);
    const found = await this.occupant(`${parent}${name}`);
    if (found) return found;
    await this.requireFolder(parent);
    return null;
  }

  async download(
    rawId: string,
    options: { range?: ByteRange; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
    const key = this.fileKey(rawId);
    const { range, signal } = options;
    const result = await this.client.getObject(key, range, signal);
    if (!range) {
      return { stream: result.stream, size: result.length, contentType: result.contentType, range: null };
    }
    if (result.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(result.contentRange?.trim() ?? '');
      if (!m) {
        result.stream.destroy();
        throw garbage(`Content-Range (${result.contentRange ?? 'missing'})`);
      }
      const start = Number(m[1]);
      const end = Number(m[2]);
      const total = m[3] === '*' ? Number.NaN : Number(m[3]);
      if (start !== range.start || (range.end !== undefined && end > range.end)) {
        result.stream.destroy();
        throw garbage(`Content-Range for bytes=${range.start}-${range.end ?? ''} (${result.contentRange})`);
      }
      return {
        stream: result.stream,
        size: end - start + 1,
        contentType: result.contentType,
        range: { start, end, total: Number.isNaN(total) ? end + 1 : total },
      };
    }
    // 200: the endpoint ignored the Range header; serve the slice ourselves.
    const total = result.length ?? Number.NaN;
    if (!Number.isFinite(total)) {
      result.stream.destroy();
      throw garbage('response to a Range request (200 without Content-Length)');
    }
    const end = Math.min(range.end ?? total - 1, total - 1);
    if (range.start > end) {
      result.stream.destroy();
      throw new CloudmuxError('bad_request', 'The requested range is not satisfiable.', { service: SERVICE });
    }
    return {
      stream: sliceStream(result.stream, range.start, end - range.start + 1),
      size: end - range.start + 1,
      contentType: result.contentType,
      range: { start: range.start, end, total },
    };
  }

  // ---- writes ----

  /** Writes `body` at `key`: one streamed PutObject when small and sized, multipart otherwise. */
  private async writeObject(
    key: string,
    body: Readable,
    options: { size: number | null; contentType: string; ifNoneMatch: boolean; signal?: AbortSignal },
  ): Promise<void> {
    const { size, contentType, ifNoneMatch, signal } = options;
    const common = { contentType, ifNoneMatch, ...(signal ? { signal } : {}) };
    if (size !== null && size <= this.limits.singlePutMax) {
      if (size === 0) {
        // Drain whatever an empty body holds (nothing), so the source ends cleanly.
        const reader = new ChunkReader(body);
        if (await reader.hasMore()) {
          await reader.close();
          throw new CloudmuxError(
            'bad_request',
            'The upload body is longer than the declared size of 0 bytes.',
            { service: SERVICE },
          );
        }
        await this.client.putObject(key, { kind: 'buffer', data: Buffer.alloc(0) }, common);
        return;
      }
      const guarded = exactLength(body, size);
      try {
        await this.client.putObject(key, { kind: 'stream', stream: guarded.stream, length: size }, common);
      } catch (error) {
        throw guarded.failure() ?? error;
      }
      return;
    }
    const reader = new ChunkReader(body);
    if (size === null) {
      // Unknown size: what fits in one PutObject is sent as one (rclone's streaming cutoff idea).
      let head: Buffer | undefined = await reader.readBuffer(this.limits.singlePutMax);
      if (!(await reader.hasMore())) {
        await this.client.putObject(key, { kind: 'buffer', data: head }, common);
        return;
      }
      const multipart = { size: null, head, ...common };
      head = undefined;
      await uploadMultipart(this.client, key, reader, multipart, this.env());
      return;
    }
    await uploadMultipart(this.client, key, reader, { size, ...common }, this.env());
  }

  private env() {
    return { scratchDir: this.scratchDir, log: this.log, limits: this.limits };
  }

  async createFolder(parentRawId: string, name: string): Promise<StorageItem> {
    validateItemName(name);
    const parent = this.folderKey(parentRawId);
    const key = `${parent}${name}`;
    const [, existing] = await Promise.all([this.requireFolder(parent), this.occupant(key)]);
    if (existing)
      throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
    const marker = `${key}/`;
    try {
      await this.client.putObject(
        marker,
        { kind: 'buffer', data: Buffer.alloc(0) },
        {
          contentType: FOLDER_CONTENT_TYPE,
          ifNoneMatch: true,
        },
      );
    } catch (error) {
      if (error instanceof KeyExistsError)
        throw namingConflict(this.keys.rawIdOf(marker), 'A folder with that name already exists.', SERVICE);
      throw error;
    }
    const head = await this.client.headObject(marker);
    return this.folderItem(marker, head.lastModified, { Key: marker, ETag: head.etag, Marker: true });
  }

  async upload(
    parentRawId: string,
    name: string,
    body: Readable,
    options: UploadOptions,
  ): Promise<StorageItem> {
    validateItemName(name);
    const parent = this.folderKey(parentRawId);
    const key = `${parent}${name}`;
    const signal = options.signal;
    // Checked before a byte of the body is read.
    const [, folder, file] = await Promise.all([
      this.requireFolder(parent, signal),
      this.folderInfo(`${key}/`, signal),
      options.ifExists === 'fail' ? this.client.headOrNull(key, signal) : Promise.resolve(null),
    ]);
    if (folder) throw namingConflict(folder.rawId, 'A folder with that name already exists.', SERVICE);
    if (file) throw namingConflict(this.keys.rawIdOf(key), 'A file with that name already exists.', SERVICE);
    try {
      await this.writeObject(key, body, {
        size: options.size ?? null,
        contentType: options.mimeType || mimeTypeFor(name),
        ifNoneMatch: options.ifExists === 'fail',
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (error instanceof KeyExistsError)
        throw namingConflict(this.keys.rawIdOf(key), 'A file with that name already exists.', SERVICE);
      throw error;
    }
    return this.headItem(await this.client.headObject(key, signal));
  }

  async updateContents(
    rawId: string,
    body: Readable,
    options: { size?: number | null; signal?: AbortSignal } = {},
  ): Promise<StorageItem> {
    const key = this.fileKey(rawId);
    const signal = options.signal;
    const head = await this.client.headObject(key, signal);
    await this.writeObject(key, body, {
      size: options.size ?? null,
      contentType: head.contentType || mimeTypeFor(this.keys.nameOf(key)),
      ifNoneMatch: false,
      ...(signal ? { signal } : {}),
    });
    return this.headItem(await this.client.headObject(key, signal));
  }

  // ---- copy, move, delete ----

  /** Resolves the target of a move or copy and refuses what cannot work. */
  private async target(
    key: string,
    type: StorageItemType,
    options: { parentRawId?: string; name?: string },
  ): Promise<{ targetKey: string; parent: string }> {
    if (this.keys.isRoot(key)) {
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be moved or copied.', {
        service: SERVICE,
      });
    }
    const name = validateItemName(options.name ?? this.keys.nameOf(key));
    const parent =
      options.parentRawId !== undefined ? this.folderKey(options.parentRawId) : this.keys.parentKey(key)!;
    const targetKey = `${parent}${name}${type === 'folder' ? '/' : ''}`;
    if (type === 'folder' && targetKey !== key && targetKey.startsWith(key)) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be moved or copied into itself.', {
        service: SERVICE,
      });
    }
    return { targetKey, parent };
  }

  private async assertFree(targetKey: string, type: StorageItemType): Promise<void> {
    const fileKey = type === 'folder' ? targetKey.slice(0, -1) : targetKey;
    const existing = await this.occupant(fileKey);
    if (existing)
      throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
  }

  /** One object: CopyObject up to 5 GiB, a multipart copy (UploadPartCopy) above. */
  private async copyKey(source: string, target: string, size: number, ifNoneMatch: boolean): Promise<void> {
    try {
      if (size <= COPY_MAX) {
        await this.client.copyObject(source, target, { ifNoneMatch });
        return;
      }
      await this.copyLarge(source, target, size, ifNoneMatch);
    } catch (error) {
      if (error instanceof KeyExistsError)
        throw namingConflict(this.keys.rawIdOf(target), 'A file with that name already exists.', SERVICE);
      throw error;
    }
  }

  private async copyLarge(source: string, target: string, size: number, ifNoneMatch: boolean): Promise<void> {
    const head = await this.client.headObject(source);
    const partSize = Math.max(COPY_PART_SIZE, Math.ceil(size / MAX_PARTS / MiB) * MiB);
    if (partSize > MAX_PART_SIZE)
      throw new CloudmuxError('bad_request', 'The object is too large to copy.', { service: SERVICE });
    const uploadId = await this.client.createMultipartUpload(target, {
      contentType: head.contentType || 'application/octet-stream',
      metadata: head.metadata,
    });
    try {
      const ranges: Array<{ partNumber: number; start: number; end: number }> = [];
      for (let start = 0, n = 1; start < size; start += partSize, n++) {
        ranges.push({ partNumber: n, start, end: Math.min(size, start + partSize) - 1 });
      }
      const parts: Array<{ partNumber: number; etag: string }> = [];
      await forEachLimit(ranges, COPY_CONCURRENCY, async (r) => {
        const etag = await this.client.uploadPartCopy(target, uploadId, r.partNumber, source, r);
        parts.push({ partNumber: r.partNumber, etag });
      });
      await this.client.completeMultipartUpload(target, uploadId, parts, { ifNoneMatch });
    } catch (error) {
      await this.client.abortMultipartUpload(target, uploadId).catch((abortError: unknown) => {
        this.log.warn(
          { service: SERVICE, error: (abortError as Error).message },
          'could not abort a failed multipart copy',
        );
      });
      throw error;
    }
  }

  /** Every key under `prefix`, a page (≤ 1000) at a time. */
  private async *pagesUnder(prefix: string): AsyncGenerator<ListedObject[]> {
    let token: string | undefined;
    for (;;) {
      const result = await this.client.listObjects({
        prefix,
        maxKeys: 1000,
        ...(token ? { continuationToken: token } : {}),
      });
      if (result.objects.length > 0) yield result.objects;
      if (!result.truncated) return;
      token = result.nextToken!;
    }
  }

  /** Copies every key under `source` to the same key under `target`; when moving, deletes each page after. */
  private async copyTree(source: string, target: string, move: boolean): Promise<void> {
    for await (const objects of this.pagesUnder(source)) {
      await forEachLimit(objects, COPY_CONCURRENCY, (o) =>
        this.copyKey(o.key, `${target}${o.key.slice(source.length)}`, o.size, false),
      );
      if (move) await this.client.deleteObjects(objects.map((o) => o.key));
    }
  }

  async move(rawId: string, type: StorageItemType, options: MoveOptions): Promise<StorageItem> {
    const key = type === 'file' ? this.fileKey(rawId) : this.folderKey(rawId);
    const { targetKey, parent } = await this.target(key, type, options);
    if (type === 'file') {
      const head = await this.client.headObject(key);
      if (targetKey === key) return this.headItem(head);
      await this.requireFolder(parent);
      await this.assertFree(targetKey, 'file');
      await this.copyKey(key, targetKey, head.size, true);
      await this.client.deleteObject(key);
      return this.headItem(await this.client.headObject(targetKey));
    }
    const folder = await this.folderInfo(key);
    if (!folder) throw notFound('folder');
    if (targetKey === key) return folder;
    await this.requireFolder(parent);
    await this.assertFree(targetKey, 'folder');
    await this.copyTree(key, targetKey, true);
    return (await this.folderInfo(targetKey)) ?? this.folderItem(targetKey, null, { Prefix: targetKey });
  }

  async copy(
    rawId: string,
    type: StorageItemType,
    options: { parentRawId: string; name: string },
  ): Promise<StorageItem> {
    const key = type === 'file' ? this.fileKey(rawId) : this.folderKey(rawId);
    const { targetKey, parent } = await this.target(key, type, options);
    if (type === 'file') {
      const head = await this.client.headObject(key);
      await this.requireFolder(parent);
      await this.assertFree(targetKey, 'file');
      await this.copyKey(key, targetKey, head.size, true);
      return this.headItem(await this.client.headObject(targetKey));
    }
    if (!(await this.folderInfo(key))) throw notFound('folder');
    await this.requireFolder(parent);
    await this.assertFree(targetKey, 'folder');
    await this.copyTree(key, targetKey, false);
    return (await this.folderInfo(targetKey)) ?? this.folderItem(targetKey, null, { Prefix: targetKey });
  }

  async delete(rawId: string, type: StorageItemType, options: DeleteOptions): Promise<void> {
    if (type === 'file') {
      const key = this.fileKey(rawId);
      // DeleteObject answers 204 for a missing key too; the API says not_found.
      await this.client.headObject(key);
      await this.client.deleteObject(key);
      return;
    }
    const key = this.folderKey(rawId);
    if (this.keys.isRoot(key)) {
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be deleted.', {
        service: SERVICE,
      });
    }
    const probe = await this.client.listObjects({ prefix: key, maxKeys: 2 });
    if (probe.objects.length === 0) throw notFound('folder');
    const onlyMarker = probe.objects.length === 1 && probe.objects[0]!.key === key && !probe.truncated;
    if (!options.recursive) {
      if (!onlyMarker) {
        throw new CloudmuxError('folder_not_empty', undefined, { service: SERVICE });
      }
      await this.client.deleteObject(key);
      return;
    }
    for await (const objects of this.pagesUnder(key)) {
      await this.client.deleteObjects(objects.map((o) => o.key));
    }
  }

  // ---- search ----

  /**
   * Name search by listing every key under the searched folders (S3 has no name index), matching
   * the file name and each folder segment case-insensitively. A call lists at most
   * `searchScanLimit` keys; the cursor continues where it stopped. A folder is reported once, at
   * the first key under it (the marker, when there is one, sorts first).
   */
  async search(query: string, options: SearchOptions): Promise<Page<StorageItem>> {
    const needle = query.normalize('NFC').toLowerCase();
    if (needle.trim() === '')
      throw new CloudmuxError('invalid_parameters', 'The search query is empty.', { service: SERVICE });
    const roots = options.parents?.length
      ? options.parents.map((p) => this.folderKey(p))
      : [this.keys.prefix];
    const pageSize = Math.max(1, Math.floor(options.pageSize));
    let state: SearchCursor = { p: 0 };
    if (options.cursor) {
      const c = decodeCursor(options.cursor);
      if (typeof c.p !== 'number' || !Number.isInteger(c.p) || c.p < 0 || c.p >= roots.length) {
        throw new CloudmuxError('invalid_parameters', 'Invalid page cursor.', { service: SERVICE });
      }
      state = {
        p: c.p,
        ...(typeof c.a === 'string' ? { a: c.a } : {}),
        ...(typeof c.s === 'number' ? { s: c.s } : {}),
      };
    }
    if (!options.cursor) for (const root of roots) await this.requireFolder(root);
    const matches = (name: string) => name.normalize('NFC').toLowerCase().includes(needle);
    const items: StorageItem[] = [];
    let scanned = 0;
    for (let p = state.p; p < roots.length; p++) {
      const root = roots[p]!;
      let prev = p === state.p ? state.a : undefined;
      let skip = p === state.p ? (state.s ?? 0) : 0;
      let token: string | undefined;
      for (;;) {
        const result = await this.client.listObjects({
          prefix: root,
          maxKeys: 1000,
          ...(token ? { continuationToken: token } : prev !== undefined ? { startAfter: prev } : {}),
        });
        for (const object of result.objects) {
          const found: StorageItem[] = [];
          const rel = object.key.slice(root.length);
          const segments = rel.split('/');
          let folderKey = root;
          let valid = true;
          for (let i = 0; i < segments.length - 1; i++) {
            const segment = segments[i]!;
            if (!isValidName(segment)) {
              valid = false;
              break;
            }
            folderKey = `${folderKey}${segment}/`;
            const firstUnder = prev === undefined || !prev.startsWith(folderKey);
            if (firstUnder && matches(segment)) {
              found.push(
                this.folderItem(folderKey, object.key === folderKey ? object.lastModified : null, {
                  Prefix: folderKey,
                }),
              );
            }
          }
          const last = segments[segments.length - 1]!;
          if (valid && last !== '' && isValidName(last) && matches(last)) found.push(this.listedItem(object));
          const fresh = found.slice(skip);
          const room = pageSize - items.length;
          if (fresh.length > room) {
            items.push(...fresh.slice(0, room));
            const cursor: SearchCursor = { p, s: skip + room, ...(prev !== undefined ? { a: prev } : {}) };
            return { items, cursor: encodeCursor(cursor) };
          }
          items.push(...fresh);
          skip = 0;
          prev = object.key;
          scanned += 1;
          if (items.length >= pageSize || scanned >= this.searchScanLimit) {
            const more =
              result.truncated ||
              object !== result.objects[result.objects.length - 1] ||
              p < roots.length - 1;
            return { items, cursor: more ? encodeCursor({ p, a: prev } satisfies SearchCursor) : null };
          }
        }
        if (!result.truncated) break;
        token = result.nextToken!;
      }
    }
    return { items, cursor: null };
  }

  // ---- native multipart ----

  private encodeSession(session: MultipartSession): string {
    return Buffer.from(JSON.stringify(session), 'utf8').toString('base64url');
  }

  private decodeSession(state: string): MultipartSession {
    const value = decodeCursor(state) as Partial<MultipartSession>;
    if (typeof value.k !== 'string' || typeof value.u !== 'string' || !Array.isArray(value.p)) {
      throw new CloudmuxError('invalid_parameters', 'Invalid multipart session.', { service: SERVICE });
    }
    const key = this.fileKey(this.keys.rawIdOf(value.k));
    return { k: key, u: value.u, f: value.f === 1 ? 1 : 0, p: value.p as Array<[number, string]> };
  }

  private nativeMultipart(): NativeMultipart {
    return {
      minPartSize: MIN_PART_SIZE,
      maxPartSize: MAX_PART_SIZE,
      maxParts: MAX_PARTS,
      begin: async (parentRawId, name, options) => {
        validateItemName(name);
        const parent = this.folderKey(parentRawId);
        const key = `${parent}${name}`;
        const [, folder, file] = await Promise.all([
          this.requireFolder(parent),
          this.folderInfo(`${key}/`),
          options.ifExists === 'fail' ? this.client.headOrNull(key) : Promise.resolve(null),
        ]);
        if (folder) throw namingConflict(folder.rawId, 'A folder with that name already exists.', SERVICE);
        if (file)
          throw namingConflict(this.keys.rawIdOf(key), 'A file with that name already exists.', SERVICE);
        const uploadId = await this.client.createMultipartUpload(key, {
          contentType: options.mimeType || mimeTypeFor(name),
          ...(options.signal ? { signal: options.signal } : {}),
        });
        return {
          sessionState: this.encodeSession({
            k: key,
            u: uploadId,
            f: options.ifExists === 'fail' ? 1 : 0,
            p: [],
          }),
        };
      },
      uploadPart: async (sessionState, partNumber, body, size) => {
        const session = this.decodeSession(sessionState);
        if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
          throw new CloudmuxError('invalid_parameters', `Part numbers run from 1 to ${MAX_PARTS}.`, {
            service: SERVICE,
          });
        }
        if (!Number.isInteger(size) || size < 0 || size > MAX_PART_SIZE) {
          throw new CloudmuxError('invalid_parameters', `A part holds at most ${MAX_PART_SIZE} bytes.`, {
            service: SERVICE,
          });
        }
        let etag: string;
        if (size <= this.limits.memoryPartMax) {
          // Small enough to hold: a Buffer body is signed and can be retried.
          const reader = new ChunkReader(body);
          const data = await reader.readBuffer(size);
          const more = await reader.hasMore();
          await reader.close();
          if (data.length !== size || more) {
            throw new CloudmuxError(
              'bad_request',
              `Part ${partNumber} does not hold the declared ${size} bytes.`,
              { service: SERVICE },
            );
          }
          etag = await this.client.uploadPart(session.k, session.u, partNumber, { kind: 'buffer', data });
        } else {
          etag = await this.client.uploadPart(session.k, session.u, partNumber, {
            kind: 'stream',
            stream: body,
            length: size,
          });
        }
        const parts = session.p.filter(([n]) => n !== partNumber);
        parts.push([partNumber, etag]);
        parts.sort((a, b) => a[0] - b[0]);
        return { sessionState: this.encodeSession({ ...session, p: parts }) };
      },
      complete: async (sessionState) => {
        const session = this.decodeSession(sessionState);
        if (session.p.length === 0) {
          throw new CloudmuxError('invalid_parameters', 'No parts were uploaded.', { service: SERVICE });
        }
        const fail = session.f === 1;
        const conflict = () =>
          namingConflict(this.keys.rawIdOf(session.k), 'A file with that name already exists.', SERVICE);
        const abandon = () => this.client.abortMultipartUpload(session.k, session.u).catch(() => undefined);
        // Without conditional writes, a file created since `begin` is found by HEAD.
        if (fail && this.client.conditionalWrites !== 'yes' && (await this.client.headOrNull(session.k))) {
          await abandon();
          throw conflict();
        }
        try {
          await this.client.completeMultipartUpload(
            session.k,
            session.u,
            session.p.map(([partNumber, etag]) => ({ partNumber, etag })),
            { ifNoneMatch: fail },
          );
        } catch (error) {
          if (error instanceof KeyExistsError) {
            await abandon();
            throw conflict();
          }
          throw error;
        }
        return this.headItem(await this.client.headObject(session.k));
      },
      abort: async (sessionState) => {
        const session = this.decodeSession(sessionState);
        try {
          await this.client.abortMultipartUpload(session.k, session.u);
        } catch (error) {
          // Already completed or aborted: nothing is left to remove.
          if (error instanceof CloudmuxError && error.upstream?.code === 'NoSuchUpload') return;
          throw error;
        }
      },
    };
  }
}
