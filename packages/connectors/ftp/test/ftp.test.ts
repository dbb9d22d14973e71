import { chown, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import {
  type ConnectEvent,
  createConnectorContext,
  instantiateConnector,
  type NetworkGuard,
} from '@cloudmux/core';
import {
  bufferStream,
  expectCloudmuxError,
  randomBytesSha256,
  randomBytesSlice,
  randomStream,
  readAll,
  sha256OfStream,
} from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFtpStorage,
  FtpSession,
  ftp,
  ftpCredentials,
  parseDomain,
  parseEpsv,
  parseList,
  parseMlsd,
  parseMlstReply,
  parsePasv,
  resolveCredentials,
  UPLOAD_PREFIX,
} from '../src/index.js';
import { startFakeFtp } from './fake-server.js';
import { type PureFtpd, pureFtpdMissing, startPureFtpd } from './server.js';

const missing = await pureFtpdMissing();
if (missing && process.env.CI) throw new Error(`pure-ftpd is required under CI: ${missing}`);
const realServer = missing ? describe.skip : describe;
const suffix = missing ? ` (skipped: ${missing})` : '';

type Call = { host: string | undefined; port: number | undefined; tls: boolean; upgrade: boolean };

/** The context's guard with every connect recorded (the real one, or core's placeholder). */
function spyGuard(): { net: NetworkGuard; calls: Call[]; events: ConnectEvent[] } {
  const events: ConnectEvent[] = [];
  const base = createConnectorContext({
    definition: ftp,
    accountId: 'spy',
    credentials: {},
    onConnect: (event) => events.push(event),
  }).net;
  const calls: Call[] = [];
  const overrides: Partial<NetworkGuard> = {
    connect: (options) => {
      calls.push({ host: options.host, port: options.port, tls: false, upgrade: false });
      return base.connect(options);
    },
    connectTls: (options) => {
      calls.push({
        host: options.host,
        port: options.port,
        tls: true,
        upgrade: options.socket !== undefined,
      });
      return base.connectTls(options);
    },
  };
  // The guard may be frozen: delegate through a proxy over a blank target instead of copying it.
  const net = new Proxy({} as NetworkGuard, {
    get: (_target, prop) => {
      if (prop in overrides) return overrides[prop as keyof NetworkGuard];
      const value = Reflect.get(base, prop, base) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(base) : value;
    },
  });
  return { net, calls, events };
}

function settingsFor(server: PureFtpd, extra: Record<string, unknown> = {}) {
  return resolveCredentials(ftpCredentials.parse(server.credentials(extra)));
}

async function instance(credentials: Record<string, unknown>) {
  const parsed = ftpCredentials.parse(credentials);
  const ctx = createConnectorContext({ definition: ftp, accountId: '1', credentials: parsed });
  return instantiateConnector(ftp, ctx);
}

