/**
 * The storage conformance suite every storage connector runs, against a real backend the test
 * starts. It talks to the connector's `StorageApi` directly (native raw ids), inside one fresh
 * folder under the root that it removes afterwards. Optional capabilities gate their cases; any
 * other skip must be named in `skip` with a reason.
 */
import {
  type AnyConnectorDefinition,
  CloudmuxError,
  type ConnectorContext,
  type ConnectorInstance,
  type CreateConnectorContextOptions,
  createConnectorContext,
  instantiateConnector,
  type StorageApi,
  type StorageItem,
  storageCapabilities,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bufferStream,
  randomBytesSha256,
  randomBytesSlice,
  randomStream,
  readAll,
  sha256,
  sha256OfStream,
} from './streams.js';

export const STORAGE_CASES = [
  'definition',
  'root',
  'folders',
  'folder-conflict',
  'upload-empty',
  'upload-unicode',
  'upload-large',
  'upload-conflict',
  'download-range',
  'metadata',
  'update-contents',
  'rename',
  'move',
  'copy',
  'delete',
  'paging',
  'search',
  'multipart',
  'errors',
  'names',
  'stable-ids',
  'dispose',
] as const;
export type StorageCaseName = (typeof STORAGE_CASES)[number];

export interface StorageConformanceSetup {
  /** Credentials as a client would send them to `POST /v1/accounts` (parsed by the definition's schema). */
  credentials: unknown;
  /** Extra context options (network policy, scratch dir, …). */
  context?: Partial<Omit<CreateConnectorContextOptions, 'definition' | 'credentials'>>;
  teardown?: () => Promise<void>;
}

export interface StorageConformanceOptions {
  connector: AnyConnectorDefinition;
  /** Starts the backend (real server, temp dir) and returns credentials for it. Runs once, in `beforeAll`. */
  setup: () => Promise<StorageConformanceSetup>;
  /** Cases to skip, each with the reason (printed in the test name). */
  skip?: Partial<Record<StorageCaseName, string>>;
  /** Page size for the paging case (the folder gets `2 × pageSize + 1` items). Default 4. */
  pageSize?: number;
  /** Size of the streamed large upload. Default 8 MiB. */
  largeFileBytes?: number;
  /** Connector-specific cases, run inside the same lifecycle. */
  additionalTests?: (env: () => ConformanceEnv) => void;
}

export interface ConformanceEnv {
  instance: ConnectorInstance<'storage'>;
  storage: StorageApi;
  ctx: ConnectorContext<unknown>;
  /** A fresh folder under the root; everything the suite creates lives in it. */
  testRoot: StorageItem;
  credentials: unknown;
}

