/**
 * The Storage API over one SMB share. Uploads and copies are written under a hidden staging folder
 * (`.cloudmux-uploads` in the base path), marked delete-pending while they are written so the server
 * itself removes them if the connection dies, and renamed into place at the end: a partial file is
 * never visible under its final name. Downloads read ranges natively with pipelined READs.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  type ByteRange,
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
  type StorageQuirks,
  type UploadOptions,
} from '@cloudmux/core';
import { hasStatus, isConnectionFailure, toCloudmuxError } from './errors.js';
import { parseRawId, STAGING_DIR, sameNameIgnoringCase, smbPath, toRawId, validateSmbName } from './paths.js';
import type { Lease, SessionPool } from './pool.js';
import {
  type DirectoryEntry,
  type FileTimes,
  type OpenFile,
  type SmbClient,
  SmbConnectionError,
  SmbStatusError,
} from './smb2/client.js';
import {
  Access,
  Command,
  CreateOption,
  Disposition,
  FileAttribute,
  FileInfoClass,
  Fsctl,
  ShareAccess,
  Status,
} from './smb2/constants.js';

const SERVICE = 'smb';
/** Entries read from one folder for a listing; past it the listing fails rather than lie. */
const MAX_FOLDER_ENTRIES = 250_000;
/** Items visited by one search or recursive copy/delete walk. */
const WALK_LIMIT = 100_000;
const MAX_DEPTH = 128;
/** READs/WRITEs in flight per transfer: bounded memory (window × 1 MiB) with a full pipe. */
const IO_WINDOW = 4;
/** FSCTL_SRV_COPYCHUNK defaults every server accepts (MS-SMB2 §3.3.3: 256 chunks, 1 MiB, 16 MiB). */
const COPY_CHUNK = 1024 * 1024;
const COPY_CHUNKS_PER_REQUEST = 16;
const TEMP_NAME = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.part$/;

interface Info extends FileTimes {
  size: number;
  attributes: number;
}

interface MultipartState {
  v: 1;
  tmp: string;
  parentRawId: string;
  name: string;
  nextPart: number;
  offset: number;
  ifExists: 'replace' | 'fail';
}

const isDir = (attributes: number) => (attributes & FileAttribute.DIRECTORY) !== 0;
const noop = () => {};

export class SmbStorage implements StorageApi {
  readonly rootRawId = '/';
  /** Samba and Windows resolve names case-insensitively by default; bytes of names are kept as sent. */
  readonly quirks: StorageQuirks = { caseInsensitiveNames: true };
  private stagingReady = false;

  constructor(
    private readonly pool: SessionPool,
    private readonly base: readonly string[],
  ) {}

  // -------------------------------------------------------------------------------------------
  // Plumbing.

