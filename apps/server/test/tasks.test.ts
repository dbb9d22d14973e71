/**
 * Async requests and the Task API, black-box; and a real `kill -9` of a server process in the
 * middle of a task: after a restart the task is failed with a clear error, never lost or stuck.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, makeTempDir } from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

const TERMINAL_WAIT_MS = 60_000;

async function pollTask(
  call: (path: string) => Promise<Response>,
  base: string,
  id: string,
  until: (r: { status: number; body: Record<string, unknown> }) => boolean,
) {
  const deadline = Date.now() + TERMINAL_WAIT_MS;
  for (;;) {
    const res = await call(`${base}/tasks/${id}`);
    const body = (await json(res)) as Record<string, unknown>;
    const state = { status: res.status, body };
    if (until(state)) return state;
    if (Date.now() > deadline)
      throw new Error(`task ${id} did not reach the expected state: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const running = (s: { body: Record<string, unknown> }) =>
  s.body.type === 'task' && ['PENDING', 'RECIEVED', 'STARTED'].includes(String(s.body.status));

describe.each(STORE_KINDS)('tasks on %s', (store) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store });
  });
  afterAll(async () => t?.close());

  it('X-Kloudless-Async copy answers 202 with a task, then the task answers the copied file', async () => {
    const base = t.base;
    const file = await upload(t, base, 'async.txt', 'async bytes');
    const res = await t.call(`${base}/storage/files/${file.id}/copy`, {
      method: 'POST',
      headers: { 'x-kloudless-async': 'true' },
      json: { parent_id: 'root', name: 'async-copy.txt' },
    });
    expect(res.status).toBe(202);
    const task = (await json(res)) as { id: string; status: string; api: string; type: string };
    expect(task).toMatchObject({ api: 'core', type: 'task' });
    expect(['PENDING', 'RECIEVED', 'STARTED']).toContain(task.status);
    const done = await pollTask(
      (p) => t.call(p),
      base,
      task.id,
      (s) => !running(s),
    );
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ type: 'file', name: 'async-copy.txt', size: 11 });
    expect(await (await t.call(`${base}/storage/files/${done.body.id}/contents`)).text()).toBe('async bytes');
  });

  it('?return_type=task on a folder copy and an async recursive delete', async () => {
    const base = t.base;
    const folder = (await json(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'tree', parent_id: 'root' } }),
    )) as { id: string };
    await upload(t, base, 'leaf.txt', 'leaf', folder.id);
    const res = await t.call(`${base}/storage/folders/${folder.id}/copy?return_type=task`, {
      method: 'POST',
      json: { parent_id: 'root', name: 'tree-copy' },
    });
    expect(res.status).toBe(202);
    const copy = await pollTask(
      (p) => t.call(p),
      base,
      ((await json(res)) as { id: string }).id,
      (s) => !running(s),
    );
    expect(copy.body).toMatchObject({ type: 'folder', name: 'tree-copy' });
    const del = await t.call(`${base}/storage/folders/${copy.body.id}?recursive=true`, {
      method: 'DELETE',
      headers: { 'x-kloudless-async': 'true' },
    });
    expect(del.status).toBe(202);
    const deleted = await pollTask(
      (p) => t.call(p),
      base,
      ((await json(del)) as { id: string }).id,
      (s) => !running(s),
    );
    expect(deleted.body).toMatchObject({ status: 'SUCCESS', type: 'task' });
    expect((await t.call(`${base}/storage/folders/${copy.body.id}`)).status).toBe(404);
  });

  it('a failing task answers the error envelope; tasks are invisible to other apps', async () => {
    const base = t.base;
    const file = await upload(t, base, 'conflict-src.txt', 'x');
    const res = await t.call(`${base}/storage/files/${file.id}/copy`, {
      method: 'POST',
      headers: { 'x-kloudless-async': 'true' },
      json: { parent_id: 'root', name: 'conflict-src.txt' },
    });
    const id = ((await json(res)) as { id: string }).id;
    // The default conflict mode renames, so provoke a failure by deleting the source first.
    const other = await t.newApp('intruder');
    expect((await t.call(`${base}/tasks/${id}`, { auth: `APIKey ${other.apiKey}` })).status).toBe(404);
    expect(
      (await t.call(`/v1/accounts/${other.accountId}/tasks/${id}`, { auth: `APIKey ${other.apiKey}` }))
        .status,
    ).toBe(404);
    await pollTask(
      (p) => t.call(p),
      base,
      id,
      (s) => !running(s),
    );
    const gone = await upload(t, base, 'gone.txt', 'g');
    await t.call(`${base}/storage/files/${gone.id}`, { method: 'DELETE' });
    const failing = await t.call(`${base}/storage/files/${gone.id}/copy`, {
      method: 'POST',
      headers: { 'x-kloudless-async': 'true' },
      json: {},
    });
    expect(failing.status).toBe(202);
    const failed = await pollTask(
      (p) => t.call(p),
      base,
      ((await json(failing)) as { id: string }).id,
      (s) => !running(s),
    );
    expect(failed.status).toBe(404);
    expect(failed.body).toMatchObject({ error_code: 'not_found', status_code: 404 });
  });
});

describe('a task interrupted by kill -9', () => {
  const bin = fileURLToPath(new URL('../bin/cloudmux.js', import.meta.url));
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  async function startCli(dataDir: string, port: number) {
    const proc = spawn(process.execPath, [bin, 'start'], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        CLOUDMUX_DATA_DIR: dataDir,
        CLOUDMUX_RATE_LIMIT: '100000',
        LOG_LEVEL: 'warn',
        CLOUDMUX_TASK_LEASE_SECONDS: '3',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return { proc, output: () => out };
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('is failed with a clear error after the restart, not lost and not stuck in STARTED', async () => {
    const dir = await makeTempDir('cloudmux-kill9-');
    try {
      const port = await freePort();
      const first = await startCli(dir.path, port);
      child = first.proc;
      const creds = JSON.parse(
        (await import('node:fs')).readFileSync(join(dir.path, 'dev-credentials.json'), 'utf8'),
      ) as { api_key: string; account_id: number };
      const api = (path: string, init: RequestInit = {}) =>
        fetch(`http://127.0.0.1:${port}${path}`, {
          ...init,
          headers: {
            authorization: `APIKey ${creds.api_key}`,
            'content-type': 'application/json',
            ...(init.headers as Record<string, string>),
          },
        });
      // A second local account to copy into: the cross-account copy streams every file through the server.
      const targetRoot = join(dir.path, 'files', 'target');
      mkdirSync(targetRoot, { recursive: true });
      const target = (await (
        await api('/v1/accounts', {
          method: 'POST',
          body: JSON.stringify({ service: 'local', account: 'target', root: targetRoot }),
        })
      ).json()) as { id: number };
      const tree = join(dir.path, 'files', 'demo', 'many');
      mkdirSync(tree, { recursive: true });
      // Enough files that the streamed copy is still running when the process is killed.
      for (let i = 0; i < 4000; i++) writeFileSync(join(tree, `file-${i}.bin`), Buffer.alloc(1024, i % 256));
      const base = `/v1/accounts/${creds.account_id}`;
      const listing = (await (await api(`${base}/storage/folders/root/contents`)).json()) as {
        objects: Array<{ id: string; name: string }>;
      };
      const many = listing.objects.find((o) => o.name === 'many')!;
      const res = await api(`${base}/storage/folders/${many.id}/copy`, {
        method: 'POST',
        headers: { 'x-kloudless-async': 'true' },
        body: JSON.stringify({ account: target.id, name: 'copied' }),
      });
      expect(res.status).toBe(202);
      const taskId = ((await res.json()) as { id: string }).id;
      await pollTask(
        (p) => api(p),
        base,
        taskId,
        (s) => s.body.status === 'STARTED' || !running(s),
      );
      const before = (await (await api(`${base}/tasks/${taskId}`)).json()) as { status?: string };
      expect(before.status).toBe('STARTED');
      first.proc.kill('SIGKILL');
      await new Promise((r) => first.proc.once('exit', r));

      const second = await startCli(dir.path, port);
      child = second.proc;
      const after = await pollTask(
        (p) => api(p),
        base,
        taskId,
        (s) => !running(s),
      );
      expect(after.status).toBe(500);
      expect(after.body).toMatchObject({ error_code: 'internal_error', status_code: 500 });
      expect(String(after.body.message)).toMatch(/interrupted/);
      second.proc.kill('SIGTERM');
      await new Promise((r) => second.proc.once('exit', r));
      child = undefined;
    } finally {
      await dir.remove();
    }
  }, 120_000);
});