describe('credentials', () => {
  it('accepts host fields or a Kloudless-style domain', () => {
    expect(parseDomain('ftps://ftp.example.com:2121')).toEqual({
      host: 'ftp.example.com',
      port: 2121,
      secure: true,
    });
    const fromDomain = resolveCredentials(
      ftpCredentials.parse({ domain: 'ftp://10.0.0.5', username: 'u', password: 'p' }),
    );
    expect(fromDomain).toMatchObject({
      host: '10.0.0.5',
      port: 21,
      tls: 'none',
      basePath: '/',
      rejectUnauthorized: true,
    });
    const secure = resolveCredentials(
      ftpCredentials.parse({ domain: 'ftps://[::1]:990/srv/files/', username: 'u', password: 'p' }),
    );
    expect(secure).toMatchObject({ host: '::1', port: 990, tls: 'explicit', basePath: '/srv/files' });
    const explicit = resolveCredentials(
      ftpCredentials.parse({
        host: 'a.example',
        domain: 'ftps://b.example:22',
        port: '2121',
        username: 'u',
        password: 'p',
        tls: 'none',
      }),
    );
    expect(explicit).toMatchObject({ host: 'a.example', port: 2121, tls: 'none' });
  });

  it('refuses incomplete or unsafe fields', () => {
    for (const bad of [
      {},
      { host: 'h', password: 'p' },
      { username: 'u', password: 'p' },
      { host: 'h', username: 'u\r\nDELE x', password: 'p' },
      { host: 'h', username: 'u', password: 'p\nQUIT' },
      { host: 'h', username: 'u', password: 'p', base_path: '/a/../..' },
      { host: 'h', username: 'u', password: 'p', base_path: 'relative' },
      { domain: 'http://h', username: 'u', password: 'p' },
      { domain: 'ftp://user:pw@h', username: 'u', password: 'p' },
      { host: 'h', username: 'u', password: 'p', tls: 'implicit' },
      { host: 'h', username: 'u', password: 'p', port: 70000 },
    ]) {
      expect(ftpCredentials.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
  });
});

describe('protocol parsers', () => {
  it('reads MLSD facts, names with spaces and semicolons, UTC times; skips . and ..', () => {
    const entries = parseMlsd(
      [
        'type=cdir;modify=20261204040353; .',
        'type=pdir;modify=20261204040353; ..',
        'type=file;size=3;modify=20260102030405.123;UNIX.mode=0644; a; b c.txt',
        'type=dir;sizd=4096;modify=20261204040353; sub dir',
        'type=OS.unix=slink:/etc;modify=20261204040353; link',
        'type=unknown;modify=20261204040353; odd',
        '',
      ].join('\r\n'),
    );
    expect(entries.map((e) => [e.name, e.type, e.size])).toEqual([
      ['a; b c.txt', 'file', 3],
      ['sub dir', 'folder', null],
      ['link', 'link', null],
    ]);
    expect(entries[0]!.modified?.toISOString()).toBe('2026-01-02T03:04:05.123Z');
    const root = parseMlstReply(['Begin', ' type=pdir;sizd=4096;modify=20261204040353; /', 'End.']);
    expect(root?.type).toBe('folder');
  });

  it('falls back to Unix and DOS LIST lines', () => {
    const now = new Date(Date.UTC(2026, 11, 4, 12, 0));
    const entries = parseList(
      [
        'total 12',
        '-rw-r--r--    1 65534      nogroup            11 Dec  4 04:03 a file.txt',
        'drwxr-xr-x    2 0          0                4096 Jan 15  2024 old',
        '-rw-r--r--    1 ftp        ftp                 5 Dec 30 23:59 last-year.txt',
        'lrwxrwxrwx    1 0          0                   4 Dec  4 04:03 link -> /etc',
        '12-04-26  04:03PM       <DIR>          Dos Dir',
        '12-04-26  09:15AM                 1234 dos.bin',
      ].join('\r\n'),
      now,
    );
    expect(entries.map((e) => [e.name, e.type, e.size, e.modified?.toISOString()])).toEqual([
      ['a file.txt', 'file', 11, '2026-12-04T04:03:00.000Z'],
      ['old', 'folder', null, '2024-01-15T00:00:00.000Z'],
      ['last-year.txt', 'file', 5, '2025-12-30T23:59:00.000Z'],
      ['link', 'link', null, '2026-12-04T04:03:00.000Z'],
      ['Dos Dir', 'folder', null, '2026-12-04T16:03:00.000Z'],
      ['dos.bin', 'file', 1234, '2026-12-04T09:15:00.000Z'],
    ]);
  });

  it('takes only the port from EPSV and PASV replies', async () => {
    expect(parseEpsv('229 Extended Passive mode OK (|||41007|)')).toBe(41007);
    expect(parseEpsv('229 Entering Extended Passive Mode (!!!6446!)')).toBe(6446);
    expect(parsePasv('227 Entering Passive Mode (192,0,2,7,160,40)')).toBe(41000);
    for (const garbage of ['229 (|||0|)', '229 nothing', '227 (1,2,3,4,999,1)']) {
      const parse = garbage.startsWith('229') ? parseEpsv : parsePasv;
      await expectCloudmuxError(
        Promise.resolve().then(() => parse(garbage)),
        'bad_gateway',
      );
    }
  });
});

describe('dropped connections (scripted server)', () => {
  it('retries an idempotent read once on a fresh session', async () => {
    const fake = await startFakeFtp((connection, line) => {
      if (line.startsWith('MLST'))
        return connection === 1
          ? 'drop'
          : '250-Begin\r\n type=file;size=3;modify=20260101000000; /a.txt\r\n250 End';
      return '502 not here';
    });
    const { storage, pool } = createFtpStorage(
      spyGuard().net,
      resolveCredentials(
        ftpCredentials.parse({ host: '127.0.0.1', port: fake.port, username: 'u', password: 'p' }),
      ),
      { timeoutMs: 5_000 },
    );
    try {
      const item = await storage.get('/a.txt', 'file');
      expect(item).toMatchObject({ name: 'a.txt', size: 3, type: 'file' });
      expect(fake.logins).toBe(2);
    } finally {
      await pool.dispose();
      await fake.close();
    }
  });

  it('does not retry a non-idempotent command (MKD) and reports service_not_available', async () => {
    const fake = await startFakeFtp((_connection, line) => {
      if (line === 'MLST /') return '250-Begin\r\n type=dir;modify=20260101000000; /\r\n250 End';
      if (line.startsWith('MLST')) return "550 Can't check for file existence";
      if (line.startsWith('MKD')) return 'drop';
      return '502 not here';
    });
    const { storage, pool } = createFtpStorage(
      spyGuard().net,
      resolveCredentials(
        ftpCredentials.parse({ host: '127.0.0.1', port: fake.port, username: 'u', password: 'p' }),
      ),
      { timeoutMs: 5_000 },
    );
    try {
      await expectCloudmuxError(storage.createFolder('/', 'new'), 'service_not_available', 'bad_gateway');
      expect(fake.commands.filter((c) => c.endsWith('MKD /new'))).toHaveLength(1);
    } finally {
      await pool.dispose();
      await fake.close();
    }
  });

  it('falls back from EPSV to PASV and connects to the control peer, not the announced host', async () => {
    const fake = await startFakeFtp(
      (_connection, line) =>
        line === 'MLST /f.txt'
          ? '250-Begin\r\n type=file;size=5;modify=20260101000000; /f.txt\r\n250 End'
          : '502 no',
      { passive: { announce: '192.0.2.9', files: { '/f.txt': 'hello' } } },
    );
    const { net, calls } = spyGuard();
    const settings = resolveCredentials(
      ftpCredentials.parse({ host: '127.0.0.1', port: fake.port, username: 'u', password: 'p' }),
    );
    const { storage, pool } = createFtpStorage(net, settings, { timeoutMs: 5_000 });
    try {
      const first = await storage.download('/f.txt');
      expect((await readAll(first.stream)).toString()).toBe('hello');
      const second = await storage.download('/f.txt');
      expect((await readAll(second.stream)).toString()).toBe('hello');
      // EPSV is asked once; after its 502 the session goes straight to PASV.
      expect(fake.commands.filter((c) => c.endsWith('EPSV'))).toHaveLength(1);
      expect(fake.commands.filter((c) => c.endsWith('PASV'))).toHaveLength(2);
      expect(calls).toHaveLength(3);
      expect(calls.every((c) => c.host === '127.0.0.1')).toBe(true);
    } finally {
      await pool.dispose();
      await fake.close();
    }
  });

  it('a garbage reply is bad_gateway', async () => {
    const fake = await startFakeFtp((_connection, line) =>
      line.startsWith('MLST') ? 'HTTP/1.1 200 OK' : '502 no',
    );
    const { storage, pool } = createFtpStorage(
      spyGuard().net,
      resolveCredentials(
        ftpCredentials.parse({ host: '127.0.0.1', port: fake.port, username: 'u', password: 'p' }),
      ),
      { timeoutMs: 5_000 },
    );
    try {
      await expectCloudmuxError(storage.get('/x', 'file'), 'bad_gateway');
    } finally {
      await pool.dispose();
      await fake.close();
    }
  });
});

realServer(`pure-ftpd, plain FTP${suffix}`, () => {
  let server: PureFtpd;
  beforeAll(async () => {
    server = await startPureFtpd({ tls: false });
  });
  afterAll(async () => {
    await server?.teardown();
  });

  it('validate() refuses a base path that is not a folder', async () => {
    const wrong = await instance(server.credentials({ base_path: '/no/such/folder' }));
    try {
      await expectCloudmuxError(wrong.validate!(), 'invalid_parameters');
    } finally {
      await wrong.dispose?.();
    }
  });

  it('a wrong password is service_unauthorized', async () => {
    const bad = await instance(server.credentials({ password: 'wrong' }));
    try {
      await expectCloudmuxError(bad.validate!(), 'service_unauthorized');
    } finally {
      await bad.dispose?.();
    }
  });

  it('a server outside the operator allow-list (CLOUDMUX_ALLOWED_NETWORKS) is refused', async () => {
    const parsed = ftpCredentials.parse(server.credentials());
    const ctx = createConnectorContext({
      definition: ftp,
      accountId: '1',
      credentials: parsed,
      networkPolicy: { mode: 'self_hosted', allowedNetworks: ['10.0.0.0/8'] },
    });
    const fenced = await instantiateConnector(ftp, ctx);
    try {
      await expectCloudmuxError(fenced.validate!(), 'forbidden');
    } finally {
      await fenced.dispose?.();
    }
  });

  it('a folder without write permission is service_forbidden', async () => {
    const locked = join(server.dataDir, 'locked');
    await mkdir(locked, { mode: 0o755 }); // owned by root; the FTP user is uid 65534
    await writeFile(join(locked, 'keep.txt'), 'k');
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      await expectCloudmuxError(
        storage.upload('/locked', 'x.txt', bufferStream('x'), { size: 1, ifExists: 'fail' }),
        'service_forbidden',
      );
      await expectCloudmuxError(storage.createFolder('/locked', 'sub'), 'service_forbidden');
      await expectCloudmuxError(
        storage.delete('/locked/keep.txt', 'file', { recursive: false, permanent: true }),
        'service_forbidden',
      );
      expect((await readdir(locked)).sort()).toEqual(['keep.txt']);
    } finally {
      await pool.dispose();
    }
  });

  it('path traversal and command injection are refused before anything is sent', async () => {
    const { net, calls } = spyGuard();
    const { storage, pool } = createFtpStorage(net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      for (const rawId of ['/../etc/passwd', '/a/../../x', 'relative', '/x\r\nDELE /y', '/a\u0000b', '/..']) {
        await expectCloudmuxError(storage.get(rawId, 'file'), 'not_found');
        await expectCloudmuxError(storage.download(rawId), 'not_found');
      }
      for (const name of ['..', '.', 'a/b', 'x\r\nDELE y', 'a\u0000b', 'a\\b', `${UPLOAD_PREFIX}x`]) {
        await expectCloudmuxError(storage.createFolder('/', name), 'invalid_parameters');
        await expectCloudmuxError(
          storage.upload('/', name, bufferStream('x'), { size: 1, ifExists: 'fail' }),
          'invalid_parameters',
        );
      }
      expect(calls).toEqual([]);
    } finally {
      await pool.dispose();
    }
  });

  it('every socket goes through the guard, data connections to the control peer', async () => {
    const { net, calls, events } = spyGuard();
    const { storage, pool } = createFtpStorage(net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      const dir = await storage.createFolder('/', 'guarded');
      const file = await storage.upload(dir.rawId, 'g.txt', bufferStream('guarded bytes'), {
        size: 13,
        ifExists: 'fail',
      });
      expect((await readAll((await storage.download(file.rawId)).stream)).toString()).toBe('guarded bytes');
      expect((await storage.list(dir.rawId, { pageSize: 10 })).items.map((i) => i.name)).toEqual(['g.txt']);
      expect(calls[0]).toMatchObject({ host: '127.0.0.1', port: server.port, tls: false });
      const data = calls.slice(1);
      expect(data.length).toBeGreaterThanOrEqual(3); // STOR, RETR, MLSD
      expect(calls.every((c) => c.host === '127.0.0.1')).toBe(true);
      expect(data.every((c) => c.port !== server.port)).toBe(true);
      // The guard itself checked each of those TCP connections.
      expect(events).toHaveLength(calls.length);
      expect(events.every((e) => e.allowed && e.address === '127.0.0.1')).toBe(true);
    } finally {
      await pool.dispose();
    }
  });

  it('sessions are pooled (at most 4), reused, and closed by dispose', async () => {
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), { timeoutMs: 10_000 });
    await Promise.all(Array.from({ length: 12 }, () => storage.get('/', 'folder')));
    const stats = pool.stats();
    expect(stats.opened).toBeGreaterThanOrEqual(1);
    expect(stats.opened).toBeLessThanOrEqual(4);
    expect(stats.reused).toBe(12 - stats.opened);
    expect(stats.idle).toBe(stats.opened);
    await pool.dispose();
    await pool.dispose();
    expect(pool.stats()).toMatchObject({ idle: 0, busy: 0 });
    await expectCloudmuxError(storage.get('/', 'folder'), 'service_not_available');
  });

  it('idle sessions are closed when the idle timer fires (injected timers)', async () => {
    const pending: Array<() => void> = [];
    const timers = { set: (fn: () => void) => pending.push(fn), clear: () => {} };
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), {
      timeoutMs: 10_000,
      pool: { timers },
    });
    try {
      await storage.get('/', 'folder');
      expect(pool.stats()).toMatchObject({ opened: 1, idle: 1 });
      expect(pending).toHaveLength(1);
      pending.shift()!();
      expect(pool.stats().idle).toBe(0);
      await storage.get('/', 'folder');
      expect(pool.stats().opened).toBe(2);
    } finally {
      await pool.dispose();
    }
  });

  it('a Range read stops the transfer and the one session stays usable', async () => {
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), {
      timeoutMs: 10_000,
      pool: { max: 1 },
    });
    try {
      const size = 3 * 1024 * 1024;
      const file = await storage.upload('/', 'range-cut.bin', randomStream(size, 'cut'), {
        size,
        ifExists: 'replace',
      });
      for (const [start, end] of [
        [1000, 1999],
        [0, 0],
        [size - 10, size - 1],
      ] as const) {
        const part = await storage.download(file.rawId, { range: { start, end } });
        expect(part.range).toEqual({ start, end, total: size });
        expect((await readAll(part.stream)).equals(randomBytesSlice(size, 'cut', start, end))).toBe(true);
      }
      // The consumer walks away after the first chunk.
      const early = await storage.download(file.rawId);
      for await (const _chunk of early.stream) break;
      const whole = await storage.download(file.rawId);
      expect((await sha256OfStream(whole.stream)).sha256).toBe(randomBytesSha256(size, 'cut'));
      expect(pool.stats().opened).toBe(1);
    } finally {
      await pool.dispose();
    }
  });

  it('a body shorter than its declared size is refused and leaves nothing behind', async () => {
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      await expectCloudmuxError(
        storage.upload('/', 'short.bin', bufferStream('abc'), { size: 10, ifExists: 'fail' }),
        'bad_request',
      );
      expect(await storage.lookup('/', 'short.bin')).toBeNull();
      expect(
        (await readdir(server.dataDir)).filter((n) => n.startsWith(UPLOAD_PREFIX) || n === 'short.bin'),
      ).toEqual([]);
    } finally {
      await pool.dispose();
    }
  });

  it('an aborted upload or download is timed_out, leaves nothing behind, and the account keeps working', async () => {
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), {
      timeoutMs: 10_000,
      pool: { max: 1 },
    });
    try {
      const controller = new AbortController();
      let sent = 0;
      const body = randomStream(64 * 1024 * 1024, 'abort').pipe(
        new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            sent += chunk.length;
            if (sent > 2 * 1024 * 1024) controller.abort();
            callback(null, chunk);
          },
        }),
      );
      await expectCloudmuxError(
        storage.upload('/', 'aborted.bin', body, { size: null, ifExists: 'fail', signal: controller.signal }),
        'timed_out',
      );
      expect(await storage.lookup('/', 'aborted.bin')).toBeNull();
      expect((await readdir(server.dataDir)).filter((n) => n.startsWith(UPLOAD_PREFIX))).toEqual([]);
      const size = 4 * 1024 * 1024;
      const file = await storage.upload('/', 'abort-dl.bin', randomStream(size, 'dl'), {
        size,
        ifExists: 'replace',
      });
      const stop = new AbortController();
      const download = await storage.download(file.rawId, { signal: stop.signal });
      const reading = readAll(download.stream);
      stop.abort();
      await expectCloudmuxError(reading, 'timed_out');
      expect((await storage.get(file.rawId, 'file')).size).toBe(size);
    } finally {
      await pool.dispose();
    }
  });

  it('temporary upload names stay hidden', async () => {
    await writeFile(join(server.dataDir, `${UPLOAD_PREFIX}leftover`), 'partial');
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      const names = (await storage.list('/', { pageSize: 1000 })).items.map((i) => i.name);
      expect(names.some((n) => n.startsWith(UPLOAD_PREFIX))).toBe(false);
      expect(await storage.lookup('/', `${UPLOAD_PREFIX}leftover`)).toBeNull();
      await expectCloudmuxError(storage.get(`/${UPLOAD_PREFIX}leftover`, 'file'), 'not_found');
      expect((await storage.search('leftover', { pageSize: 10 })).items).toEqual([]);
    } finally {
      await pool.dispose();
      await rm(join(server.dataDir, `${UPLOAD_PREFIX}leftover`), { force: true });
    }
  });

  it('symbolic links are not listed, and a recursive delete unlinks them without touching targets', async () => {
    const target = join(server.dataDir, 'link-target');
    await mkdir(join(target, 'deep'), { recursive: true });
    await writeFile(join(target, 'deep', 'precious.txt'), 'keep me');
    const holder = join(server.dataDir, 'holder');
    await mkdir(holder);
    await chown(holder, 65534, 65534); // the FTP user may delete inside it
    await symlink('../link-target', join(holder, 'to-target'));
    await symlink('/etc', join(holder, 'to-etc'));
    await writeFile(join(holder, 'plain.txt'), 'p');
    for (const forceList of [false, true]) {
      const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), {
        timeoutMs: 10_000,
        forceList,
      });
      try {
        const names = (await storage.list('/holder', { pageSize: 10 })).items.map((i) => i.name);
        expect(names).toEqual(['plain.txt']);
        expect(await storage.lookup('/holder', 'to-target')).toBeNull();
        await expectCloudmuxError(storage.get('/holder/to-target', 'folder'), 'not_found');
      } finally {
        await pool.dispose();
      }
    }
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      await storage.delete('/holder', 'folder', { recursive: true, permanent: true });
      await expectCloudmuxError(storage.get('/holder', 'folder'), 'not_found');
      expect(await readdir(join(target, 'deep'))).toEqual(['precious.txt']);
    } finally {
      await pool.dispose();
    }
  });

  it('works through LIST parsing when MLSD/MLST are not used', async () => {
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), {
      timeoutMs: 10_000,
      forceList: true,
    });
    try {
      const dir = await storage.createFolder('/', 'list mode');
      await storage.upload(dir.rawId, 'with space.txt', bufferStream('12345'), { size: 5, ifExists: 'fail' });
      await storage.createFolder(dir.rawId, 'child');
      const page = await storage.list(dir.rawId, { pageSize: 10 });
      expect(page.items.map((i) => [i.name, i.type, i.size])).toEqual([
        ['child', 'folder', null],
        ['with space.txt', 'file', 5],
      ]);
      const file = await storage.get(`${dir.rawId}/with space.txt`, 'file');
      expect(file.modified).toBeInstanceOf(Date);
      expect((await storage.get('/', 'folder')).type).toBe('folder');
      expect(await storage.lookup(dir.rawId, 'nothing')).toBeNull();
      await storage.delete(dir.rawId, 'folder', { recursive: true, permanent: true });
      await expectCloudmuxError(storage.get(dir.rawId, 'folder'), 'not_found');
    } finally {
      await pool.dispose();
    }
  });
});

