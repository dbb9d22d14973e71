/**
 * Connector-specific behaviour against a real Apache mod_dav: failures (server killed mid-transfer,
 * wrong password, write-protected paths), names and raw ids that must not escape, hidden temporary
 * uploads, the MOVE Overwrite:F race, bounded search, keep-alive reuse, and TLS trust settings.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ConnectEvent, createConnectorContext, instantiateConnector } from '@cloudmux/core';
import { bufferStream, expectCloudmuxError, makeTempDir, readAll, run } from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createWebDavStorage,
  UPLOAD_PREFIX,
  type WebDavStorage,
  webdav,
  webdavCredentials,
} from '../src/index.js';
import { type ApacheDav, apacheMissing, READONLY_DIR, startApacheDav } from './server.js';

const missing = await apacheMissing();
if (missing && process.env.CI) throw new Error(`Apache mod_dav is required under CI: ${missing}`);
const realServer = missing ? describe.skip : describe;
const suffix = missing ? ` (skipped: ${missing})` : '';

interface Opened {
  storage: WebDavStorage;
  events: ConnectEvent[];
  /** Methods of every request the connector sent through its HTTP client. */
  requests: string[];
  dispose: () => Promise<void>;
}

async function open(
  dav: ApacheDav,
  extra: Record<string, unknown> = {},
  searchMaxFolders?: number,
): Promise<Opened> {
  const events: ConnectEvent[] = [];
  const ctx = createConnectorContext({
    definition: webdav,
    accountId: 'test',
    credentials: webdavCredentials.parse(dav.credentials(extra)),
    onConnect: (event) => events.push(event),
  });
  const requests: string[] = [];
  const parts = createWebDavStorage(ctx, searchMaxFolders ? { searchMaxFolders } : {});
  parts.http.interceptors.request.use((config) => {
    requests.push(String(config.method).toUpperCase());
    return config;
  });
  return { storage: parts.storage, events, requests, dispose: async () => ctx.net.destroy() };
}

const text = async (storage: WebDavStorage, rawId: string) =>
  (await readAll((await storage.download(rawId)).stream)).toString();

/** A body that counts what was read from it, so tests can show it was never touched. */
function watchedBody(data: string): { body: Readable; touched: () => boolean } {
  let touched = false;
  const body = new Readable({
    read() {
      touched = true;
      this.push(Buffer.from(data));
      this.push(null);
    },
  });
  return { body, touched: () => touched };
}

async function owner(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', 'www-data'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'www-data'])).stdout.trim());
  return { uid, gid };
}

