import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createConnectorContext, instantiateConnector } from '@cloudmux/core';
import { expectCloudmuxError, makeTempDir, readAll, type TempDir } from '@cloudmux/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalStorage, local, STAGING_DIR } from '../src/index.js';

let dir: TempDir;
let outside: TempDir;
let storage: LocalStorage;

beforeEach(async () => {
  dir = await makeTempDir('cloudmux-local-unit-');
  outside = await makeTempDir('cloudmux-outside-');
  await writeFile(join(outside.path, 'secret.txt'), 'top secret');
  storage = new LocalStorage(dir.path);
});
afterEach(async () => {
  await dir.remove();
  await outside.remove();
});

describe('paths never escape the root', () => {
  it.each(['/../etc/passwd', '/a/../../x', 'relative', '', '/a\u0000b', '/..', '/a\\..\\b'])(
    'raw id %j is not_found',
    async (rawId) => {
      await expectCloudmuxError(storage.get(rawId, 'file'), 'not_found');
      await expectCloudmuxError(storage.download(rawId), 'not_found');
    },
  );

  it('hides and refuses symlinks that point outside the root', async () => {
    await symlink(join(outside.path, 'secret.txt'), join(dir.path, 'link-out.txt'));
    await symlink(outside.path, join(dir.path, 'dir-out'));
    await writeFile(join(dir.path, 'inside.txt'), 'ok');
    await symlink(join(dir.path, 'inside.txt'), join(dir.path, 'link-in.txt'));
    const names = (await storage.list('/', { pageSize: 100 })).items.map((i) => i.name).sort();
    expect(names).toEqual(['inside.txt', 'link-in.txt']);
    await expectCloudmuxError(storage.download('/link-out.txt'), 'not_found');
    await expectCloudmuxError(storage.list('/dir-out', { pageSize: 10 }), 'not_found');
    await expectCloudmuxError(storage.download('/dir-out/secret.txt'), 'not_found');
    expect((await readAll((await storage.download('/link-in.txt')).stream)).toString()).toBe('ok');
    const found = await storage.search('secret', { pageSize: 10 });
    expect(found.items).toEqual([]);
  });

  it('does not copy outside symlinks when copying a folder', async () => {
    await mkdir(join(dir.path, 'src'));
    await writeFile(join(dir.path, 'src', 'a.txt'), 'a');
    await symlink(join(outside.path, 'secret.txt'), join(dir.path, 'src', 'leak.txt'));
    const copy = await storage.copy('/src', 'folder', { parentRawId: '/', name: 'dst' });
    expect((await storage.list(copy.rawId, { pageSize: 10 })).items.map((i) => i.name)).toEqual(['a.txt']);
  });
});

describe('uploads are invisible until complete', () => {
  it('a body that fails midway leaves no file and no staging debris', async () => {
    let sent = 0;
    const failing = new Readable({
      read() {
        sent += 1;
        if (sent < 5) this.push(Buffer.alloc(64 * 1024, 1));
        else this.destroy(new Error('client went away'));
      },
    });
    await expect(
      storage.upload('/', 'partial.bin', failing, { size: 10 * 1024 * 1024, ifExists: 'fail' }),
    ).rejects.toThrow();
    expect(await storage.lookup('/', 'partial.bin')).toBeNull();
    expect(await readdir(join(dir.path, STAGING_DIR))).toEqual([]);
  });

  it('a short body (fewer bytes than declared) is refused', async () => {
    await expectCloudmuxError(
      storage.upload('/', 'short.bin', Readable.from([Buffer.from('abc')]), { size: 10, ifExists: 'fail' }),
      'bad_request',
    );
    expect(await storage.lookup('/', 'short.bin')).toBeNull();
  });

  it('the staging folder is hidden and reserved', async () => {
    await storage.upload('/', 'x.txt', Readable.from([Buffer.from('x')]), { size: 1, ifExists: 'fail' });
    expect((await storage.list('/', { pageSize: 10 })).items.map((i) => i.name)).toEqual(['x.txt']);
    await expectCloudmuxError(storage.createFolder('/', STAGING_DIR), 'invalid_parameters');
    await expectCloudmuxError(storage.get(`/${STAGING_DIR}`, 'folder'), 'not_found');
  });

  it('multipart parts must arrive in order and complete atomically', async () => {
    const mp = storage.multipart;
    let { sessionState } = await mp.begin('/', 'mp.txt', { ifExists: 'fail' });
    await expectCloudmuxError(
      mp.uploadPart(sessionState, 2, Readable.from([Buffer.from('b')]), 1),
      'invalid_parameters',
    );
    sessionState = (await mp.uploadPart(sessionState, 1, Readable.from([Buffer.from('a')]), 1)).sessionState;
    expect(await storage.lookup('/', 'mp.txt')).toBeNull();
    sessionState = (await mp.uploadPart(sessionState, 2, Readable.from([Buffer.from('b')]), 1)).sessionState;
    const file = await mp.complete(sessionState);
    expect((await readAll((await storage.download(file.rawId)).stream)).toString()).toBe('ab');
    await expectCloudmuxError(
      mp.complete(
        JSON.stringify({ tmp: '/etc/passwd', parentRawId: '/', name: 'p', nextPart: 1, ifExists: 'replace' }),
      ),
      'not_found',
    );
  });
});