realServer(`pure-ftpd killed mid-upload${suffix}`, () => {
  let server: PureFtpd;
  beforeAll(async () => {
    server = await startPureFtpd({ tls: false });
  });
  afterAll(async () => {
    await server?.teardown();
  });

  it('fails with service_not_available or bad_gateway and leaves no file under the final name', async () => {
    const { storage, pool } = createFtpStorage(spyGuard().net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      const size = 256 * 1024 * 1024;
      const source = randomStream(size, 'killed');
      let sent = 0;
      let killed: Promise<void> | null = null;
      const body = source.pipe(
        new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            sent += chunk.length;
            if (sent > 4 * 1024 * 1024 && !killed) killed = server.kill();
            callback(null, chunk);
          },
        }),
      );
      await expectCloudmuxError(
        storage.upload('/', 'big.bin', body, { size, ifExists: 'fail' }),
        'service_not_available',
        'bad_gateway',
      );
      source.destroy();
      expect(killed).not.toBeNull();
      await killed;
      await server.restart();
      // The same storage recovers on fresh sessions once the server is back.
      expect(await storage.lookup('/', 'big.bin')).toBeNull();
      expect((await storage.list('/', { pageSize: 100 })).items.map((i) => i.name)).not.toContain('big.bin');
      expect(await readdir(server.dataDir)).not.toContain('big.bin');
    } finally {
      await pool.dispose();
    }
  });
});