realServer(`webdav against Apache mod_dav (plain HTTP)${suffix}`, () => {
  let dav: ApacheDav;
  let conn: Opened;

  beforeAll(async () => {
    dav = await startApacheDav();
    conn = await open(dav);
  });
  afterAll(async () => {
    await conn?.dispose();
    await dav?.teardown();
  });

  it('validates; a wrong password is service_unauthorized, before any body is read', async () => {
    await conn.storage.validate();
    const wrong = await open(dav, { password: 'not-the-password' });
    await expectCloudmuxError(wrong.storage.validate(), 'service_unauthorized');
    await expectCloudmuxError(wrong.storage.list('/', { pageSize: 10 }), 'service_unauthorized');
    const { body, touched } = watchedBody('never sent');
    await expectCloudmuxError(
      wrong.storage.upload('/', 'x.txt', body, { ifExists: 'fail' }),
      'service_unauthorized',
    );
    expect(touched()).toBe(false);
    const nobody = await open(dav, { username: 'nobody-here' });
    await expectCloudmuxError(nobody.storage.validate(), 'service_unauthorized');
  });

  it('a missing base path fails validation (not_found); an existing one scopes the account', async () => {
    await expectCloudmuxError(
      (await open(dav, { base_path: '/no/such/dir' })).storage.validate(),
      'not_found',
    );
    await conn.storage.createFolder('/', 'scoped');
    await conn.storage.upload('/scoped', 'inside.txt', bufferStream('in'), { ifExists: 'fail' });
    const scoped = await open(dav, { base_path: '/scoped' });
    await scoped.storage.validate();
    expect((await scoped.storage.list('/', { pageSize: 10 })).items.map((i) => i.rawId)).toEqual([
      '/inside.txt',
    ]);
    expect(await text(scoped.storage, '/inside.txt')).toBe('in');
  });

  it('writes where the server denies them (<Limit>) are service_forbidden; reads work', async () => {
    const ro = `/${READONLY_DIR}`;
    expect((await conn.storage.list(ro, { pageSize: 10 })).items.map((i) => i.name)).toEqual(['fixed.txt']);
    expect(await text(conn.storage, `${ro}/fixed.txt`)).toBe('read only\n');
    await expectCloudmuxError(conn.storage.createFolder(ro, 'new'), 'service_forbidden');
    await expectCloudmuxError(
      conn.storage.upload(ro, 'new.txt', bufferStream('x'), { size: 1, ifExists: 'fail' }),
      'service_forbidden',
    );
    await expectCloudmuxError(
      conn.storage.updateContents(`${ro}/fixed.txt`, bufferStream('y')),
      'service_forbidden',
    );
    await expectCloudmuxError(
      conn.storage.delete(`${ro}/fixed.txt`, 'file', { recursive: false, permanent: true }),
      'service_forbidden',
    );
    await expectCloudmuxError(
      conn.storage.move(`${ro}/fixed.txt`, 'file', { parentRawId: '/' }),
      'service_forbidden',
    );
    const outside = await conn.storage.upload('/', 'to-protected.txt', bufferStream('p'), {
      ifExists: 'fail',
    });
    await expectCloudmuxError(
      conn.storage.move(outside.rawId, 'file', { parentRawId: ro }),
      'service_forbidden',
    );
    expect(await readdir(join(dav.dataDir, READONLY_DIR))).toEqual(['fixed.txt']);
    expect(await text(conn.storage, `${ro}/fixed.txt`)).toBe('read only\n');
  });

  it('a directory httpd may not write (file permissions): MKCOL 403, PUT 500 from Apache', async () => {
    const locked = join(dav.dataDir, 'root-owned');
    await mkdir(locked);
    await chmod(locked, 0o755); // owned by root: www-data can read, not write
    await expectCloudmuxError(conn.storage.createFolder('/root-owned', 'sub'), 'service_forbidden');
    // mod_dav_fs answers EACCES on PUT with 500 "Unable to PUT new contents": nothing says "forbidden".
    await expectCloudmuxError(
      conn.storage.upload('/root-owned', 'a.txt', bufferStream('a'), { size: 1, ifExists: 'fail' }),
      'bad_gateway',
    );
    expect(await readdir(locked)).toEqual([]);
  });

  it('refuses "..", "/", NUL and reserved names before any request; raw ids never escape', async () => {
    await conn.storage.createFolder('/', 'names');
    const before = conn.requests.length;
    for (const bad of ['..', '.', 'a/b', '../x', 'a\u0000b', 'a\\b', '', `${UPLOAD_PREFIX}x`]) {
      await expectCloudmuxError(conn.storage.createFolder('/names', bad), 'invalid_parameters');
      await expectCloudmuxError(
        conn.storage.upload('/names', bad, bufferStream('x'), { ifExists: 'fail' }),
        'invalid_parameters',
      );
      await expectCloudmuxError(conn.storage.lookup('/names', bad), 'invalid_parameters');
      await expectCloudmuxError(
        conn.storage.copy!('/names', 'folder', { parentRawId: '/', name: bad }),
        'invalid_parameters',
      );
      await expectCloudmuxError(conn.storage.move('/names', 'folder', { name: bad }), 'invalid_parameters');
    }
    for (const rawId of [
      '/../etc',
      '/names/../..',
      'names',
      '/names/..\\x',
      `/${UPLOAD_PREFIX}x`,
      '/a\u0000b',
    ]) {
      await expectCloudmuxError(conn.storage.get(rawId, 'file'), 'not_found');
      await expectCloudmuxError(conn.storage.download(rawId), 'not_found');
      await expectCloudmuxError(
        conn.storage.delete(rawId, 'file', { recursive: true, permanent: true }),
        'not_found',
      );
    }
    expect(conn.requests.length).toBe(before);
    // Encoded look-alikes are plain names: stored literally, never decoded into a traversal.
    for (const literal of ['%2e%2e', 'a%2Fb', '%00']) {
      const file = await conn.storage.upload('/names', literal, bufferStream(literal), { ifExists: 'fail' });
      expect(file.rawId).toBe(`/names/${literal}`);
      expect(await text(conn.storage, file.rawId)).toBe(literal);
    }
    expect((await readdir(join(dav.dataDir, 'names'))).sort()).toEqual(['%00', '%2e%2e', 'a%2Fb']);
  });

  it('names with reserved URL characters and non-ASCII round-trip through every operation', async () => {
    const dir = await conn.storage.createFolder('/', "dir #1 ?&=+;'()!*@$,[]");
    const names = ['a b#c?d%e&f+g;h.txt', '日本語 ファイル.txt', 'emoji 🎉.bin', "it's (1) [x] {y}.md"];
    for (const name of names) {
      const file = await conn.storage.upload(dir.rawId, name, bufferStream(`body of ${name}`), {
        ifExists: 'fail',
      });
      expect(file).toMatchObject({ name, parentRawId: dir.rawId, type: 'file' });
      expect(await text(conn.storage, file.rawId)).toBe(`body of ${name}`);
    }
    expect((await conn.storage.list(dir.rawId, { pageSize: 50 })).items.map((i) => i.name)).toEqual(
      [...names].sort(),
    );
    expect((await readdir(join(dav.dataDir, dir.name))).sort()).toEqual([...names].sort());
    const moved = await conn.storage.move(`${dir.rawId}/${names[0]}`, 'file', { name: 'renamed #2 ?.txt' });
    expect(moved.rawId).toBe(`${dir.rawId}/renamed #2 ?.txt`);
    const copied = await conn.storage.copy!(dir.rawId, 'folder', {
      parentRawId: '/',
      name: 'copy of dir #1 %20',
    });
    expect((await conn.storage.list(copied.rawId, { pageSize: 50 })).items.map((i) => i.name)).toContain(
      '日本語 ファイル.txt',
    );
  });

  it('uploads never show under a temporary name; leftover temporaries stay hidden', async () => {
    await conn.storage.createFolder('/', 'temps');
    await conn.storage.upload('/temps', 'done.txt', bufferStream('done'), { ifExists: 'fail' });
    const stale = join(dav.dataDir, 'temps', `${UPLOAD_PREFIX}stale`);
    await writeFile(stale, 'partial');
    const { uid, gid } = await owner();
    await chown(stale, uid, gid);
    expect((await readdir(join(dav.dataDir, 'temps'))).sort()).toEqual([`${UPLOAD_PREFIX}stale`, 'done.txt']);
    const listed = await conn.storage.list('/temps', { pageSize: 10 });
    expect(listed.items.map((i) => i.name)).toEqual(['done.txt']);
    expect(listed.total).toBe(1);
    expect((await conn.storage.search('stale', { pageSize: 10, parents: ['/temps'] })).items).toEqual([]);
    // A folder holding only a leftover temporary counts as empty.
    await conn.storage.delete('/temps/done.txt', 'file', { recursive: false, permanent: true });
    await conn.storage.delete('/temps', 'folder', { recursive: false, permanent: true });
    expect(existsSync(join(dav.dataDir, 'temps'))).toBe(false);
  });

  it('a file appearing under the final name mid-upload wins (MOVE Overwrite F → 412)', async () => {
    await conn.storage.createFolder('/', 'race');
    let raced: Promise<unknown> | undefined;
    let sent = false;
    const body = new Readable({
      read() {
        if (sent) return;
        sent = true;
        raced ??= conn.storage.upload('/race', 'same.txt', bufferStream('other writer'), {
          ifExists: 'replace',
        });
        raced.then(
          () => {
            this.push(Buffer.from('late writer'));
            this.push(null);
          },
          (err: Error) => this.destroy(err),
        );
      },
    });
    const err = await expectCloudmuxError(
      conn.storage.upload('/race', 'same.txt', body, { ifExists: 'fail' }),
      'naming_conflict',
    );
    expect(err.conflictingRawId).toBe('/race/same.txt');
    expect(await text(conn.storage, '/race/same.txt')).toBe('other writer');
    expect(await readdir(join(dav.dataDir, 'race'))).toEqual(['same.txt']);
  });

  it('file/folder clashes of one name are naming_conflicts with the existing raw id', async () => {
    await conn.storage.createFolder('/', 'clash');
    const file = await conn.storage.upload('/clash', 'thing', bufferStream('f'), { ifExists: 'fail' });
    const folder = await conn.storage.createFolder('/clash', 'dir');
    expect(
      (await expectCloudmuxError(conn.storage.createFolder('/clash', 'thing'), 'naming_conflict'))
        .conflictingRawId,
    ).toBe(file.rawId);
    const replace = conn.storage.upload('/clash', 'dir', bufferStream('x'), { ifExists: 'replace' });
    expect((await expectCloudmuxError(replace, 'naming_conflict')).conflictingRawId).toBe(folder.rawId);
    const onto = conn.storage.move(file.rawId, 'file', { name: 'dir' });
    expect((await expectCloudmuxError(onto, 'naming_conflict')).conflictingRawId).toBe(folder.rawId);
    await expectCloudmuxError(conn.storage.get(file.rawId, 'folder'), 'not_found');
    // Below a file (Apache answers 400 there, others 404/409): nothing exists, nothing is created.
    expect(await conn.storage.lookup(file.rawId, 'child')).toBeNull();
    await expectCloudmuxError(conn.storage.get(`${file.rawId}/child`, 'file'), 'not_found');
    await expectCloudmuxError(conn.storage.createFolder(file.rawId, 'child'), 'not_found');
    await expectCloudmuxError(
      conn.storage.upload(file.rawId, 'child', bufferStream('c'), { ifExists: 'fail' }),
      'not_found',
    );
    await expectCloudmuxError(conn.storage.list(file.rawId, { pageSize: 5 }), 'not_found');
    await expectCloudmuxError(conn.storage.download(folder.rawId), 'not_found');
    await expectCloudmuxError(
      conn.storage.move(folder.rawId, 'folder', { parentRawId: folder.rawId }),
      'invalid_parameters',
    );
    await expectCloudmuxError(
      conn.storage.copy!(folder.rawId, 'folder', { parentRawId: folder.rawId, name: 'x' }),
      'invalid_parameters',
    );
    await expectCloudmuxError(
      conn.storage.move(file.rawId, 'file', { parentRawId: '/clash/missing' }),
      'not_found',
    );
    await expectCloudmuxError(
      conn.storage.delete('/', 'folder', { recursive: true, permanent: true }),
      'invalid_parameters',
    );
  });

  it('search walks Depth-1 listings within its folder bound, from the given parents', async () => {
    await conn.storage.createFolder('/', 's1');
    await conn.storage.createFolder('/s1', 's2');
    await conn.storage.createFolder('/s1/s2', 's3');
    await conn.storage.upload('/s1/s2/s3', 'Deep-Needle.txt', bufferStream('n'), { ifExists: 'fail' });
    await conn.storage.upload('/s1', 'needle-shallow.txt', bufferStream('n'), { ifExists: 'fail' });
    const all = await conn.storage.search('NEEDLE', { pageSize: 10, parents: ['/s1'] });
    expect(all.items.map((i) => i.rawId)).toEqual(['/s1/needle-shallow.txt', '/s1/s2/s3/Deep-Needle.txt']);
    const bounded = await open(dav, {}, 2);
    const near = await bounded.storage.search('needle', { pageSize: 10, parents: ['/s1'] });
    expect(near.items.map((i) => i.rawId)).toEqual(['/s1/needle-shallow.txt']);
    const first = await conn.storage.search('needle', { pageSize: 1, parents: ['/s1'] });
    expect(first.items).toHaveLength(1);
    const second = await conn.storage.search('needle', {
      pageSize: 1,
      parents: ['/s1'],
      cursor: first.cursor!,
    });
    expect([...first.items, ...second.items].map((i) => i.name)).toEqual([
      'needle-shallow.txt',
      'Deep-Needle.txt',
    ]);
    expect(second.cursor).toBeNull();
  });

  it('reuses keep-alive connections across requests (the HTTP pool)', async () => {
    const fresh = await open(dav);
    for (let i = 0; i < 20; i++) await fresh.storage.get('/', 'folder');
    expect(fresh.requests.length).toBe(20);
    expect(fresh.events.length).toBeGreaterThanOrEqual(1);
    expect(fresh.events.length).toBeLessThanOrEqual(2);
    expect(fresh.events.every((e) => e.address === '127.0.0.1' && e.port === dav.port && e.allowed)).toBe(
      true,
    );
  });

  it('reads a Range from a large file without fetching the rest', async () => {
    const size = 8 * 1024 * 1024;
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) data.writeUInt32BE(i, i);
    const path = join(dav.dataDir, 'ranged.bin');
    await writeFile(path, data);
    const { uid, gid } = await owner();
    await chown(path, uid, gid);
    const part = await conn.storage.download('/ranged.bin', {
      range: { start: 4096 * 1000, end: 4096 * 1000 + 7 },
    });
    expect(part.range).toEqual({ start: 4096000, end: 4096007, total: size });
    expect((await readAll(part.stream)).equals(data.subarray(4096000, 4096008))).toBe(true);
  });
});

