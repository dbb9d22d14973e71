/**
 * What the server owns on top of connectors: the `overwrite=false` renaming rule, copies that the
 * connector cannot do natively (streamed download → upload, within an account or from account A to
 * account B), and cross-account moves (copy, then delete the source).
 */
import type { Readable } from 'node:stream';
import {
  CloudmuxError,
  type StorageApi,
  type StorageItem,
  type StorageItemType,
  validateItemName,
} from '@cloudmux/core';

const MAX_RENAME_ATTEMPTS = 100;
const MAX_TREE_ITEMS = 100_000;

/** `report.pdf` → `report (1).pdf`, `backup.tar.gz` → `backup (1).tar.gz`, `README` → `README (1)`. */
export function candidateName(name: string, n: number): string {
  if (n === 0) return name;
  const split = /^(.+?)(\.tar\.(?:gz|bz2|xz|zst))$/i.exec(name) ?? /^(.+)(\.[^.\s]{1,10})$/.exec(name);
  return split ? `${split[1]} (${n})${split[2]}` : `${name} (${n})`;
}

/**
 * Runs `attempt(name)` with `name`, then `name (1)`, `name (2)`… while it fails with
 * `naming_conflict`. `attempt` must fail before consuming any body when the name exists
 * (the contract of `ifExists: 'fail'`), so retrying with the same body is safe.
 */
export async function withFreeName<T>(
  storage: StorageApi,
  parentRawId: string,
  name: string,
  attempt: (name: string) => Promise<T>,
): Promise<T> {
  validateItemName(name);
  for (let n = 0; n < MAX_RENAME_ATTEMPTS; n++) {
    const candidate = candidateName(name, n);
    if (n > 0 && (await storage.lookup(parentRawId, candidate))) continue;
    try {
      return await attempt(candidate);
    } catch (err) {
      if (err instanceof CloudmuxError && err.code === 'naming_conflict') continue;
      throw err;
    }
  }
  throw new CloudmuxError(
    'naming_conflict',
    `No free name found for ${name} after ${MAX_RENAME_ATTEMPTS} attempts.`,
  );
}

export interface Side {
  storage: StorageApi;
}

export type ConflictMode = 'rename' | 'fail' | 'replace';

/** Uploads `body` as `name` under `parentRawId` honouring the conflict mode. */
export function uploadWithMode(
  storage: StorageApi,
  parentRawId: string,
  name: string,
  body: Readable,
  mode: ConflictMode,
  options: { size?: number | null; mimeType?: string | null; signal?: AbortSignal },
): Promise<StorageItem> {
  if (mode === 'replace') return storage.upload(parentRawId, name, body, { ...options, ifExists: 'replace' });
  if (mode === 'fail') return storage.upload(parentRawId, name, body, { ...options, ifExists: 'fail' });
  return withFreeName(storage, parentRawId, name, (candidate) =>
    storage.upload(parentRawId, candidate, body, { ...options, ifExists: 'fail' }),
  );
}

/** Streams one file from `from` to `to` (the same or another account). Nothing is buffered whole. */
export async function streamFile(
  from: Side,
  rawId: string,
  to: Side,
  parentRawId: string,
  name: string,
  mode: ConflictMode,
): Promise<StorageItem> {
  const source = await from.storage.get(rawId, 'file');
  if (mode !== 'replace') {
    // Resolve the name before opening the download, so a conflict never leaves a half-read stream.
    let target = name;
    if (mode === 'rename') target = await firstFreeName(to.storage, parentRawId, name);
    else {
      const existing = await to.storage.lookup(parentRawId, name);
      if (existing)
        throw new CloudmuxError('naming_conflict', 'An item with that name already exists.', {
          conflictingRawId: existing.rawId,
        });
    }
    const download = await from.storage.download(rawId);
    return to.storage
      .upload(parentRawId, target, download.stream, {
        size: source.size ?? download.size ?? null,
        mimeType: source.mimeType ?? download.contentType ?? null,
        ifExists: 'fail',
      })
      .catch((err: unknown) => {
        download.stream.destroy();
        throw err;
      });
  }
  const download = await from.storage.download(rawId);
  return to.storage.upload(parentRawId, name, download.stream, {
    size: source.size ?? null,
    ifExists: 'replace',
  });
}

