// Pass-through benchmark: 2 GiB up and 2 GiB down through `POST /v1/accounts/{id}/raw`, against the
// same transfers made directly to the upstream in the same run. Reports throughput ratios and the
// server's peak RSS over its idle RSS (target: < 64 MiB, i.e. bodies stream and nothing buffers),
// next to the same peak for a bare node:http proxy (./bare-proxy.mjs) carrying the same transfers.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forkServer } from '../lib/forked-server.mjs';

const GiB = 1024 ** 3;
const SIZE = Number(process.env.BENCH_BYTES ?? 2 * GiB);
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

// The upstream: swallows uploads, generates downloads.
const upstream = createServer((req, res) => {
  if (req.method === 'PUT' || req.method === 'POST') {
    let n = 0;
    req.on('data', (c) => (n += c.length));
    req.on('end', () => res.end(String(n)));
    return;
  }
  const size = Number(new URL(req.url, 'http://x').searchParams.get('size'));
  res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
  let sent = 0;
  const pump = () => {
    while (sent < size) {
      const n = Math.min(CHUNK.length, size - sent);
      sent += n;
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return res.once('drain', pump);
    }
    res.end();
  };
  pump();
});
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

function transfer({ url, method, headers = {}, upload }) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = request(
      url,
      { method, headers: { ...headers, ...(upload ? { 'content-length': String(upload) } : {}) } },
      (res) => {
        let bytes = 0;
        res.on('data', (c) => (bytes += c.length));
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            bytes,
            seconds: Number(process.hrtime.bigint() - started) / 1e9,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (!upload) return req.end();
    let sent = 0;
    const pump = () => {
      while (sent < upload) {
        const n = Math.min(CHUNK.length, upload - sent);
        sent += n;
        if (!req.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

const dataDir = mkdtempSync(join(tmpdir(), 'cloudmux-bench-'));
const child = forkServer(new URL('./server.mjs', import.meta.url), {
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
const { next, ask } = child;

try {
  const ready = await next('ready');
  const api = (path, init) =>
    fetch(`${ready.url}${path}`, {
      ...init,
      headers: {
        authorization: `APIKey ${ready.apiKey}`,
        'content-type': 'application/json',
        ...init?.headers,
      },
    });
  const account = await (
    await api('/v1/accounts', {
      method: 'POST',
      body: JSON.stringify({
        service: 'bench_upstream',
        account: 'bench',
        url: upstreamUrl,
        token: 't',
        root: dataDir,
      }),
    })
  ).json();
  const raw = `${ready.url}/v1/accounts/${account.id}/raw`;
  const auth = { authorization: `APIKey ${ready.apiKey}` };

  const idle = (await ask('reset')).rss;
  const results = [];
  for (const direction of ['up', 'down']) {
    const direct =
      direction === 'up'
        ? await transfer({ url: `${upstreamUrl}/sink`, method: 'PUT', upload: SIZE })
        : await transfer({ url: `${upstreamUrl}/source?size=${SIZE}`, method: 'GET' });
    await ask('reset');
    const via =
      direction === 'up'
        ? await transfer({
            url: raw,
            method: 'POST',
            headers: {
              ...auth,
              'x-kloudless-raw-uri': '/sink',
              'x-kloudless-raw-method': 'PUT',
              'content-type': 'application/octet-stream',
            },
            upload: SIZE,
          })
        : await transfer({
            url: raw,
            method: 'POST',
            headers: {
              ...auth,
              'x-kloudless-raw-uri': `/source?size=${SIZE}`,
              'x-kloudless-raw-method': 'GET',
            },
          });
    const peak = (await ask('peak')).rss;
    if (via.status !== 200) throw new Error(`pass-through ${direction} answered ${via.status}`);
    results.push({ direction, direct, via, peakOverIdleMiB: (peak - idle) / 1024 ** 2 });
  }
  await child.stop();

  // The baseline for memory: the same transfers through the barest streaming proxy.
  const bare = forkServer(new URL('./bare-proxy.mjs', import.meta.url), {
    env: { ...process.env, BENCH_UPSTREAM: upstreamUrl },
  });
  try {
    const { url } = await bare.next('ready');
    const bareIdle = (await bare.ask('reset')).rss;
    for (const r of results) {
      await bare.ask('reset');
      const through =
        r.direction === 'up'
          ? await transfer({ url: `${url}/sink`, method: 'PUT', upload: SIZE })
          : await transfer({ url: `${url}/source?size=${SIZE}`, method: 'GET' });
      if (through.status !== 200) throw new Error(`bare proxy ${r.direction} answered ${through.status}`);
      r.bareOverIdleMiB = ((await bare.ask('peak')).rss - bareIdle) / 1024 ** 2;
    }
  } finally {
    await bare.stop();
  }
  const mib = (b, s) => (b / 1024 ** 2 / s).toFixed(0);
  console.log(
    `pass-through, ${(SIZE / GiB).toFixed(2)} GiB each way, server idle RSS ${(idle / 1024 ** 2).toFixed(0)} MiB`,
  );
  console.log(
    '| direction | direct MiB/s | via Cloudmux MiB/s | ratio | server peak RSS over idle | bare node:http proxy, same probe |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    console.log(
      `| ${r.direction} | ${mib(SIZE, r.direct.seconds)} | ${mib(SIZE, r.via.seconds)} | ${(r.direct.seconds / r.via.seconds).toFixed(2)} | ${r.peakOverIdleMiB.toFixed(1)} MiB ${r.peakOverIdleMiB < 64 ? '(< 64 MiB: ok)' : '(OVER the 64 MiB target)'} | ${r.bareOverIdleMiB.toFixed(1)} MiB |`,
    );
  }
  if (process.env.BENCH_JSON) console.log(JSON.stringify(results));
} finally {
  await child.stop();
  upstream.close();
  rmSync(dataDir, { recursive: true, force: true });
}
