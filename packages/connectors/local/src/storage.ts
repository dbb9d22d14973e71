/**
 * Storage over a directory on disk. Uploads are written into a hidden staging folder on the same
 * file system and renamed into place when complete, so a partial file is never visible under its
 * final name. `ifExists: 'fail'` uses link(2), which refuses an existing target atomically.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, type FSWatcher, watch as fsWatch, type Stats } from 'node:fs';
import {
  copyFile,
  cp,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type ByteRange,
  type ChangeRecord,
  CloudmuxError,
  type DeleteOptions,
  type DownloadResult,
  type MoveOptions,
  mimeTypeFor,
  type NativeMultipart,
  namingConflict,
  type Page,
  type PageRequest,
  pathAncestors,
  type SearchOptions,
  type StorageApi,
  type StorageItem,
  type StorageItemType,
  type UploadOptions,
  validateItemName,
} from '@cloudmux/core';
import {
  childRawId,
  escapesRoot,
  fsError,
  parentOf,
  parseRawId,
  resolveExisting,
  STAGING_DIR,
  toRawId,
} from './paths.js';

const WALK_LIMIT = 200_000;

interface MultipartState {
  tmp: string;
  parentRawId: string;
  name: string;
  nextPart: number;
  /** Bytes of the parts accepted so far: a retried part first cuts the file back to this. */
  offset: number;
  ifExists: 'replace' | 'fail';
}

export class LocalStorage implements StorageApi {
  readonly rootRawId = '/';
  private realRootPromise: Promise<string> | null = null;

  constructor(private readonly root: string) {}

  /** The root's realpath, resolved once; a missing root is `not_found` for every call. */
  private realRoot(): Promise<string> {
    this.realRootPromise ??= realpath(this.root).catch((err: unknown) => {
      this.realRootPromise = null;
      throw new CloudmuxError('not_found', 'The account root directory does not exist.', {
        service: 'local',
        cause: err,
      });
    });
    return this.realRootPromise;
  }

  async validate(): Promise<void> {
    const info = await stat(await this.realRoot()).catch((err: unknown) => {
      throw fsError(err);
    });
    if (!info.isDirectory())
      throw new CloudmuxError('invalid_parameters', 'The account root is not a directory.');
  }

  private async toItem(rawId: string, path: string, info?: Stats): Promise<StorageItem> {
    const st = info ?? (await stat(path));
    const segments = parseRawId(rawId);
    const name = segments.length === 0 ? '' : segments[segments.length - 1]!;
    const isDir = st.isDirectory();
    const ancestors = pathAncestors(segments);
    return {
      type: isDir ? 'folder' : 'file',
      rawId,
      name,
      size: isDir ? null : st.size,
      created: st.birthtimeMs > 0 ? st.birthtime : st.ctime,
      modified: st.mtime,
      parentRawId: parentOf(rawId),
      path: rawId,
      mimeType: isDir ? null : mimeTypeFor(name),
      ancestors,
      downloadable: !isDir,
      canCreateFolders: isDir,
      canUploadFiles: isDir,
      raw: { path: rawId, mode: st.mode, ino: st.ino, mtimeMs: st.mtimeMs },
    };
  }

  private async existing(rawId: string, type?: StorageItemType): Promise<{ path: string; info: Stats }> {
    const path = await resolveExisting(await this.realRoot(), rawId);
    const info = await stat(path).catch((err: unknown) => {
      throw fsError(err);
    });
    if (type === 'folder' && !info.isDirectory()) throw new CloudmuxError('not_found', 'No such folder.');
    if (type === 'file' && !info.isFile()) throw new CloudmuxError('not_found', 'No such file.');
    if (!info.isDirectory() && !info.isFile())
      throw new CloudmuxError('not_found', 'Not a regular file or folder.');
    return { path, info };
  }

  async get(rawId: string, type: StorageItemType): Promise<StorageItem> {
    const { path, info } = await this.existing(rawId, type);
    return this.toItem(rawId, path, info);
  }

