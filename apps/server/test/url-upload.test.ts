/** Upload from a URL: fetched through the network guard, redirects re-checked, sync and as a task. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestServer } from './harness.js';

async function sourceServer() {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url === '/file.txt') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '18' });
      res.end('fetched from a URL');
      return;
    }
    if (req.url === '/hop1') return res.writeHead(302, { location: '/hop2' }).end();
    if (req.url === '/hop2') return res.writeHead(301, { location: '/file.txt' }).end();
    if (req.url === '/to-metadata')
      return res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    if (req.url === '/loop') return res.writeHead(302, { location: '/loop' }).end();
    res.writeHead(404).end('missing');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, hits, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const uploadFromUrl = (t: TestServer, url: string, name = 'from-url.txt', query = '') =>
  t.call(`${t.base}/storage/files${query}`, { method: 'POST', json: { url, parent_id: 'root', name } });

describe.each(STORE_KINDS)('upload from URL on %s', (store) => {
  let source: Awaited<ReturnType<typeof sourceServer>>;
  let open: TestServer;
  let strict: TestServer;
  beforeAll(async () => {
    source = await sourceServer();
    open = await startTestServer({ store, env: { CLOUDMUX_URL_UPLOAD_NETWORK: 'self_hosted' } });
    strict = await startTestServer({ store });
  });
  afterAll(async () => {
    await open?.close();
    await strict?.close();
    await new Promise((r) => source.server.close(r));
  });

  it('by default refuses private addresses without connecting', async () => {
    const before = source.hits.length;
    const res = await uploadFromUrl(strict, `${source.url}/file.txt`);
    expect(res.status).toBe(403);
    expect(((await json(res)) as { error_code: string }).error_code).toBe('forbidden');
    expect(source.hits.length).toBe(before);
  });

  it('fetches, follows redirects, and stores the bytes', async () => {
    const res = await uploadFromUrl(open, `${source.url}/hop1`);
    expect(res.status).toBe(201);
    const file = (await json(res)) as { id: string; name: string; size: number };
    expect(file).toMatchObject({ name: 'from-url.txt', size: 18 });
    expect(await (await open.call(`${open.base}/storage/files/${file.id}/contents`)).text()).toBe(
      'fetched from a URL',
    );
    // The overwrite=false rule applies as for any upload.
    const again = (await json(await uploadFromUrl(open, `${source.url}/file.txt`))) as { name: string };
    expect(again.name).toBe('from-url (1).txt');
  });

  it('refuses redirects to metadata addresses, loops, bad sources and bad URLs', async () => {
    const metadata = await uploadFromUrl(open, `${source.url}/to-metadata`);
    expect(metadata.status).toBe(403);
    const loop = await uploadFromUrl(open, `${source.url}/loop`);
    expect(loop.status).toBe(400);
    expect(((await json(loop)) as { error_code: string }).error_code).toBe('request_failed');
    const missing = await uploadFromUrl(open, `${source.url}/nope`);
    expect(missing.status).toBe(400);
    for (const bad of ['ftp://127.0.0.1/x', 'not a url', 'http://user:pw@127.0.0.1/x']) {
      const res = await uploadFromUrl(open, bad);
      expect(res.status).toBe(400);
      expect(((await json(res)) as { error_code: string }).error_code).toBe('invalid_parameters');
    }
  });

  it('runs as a task with return_type=task', async () => {
    const res = await uploadFromUrl(open, `${source.url}/file.txt`, 'async-url.txt', '?return_type=task');
    expect(res.status).toBe(202);
    const task = (await json(res)) as { id: string };
    let result: Record<string, unknown> = {};
    for (let i = 0; i < 400; i++) {
      result = (await json(await open.call(`${open.base}/tasks/${task.id}`))) as Record<string, unknown>;
      if (result.type !== 'task') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(result).toMatchObject({ type: 'file', name: 'async-url.txt', size: 18 });
  });
});
