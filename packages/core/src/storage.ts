/**
 * The storage half of the connector contract. Connectors speak in *native* ids (`rawId`: the
 * provider's id, or a path for path-addressed protocols); the server turns them into encrypted
 * Kloudless ids with the id codec and builds the wire objects with `toStorageObject`.
 */
import { type Readable, Transform } from 'node:stream';
import { CloudmuxError } from './errors.js';

export type StorageItemType = 'file' | 'folder';

/** One file or folder as a connector reports it. */
export interface StorageItem {
  type: StorageItemType;
  rawId: string;
  name: string;
  /** Bytes; `null` for folders and when the service does not say. */
  size: number | null;
  created: Date | null;
  modified: Date | null;
  /** Raw id of the parent folder; `null` for the root. */
  parentRawId: string | null;
  /** Display path from the root, starting with `/`, when the service has paths. */
  path?: string | null;
  mimeType?: string | null;
  /** Ancestors from the root down to the parent, when cheap to know. */
  ancestors?: Array<{ rawId: string; name: string }>;
  /** Upstream object for `X-Kloudless-Raw-Data: true`. */
  raw?: unknown;
  downloadable?: boolean;
  canCreateFolders?: boolean;
  canUploadFiles?: boolean;
}

/**
 * Connector-level paging. `cursor` is the connector's own continuation state (an offset, a page
 * token, a marker). Core wraps it into an authenticated `next_page` token; a cursor must never be an
 * upstream URL (validated by core: a leaked `nextLink` would become an SSRF path).
 */
export interface PageRequest {
  pageSize: number;
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  cursor?: string | null;
  total?: number;
}

/**
 * Passes bytes `skip` to `skip + length - 1` of what is written to it, then ends (`onDone` runs
 * once, so the caller can close the source): for servers that answer a Range request with the
 * whole file (200).
 */
export function rangeSlice(skip: number, length: number, onDone?: () => void): Transform {
  let toSkip = skip;
  let left = length;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      let buf = chunk;
      if (toSkip > 0) {
        const n = Math.min(toSkip, buf.length);
        toSkip -= n;
        buf = buf.subarray(n);
      }
      if (left > 0 && buf.length > 0) {
        const out = buf.subarray(0, Math.min(left, buf.length));
        left -= out.length;
        this.push(out);
        if (left === 0) {
          this.push(null);
          onDone?.();
        }
      }
      done();
    },
  });
}

export interface ByteRange {
  start: number;
  /** Inclusive; absent means to the end. */
  end?: number;
}

/** A suffix range (`bytes=-N`) is resolved by the server against the size before it reaches a connector. */
export interface DownloadResult {
  stream: Readable;
  size?: number | null;
  contentType?: string | null;
  /** The range actually served, when a range was asked for. */
  range?: { start: number; end: number; total: number } | null;
}

export interface UploadOptions {
  /** Bytes, when the client sent `Content-Length` or multipart `size`. */
  size?: number | null;
  /**
   * `replace`: overwrite an existing file of the same name. `fail`: throw `naming_conflict` (with the
   * existing item's raw id) *before* reading the body. The `overwrite=false` renaming rule is the
   * server's, built on `fail` + `lookup`.
   */
  ifExists: 'replace' | 'fail';
  mimeType?: string | null;
  signal?: AbortSignal;
}

export interface MoveOptions {
  parentRawId?: string;
  name?: string;
}

export interface DeleteOptions {
  recursive: boolean;
  permanent: boolean;
}

export interface SearchOptions extends PageRequest {
  parents?: string[];
}

/** A service's own resumable upload; core maps Cloudmux multipart sessions onto it when parts arrive in order. */
export interface NativeMultipart {
  /** Smallest and largest part the service accepts, and its part count limit. */
  minPartSize: number;
  maxPartSize: number;
  maxParts: number;
  begin(parentRawId: string, name: string, options: UploadOptions): Promise<{ sessionState: string }>;
  uploadPart(
    sessionState: string,
    partNumber: number,
    body: Readable,
    size: number,
  ): Promise<{ sessionState: string }>;
  complete(sessionState: string): Promise<StorageItem>;
  abort(sessionState: string): Promise<void>;
}

export interface Permission {
  id: string;
  email?: string | null;
  name?: string | null;
  role: 'owner' | 'reader' | 'writer' | string;
  type: 'user' | 'group' | 'domain' | 'anyone' | string;
}

export interface Property {
  key: string;
  value: string;
  created?: Date | null;
  modified?: Date | null;
}

export interface ChangeRecord {
  action: 'add' | 'delete' | 'update' | 'rename' | 'move' | 'copy' | 'restore';
  rawId: string;
  item?: StorageItem;
  modified: Date;
}

