// Protocol-storage benchmark: for each protocol connector the server serves, BENCH_BYTES (1 GiB) up
// with `POST /storage/files` and down with `GET /storage/files/{id}/contents` through a Cloudmux
// server in its own process, against the same bytes to the same real backend directly with rclone
// (`rcat` from stdin, `cat` to stdout) in the same run. sha256 is checked both ways on the fly;
// each download reads the file the *other* tool uploaded, so every upload is verified independently.
// Reports MiB/s, the ratio and the server's peak RSS over its idle RSS (target < 64 MiB).
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { forkServer } from '../lib/forked-server.mjs';
import { backends } from './backends.mjs';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const SIZE = Number(process.env.BENCH_BYTES ?? GiB);
const ONLY = process.env.BENCH_PROTOCOLS?.split(',').filter(Boolean) ?? null;
const TARGET_MIB = 64;
const PROTOCOLS = ['webdav', 'ftp', 'smb', 's3', 'azure'];
if (!Number.isSafeInteger(SIZE) || SIZE <= 0)
  throw new Error(`BENCH_BYTES must be a positive integer: ${SIZE}`);

// ── cleanup: everything started is registered here and stopped even on failure or Ctrl-C ──
const cleanups = [];
let cleaning = null;
let interrupted = false;
// A backend being started when a signal arrives is tracked (and stopped) once its start settles.
let starting = null;
const cleanup = () => {
  cleaning ??= (async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()();
      } catch (err) {
        console.error(`cleanup: ${err.message}`);
      }
    }
  })();
  return cleaning;
};
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    interrupted = true;
    console.error(`${signal}: stopping servers and removing temp dirs`);
    await starting?.catch(() => {});
    await cleanup();
    process.exit(130);
  });
}
/** Registers `stop` for cleanup; returns it, run at most once (at once if cleanup has begun). */
const track = (stop) => {
  let done = null;
  const once = () => {
    done ??= stop();
    return done;
  };
  if (cleaning) once();
  else cleanups.push(once);
  return once;
};

// ── data: distinct 1 MiB chunks (a random block stamped with its index), hashed as produced ──
const BLOCK = randomBytes(MiB);
function source(size) {
  const hash = createHash('sha256');
  let offset = 0;
  let index = 0;
  const stream = new Readable({
    highWaterMark: MiB,
    read() {
      if (offset >= size) return this.push(null);
      const n = Math.min(MiB, size - offset);
      const chunk = Buffer.allocUnsafe(n);
      BLOCK.copy(chunk, 0, 0, n);
      // Stamp the index into every 64 KiB so no two chunks (or their halves) are alike.
      for (let at = 0; at + 8 <= n; at += 64 * 1024) chunk.writeBigUInt64BE(BigInt(index), at);
      index++;
      offset += n;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, sha256: () => hash.digest('hex') };
}
const expectedSha = (() => {
  const { stream, sha256 } = source(SIZE);
  return new Promise((resolve, reject) => {
    stream.on('data', () => {});
    stream.on('end', () => resolve(sha256()));
    stream.on('error', reject);
  });
})();

async function hashOf(readable) {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of readable) {
    bytes += chunk.length;
    hash.update(chunk);
  }
  return { sha256: hash.digest('hex'), bytes };
}

const seconds = (started) => Number(process.hrtime.bigint() - started) / 1e9;
const say = (what, secs) =>
  console.log(`  ${what}: ${(SIZE / MiB / secs).toFixed(0)} MiB/s (${secs.toFixed(1)} s)`);

// ── baseline: rclone with env-only config ──
function rclone(args, env) {
  const child = spawn('rclone', ['--retries', '1', ...args], {
    // Only the remote's variables: no user config, no inherited RCLONE_* settings.
    env: { PATH: process.env.PATH, HOME: tmpdir(), RCLONE_CONFIG: join(work, 'rclone.conf'), ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => {
    stderr = (stderr + c).slice(-4096);
  });
  const exit = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(new Error(`rclone ${args[0]} exited ${signal ?? code}: ${stderr.trim().split('\n').pop()}`));
    });
  });
  return { child, exit };
}

async function rcloneUp(remote, name) {
  const started = process.hrtime.bigint();
  const { stream, sha256 } = source(SIZE);
  const { child, exit } = rclone(['rcat', '--size', String(SIZE), remote.path(name)], remote.env);
  child.stdout.resume();
  // rclone's own exit message explains a failure better than the EPIPE it causes on stdin.
  const [fed, exited] = await Promise.allSettled([pipeline(stream, child.stdin), exit]);
  if (exited.status === 'rejected') throw exited.reason;
  if (fed.status === 'rejected') throw fed.reason;
  return { seconds: seconds(started), sha256: sha256() };
}

