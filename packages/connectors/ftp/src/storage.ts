/**
 * The Storage API over FTP. Uploads go to a hidden temporary name in the target folder and are
 * renamed into place (RNFR/RNTO) once the server confirmed the whole transfer, so a partial file
 * never appears under its final name. FTP has no server-side copy, so `copy` is absent.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  type ByteRange,
  CloudmuxError,
  type DeleteOptions,
  type DownloadResult,
  type MoveOptions,
  mimeTypeFor,
  namingConflict,
  type Page,
  type PageRequest,
  pathAncestors,
  type RetryPolicy,
  retryOperation,
  type SearchOptions,
  type StorageApi,
  type StorageItem,
  type StorageItemType,
  type UploadOptions,
  validateItemName,
} from '@cloudmux/core';
import type { FtpSession } from './client.js';
import { garbageError, isDroppedConnection, replyError, SERVICE } from './errors.js';
import { parseList, parseMlsd, parseMlstReply, type RemoteEntry } from './listing.js';
import {
  checkName,
  childRawId,
  isHiddenName,
  nameOf,
  parentOf,
  parseRawId,
  serverPath,
  UPLOAD_PREFIX,
} from './paths.js';
import type { SessionPool } from './pool.js';

export interface FtpStorageOptions {
  basePath: string;
  pool: SessionPool;
  /** Use LIST parsing even when the server has MLST (the fallback path, tested against pure-ftpd). */
  forceList?: boolean;
  /** Most entries one search walks before it stops (bounds the cost of a search on a big tree). */
  searchLimit?: number;
  /** Deepest folder nesting a recursive delete or search descends into (symlink loops). */
  maxDepth?: number;
  /** Backoff of the one retry of idempotent reads (core's full jitter); attempts are capped at 2. */
  retry?: RetryPolicy;
}

function notFound(what = 'file or folder'): CloudmuxError {
  return new CloudmuxError('not_found', `No such ${what}.`, { service: SERVICE });
}