  /** Runs `fn` on a pooled session; an idempotent call retries once when a reused session turns out dead. */
  private async run<T>(fn: (client: SmbClient) => Promise<T>, idempotent = false): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let lease: Lease;
      try {
        lease = await this.pool.acquire();
      } catch (err) {
        throw toCloudmuxError(err);
      }
      try {
        return await fn(lease.client);
      } catch (err) {
        const sessionGone = hasStatus(
          err,
          Status.USER_SESSION_DELETED,
          Status.NETWORK_SESSION_EXPIRED,
          Status.NETWORK_NAME_DELETED,
        );
        // The server dropped the session or tree: this connection is useless for everyone.
        if (sessionGone) lease.client.destroy();
        const stale =
          sessionGone || (isConnectionFailure(err) && (err as SmbConnectionError).kind === 'closed');
        if (attempt === 0 && idempotent && lease.reused && stale) continue;
        throw toCloudmuxError(err);
      } finally {
        lease.release();
      }
    }
  }

  private path(segments: readonly string[]): string {
    return smbPath(this.base, segments);
  }

  private item(segments: readonly string[], info: Info): StorageItem {
    const folder = isDir(info.attributes);
    const name = segments.length === 0 ? '' : segments[segments.length - 1]!;
    const rawId = toRawId(segments);
    const ancestors = pathAncestors(segments);
    return {
      type: folder ? 'folder' : 'file',
      rawId,
      name,
      size: folder ? null : info.size,
      created: info.created,
      modified: info.modified,
      parentRawId: segments.length === 0 ? null : toRawId(segments.slice(0, -1)),
      path: rawId,
      mimeType: folder ? null : mimeTypeFor(name),
      ancestors,
      downloadable: !folder,
      canCreateFolders: folder,
      canUploadFiles: folder,
      raw: {
        path: `\\${this.path(segments)}`,
        attributes: info.attributes,
        created: info.created?.toISOString() ?? null,
        modified: info.modified?.toISOString() ?? null,
        changed: info.changed?.toISOString() ?? null,
        size: info.size,
      },
    };
  }

  /** Opens, reads the attributes from the CREATE reply, closes. */
  private async stat(client: SmbClient, segments: readonly string[], type?: StorageItemType): Promise<Info> {
    let open: OpenFile;
    try {
      open = await client.create(this.path(segments), {
        access: Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
        disposition: Disposition.OPEN,
        shareAccess: ShareAccess.ALL,
      });
    } catch (err) {
      if (
        hasStatus(
          err,
          Status.OBJECT_NAME_NOT_FOUND,
          Status.OBJECT_PATH_NOT_FOUND,
          Status.NO_SUCH_FILE,
          Status.NOT_A_DIRECTORY,
        )
      ) {
        throw new CloudmuxError('not_found', 'No such file or folder.', { service: SERVICE, cause: err });
      }
      throw err;
    }
    await client.closeFile(open.fileId);
    if (type === 'folder' && !isDir(open.attributes))
      throw new CloudmuxError('not_found', 'No such folder.', { service: SERVICE });
    if (type === 'file' && isDir(open.attributes))
      throw new CloudmuxError('not_found', 'No such file.', { service: SERVICE });
    return open;
  }

  private async openFolder(client: SmbClient, segments: readonly string[], access = 0): Promise<Buffer> {
    try {
      const open = await client.create(this.path(segments), {
        access: Access.FILE_LIST_DIRECTORY | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE | access,
        disposition: Disposition.OPEN,
        createOptions: CreateOption.DIRECTORY_FILE,
        shareAccess: ShareAccess.ALL,
      });
      return open.fileId;
    } catch (err) {
      if (
        hasStatus(
          err,
          Status.OBJECT_NAME_NOT_FOUND,
          Status.OBJECT_PATH_NOT_FOUND,
          Status.NOT_A_DIRECTORY,
          Status.NO_SUCH_FILE,
        )
      ) {
        throw new CloudmuxError('not_found', 'No such folder.', { service: SERVICE, cause: err });
      }
      throw err;
    }
  }

  /** Every entry of a folder except `.`, `..` and (in the base) the staging folder. */
  private async entries(
    client: SmbClient,
    segments: readonly string[],
    pattern = '*',
  ): Promise<DirectoryEntry[]> {
    const fileId = await this.openFolder(client, segments);
    const out: DirectoryEntry[] = [];
    try {
      for (let first = true; ; first = false) {
        const batch = await client.queryDirectory(fileId, pattern, first);
        if (!batch) break;
        for (const entry of batch) {
          if (entry.name === '.' || entry.name === '..') continue;
          if (segments.length === 0 && sameNameIgnoringCase(entry.name, STAGING_DIR)) continue;
          out.push(entry);
        }
        if (out.length > MAX_FOLDER_ENTRIES) {
          throw new CloudmuxError('bad_gateway', `The folder has more than ${MAX_FOLDER_ENTRIES} entries.`, {
            service: SERVICE,
          });
        }
      }
    } finally {
      await client.closeFile(fileId).catch(noop);
    }
    return out;
  }

  private async ensureStaging(client: SmbClient): Promise<void> {
    if (this.stagingReady) return;
    const open = await client.create(this.path([STAGING_DIR]), {
      access: Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
      disposition: Disposition.OPEN_IF,
      createOptions: CreateOption.DIRECTORY_FILE,
      attributes: FileAttribute.HIDDEN | FileAttribute.DIRECTORY,
      shareAccess: ShareAccess.ALL,
    });
    await client.closeFile(open.fileId);
    this.stagingReady = true;
  }

  /**
   * Creates a staging file or folder and marks it delete-pending, so the server deletes it when the
   * handle closes unless `keep` clears the mark before the final rename.
   */
  private async createStaged(
    client: SmbClient,
    folder: boolean,
  ): Promise<{ fileId: Buffer; path: string; name: string }> {
    const name = folder ? randomUUID() : `${randomUUID()}.part`;
    const path = this.path([STAGING_DIR, name]);
    const options = {
      access:
        Access.FILE_READ_DATA |
        Access.FILE_WRITE_DATA |
        Access.FILE_READ_ATTRIBUTES |
        Access.FILE_WRITE_ATTRIBUTES |
        Access.DELETE |
        Access.SYNCHRONIZE,
      disposition: Disposition.CREATE,
      createOptions: folder ? CreateOption.DIRECTORY_FILE : CreateOption.NON_DIRECTORY_FILE,
      shareAccess: ShareAccess.ALL,
    };
    await this.ensureStaging(client);
    let open: OpenFile;
    try {
      open = await client.create(path, options);
    } catch (err) {
      if (!hasStatus(err, Status.OBJECT_PATH_NOT_FOUND, Status.OBJECT_NAME_NOT_FOUND)) throw err;
      // Someone removed the staging folder since it was made: make it again.
      this.stagingReady = false;
      await this.ensureStaging(client);
      open = await client.create(path, options);
    }
    if (!folder) await client.setDeletePending(open.fileId, true);
    return { fileId: open.fileId, path, name };
  }

  /** Renames an open staged item into place; `naming_conflict` when `replace` is false and it exists. */
  private async place(
    client: SmbClient,
    fileId: Buffer,
    target: readonly string[],
    replace: boolean,
    deletePending: boolean,
  ): Promise<Info> {
    if (deletePending) await client.setDeletePending(fileId, false);
    try {
      await client.rename(fileId, this.path(target), replace);
    } catch (err) {
      if (hasStatus(err, Status.OBJECT_NAME_COLLISION, Status.ACCESS_DENIED) && !replace) {
        const existing = await this.lookupIn(client, target.slice(0, -1), target[target.length - 1]!).catch(
          () => null,
        );
        if (existing || hasStatus(err, Status.OBJECT_NAME_COLLISION)) {
          throw namingConflict(
            existing?.rawId ?? toRawId(target),
            'A file or folder with that name already exists.',
            SERVICE,
          );
        }
      }
      if (hasStatus(err, Status.OBJECT_PATH_NOT_FOUND, Status.OBJECT_NAME_NOT_FOUND)) {
        throw new CloudmuxError('not_found', 'The destination folder does not exist.', {
          service: SERVICE,
          cause: err,
        });
      }
      throw err;
    }
    const info = await client.closeFile(fileId, true);
    return info ?? (await this.stat(client, target));
  }

  /** Best effort: a failed staged item is deleted now (delete-pending covers lost connections). */
  private async discard(client: SmbClient, fileId: Buffer): Promise<void> {
    if (client.closed) return;
    await client.setDeletePending(fileId, true).catch(noop);
    await client.closeFile(fileId).catch(noop);
  }

  // -------------------------------------------------------------------------------------------
  // Reading.

  async validate(): Promise<void> {
    await this.run((client) => this.stat(client, [], 'folder'));
  }

  async get(rawId: string, type: StorageItemType): Promise<StorageItem> {
    const segments = parseRawId(rawId);
    const info = await this.run((client) => this.stat(client, segments, type), true);
    return this.item(segments, info);
  }

  async list(folderRawId: string, page: PageRequest): Promise<Page<StorageItem>> {
    const segments = parseRawId(folderRawId);
    const all = await this.run((client) => this.entries(client, segments), true);
    all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    // Keyset paging on the sorted name: items added between pages neither repeat nor shift others.
    const after = page.cursor;
    const start = after === undefined ? 0 : all.findIndex((e) => e.name > after);
    const slice = start < 0 ? [] : all.slice(start, start + page.pageSize);
    const items = slice.map((e) => this.item([...segments, e.name], e));
    const more = start >= 0 && start + page.pageSize < all.length;
    return { items, cursor: more ? slice[slice.length - 1]!.name : null, total: all.length };
  }

  /** Asks the server for the one entry matching `name`, which also yields its stored spelling. */
  private async lookupIn(
    client: SmbClient,
    parent: readonly string[],
    name: string,
  ): Promise<StorageItem | null> {
    if (parent.length === 0 && sameNameIgnoringCase(name, STAGING_DIR)) return null;
    const found = (await this.entries(client, parent, name)).find((e) => sameNameIgnoringCase(e.name, name));
    return found ? this.item([...parent, found.name], found) : null;
  }

  async lookup(parentRawId: string, name: string): Promise<StorageItem | null> {
    const parent = parseRawId(parentRawId);
    validateSmbName(name);
    return this.run((client) => this.lookupIn(client, parent, name), true);
  }

  async download(
    rawId: string,
    options: { range?: ByteRange; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
    const segments = parseRawId(rawId);
    const name = segments[segments.length - 1] ?? '';
    for (let attempt = 0; ; attempt++) {
      let lease: Lease;
      try {
        lease = await this.pool.acquire();
      } catch (err) {
        throw toCloudmuxError(err);
      }
      const client = lease.client;
      let fileId: Buffer | null = null;
      try {
        const open = await client.create(this.path(segments), {
          access: Access.FILE_READ_DATA | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
          disposition: Disposition.OPEN,
          createOptions: CreateOption.NON_DIRECTORY_FILE,
          shareAccess: ShareAccess.READ | ShareAccess.WRITE | ShareAccess.DELETE,
        });
        fileId = open.fileId;
        const total = open.size;
        let start = 0;
        let end = total - 1;
        if (options.range) {
          start = options.range.start;
          end = Math.min(options.range.end ?? total - 1, total - 1);
          if (!Number.isSafeInteger(start) || start < 0 || start > end) {
            throw new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.', {
              service: SERVICE,
            });
          }
        }
        const stream = new SmbReadStream(client, fileId, start, end + 1, lease, options.signal);
        return {
          stream,
          size: end - start + 1,
          contentType: mimeTypeFor(name),
          range: options.range ? { start, end, total } : null,
        };
      } catch (err) {
        if (fileId) await client.closeFile(fileId).catch(noop);
        lease.release();
        if (attempt === 0 && lease.reused && err instanceof SmbConnectionError && err.kind === 'closed')
          continue;
        if (
          hasStatus(
            err,
            Status.OBJECT_NAME_NOT_FOUND,
            Status.OBJECT_PATH_NOT_FOUND,
            Status.FILE_IS_A_DIRECTORY,
            Status.NOT_A_DIRECTORY,
          )
        ) {
          throw new CloudmuxError('not_found', 'No such file.', { service: SERVICE, cause: err });
        }
        throw toCloudmuxError(err);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writing.

  async createFolder(parentRawId: string, name: string): Promise<StorageItem> {
    const parent = parseRawId(parentRawId);
    validateSmbName(name);
    if (parent.length === 0 && sameNameIgnoringCase(name, STAGING_DIR)) {
      throw new CloudmuxError('invalid_parameters', 'That name is reserved.', { service: SERVICE });
    }
    const target = [...parent, name];
    return this.run(async (client) => {
      let open: OpenFile;
      try {
        open = await client.create(this.path(target), {
          access: Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
          disposition: Disposition.CREATE,
          createOptions: CreateOption.DIRECTORY_FILE,
          shareAccess: ShareAccess.ALL,
        });
      } catch (err) {
        if (hasStatus(err, Status.OBJECT_NAME_COLLISION)) {
          const existing = await this.lookupIn(client, parent, name).catch(() => null);
          throw namingConflict(
            existing?.rawId ?? toRawId(target),
            'A file or folder with that name already exists.',
            SERVICE,
          );
        }
        if (
          hasStatus(err, Status.OBJECT_PATH_NOT_FOUND, Status.OBJECT_NAME_NOT_FOUND, Status.NOT_A_DIRECTORY)
        ) {
          throw new CloudmuxError('not_found', 'The parent folder does not exist.', {
            service: SERVICE,
            cause: err,
          });
        }
        throw err;
      }
      await client.closeFile(open.fileId);
      return this.item(target, open);
    });
  }

  /** Streams `body` into a staged file and renames it to `target`. */
  private async writeStaged(
    client: SmbClient,
    target: readonly string[],
    body: Readable,
    replace: boolean,
    size: number | null | undefined,
    signal?: AbortSignal,
  ): Promise<Info> {
    const staged = await this.createStaged(client, false);
    try {
      const written = await writeStream(client, staged.fileId, 0, body, signal);
      if (size !== undefined && size !== null && written !== size) {
        throw new CloudmuxError('bad_request', `The upload ended after ${written} of ${size} bytes.`, {
          service: SERVICE,
        });
      }
      return await this.place(client, staged.fileId, target, replace, true);
    } catch (err) {
      await this.discard(client, staged.fileId);
      throw err;
    }
  }

  async upload(
    parentRawId: string,
    name: string,
    body: Readable,
    options: UploadOptions,
  ): Promise<StorageItem> {
    const parent = parseRawId(parentRawId);
    validateSmbName(name);
    if (parent.length === 0 && sameNameIgnoringCase(name, STAGING_DIR)) {
      throw new CloudmuxError('invalid_parameters', 'That name is reserved.', { service: SERVICE });
    }
    const target = [...parent, name];
    const info = await this.run(async (client) => {
      await this.stat(client, parent, 'folder');
      // `fail` is decided before a byte of the body is read; the final rename re-checks atomically.
      const existing = await this.lookupIn(client, parent, name);
      if (existing && (options.ifExists === 'fail' || existing.type === 'folder')) {
        throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
      }
      return this.writeStaged(
        client,
        target,
        body,
        options.ifExists === 'replace',
        options.size,
        options.signal,
      );
    });
    return this.item(target, info);
  }

  async updateContents(
    rawId: string,
    body: Readable,
    options: { size?: number | null; signal?: AbortSignal } = {},
  ): Promise<StorageItem> {
    const segments = parseRawId(rawId);
    if (segments.length === 0) throw new CloudmuxError('not_found', 'No such file.', { service: SERVICE });
    const info = await this.run(async (client) => {
      await this.stat(client, segments, 'file');
      return this.writeStaged(client, segments, body, true, options.size, options.signal);
    });
    return this.item(segments, info);
  }

  async move(rawId: string, type: StorageItemType, options: MoveOptions): Promise<StorageItem> {
    if (options.name !== undefined) validateSmbName(options.name);
    const source = parseRawId(rawId);
    if (source.length === 0)
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be moved.', { service: SERVICE });
    const parent = options.parentRawId !== undefined ? parseRawId(options.parentRawId) : source.slice(0, -1);
    const name = options.name ?? source[source.length - 1]!;
    if (parent.length === 0 && sameNameIgnoringCase(name, STAGING_DIR)) {
      throw new CloudmuxError('invalid_parameters', 'That name is reserved.', { service: SERVICE });
    }
    const target = [...parent, name];
    const targetRawId = toRawId(target);
    if (type === 'folder' && targetRawId.toLowerCase().startsWith(`${rawId.toLowerCase()}/`)) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be moved into itself.', {
        service: SERVICE,
      });
    }
    const info = await this.run(async (client) => {
      await this.stat(client, source, type);
      await this.stat(client, parent, 'folder');
      if (targetRawId === rawId) return this.stat(client, source, type);
      const open = await this.openForDelete(client, source, type === 'folder');
      try {
        return await this.place(client, open.fileId, target, false, false);
      } catch (err) {
        await client.closeFile(open.fileId).catch(noop);
        throw err;
      }
    });
    return this.item(target, info);
  }

  /** Opens an existing file or folder with DELETE access (renames and deletes); missing is `not_found`. */
  private async openForDelete(
    client: SmbClient,
    segments: readonly string[],
    folder: boolean,
  ): Promise<OpenFile> {
    try {
      return await client.create(this.path(segments), {
        access: Access.DELETE | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
        disposition: Disposition.OPEN,
        createOptions: folder ? CreateOption.DIRECTORY_FILE : CreateOption.NON_DIRECTORY_FILE,
        shareAccess: ShareAccess.ALL,
      });
    } catch (err) {
      const missing = [
        Status.OBJECT_NAME_NOT_FOUND,
        Status.OBJECT_PATH_NOT_FOUND,
        Status.NOT_A_DIRECTORY,
        Status.FILE_IS_A_DIRECTORY,
      ];
      if (hasStatus(err, ...missing)) {
        throw new CloudmuxError('not_found', 'No such file or folder.', { service: SERVICE, cause: err });
      }
      throw err;
    }
  }

  /** Deletes one file or empty folder with FileDispositionInformation. */
  private async deleteOne(client: SmbClient, segments: readonly string[], folder: boolean): Promise<void> {
    const open = await this.openForDelete(client, segments, folder);
    try {
      await client.setDeletePending(open.fileId, true);
    } finally {
      await client.closeFile(open.fileId).catch(noop);
    }
  }

  private async deleteTree(
    client: SmbClient,
    segments: readonly string[],
    depth: number,
    budget: { left: number },
  ): Promise<void> {
    if (depth > MAX_DEPTH)
      throw new CloudmuxError('bad_request', 'The folder tree is too deep to delete.', { service: SERVICE });
    for (const entry of await this.entries(client, segments)) {
      if (--budget.left < 0)
        throw new CloudmuxError('bad_request', 'The folder tree is too large to delete at once.', {
          service: SERVICE,
        });
      const child = [...segments, entry.name];
      if (isDir(entry.attributes)) await this.deleteTree(client, child, depth + 1, budget);
      else await this.deleteOne(client, child, false);
    }
    await this.deleteOne(client, segments, true);
  }

  async delete(rawId: string, type: StorageItemType, options: DeleteOptions): Promise<void> {
    const segments = parseRawId(rawId);
    if (segments.length === 0)
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be deleted.', {
        service: SERVICE,
      });
    await this.run(async (client) => {
      await this.stat(client, segments, type);
      if (type === 'file') return this.deleteOne(client, segments, false);
      try {
        await this.deleteOne(client, segments, true);
      } catch (err) {
        if (!hasStatus(err, Status.DIRECTORY_NOT_EMPTY) || !options.recursive) throw err;
        await this.deleteTree(client, segments, 0, { left: WALK_LIMIT });
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // Server-side copy: FSCTL_SRV_REQUEST_RESUME_KEY + FSCTL_SRV_COPYCHUNK_WRITE (MS-SMB2 §3.3.5.15.6).

  private async copyFileInto(client: SmbClient, source: readonly string[], fileId: Buffer): Promise<void> {
    const src = await client.create(this.path(source), {
      access: Access.FILE_READ_DATA | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
      disposition: Disposition.OPEN,
      createOptions: CreateOption.NON_DIRECTORY_FILE,
      shareAccess: ShareAccess.READ | ShareAccess.WRITE | ShareAccess.DELETE,
    });
    try {
      if (src.size === 0) return;
      // MS-SMB2 §2.2.32.3 SRV_REQUEST_RESUME_KEY response: a 24-byte key naming the source open.
      const resume = await client.ioctl(src.fileId, Fsctl.SRV_REQUEST_RESUME_KEY, Buffer.alloc(0), 32);
      if (resume.status !== Status.SUCCESS || resume.output.length < 24) {
        if (resume.status === Status.SUCCESS) throw new SmbConnectionError('protocol', 'Short resume key.');
        return await streamCopy(client, src.fileId, fileId, src.size);
      }
      const key = resume.output.subarray(0, 24);
      let chunkSize = COPY_CHUNK;
      let chunksPerRequest = COPY_CHUNKS_PER_REQUEST;
      for (let offset = 0; offset < src.size; ) {
        const chunks: Array<[number, number]> = [];
        for (let at = offset; at < src.size && chunks.length < chunksPerRequest; at += chunkSize) {
          chunks.push([at, Math.min(chunkSize, src.size - at)]);
        }
        // MS-SMB2 §2.2.31.1 SRV_COPYCHUNK_COPY with §2.2.31.1.1 SRV_COPYCHUNK entries.
        const input = Buffer.alloc(32 + chunks.length * 24);
        key.copy(input, 0);
        input.writeUInt32LE(chunks.length, 24);
        chunks.forEach(([at, length], i) => {
          input.writeBigUInt64LE(BigInt(at), 32 + i * 24);
          input.writeBigUInt64LE(BigInt(at), 40 + i * 24);
          input.writeUInt32LE(length, 48 + i * 24);
        });
        const result = await client.ioctl(fileId, Fsctl.SRV_COPYCHUNK_WRITE, input, 12);
        if (result.status === Status.INVALID_PARAMETER && result.output.length >= 12) {
          // MS-SMB2 §3.3.5.15.6.2: the reply names the server's limits; retry within them.
          const maxChunks = result.output.readUInt32LE(0);
          const maxChunkSize = result.output.readUInt32LE(4);
          const maxTotal = result.output.readUInt32LE(8);
          const nextSize = Math.min(chunkSize, maxChunkSize);
          const nextCount = Math.min(
            chunksPerRequest,
            maxChunks,
            Math.floor(maxTotal / Math.max(1, nextSize)),
          );
          if (
            nextSize === 0 ||
            nextCount === 0 ||
            (nextSize === chunkSize && nextCount === chunksPerRequest)
          ) {
            throw new CloudmuxError(
              'bad_gateway',
              'The server refused a server-side copy within its own limits.',
              { service: SERVICE },
            );
          }
          chunkSize = nextSize;
          chunksPerRequest = nextCount;
          continue;
        }
        if (result.status === Status.NOT_SUPPORTED || result.status === Status.INVALID_DEVICE_REQUEST) {
          return await streamCopy(client, src.fileId, fileId, src.size, offset);
        }
        if (result.status !== Status.SUCCESS || result.output.length < 12) {
          throw new SmbStatusError(result.status, Command.IOCTL);
        }
        const total = result.output.readUInt32LE(8);
        if (total === 0)
          throw new CloudmuxError('bad_gateway', 'The server copied nothing.', { service: SERVICE });
        offset += total;
      }
    } finally {
      await client.closeFile(src.fileId).catch(noop);
    }
  }

  private async copyTreeInto(
    client: SmbClient,
    source: readonly string[],
    target: readonly string[],
    budget: { left: number },
    depth: number,
  ): Promise<void> {
    if (depth > MAX_DEPTH)
      throw new CloudmuxError('bad_request', 'The folder tree is too deep to copy.', { service: SERVICE });
    for (const entry of await this.entries(client, source)) {
      if (--budget.left < 0)
        throw new CloudmuxError('bad_request', 'The folder tree is too large to copy at once.', {
          service: SERVICE,
        });
      const from = [...source, entry.name];
      const to = [...target, entry.name];
      const open = await client.create(smbPath([], to), {
        access:
          Access.FILE_READ_DATA | Access.FILE_WRITE_DATA | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
        disposition: Disposition.CREATE,
        createOptions: isDir(entry.attributes)
          ? CreateOption.DIRECTORY_FILE
          : CreateOption.NON_DIRECTORY_FILE,
        shareAccess: ShareAccess.ALL,
      });
      try {
        if (!isDir(entry.attributes)) await this.copyFileInto(client, from, open.fileId);
      } finally {
        await client.closeFile(open.fileId).catch(noop);
      }
      if (isDir(entry.attributes)) await this.copyTreeInto(client, from, to, budget, depth + 1);
    }
  }

  async copy(
    rawId: string,
    type: StorageItemType,
    options: { parentRawId: string; name: string },
  ): Promise<StorageItem> {
    validateSmbName(options.name);
    const source = parseRawId(rawId);
    const parent = parseRawId(options.parentRawId);
    if (parent.length === 0 && sameNameIgnoringCase(options.name, STAGING_DIR)) {
      throw new CloudmuxError('invalid_parameters', 'That name is reserved.', { service: SERVICE });
    }
    const target = [...parent, options.name];
    const targetRawId = toRawId(target);
    if (
      type === 'folder' &&
      (targetRawId === rawId || targetRawId.toLowerCase().startsWith(`${rawId.toLowerCase()}/`))
    ) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be copied into itself.', {
        service: SERVICE,
      });
    }
    const info = await this.run(async (client) => {
      await this.stat(client, source, type);
      await this.stat(client, parent, 'folder');
      const existing = await this.lookupIn(client, parent, options.name);
      if (existing)
        throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
      const staged = await this.createStaged(client, type === 'folder');
      try {
        if (type === 'file') {
          await this.copyFileInto(client, source, staged.fileId);
        } else {
          // The tree is built inside the staged folder (paths relative to the share) and appears at once.
          const stagedSegments = [...this.base, STAGING_DIR, staged.name];
          await this.copyTreeInto(client, source, stagedSegments, { left: WALK_LIMIT }, 0);
        }
        return await this.place(client, staged.fileId, target, false, type === 'file');
      } catch (err) {
        if (type === 'file') await this.discard(client, staged.fileId);
        else {
          await client.closeFile(staged.fileId).catch(noop);
          await this.deleteTree(client, [STAGING_DIR, staged.name], 0, { left: WALK_LIMIT }).catch(noop);
        }
        throw err;
      }
    });
    return this.item(target, info);
  }

  // -------------------------------------------------------------------------------------------
  // Search: a bounded breadth-first walk matching names case-insensitively.

  async search(query: string, options: SearchOptions): Promise<Page<StorageItem>> {
    const needle = query.toLowerCase();
    const roots = (options.parents?.length ? options.parents : ['/']).map(parseRawId);
    const matches = await this.run(async (client) => {
      const found: StorageItem[] = [];
      let visited = 0;
      for (const root of roots) {
        const queue: Array<{ segments: string[]; depth: number }> = [{ segments: [...root], depth: 0 }];
        while (queue.length > 0 && visited < WALK_LIMIT) {
          const { segments, depth } = queue.shift()!;
          let children: DirectoryEntry[];
          try {
            children = await this.entries(client, segments);
          } catch (err) {
            // A folder that vanished or is unreadable mid-walk is skipped, not fatal.
            if (err instanceof CloudmuxError || hasStatus(err, Status.ACCESS_DENIED)) continue;
            throw err;
          }
          for (const entry of children) {
            if (++visited > WALK_LIMIT) break;
            const child = [...segments, entry.name];
            if (entry.name.toLowerCase().includes(needle)) found.push(this.item(child, entry));
            if (isDir(entry.attributes) && depth < MAX_DEPTH)
              queue.push({ segments: child, depth: depth + 1 });
          }
        }
      }
      return found;
    }, true);
    matches.sort((a, b) => (a.rawId < b.rawId ? -1 : a.rawId > b.rawId ? 1 : 0));
    const offset = options.cursor ? Math.max(0, Number.parseInt(options.cursor, 10) || 0) : 0;
    const items = matches.slice(offset, offset + options.pageSize);
    const next = offset + options.pageSize;
    return { items, cursor: next < matches.length ? String(next) : null, total: matches.length };
  }

  // -------------------------------------------------------------------------------------------
  // Native multipart: parts are written in order at increasing offsets of one staged file.

  readonly multipart: NativeMultipart = {
    minPartSize: 1,
    maxPartSize: 5 * 1024 * 1024 * 1024,
    maxParts: 10_000,
    begin: async (parentRawId, name, options) => {
      const parent = parseRawId(parentRawId);
      validateSmbName(name);
      if (parent.length === 0 && sameNameIgnoringCase(name, STAGING_DIR)) {
        throw new CloudmuxError('invalid_parameters', 'That name is reserved.', { service: SERVICE });
      }
      const tmp = await this.run(async (client) => {
        await this.stat(client, parent, 'folder');
        const existing = await this.lookupIn(client, parent, name);
        if (existing && (options.ifExists === 'fail' || existing.type === 'folder')) {
          throw namingConflict(existing.rawId, 'A file or folder with that name already exists.', SERVICE);
        }
        const staged = await this.createStaged(client, false);
        // Parts arrive over later requests, so this file must outlive the handle: keep it.
        await client.setDeletePending(staged.fileId, false);
        await client.closeFile(staged.fileId);
        return staged.name;
      });
      const state: MultipartState = {
        v: 1,
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
      const state = parseMultipartState(sessionState);
      if (partNumber !== state.nextPart) {
        throw new CloudmuxError(
          'invalid_parameters',
          `Expected part ${state.nextPart}, got part ${partNumber}.`,
          { service: SERVICE },
        );
      }
      await this.run(async (client) => {
        const open = await client
          .create(this.path([STAGING_DIR, state.tmp]), {
            access: Access.FILE_WRITE_DATA | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
            disposition: Disposition.OPEN,
            createOptions: CreateOption.NON_DIRECTORY_FILE,
            shareAccess: ShareAccess.ALL,
          })
          .catch((err: unknown) => {
            if (hasStatus(err, Status.OBJECT_NAME_NOT_FOUND, Status.OBJECT_PATH_NOT_FOUND)) {
              throw new CloudmuxError('not_found', 'Unknown upload session.', { service: SERVICE });
            }
            throw err;
          });
        const truncate = async () => {
          const eof = Buffer.alloc(8);
          eof.writeBigUInt64LE(BigInt(state.offset));
          await client.setInfo(open.fileId, FileInfoClass.FileEndOfFileInformation, eof);
        };
        try {
          // A retried part may have left bytes past the last acknowledged offset.
          if (open.size !== state.offset) await truncate();
          const written = await writeStream(client, open.fileId, state.offset, body);
          if (written !== size) {
            await truncate();
            throw new CloudmuxError(
              'bad_request',
              `Part ${partNumber} ended after ${written} of ${size} bytes.`,
              { service: SERVICE },
            );
          }
        } finally {
          await client.closeFile(open.fileId).catch(noop);
        }
      });
      const next: MultipartState = { ...state, nextPart: partNumber + 1, offset: state.offset + size };
      return { sessionState: JSON.stringify(next) };
    },
    complete: async (sessionState) => {
      const state = parseMultipartState(sessionState);
      const parent = parseRawId(state.parentRawId);
      const target = [...parent, validateSmbName(state.name)];
      const info = await this.run(async (client) => {
        const open = await client.create(this.path([STAGING_DIR, state.tmp]), {
          access: Access.DELETE | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
          disposition: Disposition.OPEN,
          createOptions: CreateOption.NON_DIRECTORY_FILE,
          shareAccess: ShareAccess.ALL,
        });
        try {
          if (open.size !== state.offset) {
            throw new CloudmuxError('bad_request', 'The uploaded parts do not add up to the session size.', {
              service: SERVICE,
            });
          }
          return await this.place(client, open.fileId, target, state.ifExists === 'replace', false);
        } catch (err) {
          await client.closeFile(open.fileId).catch(noop);
          throw err;
        }
      });
      return this.item(target, info);
    },
    abort: async (sessionState) => {
      const state = parseMultipartState(sessionState);
      await this.run((client) => this.deleteOne(client, [STAGING_DIR, state.tmp], false)).catch(
        (err: unknown) => {
          if (!(err instanceof CloudmuxError && err.code === 'not_found')) throw err;
        },
      );
    },
  };
}