  /** Children sorted by name, hiding the staging folder and symlinks that leave the root. */
  private async children(folderRawId: string): Promise<Array<{ rawId: string; path: string; info: Stats }>> {
    const { path } = await this.existing(folderRawId, 'folder');
    const realRoot = await this.realRoot();
    const entries = await readdir(path).catch((err: unknown) => {
      throw fsError(err);
    });
    entries.sort();
    const out: Array<{ rawId: string; path: string; info: Stats }> = [];
    for (const entry of entries) {
      if (folderRawId === '/' && entry === STAGING_DIR) continue;
      const full = join(path, entry);
      if (await escapesRoot(realRoot, full)) continue;
      const info = await stat(full).catch(() => null);
      if (!info || (!info.isFile() && !info.isDirectory())) continue;
      out.push({ rawId: childRawId(folderRawId, entry), path: full, info });
    }
    return out;
  }

  async list(folderRawId: string, page: PageRequest): Promise<Page<StorageItem>> {
    const all = await this.children(folderRawId);
    // Keyset paging on the (sorted) name: inserts between pages neither repeat nor skip items.
    const after = page.cursor;
    const start = after === undefined ? 0 : all.findIndex((c) => parseRawId(c.rawId).at(-1)! > after);
    const slice = start < 0 ? [] : all.slice(start, start + page.pageSize);
    const items = await Promise.all(slice.map((c) => this.toItem(c.rawId, c.path, c.info)));
    const more = start >= 0 && start + page.pageSize < all.length;
    return { items, cursor: more ? items[items.length - 1]!.name : null, total: all.length };
  }

  async lookup(parentRawId: string, name: string): Promise<StorageItem | null> {
    if (parentRawId === '/' && name === STAGING_DIR) return null;
    const rawId = childRawId(parentRawId, name);
    try {
      const { path, info } = await this.existing(rawId);
      return await this.toItem(rawId, path, info);
    } catch (err) {
      if (err instanceof CloudmuxError && err.code === 'not_found') {
        await this.existing(parentRawId, 'folder');
        return null;
      }
      throw err;
    }
  }

