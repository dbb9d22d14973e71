/**
 * The Storage API over one Blob container (optionally below a base prefix). Folders are zero-byte
 * marker blobs named `<prefix>/`; listings also show implicit folders (a `BlobPrefix` with no
 * marker). Rename and move are Copy Blob + Delete Blob, folder operations walk the prefix. Uploads
 * commit only once complete (see upload.ts), so a failed transfer never shows under its name.
 */
import { PassThrough, type Readable, Transform } from 'node:stream';
import {
  type ByteRange,
  type Clock,
  CloudmuxError,
  type DeleteOptions,
  type DownloadResult,
  forEachLimit,
  type MoveOptions,
  type NativeMultipart,
  namingConflict,
  type Page,
  type PageRequest,
  type SearchOptions,
  type StorageApi,
  type StorageItem,
  type StorageItemType,
  systemClock,
  type UploadOptions,
  validateItemName,
} from '@cloudmux/core';
import * as z from 'zod';
import type { BlobClient, BlobProperties } from './blob-api.js';
import { contentTypeFor, DEFAULT_CONTENT_TYPE } from './mime.js';
import { type BlobPaths, notFound } from './paths.js';
import { blockId, MAX_BLOCKS, MIB, newSession, uploadBlob } from './upload.js';

const SERVICE = 'azure';
/** List Blobs returns at most 5,000 entries per call. */
const MAX_RESULTS = 5000;
/** Folder copy/move keeps the list of blobs to copy in memory; beyond this it refuses up front. */
export const MAX_TREE_BLOBS = 100_000;
/** Parallel Copy Blob / Delete Blob calls inside one folder operation. */
const TREE_CONCURRENCY = 8;
/** Blobs examined per search call (bounded work per page of results). */
const SEARCH_SCAN_PAGES = 10;
const SEARCH_SCAN_SIZE = 1000;
/** Parts up to this size are buffered, so core can retry their Put Block; larger ones stream once. */
const BUFFERED_PART_MAX = 16 * MIB;

export interface AzureStorageOptions {
  clock?: Clock;
  /** How long a pending (asynchronous) Copy Blob may take before it is aborted. */
  copyTimeoutMs?: number;
}

const multipartState = z.object({
  v: z.literal(1),
  parent: z.string(),
  name: z.string(),
  session: z.string().regex(/^[0-9a-f]{16}$/),
  next: z
    .number()
    .int()
    .min(1)
    .max(MAX_BLOCKS + 1),
  empty: z.array(z.number().int().min(1)).max(MAX_BLOCKS),
  ifExists: z.enum(['replace', 'fail']),
  contentType: z.string(),
});
type MultipartState = z.infer<typeof multipartState>;