function parseMultipartState(sessionState: string): MultipartState {
  let state: MultipartState;
  try {
    state = JSON.parse(sessionState) as MultipartState;
  } catch {
    throw new CloudmuxError('not_found', 'Unknown upload session.', { service: SERVICE });
  }
  // The state comes back from the server's store; it must only ever name a staging file.
  if (
    state?.v !== 1 ||
    typeof state.tmp !== 'string' ||
    !TEMP_NAME.test(state.tmp) ||
    typeof state.parentRawId !== 'string' ||
    typeof state.name !== 'string' ||
    !Number.isSafeInteger(state.offset) ||
    state.offset < 0 ||
    !Number.isSafeInteger(state.nextPart)
  ) {
    throw new CloudmuxError('not_found', 'Unknown upload session.', { service: SERVICE });
  }
  return state;
}

/** Writes `body` at `offset` in MaxWrite-sized WRITEs, IO_WINDOW in flight; returns the byte count. */
async function writeStream(
  client: SmbClient,
  fileId: Buffer,
  offset: number,
  body: Readable,
  signal?: AbortSignal,
): Promise<number> {
  const chunkSize = client.maxWrite;
  const inflight = new Set<Promise<void>>();
  let position = offset;
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  const send = async (data: Buffer[]) => {
    const at = position;
    const length = data.reduce((n, piece) => n + piece.length, 0);
    position += length;
    const p = client.write(fileId, at, data).then((n) => {
      if (n !== length)
        throw new CloudmuxError('bad_gateway', `The server wrote ${n} of ${length} bytes.`, {
          service: SERVICE,
        });
    });
    inflight.add(p);
    p.then(
      () => inflight.delete(p),
      () => inflight.delete(p),
    );
    if (inflight.size >= IO_WINDOW) await Promise.race(inflight);
  };
  // The first `n` bytes as views of the received chunks: the client copies them into its frame,
  // so concatenating here would copy every byte twice (and double the garbage per transfer).
  const take = (n: number): Buffer[] => {
    const head: Buffer[] = [];
    let needed = n;
    while (needed > 0) {
      const first = pending[0]!;
      if (first.length <= needed) {
        head.push(first);
        pending.shift();
        needed -= first.length;
      } else {
        head.push(first.subarray(0, needed));
        pending[0] = first.subarray(needed);
        needed = 0;
      }
    }
    pendingBytes -= n;
    return head;
  };
  try {
    for await (const chunk of body as AsyncIterable<Buffer | string>) {
      if (signal?.aborted)
        throw new CloudmuxError('timed_out', 'The upload was aborted.', { service: SERVICE });
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      pending.push(buf);
      pendingBytes += buf.length;
      while (pendingBytes >= chunkSize) await send(take(chunkSize));
    }
    if (signal?.aborted)
      throw new CloudmuxError('timed_out', 'The upload was aborted.', { service: SERVICE });
    if (pendingBytes > 0) await send(take(pendingBytes));
    await Promise.all(inflight);
  } catch (err) {
    // Let writes already sent settle before the caller discards the file.
    await Promise.allSettled(inflight);
    body.destroy();
    throw err;
  }
  return position - offset;
}