realServer(`webdav: server killed mid-transfer${suffix}`, () => {
  let dav: ApacheDav;
  beforeAll(async () => {
    dav = await startApacheDav();
  });
  afterAll(async () => {
    await dav?.teardown();
  });

  it('a kill mid-upload: service_not_available/bad_gateway, nothing under the final name', async () => {
    const conn = await open(dav);
    const total = 256 * 1024 * 1024;
    let pulled = 0;
    let killed: Promise<void> | undefined;
    const body = new Readable({
      read() {
        if (pulled >= total) return void this.push(null);
        pulled += 64 * 1024;
        if (pulled >= 4 * 1024 * 1024) killed ??= dav.kill();
        this.push(Buffer.alloc(64 * 1024, 7));
      },
    });
    await expectCloudmuxError(
      conn.storage.upload('/', 'partial.bin', body, { size: total, ifExists: 'fail' }),
      'service_not_available',
      'bad_gateway',
    );
    expect(killed).toBeDefined();
    await killed;
    expect(pulled).toBeLessThan(total);
    await dav.restart();
    expect(await conn.storage.lookup('/', 'partial.bin')).toBeNull();
    expect(existsSync(join(dav.dataDir, 'partial.bin'))).toBe(false);
    const names = (await conn.storage.list('/', { pageSize: 100 })).items.map((i) => i.name);
    expect(names).not.toContain('partial.bin');
    expect(names.filter((n) => n.startsWith(UPLOAD_PREFIX))).toEqual([]);
    // The account works again after the restart (dead keep-alive sockets are not fatal).
    const again = await conn.storage.upload('/', 'partial.bin', bufferStream('whole'), {
      size: 5,
      ifExists: 'fail',
    });
    expect(await text(conn.storage, again.rawId)).toBe('whole');
  });

  it('a kill mid-download errors the stream with service_not_available/bad_gateway', async () => {
    const conn = await open(dav);
    const path = join(dav.dataDir, 'big-download.bin');
    await writeFile(path, Buffer.alloc(96 * 1024 * 1024, 3));
    const { uid, gid } = await owner();
    await chown(path, uid, gid);
    const result = await conn.storage.download('/big-download.bin');
    expect(result.size).toBe(96 * 1024 * 1024);
    let received = 0;
    let killed: Promise<void> | undefined;
    const reading = (async () => {
      for await (const chunk of result.stream) {
        received += (chunk as Buffer).length;
        if (!killed) {
          killed = dav.kill();
          await killed;
        }
      }
    })();
    await expectCloudmuxError(reading, 'service_not_available', 'bad_gateway');
    expect(received).toBeLessThan(96 * 1024 * 1024);
    await dav.restart();
  });
});