function byName(a: { key: string }, b: { key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

async function drain(body: Readable): Promise<number> {
  let n = 0;
  for await (const chunk of body) n += (chunk as Buffer).length;
  return n;
}

async function readExactly(body: Readable, size: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let fill = 0;
  for await (const data of body) {
    const chunk = data as Buffer;
    if (fill + chunk.length > size)
      throw new CloudmuxError('bad_request', `The part is longer than its ${size} bytes.`);
    chunk.copy(out, fill);
    fill += chunk.length;
  }
  if (fill !== size) throw new CloudmuxError('bad_request', `The part ended after ${fill} of ${size} bytes.`);
  return out;
}

export class AzureStorage implements StorageApi {
  readonly rootRawId: string;
  private readonly clock: Clock;
  private readonly copyTimeoutMs: number;

  constructor(
    private readonly client: BlobClient,
    private readonly paths: BlobPaths,
    options: AzureStorageOptions = {},
  ) {
    this.rootRawId = paths.rootRawId;
    this.clock = options.clock ?? systemClock;
    this.copyTimeoutMs = options.copyTimeoutMs ?? 10 * 60_000;
  }

  /** Lists one entry under the base prefix: proves the endpoint, the credentials and the container. */
  async validate(): Promise<void> {
    await this.client.listBlobs({ prefix: this.paths.basePrefix, delimiter: '/', maxResults: 1 });
  }

  // ---- items -------------------------------------------------------------------------------

  private fileItem(props: BlobProperties): StorageItem {
    const parent = this.paths.parentPrefix(props.name)!;
    return {
      type: 'file',
      rawId: this.paths.rawIdOf(props.name),
      name: this.paths.leafName(props.name),
      size: props.size,
      created: props.created ?? props.modified,
      modified: props.modified,
      parentRawId: this.paths.rawIdOf(parent),
      path: this.paths.displayPath(props.name),
      mimeType: props.contentType,
      ancestors: this.paths.ancestors(props.name),
      downloadable: true,
      raw: { name: props.name, properties: props },
    };
  }

  private folderItem(prefix: string, marker: BlobProperties | null): StorageItem {
    const parent = this.paths.parentPrefix(prefix);
    return {
      type: 'folder',
      rawId: this.paths.rawIdOf(prefix),
      name: this.paths.leafName(prefix),
      size: null,
      created: marker ? (marker.created ?? marker.modified) : null,
      modified: marker?.modified ?? null,
      parentRawId: parent === null ? null : this.paths.rawIdOf(parent),
      path: this.paths.displayPath(prefix),
      mimeType: null,
      ancestors: this.paths.ancestors(prefix),
      downloadable: false,
      canCreateFolders: true,
      canUploadFiles: true,
      raw: { prefix, marker },
    };
  }

  /** Whether anything lives under `prefix`, and its marker blob if there is one. */
  private async folderState(prefix: string): Promise<{ exists: boolean; marker: BlobProperties | null }> {
    if (this.paths.isRoot(prefix)) return { exists: true, marker: null };
    // The marker, if present, sorts first: it is a prefix of every other name under it.
    const listing = await this.client.listBlobs({ prefix, delimiter: '/', maxResults: 1 });
    const first = listing.blobs[0];
    const marker = first && first.name === prefix ? first : null;
    return { exists: listing.blobs.length > 0 || listing.prefixes.length > 0, marker };
  }

  private async requireFolder(prefix: string): Promise<BlobProperties | null> {
    const state = await this.folderState(prefix);
    if (!state.exists) throw notFound('No such folder.');
    return state.marker;
  }

  /** Refuses a name taken by a file or a folder in the target folder. */
  private async assertFree(blobName: string): Promise<void> {
    const file = await this.client.getProperties(blobName);
    if (file)
      throw namingConflict(this.paths.rawIdOf(blobName), 'A file with that name already exists.', SERVICE);
    const folder = `${blobName}/`;
    if ((await this.folderState(folder)).exists) {
      throw namingConflict(this.paths.rawIdOf(folder), 'A folder with that name already exists.', SERVICE);
    }
  }

  private async assertNoFolder(blobName: string): Promise<void> {
    const folder = `${blobName}/`;
    if ((await this.folderState(folder)).exists) {
      throw namingConflict(this.paths.rawIdOf(folder), 'A folder with that name already exists.', SERVICE);
    }
  }

  private async fileAt(blobName: string): Promise<StorageItem> {
    const props = await this.client.getProperties(blobName);
    if (!props) throw notFound('No such file.');
    return this.fileItem(props);
  }

  // ---- reads -------------------------------------------------------------------------------

  async get(rawId: string, type: StorageItemType): Promise<StorageItem> {
    if (type === 'file') return this.fileAt(this.paths.fileName(rawId));
    const prefix = this.paths.folderPrefix(rawId);
    return this.folderItem(prefix, await this.requireFolder(prefix));
  }

  async list(folderRawId: string, page: PageRequest): Promise<Page<StorageItem>> {
    const prefix = this.paths.folderPrefix(folderRawId);
    const listing = await this.client.listBlobs({
      prefix,
      delimiter: '/',
      marker: page.cursor,
      maxResults: Math.max(1, Math.min(MAX_RESULTS, Math.floor(page.pageSize))),
    });
    if (
      page.cursor === undefined &&
      !this.paths.isRoot(prefix) &&
      listing.blobs.length === 0 &&
      listing.prefixes.length === 0
    ) {
      throw notFound('No such folder.');
    }
    const entries: Array<{ key: string; item: StorageItem }> = [];
    for (const blob of listing.blobs) {
      // The folder's own marker, and names our ids cannot address (empty segments).
      if (blob.name === prefix || this.paths.leafName(blob.name) === '') continue;
      entries.push({ key: blob.name, item: this.fileItem(blob) });
    }
    for (const sub of listing.prefixes) {
      if (this.paths.leafName(sub) === '') continue;
      entries.push({ key: sub, item: this.folderItem(sub, null) });
    }
    entries.sort(byName);
    return { items: entries.map((e) => e.item), cursor: listing.nextMarker };
  }

  async lookup(parentRawId: string, name: string): Promise<StorageItem | null> {
    validateItemName(name);
    const parent = this.paths.folderPrefix(parentRawId);
    const blobName = parent + name;
    const file = await this.client.getProperties(blobName);
    if (file) return this.fileItem(file);
    const folder = await this.folderState(`${blobName}/`);
    if (folder.exists) return this.folderItem(`${blobName}/`, folder.marker);
    await this.requireFolder(parent);
    return null;
  }

  async download(
    rawId: string,
    options: { range?: ByteRange; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
    const name = this.paths.fileName(rawId);
    const result = await this.client.getBlob(name, { range: options.range, signal: options.signal });
    const stream = mappedStream(result.stream);
    if (!options.range) {
      return { stream, size: result.size, contentType: result.contentType, range: null };
    }
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(result.contentRange ?? '');
    if (result.status !== 206 || !m) {
      result.stream.destroy();
      throw new CloudmuxError('bad_gateway', 'azure answered a ranged read without a Content-Range.', {
        service: SERVICE,
      });
    }
    const range = { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
    return { stream, size: range.end - range.start + 1, contentType: result.contentType, range };
  }

  // ---- writes ------------------------------------------------------------------------------

  async createFolder(parentRawId: string, name: string): Promise<StorageItem> {
    validateItemName(name);
    const parent = this.paths.folderPrefix(parentRawId);
    await this.requireFolder(parent);
    const blobName = parent + name;
    await this.assertFree(blobName);
    const prefix = `${blobName}/`;
    await this.putMarker(prefix, true);
    return this.folderItem(prefix, await this.client.getProperties(prefix));
  }

  /** Zero-byte `prefix/` blob; with `fail`, an existing one is a conflict (else it is kept). */
  private async putMarker(prefix: string, fail: boolean): Promise<void> {
    try {
      await this.client.putBlob(prefix, Buffer.alloc(0), {
        contentType: DEFAULT_CONTENT_TYPE,
        ifNoneMatch: true,
        md5: '1B2M2Y8AsgTpgAmY7PhCfg==',
      });
    } catch (error) {
      if (error instanceof CloudmuxError && error.code === 'naming_conflict') {
        if (fail)
          throw namingConflict(
            this.paths.rawIdOf(prefix),
            'A folder with that name already exists.',
            SERVICE,
          );
        return;
      }
      throw error;
    }
  }

  async upload(
    parentRawId: string,
    name: string,
    body: Readable,
    options: UploadOptions,
  ): Promise<StorageItem> {
    validateItemName(name);
    const parent = this.paths.folderPrefix(parentRawId);
    await this.requireFolder(parent);
    const blobName = parent + name;
    // Before reading the body: a conflict must not cost the client its upload.
    if (options.ifExists === 'fail') await this.assertFree(blobName);
    else await this.assertNoFolder(blobName);
    await this.write(blobName, body, {
      size: options.size,
      contentType: contentTypeFor(name, options.mimeType),
      fail: options.ifExists === 'fail',
      signal: options.signal,
    });
    return this.fileAt(blobName);
  }

  private async write(
    blobName: string,
    body: Readable,
    options: {
      size?: number | null | undefined;
      contentType: string;
      fail: boolean;
      signal?: AbortSignal | undefined;
    },
  ): Promise<void> {
    try {
      await uploadBlob(this.client, blobName, body, {
        size: options.size,
        contentType: options.contentType,
        ifNoneMatch: options.fail,
        signal: options.signal,
      });
    } catch (error) {
      if (options.fail && error instanceof CloudmuxError && error.code === 'naming_conflict') {
        throw namingConflict(this.paths.rawIdOf(blobName), 'A file with that name already exists.', SERVICE);
      }
      throw error;
    }
  }

  async updateContents(
    rawId: string,
    body: Readable,
    options: { size?: number | null; signal?: AbortSignal } = {},
  ): Promise<StorageItem> {
    const blobName = this.paths.fileName(rawId);
    const existing = await this.client.getProperties(blobName);
    if (!existing) throw notFound('No such file.');
    await this.write(blobName, body, {
      size: options.size,
      contentType: existing.contentType ?? contentTypeFor(blobName),
      fail: false,
      signal: options.signal,
    });
    return this.fileAt(blobName);
  }

  // ---- copy, move, delete ------------------------------------------------------------------

  /** Copy Blob, waiting for a pending copy; the destination must not exist. */
  private async copyBlob(source: string, destination: string): Promise<void> {
    let started: { status: string; copyId: string | null };
    try {
      started = await this.client.copyBlob(source, destination, { ifNoneMatch: true });
    } catch (error) {
      if (error instanceof CloudmuxError && error.code === 'naming_conflict') {
        throw namingConflict(
          this.paths.rawIdOf(destination),
          'An item with that name already exists.',
          SERVICE,
        );
      }
      throw error;
    }
    let status = started.status;
    const deadline = this.clock.now() + this.copyTimeoutMs;
    let delay = 50;
    while (status === 'pending') {
      if (this.clock.now() >= deadline) {
        if (started.copyId) await this.client.abortCopy(destination, started.copyId).catch(() => undefined);
        await this.client.deleteBlob(destination).catch(() => undefined);
        throw new CloudmuxError(
          'gateway_timeout',
          'The server-side copy did not finish in time; it was aborted.',
          { service: SERVICE },
        );
      }
      await this.clock.sleep(delay);
      delay = Math.min(delay * 2, 2_000);
      const props = await this.client.getProperties(destination);
      if (!props || (started.copyId && props.copyId !== started.copyId)) {
        throw new CloudmuxError('bad_gateway', 'The copy destination changed while the copy ran.', {
          service: SERVICE,
        });
      }
      status = props.copyStatus ?? 'success';
    }
    if (status !== 'success') {
      // A failed or aborted copy leaves an empty destination blob: remove it.
      await this.client.deleteBlob(destination).catch(() => undefined);
      throw new CloudmuxError('bad_gateway', `The server-side copy ended as "${status}".`, {
        service: SERVICE,
      });
    }
  }

  /** Every blob under `prefix` (flat), marker included; refuses trees larger than MAX_TREE_BLOBS. */
  private async treeBlobs(prefix: string): Promise<string[]> {
    const names: string[] = [];
    let marker: string | undefined;
    do {
      const listing = await this.client.listBlobs({ prefix, marker, maxResults: MAX_RESULTS });
      for (const blob of listing.blobs) names.push(blob.name);
      if (names.length > MAX_TREE_BLOBS) {
        throw new CloudmuxError(
          'request_failed',
          `The folder holds more than ${MAX_TREE_BLOBS} blobs; copy or move its subfolders separately.`,
          { service: SERVICE },
        );
      }
      marker = listing.nextMarker ?? undefined;
    } while (marker);
    return names;
  }

  private async copyTree(source: string, destination: string): Promise<string[]> {
    const names = await this.treeBlobs(source);
    if (!names.includes(source)) await this.putMarker(destination, true);
    await forEachLimit(names, TREE_CONCURRENCY, (name) =>
      this.copyBlob(name, destination + name.slice(source.length)),
    );
    return names;
  }

  /** Resolves the target of a move/copy and checks it: parent exists, name free, not inside itself. */
  private async target(
    type: StorageItemType,
    sourceName: string,
    parentRawId: string | undefined,
    name: string | undefined,
  ): Promise<{ blobName: string; same: boolean }> {
    if (name !== undefined) validateItemName(name);
    const parent =
      parentRawId === undefined ? this.paths.parentPrefix(sourceName)! : this.paths.folderPrefix(parentRawId);
    const leaf = name ?? this.paths.leafName(sourceName);
    const blobName = parent + leaf;
    const full = type === 'folder' ? `${blobName}/` : blobName;
    if (full === sourceName) return { blobName: full, same: true };
    if (type === 'folder' && full.startsWith(sourceName)) {
      throw new CloudmuxError('invalid_parameters', 'A folder cannot be moved or copied into itself.', {
        service: SERVICE,
      });
    }
    await this.requireFolder(parent);
    await this.assertFree(blobName);
    return { blobName: full, same: false };
  }

  private sourceOf(rawId: string, type: StorageItemType): string {
    if (type === 'file') return this.paths.fileName(rawId);
    const prefix = this.paths.folderPrefix(rawId);
    if (this.paths.isRoot(prefix)) {
      throw new CloudmuxError('invalid_parameters', 'The root folder cannot be moved, copied or deleted.', {
        service: SERVICE,
      });
    }
    return prefix;
  }

  async copy(
    rawId: string,
    type: StorageItemType,
    options: { parentRawId: string; name: string },
  ): Promise<StorageItem> {
    validateItemName(options.name);
    const source = this.sourceOf(rawId, type);
    if (type === 'file') {
      if (!(await this.client.getProperties(source))) throw notFound('No such file.');
    } else await this.requireFolder(source);
    const { blobName, same } = await this.target(type, source, options.parentRawId, options.name);
    if (same)
      throw namingConflict(this.paths.rawIdOf(source), 'An item with that name already exists.', SERVICE);
    if (type === 'file') {
      await this.copyBlob(source, blobName);
      return this.fileAt(blobName);
    }
    await this.copyTree(source, blobName);
    return this.get(this.paths.rawIdOf(blobName), 'folder');
  }

  async move(rawId: string, type: StorageItemType, options: MoveOptions): Promise<StorageItem> {
    if (options.name !== undefined) validateItemName(options.name);
    const source = this.sourceOf(rawId, type);
    if (type === 'file') {
      if (!(await this.client.getProperties(source))) throw notFound('No such file.');
    } else await this.requireFolder(source);
    const { blobName, same } = await this.target(type, source, options.parentRawId, options.name);
    if (same) return this.get(rawId, type);
    if (type === 'file') {
      await this.copyBlob(source, blobName);
      await this.client.deleteBlob(source);
      return this.fileAt(blobName);
    }
    // Everything is copied before anything is deleted: a failure leaves the source whole.
    const names = await this.copyTree(source, blobName);
    const marker = names.filter((n) => n === source);
    await forEachLimit(
      names.filter((n) => n !== source),
      TREE_CONCURRENCY,
      async (name) => void (await this.client.deleteBlob(name)),
    );
    for (const name of marker) await this.client.deleteBlob(name);
    return this.get(this.paths.rawIdOf(blobName), 'folder');
  }

  async delete(rawId: string, type: StorageItemType, options: DeleteOptions): Promise<void> {
    const source = this.sourceOf(rawId, type);
    if (type === 'file') {
      if (!(await this.client.deleteBlob(source))) throw notFound('No such file.');
      return;
    }
    const peek = await this.client.listBlobs({ prefix: source, maxResults: 2 });
    if (peek.blobs.length === 0) throw notFound('No such folder.');
    const hasChildren = peek.blobs.some((b) => b.name !== source);
    if (hasChildren && !options.recursive) {
      throw new CloudmuxError('folder_not_empty', undefined, { service: SERVICE });
    }
    // Page by page (bounded memory); the marker goes last, so an interrupted delete leaves the folder.
    let marker: string | undefined;
    let hadMarker = false;
    do {
      const listing = await this.client.listBlobs({ prefix: source, marker, maxResults: MAX_RESULTS });
      const names = listing.blobs
        .map((b) => b.name)
        .filter((n) => {
          if (n === source) hadMarker = true;
          return n !== source;
        });
      await forEachLimit(names, TREE_CONCURRENCY, async (name) => void (await this.client.deleteBlob(name)));
      marker = listing.nextMarker ?? undefined;
    } while (marker);
    if (hadMarker) await this.client.deleteBlob(source);
  }

  // ---- search ------------------------------------------------------------------------------

  /** Name search: a flat listing filtered by the leaf name, bounded to a few listing calls per page. */
  async search(query: string, options: SearchOptions): Promise<Page<StorageItem>> {
    const needle = query.trim().toLowerCase();
    if (needle === '')
      throw new CloudmuxError('invalid_parameters', 'The search query is empty.', { service: SERVICE });
    const prefixes = options.parents?.length
      ? options.parents.map((p) => this.paths.folderPrefix(p))
      : [this.paths.basePrefix];
    let { index, skip, marker } = decodeSearchCursor(options.cursor);
    if (index >= prefixes.length) return { items: [], cursor: null };
    const pageSize = Math.max(1, Math.floor(options.pageSize));
    const items: StorageItem[] = [];
    for (let scanned = 0; scanned < SEARCH_SCAN_PAGES && index < prefixes.length; scanned++) {
      const prefix = prefixes[index]!;
      const listing = await this.client.listBlobs({ prefix, marker, maxResults: SEARCH_SCAN_SIZE });
      const matches = listing.blobs.filter((b) => {
        if (b.name === prefix) return false;
        const leaf = this.paths.leafName(b.name);
        return leaf !== '' && leaf.toLowerCase().includes(needle);
      });
      const available = matches.slice(skip);
      const room = pageSize - items.length;
      if (available.length > room) {
        items.push(...available.slice(0, room).map((b) => this.searchItem(b)));
        return { items, cursor: encodeSearchCursor(index, skip + room, marker) };
      }
      items.push(...available.map((b) => this.searchItem(b)));
      skip = 0;
      if (listing.nextMarker) marker = listing.nextMarker;
      else {
        index += 1;
        marker = undefined;
      }
    }
    return { items, cursor: index < prefixes.length ? encodeSearchCursor(index, 0, marker) : null };
  }

  private searchItem(blob: BlobProperties): StorageItem {
    return blob.name.endsWith('/') ? this.folderItem(blob.name, blob) : this.fileItem(blob);
  }

  // ---- native multipart: Put Block per part, Put Block List on completion -------------------

  readonly multipart: NativeMultipart = {
    minPartSize: 1,
    // Put Block takes up to 4000 MiB per block (x-ms-version 2019-12-12 and later).
    maxPartSize: 4000 * MIB,
    maxParts: MAX_BLOCKS,
    begin: async (parentRawId, name, options) => {
      validateItemName(name);
      const parent = this.paths.folderPrefix(parentRawId);
      await this.requireFolder(parent);
      const blobName = parent + name;
      if (options.ifExists === 'fail') await this.assertFree(blobName);
      else await this.assertNoFolder(blobName);
      const state: MultipartState = {
        v: 1,
        parent: this.paths.rawIdOf(parent),
        name,
        session: newSession().toString('hex'),
        next: 1,
        empty: [],
        ifExists: options.ifExists,
        contentType: contentTypeFor(name, options.mimeType),
      };
      return { sessionState: JSON.stringify(state) };
    },
    uploadPart: async (sessionState, partNumber, body, size) => {
      const state = this.parseState(sessionState);
      if (
        !Number.isSafeInteger(partNumber) ||
        partNumber < 1 ||
        partNumber > MAX_BLOCKS ||
        partNumber > state.next
      ) {
        throw new CloudmuxError(
          'invalid_parameters',
          `Expected part ${state.next} (or an earlier one again), got ${partNumber}.`,
        );
      }
      const blobName = this.stateBlobName(state);
      const id = blockId(Buffer.from(state.session, 'hex'), partNumber);
      const empty = state.empty.filter((n) => n !== partNumber);
      if (size === 0) {
        if ((await drain(body)) !== 0)
          throw new CloudmuxError('bad_request', `Part ${partNumber} is longer than 0 bytes.`);
        empty.push(partNumber);
      } else if (size <= BUFFERED_PART_MAX) {
        await this.client.putBlock(blobName, id, await readExactly(body, size), { size });
      } else {
        await this.putStreamedBlock(blobName, id, body, size);
      }
      const next: MultipartState = { ...state, next: Math.max(state.next, partNumber + 1), empty };
      return { sessionState: JSON.stringify(next) };
    },
    complete: async (sessionState) => {
      const state = this.parseState(sessionState);
      const blobName = this.stateBlobName(state);
      const session = Buffer.from(state.session, 'hex');
      const ids: string[] = [];
      for (let n = 1; n < state.next; n++) if (!state.empty.includes(n)) ids.push(blockId(session, n));
      const fail = state.ifExists === 'fail';
      try {
        if (ids.length === 0) {
          await this.client.putBlob(blobName, Buffer.alloc(0), {
            contentType: state.contentType,
            ifNoneMatch: fail,
            md5: '1B2M2Y8AsgTpgAmY7PhCfg==',
          });
        } else {
          await this.client.putBlockList(blobName, ids, {
            contentType: state.contentType,
            ifNoneMatch: fail,
          });
        }
      } catch (error) {
        if (fail && error instanceof CloudmuxError && error.code === 'naming_conflict') {
          throw namingConflict(
            this.paths.rawIdOf(blobName),
            'A file with that name already exists.',
            SERVICE,
          );
        }
        throw error;
      }
      return this.fileAt(blobName);
    },
    // Uncommitted blocks are invisible and the service discards them (after 7 days); nothing to send.
    abort: async (sessionState) => {
      this.parseState(sessionState);
    },
  };

  private parseState(sessionState: string): MultipartState {
    let parsed: unknown;
    try {
      parsed = JSON.parse(sessionState);
    } catch {
      throw new CloudmuxError('not_found', 'Unknown upload session.', { service: SERVICE });
    }
    const result = multipartState.safeParse(parsed);
    if (!result.success)
      throw new CloudmuxError('not_found', 'Unknown upload session.', { service: SERVICE });
    return result.data;
  }

  /** The session's blob name, re-checked (the state comes back from the server's store). */
  private stateBlobName(state: MultipartState): string {
    validateItemName(state.name);
    return this.paths.folderPrefix(state.parent) + state.name;
  }

  /** A large part streams straight into Put Block (sent once: a stream cannot be replayed). */
  private async putStreamedBlock(blobName: string, id: string, body: Readable, size: number): Promise<void> {
    let seen = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        seen += chunk.length;
        if (seen > size) callback(new Error('part longer than announced'));
        else callback(null, chunk);
      },
      flush(callback) {
        callback(seen === size ? null : new Error('part shorter than announced'));
      },
    });
    body.once('error', (error) => counted.destroy(error));
    try {
      await this.client.putBlock(blobName, id, body.pipe(counted), { size });
    } catch (error) {
      if (seen !== size) {
        throw new CloudmuxError('bad_request', `The part did not carry exactly ${size} bytes.`, {
          service: SERVICE,
          cause: error,
        });
      }
      throw error;
    }
  }
}

/**
 * The body as the consumer reads it: a socket that dies midway (server restarted) surfaces as a
 * CloudmuxError, and a consumer that stops reading releases the upstream response.
 */
function mappedStream(source: Readable): Readable {
  const out = new PassThrough();
  source.pipe(out);
  source.once('error', (error: NodeJS.ErrnoException) => {
    const code =
      error.code === 'ETIMEDOUT' || error.code === 'ESOCKETTIMEDOUT'
        ? 'gateway_timeout'
        : 'service_not_available';
    out.destroy(
      new CloudmuxError(code, 'The download from azure broke off.', {
        service: SERVICE,
        upstream: { service: SERVICE, ...(error.code ? { code: error.code } : {}) },
        cause: error,
      }),
    );
  });
  out.once('close', () => {
    if (!source.destroyed) source.destroy();
  });
  return out;
}

function encodeSearchCursor(index: number, skip: number, marker: string | undefined): string {
  return `${index}.${skip}.${marker ?? ''}`;
}

function decodeSearchCursor(cursor: string | undefined): {
  index: number;
  skip: number;
  marker: string | undefined;
} {
  if (cursor === undefined || cursor === '') return { index: 0, skip: 0, marker: undefined };
  const m = /^(\d{1,4})\.(\d{1,6})\.(.*)$/s.exec(cursor);
  if (!m) throw new CloudmuxError('invalid_parameters', 'Invalid search cursor.', { service: SERVICE });
  return { index: Number(m[1]), skip: Number(m[2]), marker: m[3] === '' ? undefined : m[3] };
}