/** Naming behaviour of a backend that the conformance kit must know about. */
export interface StorageQuirks {
  /** The backend stores names in this Unicode normalization form whatever the client sent. */
  unicodeNormalization?: 'NFC' | 'NFD';
  /** Two names differing only in case are the same item. */
  caseInsensitiveNames?: boolean;
}

/**
 * Rejects names that are not a single path segment: empty, `.`/`..`, containing `/`, `\\` or NUL or
 * other control characters. Connectors call it on every name they receive (the server also does),
 * so a name can never address anything outside its parent folder.
 */
export function validateItemName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1024) {
    throw new CloudmuxError(
      'invalid_parameters',
      'A name must be a non-empty string of at most 1024 characters.',
    );
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (name === '.' || name === '..' || /[/\\\u0000-\u001f\u007f]/.test(name)) {
    throw new CloudmuxError(
      'invalid_parameters',
      `Invalid name: names cannot be "." or ".." or contain "/", "\\" or control characters.`,
    );
  }
  return name;
}

/**
 * What a storage connector implements. Required methods cover the Storage API every backend can do;
 * optional ones are capabilities: absent means the server answers `not_implemented`.
 */
export interface StorageApi {
  /** Raw id of the root folder (the `root` special id). */
  readonly rootRawId: string;
  /** Raw id of the trash, when the service has one (the `trash` special id). */
  readonly trashRawId?: string;
  readonly quirks?: StorageQuirks;

  get(rawId: string, type: StorageItemType): Promise<StorageItem>;
  list(folderRawId: string, page: PageRequest): Promise<Page<StorageItem>>;
  /** The child of `parentRawId` called `name`, or null. */
  lookup(parentRawId: string, name: string): Promise<StorageItem | null>;
  createFolder(parentRawId: string, name: string): Promise<StorageItem>;
  upload(parentRawId: string, name: string, body: Readable, options: UploadOptions): Promise<StorageItem>;
  download(rawId: string, options?: { range?: ByteRange; signal?: AbortSignal }): Promise<DownloadResult>;
  updateContents(
    rawId: string,
    body: Readable,
    options?: { size?: number | null; signal?: AbortSignal },
  ): Promise<StorageItem>;
  move(rawId: string, type: StorageItemType, options: MoveOptions): Promise<StorageItem>;
  delete(rawId: string, type: StorageItemType, options: DeleteOptions): Promise<void>;

  /** Server-side copy within the account; absent → the server streams download → upload. */
  copy?(
    rawId: string,
    type: StorageItemType,
    options: { parentRawId: string; name: string },
  ): Promise<StorageItem>;
  search?(query: string, options: SearchOptions): Promise<Page<StorageItem>>;
  recent?(options: PageRequest & { after?: Date }): Promise<Page<StorageItem>>;
  multipart?: NativeMultipart;
  getPermissions?(rawId: string, type: StorageItemType): Promise<Permission[]>;
  setPermissions?(
    rawId: string,
    type: StorageItemType,
    permissions: Array<Omit<Permission, 'id'>>,
    mode: 'replace' | 'update',
  ): Promise<Permission[]>;
  getProperties?(rawId: string): Promise<Property[]>;
  updateProperties?(
    rawId: string,
    changes: Array<{ key: string; value: string | null }>,
  ): Promise<Property[]>;
  deleteProperties?(rawId: string): Promise<void>;
  /** Upstream change feed; the server turns it into its event journal. */
  changes?(cursor: string | null): Promise<{ changes: ChangeRecord[]; cursor: string }>;
  /**
   * Live notifications for backends that can push changes made outside Cloudmux (a watched
   * directory). The server records them in its journal, skipping the ones it caused itself.
   */
  watch?(onChange: (change: ChangeRecord) => void, onError?: (error: unknown) => void): { close(): void };
}

/** Kloudless capability names (`retrieve_full=true` → `properties.capabilities`), derived from the methods. */
export function storageCapabilities(api: StorageApi): Record<string, boolean> {
  const has = (m: keyof StorageApi) =>
    typeof api[m] === 'function' || (m === 'multipart' && api.multipart !== undefined);
  return {
    can_upload_file: true,
    can_rename_file: true,
    can_move_file: true,
    can_copy_file: true,
    can_update_file_content: true,
    can_delete_file: true,
    can_delete_file_permanently: true,
    can_create_folder: true,
    can_rename_folder: true,
    can_move_folder: true,
    can_copy_folder: true,
    can_delete_folder: true,
    can_search_file_name: has('search'),
    multipart_uploads_supported_for_files: true,
    permissions_supported_for_files: has('getPermissions'),
    properties_supported_for_files: has('getProperties'),
    can_list_properties: has('getProperties'),
    can_delete_all_properties: has('deleteProperties'),
  };
}