realServer(`webdav over HTTPS: certificate trust${suffix}`, () => {
  let dav: ApacheDav;
  let otherCa: string;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    dav = await startApacheDav({ tls: true });
    tmp = await makeTempDir('cloudmux-webdav-ca-');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      join(tmp.path, 'k.pem'),
      '-out',
      join(tmp.path, 'c.pem'),
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    otherCa = await readFile(join(tmp.path, 'c.pem'), 'utf8');
  });
  afterAll(async () => {
    await dav?.teardown();
    await tmp?.remove();
  });

  it('refuses the self-signed certificate by default and with the wrong CA (bad_gateway)', async () => {
    const base = dav.credentials();
    delete base.ca;
    const ctx = createConnectorContext({
      definition: webdav,
      accountId: 'tls',
      credentials: webdavCredentials.parse(base),
    });
    const instance = await instantiateConnector(webdav, ctx);
    await expectCloudmuxError(instance.validate!(), 'bad_gateway');
    const wrong = await open(dav, { ca: otherCa });
    await expectCloudmuxError(wrong.storage.validate(), 'bad_gateway');
    await wrong.dispose();
  });

  it('works with the CA option, and with the explicit insecure flag', async () => {
    const trusted = await open(dav);
    await trusted.storage.validate();
    const file = await trusted.storage.upload('/', 'over-tls.txt', bufferStream('secure'), {
      ifExists: 'fail',
    });
    expect(await text(trusted.storage, file.rawId)).toBe('secure');
    expect(trusted.events.length).toBeGreaterThan(0);
    expect(trusted.events.every((e) => e.tls && e.address === '127.0.0.1' && e.port === dav.port)).toBe(true);
    await trusted.dispose();
    const loose = dav.credentials({ insecure: true });
    delete loose.ca;
    const insecure = await open(dav, {});
    const ctx = createConnectorContext({
      definition: webdav,
      accountId: 'tls',
      credentials: webdavCredentials.parse(loose),
    });
    const instance = await instantiateConnector(webdav, ctx);
    expect(await text(instance.storage as WebDavStorage, '/over-tls.txt')).toBe('secure');
    await instance.dispose!();
    await insecure.dispose();
  });

  it('dispose closes the account’s own TLS connections, once, and is idempotent', async () => {
    const ctx = createConnectorContext({
      definition: webdav,
      accountId: 'tls',
      credentials: webdavCredentials.parse(dav.credentials()),
    });
    const agent = ctx.net.httpsAgent;
    const pooled = () => [...Object.values(agent.freeSockets).flat(), ...Object.values(agent.sockets).flat()];
    const instance = await instantiateConnector(webdav, ctx);
    await instance.storage.get('/', 'folder');
    expect(pooled().length).toBeGreaterThan(0);
    const sockets = pooled();
    await instance.dispose!();
    await instance.dispose!();
    expect(sockets.every((socket) => socket?.destroyed)).toBe(true);
  });
});