export async function firstFreeName(storage: StorageApi, parentRawId: string, name: string): Promise<string> {
  validateItemName(name);
  for (let n = 0; n < MAX_RENAME_ATTEMPTS; n++) {
    const candidate = candidateName(name, n);
    if (!(await storage.lookup(parentRawId, candidate))) return candidate;
  }
  throw new CloudmuxError('naming_conflict', `No free name found for ${name}.`);
}

async function listEverything(storage: StorageApi, folderRawId: string): Promise<StorageItem[]> {
  const items: StorageItem[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await storage.list(folderRawId, { pageSize: 1000, ...(cursor ? { cursor } : {}) });
    items.push(...page.items);
    if (items.length > MAX_TREE_ITEMS)
      throw new CloudmuxError('bad_request', `The folder has more than ${MAX_TREE_ITEMS} items.`);
    if (!page.cursor) return items;
    cursor = page.cursor;
  }
}

/** Recursive copy of a folder tree through the server (no native copy, or across accounts). */
export async function streamFolder(
  from: Side,
  rawId: string,
  to: Side,
  parentRawId: string,
  name: string,
  mode: ConflictMode,
): Promise<StorageItem> {
  const target = mode === 'rename' ? await firstFreeName(to.storage, parentRawId, name) : name;
  const created = await to.storage.createFolder(parentRawId, target);
  let copied = 0;
  const walk = async (sourceRawId: string, targetRawId: string): Promise<void> => {
    for (const child of await listEverything(from.storage, sourceRawId)) {
      if (++copied > MAX_TREE_ITEMS)
        throw new CloudmuxError('bad_request', `The folder has more than ${MAX_TREE_ITEMS} items.`);
      if (child.type === 'folder') {
        const sub = await to.storage.createFolder(targetRawId, child.name);
        await walk(child.rawId, sub.rawId);
      } else {
        await streamFile(from, child.rawId, to, targetRawId, child.name, 'fail');
      }
    }
  };
  await walk(rawId, created.rawId);
  return to.storage.get(created.rawId, 'folder');
}

/** Copy within one account: the connector's native copy when it has one, else streamed. */
export async function copyWithin(
  storage: StorageApi,
  rawId: string,
  type: StorageItemType,
  parentRawId: string,
  name: string,
  mode: ConflictMode,
): Promise<StorageItem> {
  if (storage.copy) {
    if (mode === 'rename')
      return withFreeName(storage, parentRawId, name, (candidate) =>
        storage.copy!(rawId, type, { parentRawId, name: candidate }),
      );
    if (mode === 'replace') {
      const existing = await storage.lookup(parentRawId, name);
      if (existing && existing.rawId !== rawId)
        await storage.delete(existing.rawId, existing.type, { recursive: true, permanent: true });
    }
    return storage.copy(rawId, type, { parentRawId, name });
  }
  const side = { storage };
  return type === 'file'
    ? streamFile(side, rawId, side, parentRawId, name, mode)
    : streamFolder(side, rawId, side, parentRawId, name, mode);
}

/** Copy from one account to another, always streamed through the server. */
export function copyAcross(
  from: StorageApi,
  rawId: string,
  type: StorageItemType,
  to: StorageApi,
  parentRawId: string,
  name: string,
  mode: ConflictMode,
): Promise<StorageItem> {
  return type === 'file'
    ? streamFile({ storage: from }, rawId, { storage: to }, parentRawId, name, mode)
    : streamFolder({ storage: from }, rawId, { storage: to }, parentRawId, name, mode);
}