describe('definition', () => {
  it('requires an absolute root', () => {
    expect(local.credentials.safeParse({ root: 'relative/dir' }).success).toBe(false);
    expect(local.credentials.safeParse({ root: '/tmp' }).success).toBe(true);
  });

  it('validate() refuses a missing root', async () => {
    const ctx = createConnectorContext({
      definition: local,
      accountId: '9',
      credentials: { root: join(dir.path, 'missing') },
    });
    const instance = await instantiateConnector(local, ctx);
    await expectCloudmuxError(instance.validate!(), 'not_found');
  });

  it('moving a folder into itself is refused', async () => {
    await storage.createFolder('/', 'a');
    await storage.createFolder('/a', 'b');
    await expectCloudmuxError(storage.move('/a', 'folder', { parentRawId: '/a/b' }), 'invalid_parameters');
  });
});

describe('native multipart recovery', () => {
  it('a retried part replaces the bytes an interrupted attempt left; a conflict on complete keeps the upload', async () => {
    const mp = storage.multipart;
    let { sessionState } = await mp.begin('/', 'retry.bin', { ifExists: 'fail' });
    sessionState = (await mp.uploadPart(sessionState, 1, Readable.from([Buffer.from('aaaa')]), 4))
      .sessionState;
    const broken = new Readable({
      read() {
        this.push(Buffer.from('zz'));
        this.destroy(new Error('connection lost'));
      },
    });
    await expect(mp.uploadPart(sessionState, 2, broken, 4)).rejects.toThrow();
    sessionState = (await mp.uploadPart(sessionState, 2, Readable.from([Buffer.from('bbbb')]), 4))
      .sessionState;
    await storage.upload('/', 'retry.bin', Readable.from([Buffer.from('taken')]), {
      size: 5,
      ifExists: 'fail',
    });
    await expectCloudmuxError(mp.complete(sessionState), 'naming_conflict');
    await storage.delete('/retry.bin', 'file', { recursive: false, permanent: true });
    const file = await mp.complete(sessionState);
    expect((await readAll((await storage.download(file.rawId)).stream)).toString()).toBe('aaaabbbb');
  });
});

describe('watching the disk', () => {
  it('reports adds, updates and deletes made outside Cloudmux, and ignores its own staging', async () => {
    const seen: Array<{ action: string; rawId: string }> = [];
    const waitFor = async (predicate: () => boolean) => {
      for (let i = 0; i < 200 && !predicate(); i++) await new Promise((r) => setTimeout(r, 25));
      expect(predicate()).toBe(true);
    };
    const handle = storage.watch((change) => seen.push({ action: change.action, rawId: change.rawId }));
    try {
      await new Promise((r) => setTimeout(r, 100));
      await mkdir(join(dir.path, 'outside'));
      await writeFile(join(dir.path, 'outside', 'note.txt'), 'v1');
      await waitFor(() => seen.some((c) => c.action === 'add' && c.rawId === '/outside/note.txt'));
      await writeFile(join(dir.path, 'outside', 'note.txt'), 'v2 longer');
      await waitFor(() => seen.some((c) => c.action === 'update' && c.rawId === '/outside/note.txt'));
      await storage.upload('/', 'via-api.txt', Readable.from([Buffer.from('x')]), {
        size: 1,
        ifExists: 'fail',
      });
      const { rm } = await import('node:fs/promises');
      await rm(join(dir.path, 'outside', 'note.txt'));
      await waitFor(() => seen.some((c) => c.action === 'delete' && c.rawId === '/outside/note.txt'));
      expect(seen.some((c) => c.rawId.includes(STAGING_DIR))).toBe(false);
    } finally {
      handle.close();
    }
  });
});