function joinPath(dir: string, name: string): string {
  return `${dir === '/' ? '' : dir}/${name}`;
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Entries the API shows: files and folders whose names a raw id can carry (not a backslash or
 * control characters), never the hidden upload files, never symbolic links.
 */
function listable(entry: RemoteEntry): boolean {
  const { name } = entry;
  if (entry.type === 'link' || isHiddenName(name)) return false;
  try {
    validateItemName(name);
    return true;
  } catch {
    return false;
  }
}

function encodeCursor(name: string): string {
  return Buffer.from(name, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const name = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!name || encodeCursor(name) !== cursor)
    throw new CloudmuxError('invalid_parameters', 'Invalid page cursor.');
  return name;
}

export class FtpStorage implements StorageApi {
  readonly rootRawId = '/';
  private readonly basePath: string;
  private readonly pool: SessionPool;
  private readonly forceList: boolean;
  private readonly searchLimit: number;
  private readonly maxDepth: number;
  private readonly retry: RetryPolicy;

  constructor(options: FtpStorageOptions) {
    this.basePath = options.basePath;
    this.pool = options.pool;
    this.forceList = options.forceList ?? false;
    this.searchLimit = options.searchLimit ?? 20_000;
    this.maxDepth = options.maxDepth ?? 64;
    const retry = options.retry ?? { maxAttempts: 2, baseDelayMs: 50, maxDelayMs: 500 };
    this.retry = { ...retry, maxAttempts: Math.min(2, retry.maxAttempts) };
  }

  /** Core's retry rules, retrying only a dropped connection (never an FTP error reply). */
  private retried<T>(fn: () => Promise<T>): Promise<T> {
    return retryOperation(fn, { idempotent: true, policy: this.retry, isRetryable: isDroppedConnection });
  }

  private path(rawId: string): string {
    return serverPath(this.basePath, rawId);
  }

  /**
   * Idempotent reads: one retry on a fresh session when the connection dropped (a pooled control
   * connection the server closed, a restarted server). The pool drops its idle sessions first.
   */
  private idempotent<T>(fn: (session: FtpSession) => Promise<T>): Promise<T> {
    return this.retried(() => this.pool.use(fn));
  }

  async validate(): Promise<void> {
    await this.idempotent(async (s) => {
      const root = await this.stat(s, this.basePath, true);
      if (root?.type !== 'folder') {
        throw new CloudmuxError('invalid_parameters', 'The base path is not a folder on the FTP server.', {
          service: SERVICE,
        });
      }
    });
  }

  private toItem(rawId: string, entry: RemoteEntry): StorageItem {
    const segments = parseRawId(rawId);
    const isDir = entry.type === 'folder';
    const ancestors = pathAncestors(segments);
    const name = segments.at(-1) ?? '';
    return {
      // Links never get here: `stat` and `listable` drop them.
      type: isDir ? 'folder' : 'file',
      rawId,
      name,
      size: isDir ? null : entry.size,
      created: entry.created,
      modified: entry.modified,
      parentRawId: parentOf(rawId),
      path: rawId,
      mimeType: isDir ? null : mimeTypeFor(name),
      ancestors,
      downloadable: !isDir,
      canCreateFolders: isDir,
      canUploadFiles: isDir,
      raw: { path: rawId, ...entry.raw },
    };
  }

  /** The entry at a server path, or null when the server says it does not exist. */
  private async stat(s: FtpSession, path: string, isRoot = false): Promise<RemoteEntry | null> {
    if (s.mlst && !this.forceList) {
      // RFC 3659 §7 MLST
      const reply = await s.command(`MLST ${path}`);
      if (reply.code === 250) {
        const entry = parseMlstReply(reply.lines);
        if (!entry) throw garbageError('MLST reply without a fact line');
        // Links are not items of this API (their targets may lie anywhere on the server).
        return entry.type === 'link' ? null : entry;
      }
      if (reply.code === 550 || reply.code === 450) {
        const error = replyError(reply, 'MLST');
        if (error.code === 'service_forbidden') throw error;
        return null;
      }
      throw replyError(reply, 'MLST');
    }
    if (isRoot || path === '/') {
      // RFC 959 §4.1.1 CWD: the only way to tell a folder exists without MLST.
      const reply = await s.command(`CWD ${path}`);
      if (reply.code === 250)
        return { name: '', type: 'folder', size: null, modified: null, created: null, raw: {} };
      if (reply.code === 550) return null;
      throw replyError(reply, 'CWD');
    }
    const slash = path.lastIndexOf('/');
    const parent = path.slice(0, slash) || '/';
    const name = path.slice(slash + 1);
    let entries: RemoteEntry[];
    try {
      entries = await this.listPath(s, parent);
    } catch (err) {
      if (err instanceof CloudmuxError && err.code === 'not_found') return null;
      throw err;
    }
    return entries.find((e) => e.name === name && e.type !== 'link') ?? null;
  }

  /** Every entry of a server folder (hidden upload files included). */
  private async listPath(s: FtpSession, path: string): Promise<RemoteEntry[]> {
    if (s.mlst && !this.forceList) {
      // RFC 3659 §7 MLSD
      return parseMlsd(await s.readListing(`MLSD ${path}`));
    }
    // RFC 959 §4.1.3 LIST after CWD: a path argument with spaces is ambiguous on some servers;
    // `-a` shows dot files (pure-ftpd, vsftpd and proftpd accept it).
    const cwd = await s.command(`CWD ${path}`);
    if (cwd.code !== 250) throw replyError(cwd, 'CWD');
    return parseList(await s.readListing('LIST -a'));
  }

  private async existing(s: FtpSession, rawId: string, type?: StorageItemType): Promise<RemoteEntry> {
    const entry = await this.stat(s, this.path(rawId), rawId === '/');
    if (!entry) throw notFound(type ?? 'file or folder');
    if (type !== undefined && entry.type !== type) throw notFound(type);
    return entry;
  }

  async get(rawId: string, type: StorageItemType): Promise<StorageItem> {
    parseRawId(rawId);
    const entry = await this.idempotent((s) => this.existing(s, rawId, type));
    return this.toItem(rawId, entry);
  }

  private async children(s: FtpSession, folderRawId: string): Promise<RemoteEntry[]> {
    await this.existing(s, folderRawId, 'folder');
    return this.listPath(s, this.path(folderRawId));
  }

  async list(folderRawId: string, page: PageRequest): Promise<Page<StorageItem>> {
    parseRawId(folderRawId);
    const entries = await this.idempotent((s) => this.children(s, folderRawId));
    const visible = entries.filter(listable).sort(byName);
    // Keyset paging on the sorted name: inserts between pages neither repeat nor skip items.
    const after = page.cursor ? decodeCursor(page.cursor) : undefined;
    const start = after === undefined ? 0 : visible.findIndex((e) => e.name > after);
    const slice = start < 0 ? [] : visible.slice(start, start + page.pageSize);
    const items = slice.map((e) => this.toItem(childRawId(folderRawId, e.name), e));
    const more = start >= 0 && start + page.pageSize < visible.length;
    return { items, cursor: more ? encodeCursor(slice.at(-1)!.name) : null, total: visible.length };
  }

  async lookup(parentRawId: string, name: string): Promise<StorageItem | null> {
    validateItemName(name);
    parseRawId(parentRawId);
    const entry = await this.idempotent(async (s) => {
      if (isHiddenName(name)) {
        await this.existing(s, parentRawId, 'folder');
        return null;
      }
      const found = await this.stat(s, this.path(childRawId(parentRawId, name)));
      if (!found) await this.existing(s, parentRawId, 'folder');
      return found;
    });
    return entry ? this.toItem(childRawId(parentRawId, name), entry) : null;
  }

  async createFolder(parentRawId: string, name: string): Promise<StorageItem> {
    checkName(name);
    const rawId = childRawId(parentRawId, name);
    const path = this.path(rawId);
    const entry = await this.pool.use(async (s) => {
      await this.existing(s, parentRawId, 'folder');
      if (await this.stat(s, path))
        throw namingConflict(rawId, 'A file or folder with that name already exists.', SERVICE);
      // RFC 959 §4.1.3 MKD
      const reply = await s.command(`MKD ${path}`);
      if (reply.code !== 257 && reply.code !== 250) {
        const error = replyError(reply, 'MKD');
        if (error.code === 'naming_conflict' || (await this.stat(s, path))) {
          throw namingConflict(rawId, 'A file or folder with that name already exists.', SERVICE);
        }
        throw error;
      }
      const created = await this.stat(s, path);
      if (!created) throw garbageError('MKD succeeded but the folder is missing');
      return created;
    });
    return this.toItem(rawId, entry);
  }

  async upload(
    parentRawId: string,
    name: string,
    body: Readable,
    options: UploadOptions,
  ): Promise<StorageItem> {
    checkName(name);
    const rawId = childRawId(parentRawId, name);
    // Checked before the body is read: `fail` must not consume (or store) anything.
    await this.idempotent(async (s) => {
      await this.existing(s, parentRawId, 'folder');
      const current = await this.stat(s, this.path(rawId));
      if (current && (options.ifExists === 'fail' || current.type === 'folder')) {
        throw namingConflict(rawId, `A ${current.type} with that name already exists.`, SERVICE);
      }
    });
    return this.storeAndPlace(parentRawId, rawId, body, options.ifExists, options.size, options.signal);
  }

  async updateContents(
    rawId: string,
    body: Readable,
    options: { size?: number | null; signal?: AbortSignal } = {},
  ): Promise<StorageItem> {
    if (parseRawId(rawId).length === 0) throw notFound('file');
    await this.idempotent((s) => this.existing(s, rawId, 'file'));
    return this.storeAndPlace(parentOf(rawId)!, rawId, body, 'replace', options.size, options.signal);
  }

  /** STOR to a hidden temporary name beside the target, then RNFR/RNTO into place. */
  private async storeAndPlace(
    parentRawId: string,
    rawId: string,
    body: Readable,
    ifExists: 'replace' | 'fail',
    size: number | null | undefined,
    signal: AbortSignal | undefined,
  ): Promise<StorageItem> {
    const finalPath = this.path(rawId);
    const tempPath = joinPath(this.path(parentRawId), `${UPLOAD_PREFIX}${randomUUID()}`);
    let started = false;
    try {
      const entry = await this.pool.use(async (s) => {
        started = true;
        // RFC 959 §4.1.3 STOR
        const bytes = await s.store(`STOR ${tempPath}`, body, signal);
        if (size !== undefined && size !== null && bytes !== size) {
          throw new CloudmuxError('bad_request', `The upload ended after ${bytes} of ${size} bytes.`, {
            service: SERVICE,
          });
        }
        const current = await this.stat(s, finalPath);
        if (current && (ifExists === 'fail' || current.type === 'folder')) {
          throw namingConflict(rawId, `A ${current.type} with that name already exists.`, SERVICE);
        }
        // RFC 959 §4.1.3 RNFR / RNTO (replaces an existing file on Unix servers)
        await s.expect(`RNFR ${tempPath}`, 350);
        await s.expect(`RNTO ${finalPath}`, 250);
        started = false;
        const placed = await this.stat(s, finalPath);
        if (!placed) throw garbageError('the uploaded file is missing after RNTO');
        return placed;
      });
      return this.toItem(rawId, entry);
    } catch (err) {
      if (started) await this.removeQuietly(tempPath);
      throw err;
    }
  }

  /** Best-effort removal of a temporary upload (the server may be gone; the name stays hidden). */
  private async removeQuietly(path: string): Promise<void> {
    try {
      await this.pool.use(async (s) => {
        // RFC 959 §4.1.3 DELE
        await s.command(`DELE ${path}`);
      });
    } catch {
      // hidden leftovers are harmless and are removed with their folder
    }
  }

  async download(
    rawId: string,
    options: { range?: ByteRange; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
    if (parseRawId(rawId).length === 0) throw notFound('file');
    const path = this.path(rawId);
    const name = nameOf(rawId);
    const attempt = async () => {
      const s = await this.pool.acquire();
      try {
        const entry = await this.existing(s, rawId, 'file');
        const total = entry.size;
        let start = 0;
        let end: number | null = null;
        if (options.range) {
          if (total === null)
            throw new CloudmuxError('bad_gateway', 'The FTP server did not report the file size.', {
              service: SERVICE,
            });
          start = options.range.start;
          end = Math.min(options.range.end ?? total - 1, total - 1);
          if (!Number.isInteger(start) || start < 0 || start > end) {
            throw new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.', {
              service: SERVICE,
            });
          }
        }
        // RFC 3659 §5 REST STREAM restart marker, then RFC 959 §4.1.3 RETR
        if (start > 0) await s.expect(`REST ${start}`, 350);
        const socket = await s.transfer(`RETR ${path}`);
        return { s, socket, total, start, end };
      } catch (err) {
        if (isDroppedConnection(err)) this.pool.dropIdle();
        this.pool.release(s);
        throw err;
      }
    };
    // Nothing was sent to the client yet, so a dropped connection is retried on a fresh session.
    const { s, socket, total, start, end } = await this.retried(attempt);
    const limit = end === null ? null : end - start + 1;
    const stream = s.retrieveStream(socket, `RETR ${path}`, limit, () => this.pool.release(s));
    if (options.signal) {
      const signal = options.signal;
      const onAbort = () =>
        stream.destroy(new CloudmuxError('timed_out', 'The download was aborted.', { service: SERVICE }));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return {
      stream,
      size: limit ?? total,
      contentType: mimeTypeFor(name),
      range: end === null || total === null ? null : { start, end, total },
    };
  }

  async move(rawId: string, type: StorageItemType, options: MoveOptions): Promise<StorageItem> {
    if (options.name !== undefined) checkName(options.name);
    const segments = parseRawId(rawId);
    if (segments.length === 0)
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be moved.');
    const parentRawId = options.parentRawId ?? parentOf(rawId)!;
    const targetRawId = childRawId(parentRawId, options.name ?? segments.at(-1)!);
    if (type === 'folder' && targetRawId.startsWith(`${rawId}/`)) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be moved into itself.');
    }
    const entry = await this.pool.use(async (s) => {
      const source = await this.existing(s, rawId, type);
      if (targetRawId === rawId) return source;
      await this.existing(s, parentRawId, 'folder');
      const target = this.path(targetRawId);
      if (await this.stat(s, target))
        throw namingConflict(targetRawId, 'An item with that name already exists.', SERVICE);
      // RFC 959 §4.1.3 RNFR / RNTO
      await s.expect(`RNFR ${this.path(rawId)}`, 350);
      await s.expect(`RNTO ${target}`, 250);
      const moved = await this.stat(s, target);
      if (!moved) throw garbageError('the item is missing after RNTO');
      return moved;
    });
    return this.toItem(targetRawId, entry);
  }

  async delete(rawId: string, type: StorageItemType, options: DeleteOptions): Promise<void> {
    if (parseRawId(rawId).length === 0)
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be deleted.');
    const path = this.path(rawId);
    await this.pool.use(async (s) => {
      await this.existing(s, rawId, type);
      if (type === 'file') {
        // RFC 959 §4.1.3 DELE
        await s.expect(`DELE ${path}`, 250);
        return;
      }
      const entries = await this.listPath(s, path);
      if (!options.recursive && entries.some((e) => !isHiddenName(e.name))) {
        throw new CloudmuxError('folder_not_empty', undefined, { service: SERVICE });
      }
      await this.removeTree(s, path, entries, 0);
    });
  }

  /** Depth-first removal: files with DELE, then each folder with RMD once it is empty. */
  private async removeTree(
    s: FtpSession,
    path: string,
    entries: RemoteEntry[],
    depth: number,
  ): Promise<void> {
    if (depth > this.maxDepth)
      throw new CloudmuxError(
        'bad_request',
        `Folders nested deeper than ${this.maxDepth} levels cannot be deleted.`,
      );
    for (const entry of entries) {
      const child = joinPath(path, entry.name);
      if (entry.type === 'folder') await this.removeTree(s, child, await this.listPath(s, child), depth + 1);
      else await s.expect(`DELE ${child}`, 250);
    }
    // RFC 959 §4.1.3 RMD
    const reply = await s.command(`RMD ${path}`);
    if (reply.code !== 250) throw replyError(reply, 'RMD');
  }

  async search(query: string, options: SearchOptions): Promise<Page<StorageItem>> {
    const needle = query.toLowerCase();
    const parents = options.parents?.length ? options.parents : ['/'];
    for (const parent of parents) parseRawId(parent);
    const matches = await this.idempotent(async (s) => {
      const found: Array<{ rawId: string; entry: RemoteEntry }> = [];
      let visited = 0;
      for (const parent of parents) {
        await this.existing(s, parent, 'folder');
        // Breadth-first, bounded by `searchLimit` entries and `maxDepth` levels.
        const queue: Array<{ rawId: string; depth: number }> = [{ rawId: parent, depth: 0 }];
        while (queue.length > 0 && visited < this.searchLimit) {
          const { rawId: dir, depth } = queue.shift()!;
          let entries: RemoteEntry[];
          try {
            entries = await this.listPath(s, this.path(dir));
          } catch (err) {
            if (
              err instanceof CloudmuxError &&
              (err.code === 'not_found' || err.code === 'service_forbidden')
            )
              continue;
            throw err;
          }
          for (const entry of entries.filter(listable).sort(byName)) {
            if (++visited > this.searchLimit) break;
            const id = childRawId(dir, entry.name);
            if (entry.name.toLowerCase().includes(needle)) found.push({ rawId: id, entry });
            if (entry.type === 'folder' && depth < this.maxDepth) queue.push({ rawId: id, depth: depth + 1 });
          }
        }
      }
      return found;
    });
    const unique = [...new Map(matches.map((m) => [m.rawId, m])).values()];
    unique.sort((a, b) => (a.rawId < b.rawId ? -1 : a.rawId > b.rawId ? 1 : 0));
    const offset = options.cursor ? Number.parseInt(options.cursor, 10) : 0;
    if (!Number.isInteger(offset) || offset < 0)
      throw new CloudmuxError('invalid_parameters', 'Invalid page cursor.');
    const slice = unique.slice(offset, offset + options.pageSize);
    const next = offset + options.pageSize;
    return {
      items: slice.map((m) => this.toItem(m.rawId, m.entry)),
      cursor: next < unique.length ? String(next) : null,
      total: unique.length,
    };
  }
}