async function rcloneDown(remote, name) {
  const started = process.hrtime.bigint();
  const { child, exit } = rclone(['cat', remote.path(name)], remote.env);
  child.stdin.end();
  const [got] = await Promise.all([hashOf(child.stdout), exit]);
  return { seconds: seconds(started), ...got };
}

// ── via Cloudmux: the Storage API over HTTP ──
function viaUp(api, accountId, name) {
  const started = process.hrtime.bigint();
  const { stream, sha256 } = source(SIZE);
  return new Promise((resolve, reject) => {
    const req = request(`${api.url}/v1/accounts/${accountId}/storage/files`, {
      method: 'POST',
      headers: {
        authorization: `APIKey ${api.apiKey}`,
        'content-type': 'application/octet-stream',
        'content-length': String(SIZE),
        'x-kloudless-metadata': JSON.stringify({ name, parent_id: 'root' }),
      },
    });
    req.once('response', async (res) => {
      let body = '';
      for await (const c of res) body += c;
      if (res.statusCode !== 201)
        return reject(new Error(`upload answered ${res.statusCode}: ${body.slice(0, 300)}`));
      const file = JSON.parse(body);
      if (file.size !== SIZE) return reject(new Error(`upload stored ${file.size} bytes, sent ${SIZE}`));
      resolve({ seconds: seconds(started), sha256: sha256(), file });
    });
    // An early error answer closes the socket mid-body; the response above carries the reason.
    pipeline(stream, req).catch((err) => setTimeout(() => reject(err), 1000));
  });
}

function viaDown(api, accountId, fileId) {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const url = `${api.url}/v1/accounts/${accountId}/storage/files/${fileId}/contents`;
    const req = request(url, { headers: { authorization: `APIKey ${api.apiKey}` } }, async (res) => {
      try {
        if (res.statusCode !== 200) {
          let body = '';
          for await (const c of res) body += c;
          throw new Error(`download answered ${res.statusCode}: ${body.slice(0, 300)}`);
        }
        const got = await hashOf(res);
        resolve({ seconds: seconds(started), ...got });
      } catch (err) {
        reject(err);
      }
    });
    req.once('error', reject);
    req.end();
  });
}