realServer(`pure-ftpd, explicit TLS${suffix}`, () => {
  let server: PureFtpd;
  beforeAll(async () => {
    server = await startPureFtpd({ tls: true });
  });
  afterAll(async () => {
    await server?.teardown();
  });

  it('a self-signed certificate is refused unless trusted', async () => {
    const untrusted = await instance({ ...server.credentials(), ca: undefined });
    try {
      await expectCloudmuxError(untrusted.validate!(), 'bad_gateway');
    } finally {
      await untrusted.dispose?.();
    }
    const insecure = await instance({ ...server.credentials(), ca: undefined, reject_unauthorized: false });
    try {
      await insecure.validate!();
    } finally {
      await insecure.dispose?.();
    }
  });

  it('control and data connections are TLS upgrades of guarded sockets', async () => {
    const { net, calls } = spyGuard();
    const { storage, pool } = createFtpStorage(net, settingsFor(server), { timeoutMs: 10_000 });
    try {
      const file = await storage.upload('/', 'secret.txt', bufferStream('over tls'), {
        size: 8,
        ifExists: 'replace',
      });
      expect((await readAll((await storage.download(file.rawId)).stream)).toString()).toBe('over tls');
      const plain = calls.filter((c) => !c.tls);
      const upgrades = calls.filter((c) => c.tls);
      expect(upgrades.every((c) => c.upgrade)).toBe(true);
      // One upgrade per TCP socket: the control connection and each data connection.
      expect(upgrades).toHaveLength(plain.length);
      expect(plain.every((c) => c.host === '127.0.0.1')).toBe(true);
    } finally {
      await pool.dispose();
    }
  });
});