/** Asserts `promise` rejects with a CloudmuxError of one of `codes`, and returns it. */
export async function expectCloudmuxError(
  promise: Promise<unknown>,
  ...codes: string[]
): Promise<CloudmuxError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected a CloudmuxError (${codes.join(' | ')}), got success`).toBeDefined();
  expect(caught, `expected a CloudmuxError, got ${String(caught)}`).toBeInstanceOf(CloudmuxError);
  expect(codes).toContain((caught as CloudmuxError).code);
  return caught as CloudmuxError;
}

export function runStorageConformance(options: StorageConformanceOptions): void {
  const { connector } = options;
  const skip = options.skip ?? {};
  const pageSize = options.pageSize ?? 4;
  const largeBytes = options.largeFileBytes ?? 8 * 1024 * 1024;
  let env: ConformanceEnv | undefined;
  let teardown: (() => Promise<void>) | undefined;
  const current = (): ConformanceEnv => {
    if (!env) throw new Error('conformance setup did not complete');
    return env;
  };

  // Cases that move many bytes or items get room for a slow backend on a loaded machine.
  const SLOW_CASES: Partial<Record<StorageCaseName, number>> = {
    'upload-large': 300_000,
    paging: 120_000,
    copy: 120_000,
    multipart: 120_000,
  };

  /** `it` for a named case: skipped with its reason when listed in `skip`, or when `unless` gives one. */
  const kase = (
    name: StorageCaseName,
    title: string,
    fn: () => Promise<void>,
    unless?: () => string | null,
  ) => {
    const reason = skip[name];
    if (reason) {
      it.skip(`${name}: ${title} (skipped: ${reason})`, fn);
      return;
    }
    it(
      `${name}: ${title}`,
      async (t) => {
        const gate = unless?.();
        if (gate) {
          t.skip(gate);
          return;
        }
        await fn();
      },
      SLOW_CASES[name] ?? 60_000,
    );
  };

  const storage = () => current().storage;
  const folder = () => current().testRoot.rawId;
  const upload = (
    parent: string,
    name: string,
    data: Buffer | string,
    ifExists: 'replace' | 'fail' = 'fail',
  ) => {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    return storage().upload(parent, name, bufferStream(buf), { size: buf.length, ifExists });
  };
  const contents = async (rawId: string) => readAll((await storage().download(rawId)).stream);
  const listAll = async (rawId: string, size = 1000) => {
    const items: StorageItem[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10_000; i++) {
      const page = await storage().list(rawId, { pageSize: size, ...(cursor ? { cursor } : {}) });
      expect(page.items.length).toBeLessThanOrEqual(size);
      items.push(...page.items);
      if (!page.cursor) return items;
      cursor = page.cursor;
    }
    throw new Error('listing did not end');
  };
  const names = (items: StorageItem[]) => items.map((i) => i.name).sort();
  const expectedName = (name: string) => {
    const form = storage().quirks?.unicodeNormalization;
    return form ? name.normalize(form) : name;
  };

  describe(`storage conformance: ${connector.service}`, () => {
    beforeAll(async () => {
      const setup = await options.setup();
      teardown = setup.teardown;
      const parsed = connector.credentials.safeParse(setup.credentials);
      if (!parsed.success) throw new Error(`setup credentials do not parse: ${parsed.error.message}`);
      const ctx = createConnectorContext({
        definition: connector,
        accountId: '1',
        credentials: parsed.data,
        ...setup.context,
      });
      const instance = (await instantiateConnector(connector, ctx)) as ConnectorInstance<'storage'>;
      const api = instance.storage;
      const rootName = `conformance-${process.pid}-${Date.now().toString(36)}`;
      const testRoot = await api.createFolder(api.rootRawId, rootName);
      env = { instance, storage: api, ctx, testRoot, credentials: setup.credentials };
    });

    afterAll(async () => {
      try {
        if (env) await env.storage.delete(env.testRoot.rawId, 'folder', { recursive: true, permanent: true });
      } finally {
        try {
          await env?.instance.dispose?.();
        } finally {
          await teardown?.();
        }
      }
    });

    kase(
      'definition',
      'the definition is valid and its credential schema rejects an empty object',
      async () => {
        expect(connector.kind).toBe('cloudmux.connector');
        expect(connector.apis).toContain('storage');
        expect(connector.credentials.safeParse({}).success).toBe(false);
        const caps = storageCapabilities(storage());
        expect(caps.can_search_file_name).toBe(typeof storage().search === 'function');
        expect(caps.multipart_uploads_supported_for_files).toBe(true);
      },
    );

    kase('root', 'the root folder reads and lists, and contains the test folder', async () => {
      const root = await storage().get(storage().rootRawId, 'folder');
      expect(root.type).toBe('folder');
      expect(root.rawId).toBe(storage().rootRawId);
      const listed = await listAll(storage().rootRawId);
      expect(listed.map((i) => i.rawId)).toContain(current().testRoot.rawId);
    });

    kase('folders', 'create, read, look up and list a folder', async () => {
      const created = await storage().createFolder(folder(), 'sub folder');
      expect(created).toMatchObject({ type: 'folder', name: 'sub folder', parentRawId: folder() });
      const read = await storage().get(created.rawId, 'folder');
      expect(read.rawId).toBe(created.rawId);
      expect(read.name).toBe('sub folder');
      const found = await storage().lookup(folder(), 'sub folder');
      expect(found?.rawId).toBe(created.rawId);
      expect(await storage().lookup(folder(), 'no such folder')).toBeNull();
      expect(names(await listAll(folder()))).toContain('sub folder');
      expect(await listAll(created.rawId)).toEqual([]);
    });

    kase(
      'folder-conflict',
      'creating an existing folder is a naming_conflict naming the existing folder',
      async () => {
        const first = await storage().createFolder(folder(), 'twice');
        const err = await expectCloudmuxError(storage().createFolder(folder(), 'twice'), 'naming_conflict');
        expect(err.conflictingRawId).toBe(first.rawId);
      },
    );

    kase('upload-empty', 'a 0-byte file uploads and downloads as 0 bytes', async () => {
      const file = await upload(folder(), 'empty.bin', Buffer.alloc(0));
      expect(file).toMatchObject({ type: 'file', name: 'empty.bin', size: 0 });
      expect((await contents(file.rawId)).length).toBe(0);
    });

    kase('upload-unicode', 'names in NFC and NFD round-trip', async () => {
      const nfc = 'café résumé Ω.txt'.normalize('NFC');
      const nfd = 'naïve ünïcödé.txt'.normalize('NFD');
      for (const name of [nfc, nfd]) {
        const file = await upload(folder(), name, `hello ${name}`);
        expect(file.name).toBe(expectedName(name));
        const read = await storage().get(file.rawId, 'file');
        expect(read.name).toBe(expectedName(name));
        expect((await contents(file.rawId)).toString()).toBe(`hello ${name}`);
      }
      const listed = names(await listAll(folder()));
      expect(listed).toContain(expectedName(nfc));
      expect(listed).toContain(expectedName(nfd));
      expect(
        storage().quirks?.caseInsensitiveNames ? null : await storage().lookup(folder(), 'CAFÉ RÉSUMÉ Ω.TXT'),
      ).toBeNull();
    });

    kase(
      'upload-large',
      `a ${Math.round(largeBytes / 1048576)} MiB file streams up and down with equal sha256`,
      async () => {
        const seed = `large-${connector.service}`;
        const file = await storage().upload(folder(), 'large.bin', randomStream(largeBytes, seed), {
          size: largeBytes,
          ifExists: 'fail',
        });
        expect(file.size).toBe(largeBytes);
        const download = await storage().download(file.rawId);
        const { sha256: digest, bytes } = await sha256OfStream(download.stream);
        expect(bytes).toBe(largeBytes);
        expect(digest).toBe(randomBytesSha256(largeBytes, seed));
      },
    );

    kase(
      'upload-conflict',
      'ifExists fail is a naming_conflict and keeps the old bytes; replace overwrites',
      async () => {
        const original = await upload(folder(), 'conflict.txt', 'one');
        const err = await expectCloudmuxError(
          upload(folder(), 'conflict.txt', 'two', 'fail'),
          'naming_conflict',
        );
        expect(err.conflictingRawId).toBe(original.rawId);
        expect((await contents(original.rawId)).toString()).toBe('one');
        const replaced = await upload(folder(), 'conflict.txt', 'three!', 'replace');
        expect(replaced.size).toBe(6);
        expect((await contents(replaced.rawId)).toString()).toBe('three!');
        expect(names(await listAll(folder())).filter((n) => n === 'conflict.txt')).toHaveLength(1);
      },
    );

    kase('download-range', 'Range reads return exactly the asked bytes', async () => {
      const size = 300_000;
      const seed = 'range';
      const file = await storage().upload(folder(), 'range.bin', randomStream(size, seed), {
        size,
        ifExists: 'fail',
      });
      const cases: Array<[number, number | undefined]> = [
        [0, 9],
        [65_530, 65_545],
        [size - 100, undefined],
        [size - 1, size - 1],
      ];
      for (const [start, end] of cases) {
        const result = await storage().download(file.rawId, {
          range: end === undefined ? { start } : { start, end },
        });
        const got = await readAll(result.stream);
        const last = end ?? size - 1;
        expect(got.equals(randomBytesSlice(size, seed, start, last))).toBe(true);
        expect(result.range).toEqual({ start, end: last, total: size });
      }
    });

    kase('metadata', 'file metadata: name, size, parent, type, modified', async () => {
      const before = Date.now() - 10 * 60_000;
      const file = await upload(folder(), 'meta.txt', '12345');
      const read = await storage().get(file.rawId, 'file');
      expect(read).toMatchObject({ type: 'file', name: 'meta.txt', size: 5, parentRawId: folder() });
      expect(read.modified).toBeInstanceOf(Date);
      expect(read.modified!.getTime()).toBeGreaterThan(before);
      await expectCloudmuxError(storage().get(file.rawId, 'folder'), 'not_found');
      await expectCloudmuxError(storage().get(folder(), 'file'), 'not_found');
    });

    kase('update-contents', 'updateContents replaces the bytes in place', async () => {
      const file = await upload(folder(), 'update.txt', 'old contents');
      const updated = await storage().updateContents(file.rawId, bufferStream('new'), { size: 3 });
      expect(updated.size).toBe(3);
      expect(updated.name).toBe('update.txt');
      expect((await contents(updated.rawId)).toString()).toBe('new');
    });

    kase('rename', 'rename a file and a folder (children follow)', async () => {
      const file = await upload(folder(), 'before.txt', 'r');
      const renamed = await storage().move(file.rawId, 'file', { name: 'after.txt' });
      expect(renamed.name).toBe('after.txt');
      expect((await contents(renamed.rawId)).toString()).toBe('r');
      expect(await storage().lookup(folder(), 'before.txt')).toBeNull();
      const dir = await storage().createFolder(folder(), 'dir-before');
      await upload(dir.rawId, 'child.txt', 'c');
      const dirRenamed = await storage().move(dir.rawId, 'folder', { name: 'dir-after' });
      expect(dirRenamed.name).toBe('dir-after');
      expect(names(await listAll(dirRenamed.rawId))).toEqual(['child.txt']);
    });

    kase('move', 'move a file and a folder to another parent', async () => {
      const target = await storage().createFolder(folder(), 'move-target');
      const file = await upload(folder(), 'moving.txt', 'm');
      const moved = await storage().move(file.rawId, 'file', { parentRawId: target.rawId });
      expect(moved.parentRawId).toBe(target.rawId);
      expect((await contents(moved.rawId)).toString()).toBe('m');
      const dir = await storage().createFolder(folder(), 'moving-dir');
      await upload(dir.rawId, 'inside.txt', 'i');
      const movedDir = await storage().move(dir.rawId, 'folder', {
        parentRawId: target.rawId,
        name: 'moved-dir',
      });
      expect(movedDir).toMatchObject({ name: 'moved-dir', parentRawId: target.rawId });
      expect(names(await listAll(movedDir.rawId))).toEqual(['inside.txt']);
      expect(names(await listAll(target.rawId))).toEqual(['moved-dir', 'moving.txt']);
      expect(names(await listAll(folder()))).not.toContain('moving.txt');
    });

    kase(
      'copy',
      'native copy of a file and of a folder tree',
      async () => {
        const copy = storage().copy!.bind(storage());
        const target = await storage().createFolder(folder(), 'copy-target');
        const file = await upload(folder(), 'copy-me.txt', 'copied bytes');
        const copied = await copy(file.rawId, 'file', { parentRawId: target.rawId, name: 'copy.txt' });
        expect(copied).toMatchObject({ type: 'file', name: 'copy.txt', parentRawId: target.rawId, size: 12 });
        expect((await contents(copied.rawId)).toString()).toBe('copied bytes');
        expect((await contents(file.rawId)).toString()).toBe('copied bytes');
        const tree = await storage().createFolder(folder(), 'tree');
        const sub = await storage().createFolder(tree.rawId, 'sub');
        await upload(sub.rawId, 'leaf.txt', 'leaf');
        const treeCopy = await copy(tree.rawId, 'folder', { parentRawId: target.rawId, name: 'tree-copy' });
        const subCopy = (await listAll(treeCopy.rawId)).find((i) => i.name === 'sub');
        expect(subCopy?.type).toBe('folder');
        const leaf = (await listAll(subCopy!.rawId)).find((i) => i.name === 'leaf.txt');
        expect((await contents(leaf!.rawId)).toString()).toBe('leaf');
      },
      () => (storage().copy ? null : 'no native copy: the server streams copies through download + upload'),
    );

    kase('delete', 'delete a file; a non-empty folder needs recursive', async () => {
      const file = await upload(folder(), 'delete-me.txt', 'd');
      await storage().delete(file.rawId, 'file', { recursive: false, permanent: true });
      await expectCloudmuxError(storage().get(file.rawId, 'file'), 'not_found');
      const dir = await storage().createFolder(folder(), 'full');
      const inner = await storage().createFolder(dir.rawId, 'inner');
      await upload(inner.rawId, 'deep.txt', 'deep');
      await expectCloudmuxError(
        storage().delete(dir.rawId, 'folder', { recursive: false, permanent: true }),
        'folder_not_empty',
      );
      expect((await storage().get(dir.rawId, 'folder')).rawId).toBe(dir.rawId);
      await storage().delete(dir.rawId, 'folder', { recursive: true, permanent: true });
      await expectCloudmuxError(storage().get(dir.rawId, 'folder'), 'not_found');
      const emptyDir = await storage().createFolder(folder(), 'empty-dir');
      await storage().delete(emptyDir.rawId, 'folder', { recursive: false, permanent: true });
      await expectCloudmuxError(storage().get(emptyDir.rawId, 'folder'), 'not_found');
    });

    kase('paging', `a folder with ${2 * pageSize + 1} items pages to exhaustion`, async () => {
      const dir = await storage().createFolder(folder(), 'paged');
      const expected: string[] = [];
      for (let i = 0; i < 2 * pageSize + 1; i++) {
        const name = `item-${String(i).padStart(3, '0')}${i % 3 === 0 ? '-dir' : '.txt'}`;
        expected.push(name);
        if (i % 3 === 0) await storage().createFolder(dir.rawId, name);
        else await upload(dir.rawId, name, String(i));
      }
      let cursor: string | undefined;
      const seen: string[] = [];
      let pages = 0;
      for (;;) {
        const page = await storage().list(dir.rawId, { pageSize, ...(cursor ? { cursor } : {}) });
        pages += 1;
        expect(page.items.length).toBeLessThanOrEqual(pageSize);
        seen.push(...page.items.map((i) => i.name));
        if (!page.cursor) break;
        expect(page.cursor).not.toMatch(/^(https?:)?\/\//i);
        cursor = page.cursor;
        expect(pages).toBeLessThan(100);
      }
      expect(pages).toBeGreaterThanOrEqual(3);
      expect(seen.sort()).toEqual(expected.sort());
    });

    kase(
      'search',
      'search finds items by name',
      async () => {
        const dir = await storage().createFolder(folder(), 'search-here');
        await upload(dir.rawId, 'needle-alpha.txt', 'a');
        await upload(dir.rawId, 'haystack.txt', 'b');
        const found: StorageItem[] = [];
        let cursor: string | undefined;
        for (let i = 0; i < 50; i++) {
          const page = await storage().search!('needle-alpha', {
            pageSize: 50,
            ...(cursor ? { cursor } : {}),
          });
          found.push(...page.items);
          if (!page.cursor) break;
          cursor = page.cursor;
        }
        expect(found.map((i) => i.name)).toContain('needle-alpha.txt');
        expect(found.map((i) => i.name)).not.toContain('haystack.txt');
      },
      () => (storage().search ? null : 'the connector declares no search'),
    );

    kase(
      'multipart',
      'a native resumable upload in parts yields the concatenated bytes',
      async () => {
        const mp = storage().multipart!;
        const partSize = Math.max(mp.minPartSize, 64 * 1024);
        const size = partSize * 2 + 1234;
        const seed = 'multipart';
        const whole = await readAll(randomStream(size, seed), size + 1);
        const { sessionState: initial } = await mp.begin(folder(), 'multi.bin', { size, ifExists: 'fail' });
        let state = initial;
        let part = 1;
        for (let offset = 0; offset < size; offset += partSize, part++) {
          const chunk = whole.subarray(offset, Math.min(size, offset + partSize));
          state = (await mp.uploadPart(state, part, bufferStream(chunk), chunk.length)).sessionState;
        }
        const file = await mp.complete(state);
        expect(file).toMatchObject({ name: 'multi.bin', size });
        expect(sha256(await contents(file.rawId))).toBe(sha256(whole));
      },
      () => (storage().multipart ? null : 'no native multipart: the server stages parts and uploads once'),
    );

    kase('errors', 'missing items are not_found', async () => {
      const ghost = await upload(folder(), 'ghost.txt', 'g');
      await storage().delete(ghost.rawId, 'file', { recursive: false, permanent: true });
      await expectCloudmuxError(storage().get(ghost.rawId, 'file'), 'not_found');
      await expectCloudmuxError(storage().download(ghost.rawId), 'not_found');
      await expectCloudmuxError(
        storage().delete(ghost.rawId, 'file', { recursive: false, permanent: true }),
        'not_found',
      );
      await expectCloudmuxError(storage().move(ghost.rawId, 'file', { name: 'x.txt' }), 'not_found');
      const gone = await storage().createFolder(folder(), 'gone');
      await storage().delete(gone.rawId, 'folder', { recursive: true, permanent: true });
      await expectCloudmuxError(storage().list(gone.rawId, { pageSize: 10 }), 'not_found');
      await expectCloudmuxError(upload(gone.rawId, 'orphan.txt', 'o'), 'not_found', 'invalid_parent_folder');
    });

    kase('names', 'names with "/", "..", NUL or "\\" are refused before touching the backend', async () => {
      for (const bad of ['..', '.', 'a/b', 'a\u0000b', 'a\\b', '']) {
        await expectCloudmuxError(storage().createFolder(folder(), bad), 'invalid_parameters', 'bad_request');
        await expectCloudmuxError(upload(folder(), bad, 'x'), 'invalid_parameters', 'bad_request');
      }
      const file = await upload(folder(), 'safe.txt', 's');
      await expectCloudmuxError(
        storage().move(file.rawId, 'file', { name: '../escape.txt' }),
        'invalid_parameters',
        'bad_request',
      );
      expect(names(await listAll(folder()))).toContain('safe.txt');
    });

    kase('stable-ids', 'raw ids are stable across calls and between listing and get', async () => {
      const file = await upload(folder(), 'stable.txt', 's');
      const a = await storage().get(file.rawId, 'file');
      const b = await storage().get(file.rawId, 'file');
      expect(a.rawId).toBe(b.rawId);
      const listed = (await listAll(folder())).find((i) => i.name === 'stable.txt');
      expect(listed?.rawId).toBe(file.rawId);
      expect((await storage().lookup(folder(), 'stable.txt'))?.rawId).toBe(file.rawId);
    });

    options.additionalTests?.(current);

    kase(
      'dispose',
      'a second instance on the same account works and disposes twice without error',
      async () => {
        const { ctx } = current();
        const second = (await instantiateConnector(connector, ctx)) as ConnectorInstance<'storage'>;
        const root = await second.storage.get(second.storage.rootRawId, 'folder');
        expect(root.type).toBe('folder');
        await second.dispose?.();
        await second.dispose?.();
      },
    );
  });
}