async function apiJson(api, path, init = {}) {
  const res = await fetch(`${api.url}${path}`, {
    ...init,
    headers: { authorization: `APIKey ${api.apiKey}`, 'content-type': 'application/json', ...init.headers },
  });
  const text = await res.text();
  if (!res.ok)
    throw new Error(`${init.method ?? 'GET'} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return res.status === 204 ? null : JSON.parse(text);
}

function webdavLanded() {
  try {
    const root = new URL('../../', import.meta.url).pathname;
    const out = execFileSync('git', ['log', '--format=%h', '-1', '--', 'packages/connectors/webdav'], {
      cwd: root,
    });
    return out.toString().trim() !== '';
  } catch {
    return false;
  }
}

// ── one protocol: direct up, via up, direct down (of the via file), via down (of the direct file) ──
async function benchProtocol(service, server, api) {
  const rows = ['up', 'down'].map((direction) => ({ protocol: service, direction, baseline: 'rclone' }));
  const [up, down] = rows;
  let stopBackend;
  try {
    starting = backends[service]();
    const backend = await starting;
    stopBackend = track(() => backend.stop());
    for (const row of rows) row.baseline = backend.baseline;
    const want = await expectedSha;
    const check = (what, got) => {
      if (got.sha256 !== want) throw new Error(`${what}: sha256 ${got.sha256} differs from what was sent`);
      if (got.bytes !== undefined && got.bytes !== SIZE)
        throw new Error(`${what}: ${got.bytes} bytes, want ${SIZE}`);
    };
    const account = await apiJson(api, '/v1/accounts?validate=true', {
      method: 'POST',
      body: JSON.stringify({ service, account: `bench ${service}`, ...backend.credentials }),
    });

    const directUp = await rcloneUp(backend.rclone, 'direct.bin');
    check('rclone upload (generator)', directUp);
    up.directMiBs = SIZE / MiB / directUp.seconds;
    say('direct up', directUp.seconds);
    const idle = (await server.ask('reset')).rss;
    up.idleMiB = idle / MiB;
    const viaUpload = await viaUp(api, account.id, 'via.bin');
    up.peakOverIdleMiB = ((await server.ask('peak')).rss - idle) / MiB;
    check('Cloudmux upload (generator)', viaUpload);
    up.viaMiBs = SIZE / MiB / viaUpload.seconds;
    say('via Cloudmux up', viaUpload.seconds);

    // rclone reads back what Cloudmux wrote; Cloudmux reads back what rclone wrote.
    const directDown = await rcloneDown(backend.rclone, 'via.bin');
    check('rclone download of the Cloudmux upload', directDown);
    up.sha256 = 'ok';
    down.directMiBs = SIZE / MiB / directDown.seconds;
    say('direct down', directDown.seconds);
    const listing = await apiJson(api, `/v1/accounts/${account.id}/storage/folders/root/contents`);
    const directFile = listing.objects.find((o) => o.name === 'direct.bin');
    if (!directFile) throw new Error('the rclone upload direct.bin is not listed through Cloudmux');
    const idle2 = (await server.ask('reset')).rss;
    down.idleMiB = idle2 / MiB;
    const viaDownload = await viaDown(api, account.id, directFile.id);
    down.peakOverIdleMiB = ((await server.ask('peak')).rss - idle2) / MiB;
    check('Cloudmux download of the rclone upload', viaDownload);
    down.sha256 = 'ok';
    down.viaMiBs = SIZE / MiB / viaDownload.seconds;
    say('via Cloudmux down', viaDownload.seconds);

    await apiJson(api, `/v1/accounts/${account.id}`, { method: 'DELETE' });
  } catch (err) {
    // A row whose sha256 was not verified failed, whatever was measured before the error.
    for (const row of rows) if (row.sha256 !== 'ok') row.error ??= err.message.split('\n')[0];
    console.error(`${service}: ${err.stack ?? err.message}`);
  } finally {
    await stopBackend?.();
  }
  return rows;
}

// ── main ──
const work = mkdtempSync(join(tmpdir(), 'cloudmux-bench-protocols-'));
track(() => rmSync(work, { recursive: true, force: true }));
const dataDir = join(work, 'server');
const server = forkServer(new URL('./server.mjs', import.meta.url), {
  nodeArgs: (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
  env: {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    CLOUDMUX_DATA_DIR: dataDir,
    CLOUDMUX_LOCAL_ROOTS: dataDir,
    CLOUDMUX_RATE_LIMIT: '100000',
  },
});
track(() => server.stop());

const results = [];
const notes = [];
try {
  const api = await server.next('ready');
  const webdav = webdavLanded();
  for (const service of PROTOCOLS) {
    if (interrupted) break;
    if (ONLY && !ONLY.includes(service)) continue;
    if (!api.services.includes(service) || (service === 'webdav' && !webdav)) {
      const note = `${service}: not yet in the server`;
      console.log(note);
      notes.push(note);
      continue;
    }
    console.log(`${service}: ${(SIZE / MiB).toFixed(0)} MiB up and down, direct and via Cloudmux …`);
    results.push(...(await benchProtocol(service, server, api)));
  }
} finally {
  await cleanup();
}

const fmt = (n, digits = 0) => (n === undefined ? '—' : n.toFixed(digits));
console.log('');
console.log(`protocol-storage, ${(SIZE / MiB).toFixed(0)} MiB each way, same backend, same run`);
console.log(
  '| protocol | direction | baseline | direct MiB/s | via Cloudmux MiB/s | ratio | server peak RSS over idle | sha256 |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  const ratio = r.viaMiBs && r.directMiBs ? fmt(r.viaMiBs / r.directMiBs, 2) : '—';
  const rss =
    r.peakOverIdleMiB === undefined
      ? '—'
      : `${fmt(r.peakOverIdleMiB, 1)} MiB ${r.peakOverIdleMiB < TARGET_MIB ? '(ok)' : `(OVER ${TARGET_MIB} MiB)`}`;
  const sha = r.error ? `FAILED: ${r.error}` : (r.sha256 ?? '—');
  console.log(
    `| ${r.protocol} | ${r.direction} | ${r.baseline} | ${fmt(r.directMiBs)} | ${fmt(r.viaMiBs)} | ${ratio} | ${rss} | ${sha} |`,
  );
}
for (const note of notes) console.log(note);
if (process.env.BENCH_JSON) console.log(JSON.stringify({ bytes: SIZE, results, notes }));
process.exitCode = results.some((r) => r.error) ? 1 : 0;