/** Copies through this client when the server has no server-side copy. */
async function streamCopy(
  client: SmbClient,
  from: Buffer,
  to: Buffer,
  size: number,
  start = 0,
): Promise<void> {
  for (let offset = start; offset < size; ) {
    const data = await client.read(from, offset, Math.min(client.maxRead, size - offset));
    if (data.length === 0) break;
    const n = await client.write(to, offset, data);
    if (n !== data.length)
      throw new CloudmuxError('bad_gateway', 'Short write during copy.', { service: SERVICE });
    offset += data.length;
  }
}

/**
 * A download: READs of up to MaxRead bytes, IO_WINDOW ahead of the consumer and no further, so
 * memory stays bounded whatever the file size and however slow the reader. The session lease and
 * the file handle are released when the stream ends or is destroyed.
 */
class SmbReadStream extends Readable {
  private readonly queue: Array<{ offset: number; length: number; data: Promise<Buffer> }> = [];
  private next: number;
  private pumping = false;
  private finished = false;

  constructor(
    private readonly client: SmbClient,
    private readonly fileId: Buffer,
    start: number,
    private readonly end: number,
    private readonly lease: Lease,
    signal?: AbortSignal,
  ) {
    super({ highWaterMark: client.maxRead });
    this.next = start;
    if (signal) {
      if (signal.aborted)
        queueMicrotask(() => this.destroy(new CloudmuxError('timed_out', 'The download was aborted.')));
      else
        signal.addEventListener(
          'abort',
          () => this.destroy(new CloudmuxError('timed_out', 'The download was aborted.')),
          { once: true },
        );
    }
  }