realServer(`PASV fallback${suffix}`, () => {
  let server: PureFtpd;
  beforeAll(async () => {
    // The server announces a documentation address (RFC 5737) in PASV replies.
    server = await startPureFtpd({ tls: false, announce: '192.0.2.7' });
  });
  afterAll(async () => {
    await server?.teardown();
  });

  it('connects data channels to the control peer, never to the announced address', async () => {
    const settings = settingsFor(server);
    const probe = await FtpSession.open({ ...settings, net: spyGuard().net, timeoutMs: 10_000 });
    try {
      expect((await probe.command('PASV')).message).toContain('192,0,2,7');
    } finally {
      probe.destroy();
    }
    const { net, calls } = spyGuard();
    const { storage, pool } = createFtpStorage(net, settings, { timeoutMs: 10_000, epsv: false });
    try {
      const file = await storage.upload('/', 'pasv.txt', bufferStream('via pasv'), {
        size: 8,
        ifExists: 'replace',
      });
      expect((await readAll((await storage.download(file.rawId)).stream)).toString()).toBe('via pasv');
      expect((await storage.list('/', { pageSize: 10 })).items.map((i) => i.name)).toContain('pasv.txt');
      expect(calls.length).toBeGreaterThanOrEqual(4);
      expect(calls.every((c) => c.host === '127.0.0.1')).toBe(true);
    } finally {
      await pool.dispose();
    }
  });
});