  async createFolder(parentRawId: string, name: string): Promise<StorageItem> {
    validateItemName(name);
    if (parentRawId === '/' && name === STAGING_DIR)
      throw new CloudmuxError('invalid_parameters', 'That name is reserved.');
    const { path: parentPath } = await this.existing(parentRawId, 'folder');
    const rawId = childRawId(parentRawId, name);
    const path = join(parentPath, name);
    try {
      await mkdir(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw namingConflict(rawId, 'A file or folder with that name already exists.', 'local');
      throw fsError(err);
    }
    return this.toItem(rawId, path);
  }

  private async stagingPath(): Promise<string> {
    const dir = join(await this.realRoot(), STAGING_DIR);
    await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      throw fsError(err);
    });
    return join(dir, `${randomUUID()}.part`);
  }

  /** Moves a finished staging file to its final name, failing atomically on an existing target when asked. */
  private async place(
    tmp: string,
    parentRawId: string,
    name: string,
    ifExists: 'replace' | 'fail',
  ): Promise<StorageItem> {
    const { path: parentPath } = await this.existing(parentRawId, 'folder');
    const rawId = childRawId(parentRawId, name);
    const target = join(parentPath, name);
    const existingTarget = await lstat(target).catch(() => null);
    if (existingTarget?.isDirectory())
      throw namingConflict(rawId, 'A folder with that name already exists.', 'local');
    try {
      if (ifExists === 'fail') {
        await link(tmp, target);
        await unlink(tmp);
      } else {
        await rename(tmp, target);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw namingConflict(rawId, 'A file with that name already exists.', 'local');
      throw fsError(err);
    }
    return this.toItem(rawId, target);
  }

  async upload(
    parentRawId: string,
    name: string,
    body: Readable,
    options: UploadOptions,
  ): Promise<StorageItem> {
    validateItemName(name);
    if (parentRawId === '/' && name === STAGING_DIR)
      throw new CloudmuxError('invalid_parameters', 'That name is reserved.');
    await this.existing(parentRawId, 'folder');
    if (options.ifExists === 'fail') {
      const existing = await this.lookup(parentRawId, name);
      if (existing)
        throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', 'local');
    }
    const tmp = await this.stagingPath();
    try {
      await this.writeStream(tmp, body, options.size, options.signal);
      return await this.place(tmp, parentRawId, name, options.ifExists);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  private async writeStream(
    tmp: string,
    body: Readable,
    size: number | null | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    let written = 0;
    body.on('data', (chunk: Buffer) => {
      written += chunk.length;
    });
    try {
      await pipeline(body, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }), signal ? { signal } : {});
    } catch (err) {
      if ((err as Error).name === 'AbortError')
        throw new CloudmuxError('timed_out', 'The upload was aborted.', { cause: err });
      throw fsError(err);
    }
    if (size !== undefined && size !== null && written !== size) {
      throw new CloudmuxError('bad_request', `The upload ended after ${written} of ${size} bytes.`);
    }
  }

  async download(
    rawId: string,
    options: { range?: ByteRange; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
    const { path, info } = await this.existing(rawId, 'file');
    const total = info.size;
    const name = parseRawId(rawId).at(-1)!;
    if (!options.range) {
      return {
        stream: createReadStream(path, options.signal ? { signal: options.signal } : {}),
        size: total,
        contentType: mimeTypeFor(name),
        range: null,
      };
    }
    const start = options.range.start;
    const end = Math.min(options.range.end ?? total - 1, total - 1);
    if (start < 0 || start > end)
      throw new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.');
    return {
      stream: createReadStream(path, { start, end, ...(options.signal ? { signal: options.signal } : {}) }),
      size: end - start + 1,
      contentType: mimeTypeFor(name),
      range: { start, end, total },
    };
  }

  async updateContents(
    rawId: string,
    body: Readable,
    options: { size?: number | null; signal?: AbortSignal } = {},
  ): Promise<StorageItem> {
    await this.existing(rawId, 'file');
    const parent = parentOf(rawId)!;
    const name = parseRawId(rawId).at(-1)!;
    const tmp = await this.stagingPath();
    try {
      await this.writeStream(tmp, body, options.size, options.signal);
      return await this.place(tmp, parent, name, 'replace');
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async move(rawId: string, type: StorageItemType, options: MoveOptions): Promise<StorageItem> {
    if (options.name !== undefined) validateItemName(options.name);
    const segments = parseRawId(rawId);
    if (segments.length === 0)
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be moved.');
    const { path } = await this.existing(rawId, type);
    const parentRawId = options.parentRawId ?? parentOf(rawId)!;
    const name = options.name ?? segments.at(-1)!;
    if (parentRawId === '/' && name === STAGING_DIR)
      throw new CloudmuxError('invalid_parameters', 'That name is reserved.');
    const { path: parentPath } = await this.existing(parentRawId, 'folder');
    const targetRawId = childRawId(parentRawId, name);
    if (targetRawId === rawId) return this.get(rawId, type);
    if (type === 'folder' && targetRawId.startsWith(`${rawId}/`)) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be moved into itself.');
    }
    const target = join(parentPath, name);
    try {
      if (type === 'file') {
        // link + unlink: refuses an existing target atomically, unlike rename(2).
        await link(path, target);
        await unlink(path);
      } else {
        if (await lstat(target).catch(() => null)) throw namingConflict(targetRawId, undefined, 'local');
        await rename(path, target);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw namingConflict(targetRawId, 'An item with that name already exists.', 'local');
      throw fsError(err);
    }
    return this.toItem(targetRawId, target);
  }

  async copy(
    rawId: string,
    type: StorageItemType,
    options: { parentRawId: string; name: string },
  ): Promise<StorageItem> {
    validateItemName(options.name);
    const { path } = await this.existing(rawId, type);
    const { path: parentPath } = await this.existing(options.parentRawId, 'folder');
    const targetRawId = childRawId(options.parentRawId, options.name);
    if (type === 'folder' && (targetRawId === rawId || targetRawId.startsWith(`${rawId}/`))) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be copied into itself.');
    }
    const target = join(parentPath, options.name);
    if (await lstat(target).catch(() => null)) throw namingConflict(targetRawId, undefined, 'local');
    try {
      if (type === 'file') {
        const tmp = await this.stagingPath();
        try {
          await copyFile(path, tmp);
          return await this.place(tmp, options.parentRawId, options.name, 'fail');
        } finally {
          await rm(tmp, { force: true });
        }
      }
      // Symlinks are copied as links only when they stay inside the root; `filter` drops the rest.
      const realRoot = await this.realRoot();
      await cp(path, target, {
        recursive: true,
        errorOnExist: true,
        force: false,
        filter: async (src) => !(await escapesRoot(realRoot, src)),
      });
    } catch (err) {
      throw fsError(err);
    }
    return this.toItem(targetRawId, target);
  }

  async delete(rawId: string, type: StorageItemType, options: DeleteOptions): Promise<void> {
    if (parseRawId(rawId).length === 0)
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be deleted.');
    const { path } = await this.existing(rawId, type);
    try {
      if (type === 'file') await unlink(path);
      else if (options.recursive) await rm(path, { recursive: true });
      else await rmdir(path);
    } catch (err) {
      throw fsError(err);
    }
  }

  /** Depth-first walk from `folderRawId` yielding every visible item (bounded). */
  private async *walk(folderRawId: string): AsyncGenerator<{ rawId: string; path: string; info: Stats }> {
    const stack = [folderRawId];
    let seen = 0;
    while (stack.length > 0) {
      const current = stack.pop()!;
      let kids: Array<{ rawId: string; path: string; info: Stats }>;
      try {
        kids = await this.children(current);
      } catch {
        continue;
      }
      for (const kid of kids) {
        if (++seen > WALK_LIMIT) return;
        yield kid;
        if (kid.info.isDirectory()) stack.push(kid.rawId);
      }
    }
  }

  async search(query: string, options: SearchOptions): Promise<Page<StorageItem>> {
    const needle = query.toLowerCase();
    const parents = options.parents?.length ? options.parents : ['/'];
    const matches: Array<{ rawId: string; path: string; info: Stats }> = [];
    for (const parent of parents) {
      for await (const item of this.walk(parent)) {
        if (parseRawId(item.rawId).at(-1)!.toLowerCase().includes(needle)) matches.push(item);
      }
    }
    matches.sort((a, b) => (a.rawId < b.rawId ? -1 : a.rawId > b.rawId ? 1 : 0));
    const offset = options.cursor ? Number.parseInt(options.cursor, 10) || 0 : 0;
    const slice = matches.slice(offset, offset + options.pageSize);
    const items = await Promise.all(slice.map((m) => this.toItem(m.rawId, m.path, m.info)));
    const next = offset + options.pageSize;
    return { items, cursor: next < matches.length ? String(next) : null, total: matches.length };
  }

  async recent(options: PageRequest & { after?: Date }): Promise<Page<StorageItem>> {
    const files: Array<{ rawId: string; path: string; info: Stats }> = [];
    for await (const item of this.walk('/')) {
      if (!item.info.isFile()) continue;
      if (options.after && item.info.mtime <= options.after) continue;
      files.push(item);
    }
    files.sort((a, b) => b.info.mtimeMs - a.info.mtimeMs || (a.rawId < b.rawId ? -1 : 1));
    const offset = options.cursor ? Number.parseInt(options.cursor, 10) || 0 : 0;
    const slice = files.slice(offset, offset + options.pageSize);
    const items = await Promise.all(slice.map((m) => this.toItem(m.rawId, m.path, m.info)));
    const next = offset + options.pageSize;
    return { items, cursor: next < files.length ? String(next) : null, total: files.length };
  }

  /** Native multipart: parts are appended in order to one staging file, renamed into place on completion. */
  readonly multipart: NativeMultipart = {
    minPartSize: 1,
    maxPartSize: 5 * 1024 * 1024 * 1024,
    maxParts: 10_000,
    begin: async (parentRawId, name, options) => {
      validateItemName(name);
      await this.existing(parentRawId, 'folder');
      if (options.ifExists === 'fail') {
        const existing = await this.lookup(parentRawId, name);
        if (existing) throw namingConflict(existing.rawId, undefined, 'local');
      }
      const tmp = await this.stagingPath();
      await (await open(tmp, 'wx', 0o644)).close();
      const state: MultipartState = {
        tmp,
        parentRawId,
        name,
        nextPart: 1,
        offset: 0,
        ifExists: options.ifExists,
      };
      return { sessionState: JSON.stringify(state) };
    },
    uploadPart: async (sessionState, partNumber, body, size) => {
      const state = this.multipartState(sessionState);
      if (partNumber !== state.nextPart) {
        throw new CloudmuxError(
          'invalid_parameters',
          `Expected part ${state.nextPart}, got part ${partNumber}.`,
        );
      }
      // Drop whatever an earlier, interrupted attempt at this part left behind.
      await truncateTo(state.tmp, state.offset);
      let written = 0;
      body.on('data', (chunk: Buffer) => {
        written += chunk.length;
      });
      try {
        await pipeline(body, createWriteStream(state.tmp, { flags: 'a' }));
      } catch (err) {
        await truncateTo(state.tmp, state.offset);
        throw fsError(err);
      }
      if (written !== size) {
        await truncateTo(state.tmp, state.offset);
        throw new CloudmuxError('bad_request', `Part ${partNumber} ended after ${written} of ${size} bytes.`);
      }
      return {
        sessionState: JSON.stringify({ ...state, nextPart: partNumber + 1, offset: state.offset + size }),
      };
    },
    complete: async (sessionState) => {
      const state = this.multipartState(sessionState);
      try {
        const item = await this.place(state.tmp, state.parentRawId, state.name, state.ifExists);
        await rm(state.tmp, { force: true });
        return item;
      } catch (err) {
        // A name conflict keeps the uploaded bytes: the session can still be completed or aborted.
        if (!(err instanceof CloudmuxError && err.code === 'naming_conflict'))
          await rm(state.tmp, { force: true });
        throw err;
      }
    },
    abort: async (sessionState) => {
      await rm(this.multipartState(sessionState).tmp, { force: true });
    },
  };

  /**
   * Watches the tree with one inotify watch per directory (fs.watch, not recursive: Node's
   * recursive mode on Linux also tracks every file, which costs a lot on big trees). A name that
   * appeared is `add`, one that vanished is `delete`, a changed file is `update`; renames arrive as
   * a delete and an add. The staging folder and links leaving the root are ignored; new folders
   * are watched as they appear, up to WATCH_DIR_LIMIT folders.
   */
  watch(onChange: (change: ChangeRecord) => void, onError?: (error: unknown) => void): { close(): void } {
    let closed = false;
    const watchers = new Map<string, FSWatcher>();
    const pending = new Map<string, { timer: NodeJS.Timeout; sawChange: boolean }>();

    const settle = async (segments: string[], sawChange: boolean) => {
      if (closed || segments.length === 0 || segments[0] === STAGING_DIR) return;
      const rawId = toRawId(segments);
      try {
        const realRoot = await this.realRoot();
        const full = join(realRoot, ...segments);
        if (await escapesRoot(realRoot, full)) return;
        const info = await stat(full).catch(() => null);
        if (!info) {
          for (const [dir, watcher] of watchers) {
            if (dir === rawId || dir.startsWith(`${rawId}/`)) {
              watcher.close();
              watchers.delete(dir);
            }
          }
          onChange({ action: 'delete', rawId, modified: new Date() });
          return;
        }
        if (!info.isFile() && !info.isDirectory()) return;
        const item = await this.toItem(rawId, full, info);
        onChange({
          action: sawChange && info.isFile() ? 'update' : 'add',
          rawId,
          item,
          modified: info.mtime,
        });
        // A new folder: watch it, and report what was created in it before the watch existed.
        if (info.isDirectory() && !watchers.has(rawId)) await watchTree(rawId, true);
      } catch (err) {
        onError?.(err);
      }
    };

    const watchDir = async (dirRawId: string) => {
      if (closed || watchers.has(dirRawId) || watchers.size >= WATCH_DIR_LIMIT) return;
      const realRoot = await this.realRoot();
      const segments = parseRawId(dirRawId);
      let watcher: FSWatcher;
      try {
        watcher = fsWatch(join(realRoot, ...segments), (event, filename) => {
          if (!filename) return;
          const child = [...segments, filename.toString()];
          const key = toRawId(child);
          const entry = pending.get(key);
          if (entry) clearTimeout(entry.timer);
          const sawChange = (entry?.sawChange ?? true) && event === 'change';
          pending.set(key, {
            sawChange,
            timer: setTimeout(() => {
              pending.delete(key);
              void settle(child, sawChange);
            }, WATCH_SETTLE_MS),
          });
        });
      } catch (err) {
        onError?.(err);
        return;
      }
      watcher.on('error', (err) => onError?.(err));
      watchers.set(dirRawId, watcher);
    };

    /**
     * Watches a folder and every folder under it (folders only; files need no watch of their own).
     * `report`: also announce what is already inside (a folder that just appeared).
     */
    const watchTree = async (dirRawId: string, report: boolean) => {
      const stack = [dirRawId];
      while (stack.length > 0 && !closed && watchers.size < WATCH_DIR_LIMIT) {
        const current = stack.pop()!;
        await watchDir(current);
        const kids = await this.children(current).catch(() => []);
        for (const kid of kids) {
          if (report)
            onChange({
              action: 'add',
              rawId: kid.rawId,
              item: await this.toItem(kid.rawId, kid.path, kid.info),
              modified: kid.info.mtime,
            });
          if (kid.info.isDirectory()) stack.push(kid.rawId);
        }
      }
    };

    void watchTree('/', false).catch((err: unknown) => onError?.(err));
    return {
      close: () => {
        closed = true;
        for (const watcher of watchers.values()) watcher.close();
        watchers.clear();
        for (const entry of pending.values()) clearTimeout(entry.timer);
        pending.clear();
      },
    };
  }

  private multipartState(sessionState: string): MultipartState {
    let state: MultipartState;
    try {
      state = JSON.parse(sessionState) as MultipartState;
      state.offset ??= 0;
    } catch {
      throw new CloudmuxError('not_found', 'Unknown upload session.');
    }
    // The state comes back from the server's store; never trust it to point outside the staging folder.
    if (
      typeof state.tmp !== 'string' ||
      !state.tmp.includes(`/${STAGING_DIR}/`) ||
      state.tmp.includes('..') ||
      !Number.isSafeInteger(state.offset ?? 0)
    ) {
      throw new CloudmuxError('not_found', 'Unknown upload session.');
    }
    return state;
  }
}

/** How long a path's notifications are gathered before it is looked at (editors write in bursts). */
const WATCH_SETTLE_MS = 150;
/** Folders one account's watcher covers at most (inotify watches are a per-user kernel resource). */
const WATCH_DIR_LIMIT = 10_000;

async function truncateTo(path: string, size: number): Promise<void> {
  const handle = await open(path, 'r+').catch(() => null);
  if (!handle) return;
  try {
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
}