  private fill(): void {
    while (this.queue.length < IO_WINDOW && this.next < this.end) {
      const length = Math.min(this.client.maxRead, this.end - this.next);
      const data = this.client.read(this.fileId, this.next, length);
      data.catch(noop);
      this.queue.push({ offset: this.next, length, data });
      this.next += length;
    }
  }

  override _read(): void {
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping || this.finished) return;
    this.pumping = true;
    try {
      for (;;) {
        this.fill();
        const head = this.queue.shift();
        if (!head) {
          this.finished = true;
          this.push(null);
          return;
        }
        const data = await head.data;
        if (this.destroyed) return;
        if (data.length < head.length) {
          // Short read: what was read ahead no longer lines up; restart after what arrived.
          this.queue.length = 0;
          this.next = head.offset + data.length;
          if (data.length === 0)
            throw new CloudmuxError('bad_gateway', 'The file became shorter during the download.', {
              service: SERVICE,
            });
        }
        if (!this.push(data)) return;
      }
    } catch (err) {
      this.destroy(toCloudmuxError(err));
    } finally {
      this.pumping = false;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.queue.length = 0;
    this.finished = true;
    const done = () => {
      this.lease.release();
      callback(error);
    };
    if (this.client.closed) done();
    else this.client.closeFile(this.fileId).then(done, done);
  }
}
