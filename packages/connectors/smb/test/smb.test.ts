import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  CloudmuxError,
  type ConnectorContext,
  createConnectorContext,
  instantiateConnector,
} from '@cloudmux/core';
import {
  bufferStream,
  expectCloudmuxError,
  randomBytesSha256,
  randomStream,
  readAll,
  run,
  sha256OfStream,
} from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSmbInstance, type Scheduler, type SmbCredentials, STAGING_DIR, smb } from '../src/index.js';
import { Dialect } from '../src/smb2/constants.js';
import { type SambaServer, sambaMissing, startSamba } from './server.js';

const missing = await sambaMissing();
if (missing && process.env.CI) throw new Error(`SMB tests cannot run: ${missing}`);

/** A scheduler whose timers fire only when the test says so. */
function manualScheduler(): Scheduler & { fire(): void; pending(): number } {
  const timers = new Set<() => void>();
  return {
    schedule(fn) {
      timers.add(fn);
      return { cancel: () => timers.delete(fn) };
    },
    fire() {
      const due = [...timers];
      timers.clear();
      for (const fn of due) fn();
    },
    pending: () => timers.size,
  };
}

describe.skipIf(missing !== null)(
  `smb connector against Samba${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let samba: SambaServer;

    const context = (overrides: Record<string, unknown> = {}) => {
      const credentials = smb.credentials.parse(samba.credentials(overrides)) as SmbCredentials;
      const base = createConnectorContext<SmbCredentials>({ definition: smb, accountId: '1', credentials });
      const sockets: Socket[] = [];
      const ctx: ConnectorContext<SmbCredentials> = {
        ...base,
        net: {
          ...base.net,
          connect: async (options) => {
            const socket = await base.net.connect(options);
            sockets.push(socket);
            return socket;
          },
        },
      };
      return { ctx, sockets };
    };

    const instance = (
      overrides: Record<string, unknown> = {},
      options: Parameters<typeof createSmbInstance>[1] = {},
    ) => {
      const { ctx, sockets } = context(overrides);
      return { ...createSmbInstance(ctx, options), sockets };
    };

    beforeAll(async () => {
      samba = await startSamba();
    });
    afterAll(async () => {
      await samba?.stop();
      // Nothing of this server may outlive the tests.
      const ps = await run('ps', ['-eo', 'stat=,args=']);
      const conf = join(samba.dir.path, 'smb.conf');
      const alive = ps.stdout
        .split('\n')
        .filter((line) => line.includes(conf) && !line.trim().startsWith('Z'));
      expect(alive).toEqual([]);
    });

    describe('credentials and permissions', () => {
      it('a wrong password is service_unauthorized', async () => {
        const { validate, storage, dispose } = instance({ password: 'wrong' });
        await expectCloudmuxError(validate(), 'service_unauthorized');
        await expectCloudmuxError(storage.list('/', { pageSize: 10 }), 'service_unauthorized');
        await dispose();
      });

      it('an unknown user is service_unauthorized, not a silent guest login', async () => {
        const { validate, dispose } = instance({ username: 'nosuchuser' });
        await expectCloudmuxError(validate(), 'service_unauthorized');
        await dispose();
      });

      it('a share that does not exist is not_found', async () => {
        const { validate, dispose } = instance({ share: 'nosuchshare' });
        await expectCloudmuxError(validate(), 'not_found');
        await dispose();
      });

      it('the domain field is accepted (NTLMv2 binds it into the response)', async () => {
        const { validate, dispose } = instance({ domain: 'WORKGROUP' });
        await validate();
        await dispose();
      });

      it('writes to a read-only share are service_forbidden, reads work', async () => {
        const { storage, dispose } = instance({ share: samba.readonlyShare });
        const listed = await storage.list('/', { pageSize: 10 });
        expect(listed.items.map((i) => i.name)).toEqual(['readme.txt']);
        expect((await readAll((await storage.download('/readme.txt')).stream)).toString()).toBe(
          'read only\n',
        );
        await expectCloudmuxError(
          storage.upload('/', 'new.txt', bufferStream('x'), { ifExists: 'fail', size: 1 }),
          'service_forbidden',
        );
        await expectCloudmuxError(storage.createFolder('/', 'dir'), 'service_forbidden');
        await expectCloudmuxError(
          storage.delete('/readme.txt', 'file', { recursive: false, permanent: true }),
          'service_forbidden',
        );
        await dispose();
      });

      it('writes into a read-only folder of a writable share are service_forbidden', async () => {
        const locked = join(samba.sharePath, 'locked');
        await mkdir(locked);
        await writeFile(join(locked, 'keep.txt'), 'keep');
        // Owned by root and 0555: the share's file owner (www-data) may read but not change it.
        await chmod(locked, 0o555);
        const { storage, dispose } = instance();
        expect((await storage.list('/locked', { pageSize: 10 })).items.map((i) => i.name)).toEqual([
          'keep.txt',
        ]);
        await expectCloudmuxError(storage.createFolder('/locked', 'sub'), 'service_forbidden');
        await expectCloudmuxError(
          storage.delete('/locked/keep.txt', 'file', { recursive: false, permanent: true }),
          'service_forbidden',
        );
        await expectCloudmuxError(
          storage.move('/locked/keep.txt', 'file', { parentRawId: '/' }),
          'service_forbidden',
        );
        expect(await readdir(locked)).toEqual(['keep.txt']);
        await dispose();
      });

      it('a base path confines the account to a folder of the share', async () => {
        await mkdir(join(samba.sharePath, 'tenant', 'inner'), { recursive: true });
        await chmod(join(samba.sharePath, 'tenant'), 0o777);
        await writeFile(join(samba.sharePath, 'outside.txt'), 'outside');
        const { storage, dispose } = instance({ base_path: '/tenant' });
        expect((await storage.list('/', { pageSize: 10 })).items.map((i) => i.name)).toEqual(['inner']);
        await expectCloudmuxError(storage.get('/../outside.txt', 'file'), 'not_found');
        const file = await storage.upload('/', 'mine.txt', bufferStream('mine'), {
          ifExists: 'fail',
          size: 4,
        });
        expect(file.rawId).toBe('/mine.txt');
        expect((await stat(join(samba.sharePath, 'tenant', 'mine.txt'))).size).toBe(4);
        await dispose();
      });
    });

    describe('names', () => {
      it.each([
        '..',
        '.',
        'a/b',
        'a\\b',
        'a\u0000b',
        'a:stream',
        'wild*',
        'what?',
        'a"b',
        'a<b',
        'a>b',
        'a|b',
      ])('refuses %j before touching the server', async (bad) => {
        const { storage, sockets, dispose } = instance();
        await expectCloudmuxError(storage.createFolder('/', bad), 'invalid_parameters');
        await expectCloudmuxError(
          storage.upload('/', bad, bufferStream('x'), { ifExists: 'fail' }),
          'invalid_parameters',
        );
        await expectCloudmuxError(storage.lookup('/', bad), 'invalid_parameters');
        expect(sockets).toHaveLength(0);
        await dispose();
      });

      it.each(['/..', '/a/../..', '/a\\..\\b', '/x:y', 'relative', '', `/${STAGING_DIR}`])(
        'raw id %j is not_found',
        async (rawId) => {
          const { storage, dispose } = instance();
          await expectCloudmuxError(storage.get(rawId, 'file'), 'not_found');
          await expectCloudmuxError(storage.download(rawId), 'not_found');
          await dispose();
        },
      );

      it('spaces, quotes, semicolons and unicode round-trip byte for byte', async () => {
        const { storage, dispose } = instance();
        const name = "it's a; test — ünïcødé 😀 .txt";
        const file = await storage.upload('/', name, bufferStream('odd'), { ifExists: 'fail', size: 3 });
        expect(file.name).toBe(name);
        expect(await readdir(samba.sharePath)).toContain(name);
        expect((await readAll((await storage.download(file.rawId)).stream)).toString()).toBe('odd');
        expect((await storage.list('/', { pageSize: 100 })).items.map((i) => i.name)).toContain(name);
        await dispose();
      });

      it('lookup is case-insensitive like the server and reports the stored spelling', async () => {
        const { storage, dispose } = instance();
        await storage.upload('/', 'MixedCase.txt', bufferStream('m'), { ifExists: 'fail', size: 1 });
        const found = await storage.lookup('/', 'mixedcase.TXT');
        expect(found?.name).toBe('MixedCase.txt');
        expect(found?.rawId).toBe('/MixedCase.txt');
        await dispose();
      });
    });

    describe('pooling', () => {
      it('reuses one session for sequential operations and closes it on dispose (idempotent)', async () => {
        const { storage, pool, sockets, dispose } = instance();
        const dir = await storage.createFolder('/', 'pool-seq');
        for (let i = 0; i < 5; i++)
          await storage.upload(dir.rawId, `f${i}.txt`, bufferStream(`${i}`), { ifExists: 'fail', size: 1 });
        expect((await storage.list(dir.rawId, { pageSize: 10 })).items).toHaveLength(5);
        expect(sockets).toHaveLength(1);
        expect(pool.opened).toBe(1);
        await dispose();
        await dispose();
        expect(sockets[0]!.destroyed).toBe(true);
        expect(pool.size).toBe(0);
      });

      it('opens at most maxSessions sessions under concurrency and multiplexes beyond that', async () => {
        const { storage, pool, sockets, dispose } = instance({}, { maxSessions: 2 });
        const dir = await storage.createFolder('/', 'pool-par');
        await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            storage.upload(dir.rawId, `p${i}.bin`, randomStream(256 * 1024, `p${i}`), { ifExists: 'fail' }),
          ),
        );
        expect((await storage.list(dir.rawId, { pageSize: 20 })).items).toHaveLength(8);
        expect(sockets.length).toBeLessThanOrEqual(2);
        expect(pool.opened).toBe(sockets.length);
        await dispose();
        expect(sockets.every((s) => s.destroyed)).toBe(true);
      });

      it('closes idle sessions when the idle timer fires and reconnects on the next call', async () => {
        const scheduler = manualScheduler();
        const { storage, pool, sockets, dispose } = instance({}, { scheduler, idleMs: 1_000 });
        await storage.get('/', 'folder');
        expect(pool.size).toBe(1);
        expect(scheduler.pending()).toBe(1);
        scheduler.fire();
        await new Promise((r) => sockets[0]!.once('close', r));
        expect(pool.size).toBe(0);
        await storage.get('/', 'folder');
        expect(sockets).toHaveLength(2);
        await dispose();
      });

      it('an open download holds its session: the idle timer starts only when the stream ends', async () => {
        const scheduler = manualScheduler();
        const { storage, dispose } = instance({}, { scheduler });
        const file = await storage.upload('/', 'held.bin', randomStream(3 * 1024 * 1024, 'held'), {
          ifExists: 'replace',
        });
        scheduler.fire();
        const download = await storage.download(file.rawId);
        expect(scheduler.pending()).toBe(0);
        const { bytes } = await sha256OfStream(download.stream);
        expect(bytes).toBe(3 * 1024 * 1024);
        expect(scheduler.pending()).toBe(1);
        await dispose();
      });

      it('every connection goes through ctx.net: a refusing guard means no socket at all', async () => {
        const { ctx } = context();
        let asked = 0;
        const guarded: ConnectorContext<SmbCredentials> = {
          ...ctx,
          net: {
            ...ctx.net,
            connect: async () => {
              asked += 1;
              throw new CloudmuxError('forbidden', 'This address is not allowed.');
            },
          },
        };
        const { validate, dispose } = createSmbInstance(guarded);
        await expectCloudmuxError(validate(), 'forbidden');
        expect(asked).toBe(1);
        await dispose();
      });
    });

    describe('protocol', () => {
      it.each([
        ['SMB 2.0.2 (HMAC-SHA256 signing)', Dialect.SMB2_0_2],
        ['SMB 2.1 (multi-credit)', Dialect.SMB2_1],
        ['SMB 3.0.2 (AES-CMAC signing)', Dialect.SMB3_0_2],
        ['SMB 3.1.1 (preauth integrity)', Dialect.SMB3_1_1],
      ])('%s: upload, range download, list', async (_label, dialect) => {
        const { storage, dispose } = instance({}, { dialects: [dialect] });
        const size = 2 * 1024 * 1024 + 17;
        const name = `dialect-${dialect.toString(16)}.bin`;
        const file = await storage.upload('/', name, randomStream(size, name), { ifExists: 'replace', size });
        expect(file.size).toBe(size);
        const whole = await sha256OfStream((await storage.download(file.rawId)).stream);
        expect(whole).toEqual({ sha256: randomBytesSha256(size, name), bytes: size });
        const part = await storage.download(file.rawId, { range: { start: 70_000, end: 1_200_000 } });
        expect((await readAll(part.stream)).length).toBe(1_130_001);
        expect((await storage.list('/', { pageSize: 1000 })).items.map((i) => i.name)).toContain(name);
        await dispose();
      });

      it.each([
        [Dialect.SMB2_1, /SMB2_10\s+-\s+partial\(HMAC-SHA256\)/],
        [Dialect.SMB3_0_2, /SMB3_02\s+-\s+partial\(AES-128-CMAC\)/],
        [Dialect.SMB3_1_1, /SMB3_11\s+-\s+partial\(AES-128-GMAC\)/],
      ])('dialect 0x%s: the session is signed (smbstatus shows the algorithm)', async (dialect, expected) => {
        const { storage, dispose } = instance({}, { dialects: [dialect] });
        await storage.get('/', 'folder');
        const status = await run('smbstatus', ['-s', join(samba.dir.path, 'smb.conf'), '-b']);
        expect(status.stdout).toMatch(expected);
        await dispose();
      });

      it.each([
        ['SMB 3.0.2 seals with AES-128-CCM', Dialect.SMB3_0_2, /SMB3_02\s+partial\(AES-128-CCM\)/],
        ['SMB 3.1.1 seals with AES-128-GCM', Dialect.SMB3_1_1, /SMB3_11\s+partial\(AES-128-GCM\)/],
      ])('a share that requires encryption: %s', async (_label, dialect, cipher) => {
        const { storage, dispose } = instance({ share: samba.secretShare }, { dialects: [dialect] });
        const size = 3 * 1024 * 1024 + 5;
        const name = `sealed-${dialect.toString(16)}.bin`;
        const file = await storage.upload('/', name, randomStream(size, name), { ifExists: 'replace', size });
        const back = await sha256OfStream((await storage.download(file.rawId)).stream);
        expect(back).toEqual({ sha256: randomBytesSha256(size, name), bytes: size });
        expect((await storage.list('/', { pageSize: 1000 })).items.map((i) => i.name)).toContain(name);
        const status = await run('smbstatus', ['-s', join(samba.dir.path, 'smb.conf'), '-b']);
        expect(status.stdout).toMatch(cipher);
        await dispose();
      });

      it('a share that requires encryption refuses an SMB 2.1 session: service_forbidden', async () => {
        const { validate, dispose } = instance({ share: samba.secretShare }, { dialects: [Dialect.SMB2_1] });
        await expectCloudmuxError(validate(), 'service_forbidden');
        await dispose();
      });

      it('copies a file server-side: its bytes never cross the client connection', async () => {
        const { storage, sockets, dispose } = instance();
        const size = 8 * 1024 * 1024;
        const file = await storage.upload('/', 'copy-src.bin', randomStream(size, 'copy'), {
          ifExists: 'replace',
          size,
        });
        const before = sockets[0]!.bytesWritten + sockets[0]!.bytesRead;
        const copied = await storage.copy(file.rawId, 'file', { parentRawId: '/', name: 'copy-dst.bin' });
        const moved = sockets[0]!.bytesWritten + sockets[0]!.bytesRead - before;
        expect(copied.size).toBe(size);
        expect(moved).toBeLessThan(64 * 1024);
        expect((await sha256OfStream((await storage.download(copied.rawId)).stream)).sha256).toBe(
          randomBytesSha256(size, 'copy'),
        );
        await dispose();
      });

      it("ifExists 'fail' answers naming_conflict before reading a byte of the body", async () => {
        const { storage, dispose } = instance();
        const existing = await storage.upload('/', 'taken.txt', bufferStream('old'), {
          ifExists: 'replace',
          size: 3,
        });
        let reads = 0;
        const body = new Readable({
          read() {
            reads += 1;
            this.push(Buffer.from('new'));
            this.push(null);
          },
        });
        const err = await expectCloudmuxError(
          storage.upload('/', 'taken.txt', body, { ifExists: 'fail' }),
          'naming_conflict',
        );
        expect(err.conflictingRawId).toBe(existing.rawId);
        expect(reads).toBe(0);
        await dispose();
      });

      it('a body that fails midway leaves no file and no staging debris', async () => {
        const { storage, dispose } = instance();
        let sent = 0;
        const failing = new Readable({
          read() {
            sent += 1;
            if (sent < 12) this.push(Buffer.alloc(256 * 1024, 1));
            else this.destroy(new Error('client went away'));
          },
        });
        await expect(storage.upload('/', 'broken.bin', failing, { ifExists: 'fail' })).rejects.toThrow();
        expect(await readdir(samba.sharePath)).not.toContain('broken.bin');
        expect(await readdir(join(samba.sharePath, STAGING_DIR))).toEqual([]);
        await dispose();
      });

      it('a lost connection mid-upload: the server drops the delete-pending staged file', async () => {
        const { storage, sockets, dispose } = instance();
        let pushed = 0;
        const body = new Readable({
          read() {
            pushed += 1;
            if (pushed === 8) sockets[0]!.destroy();
            this.push(Buffer.alloc(256 * 1024, 2));
            if (pushed > 64) this.push(null);
          },
        });
        await expectCloudmuxError(
          storage.upload('/', 'dropped.bin', body, { ifExists: 'fail' }),
          'service_not_available',
          'bad_gateway',
        );
        expect(await readdir(samba.sharePath)).not.toContain('dropped.bin');
        // smbd closes the orphaned handle when it notices the disconnect; wait for it (bounded).
        let staged: string[] = ['?'];
        for (let i = 0; i < 100 && staged.length > 0; i++) {
          staged = await readdir(join(samba.sharePath, STAGING_DIR));
          if (staged.length > 0) await new Promise((r) => setTimeout(r, 50));
        }
        expect(staged).toEqual([]);
        await dispose();
      });
    });

    // Last: these kill and restart smbd.
    describe('server killed mid-transfer', () => {
      it('upload: service_not_available (or bad_gateway), and nothing under the final name', async () => {
        const { storage, dispose } = instance();
        let pushed = 0;
        let killing: Promise<void> | null = null;
        const body = new Readable({
          read() {
            pushed += 1;
            if (pushed === 10) killing = samba.kill();
            if (pushed > 400) this.push(null);
            else this.push(Buffer.alloc(256 * 1024, 3));
          },
        });
        await expectCloudmuxError(
          storage.upload('/', 'killed.bin', body, { ifExists: 'fail', size: 400 * 256 * 1024 }),
          'service_not_available',
          'bad_gateway',
        );
        await killing;
        expect(await readdir(samba.sharePath)).not.toContain('killed.bin');
        await expectCloudmuxError(storage.get('/', 'folder'), 'service_not_available');
        await samba.restart();
        expect(await storage.lookup('/', 'killed.bin')).toBeNull();
        expect((await storage.list('/', { pageSize: 1000 })).items.map((i) => i.name)).not.toContain(
          'killed.bin',
        );
        await dispose();
      });

      it('download: the stream fails with service_not_available (or bad_gateway)', async () => {
        const { storage, dispose } = instance();
        const size = 24 * 1024 * 1024;
        const file = await storage.upload('/', 'to-kill.bin', randomStream(size, 'kill'), {
          ifExists: 'replace',
          size,
        });
        const { stream } = await storage.download(file.rawId);
        let received = 0;
        let failure: unknown = null;
        try {
          for await (const chunk of stream) {
            received += (chunk as Buffer).length;
            if (received >= 2 * 1024 * 1024 && received - (chunk as Buffer).length < 2 * 1024 * 1024)
              await samba.kill();
          }
        } catch (err) {
          failure = err;
        }
        expect(failure).toBeInstanceOf(CloudmuxError);
        expect(['service_not_available', 'bad_gateway']).toContain((failure as CloudmuxError).code);
        expect(received).toBeLessThan(size);
        await samba.restart();
        await dispose();
      });

      it('the definition instantiates and validates through the core contract', async () => {
        const ctx = createConnectorContext({
          definition: smb,
          accountId: '2',
          credentials: smb.credentials.parse(samba.credentials()),
        });
        const inst = await instantiateConnector(smb, ctx);
        await inst.validate?.();
        expect((await inst.storage.get('/', 'folder')).type).toBe('folder');
        await inst.dispose?.();
        await inst.dispose?.();
      });
    });
  },
);
