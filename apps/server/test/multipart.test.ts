import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { local } from '@cloudmux/connector-local';
import {
  type AnyConnectorDefinition,
  defineConnector,
  errorEnvelopeSchema,
  fileSchema,
  type NativeMultipart,
  type StorageApi,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_PART_SIZE,
  ensureFreeSpace,
  expectedPartSize,
  formatPartList,
  MAX_PARTS,
  multipartManager,
  planParts,
  SESSION_TTL_MS,
  sessionDir,
} from '../src/multipart/index.js';
import { json, STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

const MiB = 1024 * 1024;
const PS = DEFAULT_PART_SIZE;
/** Per-session staging bound for these tests (two full parts and a bit fit, three do not). */
const STAGING_LIMIT = 12 * MiB;
const LOCAL_STAGING = '.cloudmux-uploads';

// ── part-size math ─────────────────────────────────────────────────────────

describe('part-size math', () => {
  it('uses the 5 MiB default when the file fits in 10,000 of them', () => {
    expect(planParts(12 * MiB)).toEqual({ partSize: PS, partCount: 3, maxPartNumber: 3, native: false });
    expect(planParts(PS)).toMatchObject({ partSize: PS, partCount: 1 });
    expect(planParts(PS + 1)).toMatchObject({ partSize: PS, partCount: 2 });
    // An empty file is one empty part.
    expect(planParts(0)).toMatchObject({ partSize: PS, partCount: 1 });
    expect(planParts(null)).toEqual({
      partSize: PS,
      partCount: null,
      maxPartNumber: MAX_PARTS,
      native: false,
    });
  });

  it('grows the part size (in whole MiB) so that no file needs more than 10,000 parts', () => {
    const size = 100 * 1024 * MiB; // 100 GiB
    const plan = planParts(size);
    expect(plan.partSize % MiB).toBe(0);
    expect(plan.partCount).toBeLessThanOrEqual(MAX_PARTS);
    expect(Math.ceil(size / (plan.partSize - MiB))).toBeGreaterThan(MAX_PARTS);
  });

  it('respects native minimum, maximum and part count', () => {
    const s3 = { minPartSize: 5 * MiB, maxPartSize: 5 * 1024 * MiB, maxParts: 10_000 };
    expect(planParts(12 * MiB, s3)).toEqual({
      partSize: 5 * MiB,
      partCount: 3,
      maxPartNumber: 3,
      native: true,
    });
    const bigMin = { minPartSize: 8 * MiB, maxPartSize: 64 * MiB, maxParts: 10_000 };
    expect(planParts(20 * MiB, bigMin)).toMatchObject({ partSize: 8 * MiB, partCount: 3, native: true });
    // A native maximum below the default wins over the default.
    const smallMax = { minPartSize: 1, maxPartSize: 4 * MiB, maxParts: 10_000 };
    expect(planParts(10 * MiB, smallMax)).toMatchObject({ partSize: 4 * MiB, partCount: 3, native: true });
    // Few native parts: the part size grows to fit them.
    const fewParts = { minPartSize: 1, maxPartSize: 64 * MiB, maxParts: 4 };
    const plan = planParts(30 * MiB, fewParts);
    expect(plan).toMatchObject({ partSize: 8 * MiB, partCount: 4, native: true });
    // Unknown size: the native part limit bounds the part numbers.
    expect(planParts(null, fewParts)).toMatchObject({
      partSize: PS,
      partCount: null,
      maxPartNumber: 4,
      native: true,
    });
  });

  it('falls back to staging when the native limits cannot hold the file', () => {
    const tiny = { minPartSize: 1, maxPartSize: 5 * MiB, maxParts: 2 };
    expect(planParts(11 * MiB, tiny)).toEqual({
      partSize: PS,
      partCount: 3,
      maxPartNumber: 3,
      native: false,
    });
    // Exactly at the native capacity the unrounded size still fits.
    const exact = { minPartSize: 1, maxPartSize: 5 * MiB + 1, maxParts: 2 };
    expect(planParts(10 * MiB + 2, exact)).toMatchObject({
      partSize: 5 * MiB + 1,
      partCount: 2,
      native: true,
    });
    // Nonsense limits are ignored.
    expect(planParts(MiB, { minPartSize: 10, maxPartSize: 5, maxParts: 3 }).native).toBe(false);
  });

  it('gives every part its exact size when the size is known', () => {
    expect(expectedPartSize(12 * MiB, PS, 1)).toEqual({ bytes: PS, exact: true });
    expect(expectedPartSize(12 * MiB, PS, 3)).toEqual({ bytes: 2 * MiB, exact: true });
    expect(expectedPartSize(10 * MiB, PS, 2)).toEqual({ bytes: PS, exact: true });
    expect(expectedPartSize(0, PS, 1)).toEqual({ bytes: 0, exact: true });
    expect(expectedPartSize(null, PS, 7)).toEqual({ bytes: PS, exact: false });
  });

  it('formats part lists as ranges', () => {
    expect(formatPartList([7, 2, 3, 4, 9, 10])).toBe('2-4, 7, 9-10');
    expect(formatPartList([1])).toBe('1');
  });

  it('refuses a part when the disk is nearly full', async () => {
    const full = async () => ({ bavail: 10, bsize: 4096 });
    await expect(ensureFreeSpace('/tmp', MiB, full)).rejects.toMatchObject({
      code: 'insufficient_storage',
      status: 507,
    });
    const roomy = async () => ({ bavail: BigInt(1e9), bsize: BigInt(4096) });
    await expect(ensureFreeSpace('/tmp', MiB, roomy)).resolves.toBeUndefined();
  });
});

// ── connectors for the black-box tests ────────────────────────────────────

const nativeCalls = { begin: 0, uploadPart: 0, complete: 0, abort: 0 };

/** `local` as `local_counted`, its native multipart calls counted (proof of which path a session took). */
function countingLocal(): AnyConnectorDefinition {
  const { kind: _kind, ...input } = local;
  return defineConnector({
    ...input,
    service: 'local_counted',
    name: 'Local Disk (counted)',
    create: async (ctx) => {
      const instance = await local.create(ctx);
      const storage = instance.storage as StorageApi;
      const native = storage.multipart!;
      const counted: NativeMultipart = {
        minPartSize: native.minPartSize,
        maxPartSize: native.maxPartSize,
        maxParts: native.maxParts,
        begin: (...args) => {
          nativeCalls.begin++;
          return native.begin(...args);
        },
        uploadPart: (...args) => {
          nativeCalls.uploadPart++;
          return native.uploadPart(...args);
        },
        complete: (...args) => {
          nativeCalls.complete++;
          return native.complete(...args);
        },
        abort: (...args) => {
          nativeCalls.abort++;
          return native.abort(...args);
        },
      };
      return { ...instance, storage: withMultipart(storage, counted) };
    },
  });
}

/** `local` without native multipart, as `local_plain`: every part is staged. */
function plainLocal(): AnyConnectorDefinition {
  const { kind: _kind, ...input } = local;
  return defineConnector({
    ...input,
    service: 'local_plain',
    name: 'Local Disk (no native multipart)',
    create: async (ctx) => {
      const instance = await local.create(ctx);
      return { ...instance, storage: withMultipart(instance.storage as StorageApi, undefined) };
    },
  });
}

function withMultipart(storage: StorageApi, multipart: NativeMultipart | undefined): StorageApi {
  const view = Object.create(storage) as StorageApi;
  Object.defineProperty(view, 'multipart', { value: multipart, enumerable: true });
  return view;
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe.each(STORE_KINDS)('multipart uploads on %s', (store) => {
  let t: TestServer;
  let base: string;
  let plainBase: string;
  let root: string;

  beforeAll(async () => {
    t = await startTestServer({
      store,
      connectors: [countingLocal(), plainLocal()],
      env: { CLOUDMUX_MULTIPART_MAX_BYTES: String(STAGING_LIMIT) },
    });
    // The harness always serves the plain `local` connector; these accounts use the variants above.
    const importAccount = async (service: string) => {
      const accountRoot = join(t.dataDir.path, 'files', service);
      await mkdir(accountRoot, { recursive: true });
      const res = await t.call('/v1/accounts', {
        method: 'POST',
        json: { service, account: service, root: accountRoot },
      });
      expect(res.status).toBe(201);
      return { at: `/v1/accounts/${((await res.json()) as { id: number }).id}`, accountRoot };
    };
    const counted = await importAccount('local_counted');
    base = counted.at;
    root = counted.accountRoot;
    plainBase = (await importAccount('local_plain')).at;
  });
  afterAll(async () => t?.close());

  const expectError = async (res: Response, status: number, code: string) => {
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = await json(res);
    expect(errorEnvelopeSchema.parse(body)).toMatchObject({ status_code: status, error_code: code });
    expect(res.status).toBe(status);
    return body as { message: string; conflicting_resource_id?: string };
  };

  type Session = {
    id: number;
    part_size: number;
    part_count: number | null;
    parallel_uploads: boolean;
    parts_received: number[];
    status: string;
  };

  const init = (at: string, body: unknown, query = '', auth?: string) =>
    t.call(`${at}/storage/multipart${query}`, { method: 'POST', json: body, ...(auth ? { auth } : {}) });
  const start = async (at: string, name: string, size: number | null, query = '') => {
    const res = await init(at, { parent_id: 'root', name, ...(size !== null ? { size } : {}) }, query);
    expect(res.status).toBe(201);
    return (await json(res)) as unknown as Session;
  };
  const put = (
    at: string,
    id: number,
    n: number,
    data: Buffer | string,
    init: RequestInit & { auth?: string } = {},
  ) =>
    t.call(`${at}/storage/multipart/${id}?part_number=${n}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: data,
      ...init,
    });
  const putOk = async (at: string, id: number, n: number, data: Buffer) => {
    const res = await put(at, id, n, data);
    if (res.status !== 200) throw new Error(`part ${n}: ${res.status} ${await res.text()}`);
    return (await json(res)) as unknown as Session;
  };
  const complete = (at: string, id: number, auth?: string) =>
    t.call(`${at}/storage/multipart/${id}/complete`, { method: 'POST', ...(auth ? { auth } : {}) });
  const completeOk = async (at: string, id: number) => {
    const res = await complete(at, id);
    if (res.status !== 201) throw new Error(`complete: ${res.status} ${await res.text()}`);
    return fileSchema.parse(await json(res));
  };
  const download = async (at: string, fileId: string) =>
    Buffer.from(await (await t.call(`${at}/storage/files/${fileId}/contents`)).arrayBuffer());
  const staged = async (id: number) => {
    const dir = sessionDir(t.dataDir.path, id);
    return existsSync(dir) ? readdir(dir) : [];
  };
  const nativeTmpSizes = async (accountRoot: string) => {
    const dir = join(accountRoot, LOCAL_STAGING);
    const names = existsSync(dir) ? await readdir(dir) : [];
    return Promise.all(names.map(async (n) => (await stat(join(dir, n))).size));
  };
  const split = (data: Buffer, partSize: number) => {
    const parts: Buffer[] = [];
    for (let i = 0; i < Math.max(1, data.length); i += partSize) parts.push(data.subarray(i, i + partSize));
    return parts.length ? parts : [Buffer.alloc(0)];
  };

  it('opens a session with part_size, parallel_uploads and validation of the body', async () => {
    const res = await init(base, { parent_id: 'root', name: 'plan.bin', size: 12 * MiB });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe('application/json');
    const session = (await json(res)) as Record<string, unknown>;
    expect(session).toMatchObject({
      account: Number(base.split('/').pop()),
      parent_id: 'root',
      name: 'plan.bin',
      size: 12 * MiB,
      part_size: PS,
      part_count: 3,
      parallel_uploads: false,
      status: 'open',
      parts_received: [],
      api: 'storage',
      type: 'multipart',
    });
    expect(Number.isInteger(session.id)).toBe(true);
    const got = (await json(await t.call(`${base}/storage/multipart/${session.id}`))) as Record<
      string,
      unknown
    >;
    expect(got).toMatchObject({ id: session.id, account: session.account, part_size: PS });
    // Without native multipart any order is as good: parallel uploads are safe.
    expect(await start(plainBase, 'plain.bin', 3 * MiB)).toMatchObject({
      parallel_uploads: true,
      part_size: PS,
      part_count: 1,
    });

    await expectError(
      await init(base, { parent_id: 'root', name: 'x', size: -1 }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await init(base, { parent_id: 'root', name: 'x', size: 1.5 }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await init(base, { parent_id: 'root', name: 'x', size: '12' }),
      400,
      'invalid_parameters',
    );
    await expectError(await init(base, { parent_id: 'root', size: 1 }), 400, 'invalid_parameters');
    await expectError(
      await init(base, { parent_id: 'root', name: '..', size: 1 }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await init(base, { parent_id: 'nope', name: 'x', size: 1 }),
      400,
      'invalid_parent_folder',
    );
    await expectError(
      await init(base, { parent_id: 'root', name: 'x', size: 1 }, '?overwrite=maybe'),
      400,
      'invalid_parameters',
    );
    // Larger than the staging bound with no native session to take it.
    await expectError(
      await init(plainBase, { parent_id: 'root', name: 'x', size: STAGING_LIMIT + 1 }),
      400,
      'bad_request',
    );
    await expectError(await t.call(`${base}/storage/multipart/abc`), 404, 'not_found');
    await expectError(await t.call(`${base}/storage/multipart/999999`), 404, 'not_found');
  });

  it('streams in-order parts through the native session without staging them', async () => {
    const data = randomBytes(3 * PS + 12345);
    const before = { ...nativeCalls };
    const latest = ((await json(await t.call(`${base}/events/latest`))) as { cursor: number }).cursor;
    const session = await start(base, 'in-order.bin', data.length);
    expect(session.part_count).toBe(4);
    const parts = split(data, session.part_size);
    let sent = 0;
    for (const [i, part] of parts.entries()) {
      const status = await putOk(base, session.id, i + 1, part);
      sent += part.length;
      expect(status.parts_received).toEqual(parts.slice(0, i + 1).map((_, j) => j + 1));
      expect(status.parallel_uploads).toBe(false);
      // Nothing under the data dir; the bytes are in the connector's own upload file.
      expect(await staged(session.id)).toEqual([]);
      expect(await nativeTmpSizes(root)).toEqual([sent]);
    }
    expect(nativeCalls.begin - before.begin).toBe(1);
    expect(nativeCalls.uploadPart - before.uploadPart).toBe(4);
    const file = await completeOk(base, session.id);
    expect(nativeCalls.complete - before.complete).toBe(1);
    expect(file).toMatchObject({
      name: 'in-order.bin',
      size: data.length,
      account: Number(base.split('/').pop()),
    });
    expect(sha(await download(base, file.id))).toBe(sha(data));
    expect(await nativeTmpSizes(root)).toEqual([]);
    await expectError(await t.call(`${base}/storage/multipart/${session.id}`), 404, 'not_found');
    const events = (await json(await t.call(`${base}/events?cursor=${latest}`))) as {
      objects: Array<{ type: string; metadata: { id: string } }>;
    };
    expect(events.objects).toContainEqual(
      expect.objectContaining({ type: 'add', metadata: expect.objectContaining({ id: file.id }) }),
    );
  });

  it('stages parts sent out of order (3, 1, 2) and uploads them once, concatenated', async () => {
    const data = randomBytes(2 * PS + 777);
    const before = { ...nativeCalls };
    const session = await start(base, 'out-of-order.bin', data.length);
    const [p1, p2, p3] = split(data, session.part_size) as [Buffer, Buffer, Buffer];
    const after3 = await putOk(base, session.id, 3, p3);
    expect(after3).toMatchObject({ parts_received: [3], parallel_uploads: true });
    expect(await staged(session.id)).toHaveLength(1);
    // A re-sent staged part replaces the earlier one.
    await putOk(base, session.id, 1, randomBytes(p1.length));
    await putOk(base, session.id, 1, p1);
    expect(await staged(session.id)).toHaveLength(2);
    // Once staged, in-order parts stay staged.
    await putOk(base, session.id, 2, p2);
    expect(await staged(session.id)).toHaveLength(3);
    expect(nativeCalls.begin - before.begin).toBe(0);
    const file = await completeOk(base, session.id);
    expect(file).toMatchObject({ name: 'out-of-order.bin', size: data.length });
    expect(sha(await download(base, file.id))).toBe(sha(data));
    expect(nativeCalls.uploadPart - before.uploadPart).toBe(0);
    expect(existsSync(sessionDir(t.dataDir.path, session.id))).toBe(false);
  });

  it('keeps a native prefix and feeds the staged rest to the native session on complete', async () => {
    const data = randomBytes(2 * PS + 4321);
    const before = { ...nativeCalls };
    const session = await start(base, 'hybrid.bin', data.length);
    const [p1, p2, p3] = split(data, session.part_size) as [Buffer, Buffer, Buffer];
    await putOk(base, session.id, 1, p1);
    expect(await staged(session.id)).toEqual([]);
    expect((await putOk(base, session.id, 3, p3)).parallel_uploads).toBe(true);
    await putOk(base, session.id, 2, p2);
    expect(await staged(session.id)).toHaveLength(2);
    // The part already sent natively: the same bytes again are a harmless retry, other bytes are refused.
    await putOk(base, session.id, 1, p1);
    const refused = await expectError(
      await put(base, session.id, 1, randomBytes(p1.length)),
      400,
      'bad_request',
    );
    expect(refused.message).toMatch(/cannot be replaced/);
    const file = await completeOk(base, session.id);
    expect(sha(await download(base, file.id))).toBe(sha(data));
    expect(nativeCalls.uploadPart - before.uploadPart).toBe(3);
    expect(nativeCalls.complete - before.complete).toBe(1);
    expect(existsSync(sessionDir(t.dataDir.path, session.id))).toBe(false);
  });

  it('stages every part when the connector has no native multipart', async () => {
    const data = randomBytes(PS + 99);
    const session = await start(plainBase, 'plain-in-order.bin', data.length);
    const [p1, p2] = split(data, session.part_size) as [Buffer, Buffer];
    await putOk(plainBase, session.id, 1, p1);
    expect(await staged(session.id)).toHaveLength(1);
    await putOk(plainBase, session.id, 2, p2);
    const file = await completeOk(plainBase, session.id);
    expect(sha(await download(plainBase, file.id))).toBe(sha(data));
  });

  it('takes parts uploaded in parallel, and chunked parts (no Content-Length) by staging them', async () => {
    const data = randomBytes(2 * PS + 3000);
    const session = await start(base, 'parallel.bin', data.length);
    const parts = split(data, session.part_size);
    const results = await Promise.all(parts.map((part, i) => put(base, session.id, i + 1, part)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    const file = await completeOk(base, session.id);
    expect(sha(await download(base, file.id))).toBe(sha(data));

    // In order, but part 2 arrives chunked: parts 1 went native, 2 and 3 are staged.
    const before = { ...nativeCalls };
    const chunkedSession = await start(base, 'chunked.bin', data.length);
    await putOk(base, chunkedSession.id, 1, parts[0]!);
    const body = new ReadableStream({
      start(controller) {
        for (let i = 0; i < parts[1]!.length; i += 256 * 1024)
          controller.enqueue(new Uint8Array(parts[1]!.subarray(i, i + 256 * 1024)));
        controller.close();
      },
    });
    const chunked = await put(
      base,
      chunkedSession.id,
      2,
      body as unknown as Buffer,
      { duplex: 'half' } as RequestInit,
    );
    expect(chunked.status).toBe(200);
    expect(await staged(chunkedSession.id)).toHaveLength(1);
    // No Content-Type at all is raw bytes too.
    const bare = await t.call(`${base}/storage/multipart/${chunkedSession.id}?part_number=3`, {
      method: 'PUT',
      body: new Uint8Array(parts[2]!),
    });
    expect(bare.status).toBe(200);
    const chunkedFile = await completeOk(base, chunkedSession.id);
    expect(sha(await download(base, chunkedFile.id))).toBe(sha(data));
    expect(nativeCalls.uploadPart - before.uploadPart).toBe(3);
  });

  it('marks a session failed when the server driving it vanished mid-step', async () => {
    const session = await start(base, 'crashed.bin', PS + 1);
    await putOk(base, session.id, 1, randomBytes(PS));
    // What a crash mid-part leaves behind: a lease nobody renews.
    await t.server.deps.storeHandle.db
      .updateTable('multipart_sessions')
      .set({ busy_owner: 'gone', busy_until: Date.now() - 1 })
      .where('id', '=', session.id)
      .execute();
    const status = (await json(await t.call(`${base}/storage/multipart/${session.id}`))) as Record<
      string,
      unknown
    >;
    expect(status).toMatchObject({ status: 'failed', failure: expect.stringMatching(/stopped/) });
    await expectError(await put(base, session.id, 2, randomBytes(1)), 400, 'bad_request');
    const refused = await expectError(await complete(base, session.id), 400, 'bad_request');
    expect(refused.message).toMatch(/Abort it/);
    expect((await t.call(`${base}/storage/multipart/${session.id}`, { method: 'DELETE' })).status).toBe(204);
    expect(await nativeTmpSizes(root)).toEqual([]);
  });

  it('refuses wrong part sizes and part numbers', async () => {
    const session = await start(base, 'sizes.bin', PS + 10);
    await expectError(await put(base, session.id, 1, randomBytes(PS - 1)), 400, 'invalid_parameters');
    await expectError(await put(base, session.id, 2, randomBytes(11)), 400, 'invalid_parameters');
    const beyond = await expectError(
      await put(base, session.id, 3, randomBytes(10)),
      400,
      'invalid_parameters',
    );
    expect(beyond.message).toMatch(/beyond the 2 parts/);
    for (const n of ['0', '10001', 'x', '']) {
      await expectError(
        await t.call(`${base}/storage/multipart/${session.id}?part_number=${n}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream' },
          body: 'x',
        }),
        400,
        'invalid_parameters',
      );
    }
    await expectError(
      await t.call(`${base}/storage/multipart/${session.id}`, { method: 'PUT', body: 'x' }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/multipart/${session.id}?part_number=2`, {
        method: 'PUT',
        json: { data: 'x' },
      }),
      400,
      'invalid_parameters',
    );
    // A chunked body (no Content-Length) of the wrong size is measured and refused too.
    const chunked = new ReadableStream({
      start(controller) {
        controller.enqueue(new Uint8Array(7));
        controller.close();
      },
    });
    await expectError(
      await put(base, session.id, 2, chunked as unknown as Buffer, { duplex: 'half' } as RequestInit),
      400,
      'invalid_parameters',
    );
    expect(await staged(session.id)).toEqual([]);
    const status = (await json(
      await t.call(`${base}/storage/multipart/${session.id}`),
    )) as unknown as Session;
    expect(status.parts_received).toEqual([]);
  });

  it('names the missing parts on complete and completes once they arrive', async () => {
    const data = randomBytes(2 * PS + 1);
    const session = await start(base, 'missing.bin', data.length);
    const [p1, p2, p3] = split(data, session.part_size) as [Buffer, Buffer, Buffer];
    const none = await expectError(await complete(base, session.id), 400, 'invalid_parameters');
    expect(none.message).toContain('Missing parts: 1-3 (of 3)');
    await putOk(base, session.id, 2, p2);
    const missing = await expectError(await complete(base, session.id), 400, 'invalid_parameters');
    expect(missing.message).toContain('Missing parts: 1, 3 (of 3)');
    expect(
      ((await json(await t.call(`${base}/storage/multipart/${session.id}`))) as unknown as Session).status,
    ).toBe('open');
    await putOk(base, session.id, 3, p3);
    const again = await expectError(await complete(base, session.id), 400, 'invalid_parameters');
    expect(again.message).toContain('Missing parts: 1 (of 3)');
    await putOk(base, session.id, 1, p1);
    const file = await completeOk(base, session.id);
    expect(sha(await download(base, file.id))).toBe(sha(data));
  });

  it('takes sessions without a size (only the last part may be short)', async () => {
    const data = randomBytes(PS + 500);
    const session = await start(base, 'unsized.bin', null);
    expect(session).toMatchObject({ part_size: PS, part_count: null });
    const [p1, p2] = split(data, session.part_size) as [Buffer, Buffer];
    await putOk(base, session.id, 2, p2);
    await expectError(await put(base, session.id, 3, randomBytes(10)), 400, 'invalid_parameters');
    await expectError(await put(base, session.id, 1, randomBytes(PS + 1)), 400, 'invalid_parameters');
    await putOk(base, session.id, 1, p1);
    const file = await completeOk(base, session.id);
    expect(file.size).toBe(data.length);
    expect(sha(await download(base, file.id))).toBe(sha(data));

    // In order with a size-less session, the native path is used.
    const before = { ...nativeCalls };
    const native = await start(base, 'unsized-native.bin', null);
    await putOk(base, native.id, 1, p1);
    await putOk(base, native.id, 2, p2);
    expect(await staged(native.id)).toEqual([]);
    await expectError(await put(base, native.id, 3, randomBytes(10)), 400, 'invalid_parameters');
    const nativeFile = await completeOk(base, native.id);
    expect(nativeCalls.uploadPart - before.uploadPart).toBe(2);
    expect(sha(await download(base, nativeFile.id))).toBe(sha(data));
  });

  it('applies overwrite: false renames, true replaces (native and staged)', async () => {
    const existing = await upload(t, base, 'dup.bin', 'original');
    const data = randomBytes(1000);
    const renamed = await start(base, 'dup.bin', data.length);
    await putOk(base, renamed.id, 1, data);
    expect((await completeOk(base, renamed.id)).name).toBe('dup (1).bin');
    const replaced = await start(base, 'dup.bin', data.length, '?overwrite=true');
    await putOk(base, replaced.id, 1, data);
    const file = await completeOk(base, replaced.id);
    expect(file).toMatchObject({ name: 'dup.bin', id: existing.id, size: 1000 });
    expect(sha(await download(base, file.id))).toBe(sha(data));

    await upload(t, plainBase, 'dup.bin', 'original');
    const staged1 = await start(plainBase, 'dup.bin', data.length, '?overwrite=false');
    await putOk(plainBase, staged1.id, 1, data);
    expect((await completeOk(plainBase, staged1.id)).name).toBe('dup (1).bin');
  });

  it('aborts: removes staged parts and the native session', async () => {
    const data = randomBytes(PS + 10);
    const [p1, p2] = split(data, PS) as [Buffer, Buffer];
    const stagedSession = await start(base, 'abort-staged.bin', data.length);
    await putOk(base, stagedSession.id, 2, p2);
    await putOk(base, stagedSession.id, 1, p1);
    expect(await staged(stagedSession.id)).toHaveLength(2);
    const del = await t.call(`${base}/storage/multipart/${stagedSession.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    expect(existsSync(sessionDir(t.dataDir.path, stagedSession.id))).toBe(false);
    await expectError(await t.call(`${base}/storage/multipart/${stagedSession.id}`), 404, 'not_found');
    await expectError(await complete(base, stagedSession.id), 404, 'not_found');

    const before = { ...nativeCalls };
    const nativeSession = await start(base, 'abort-native.bin', data.length);
    await putOk(base, nativeSession.id, 1, p1);
    expect(await nativeTmpSizes(root)).toEqual([PS]);
    expect((await t.call(`${base}/storage/multipart/${nativeSession.id}`, { method: 'DELETE' })).status).toBe(
      204,
    );
    expect(nativeCalls.abort - before.abort).toBe(1);
    expect(await nativeTmpSizes(root)).toEqual([]);
    await expectError(await put(base, nativeSession.id, 2, p2), 404, 'not_found');
  });

  it('bounds what a session stages on disk', async () => {
    const session = await start(base, 'bounded.bin', 4 * PS);
    await putOk(base, session.id, 4, randomBytes(PS));
    await putOk(base, session.id, 3, randomBytes(PS));
    const over = await expectError(await put(base, session.id, 2, randomBytes(PS)), 400, 'bad_request');
    expect(over.message).toMatch(/exceed/);
    expect(await staged(session.id)).toHaveLength(2);
    // Replacing a staged part does not count it twice.
    await putOk(base, session.id, 3, randomBytes(PS));
    expect((await t.call(`${base}/storage/multipart/${session.id}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('keeps sessions to their app and account', async () => {
    const a = t.apps[0]!;
    const b = t.apps[1] ?? (await t.newApp('Other app'));
    const session = await start(base, 'isolated.bin', 10);
    const asB = `APIKey ${b.apiKey}`;
    const other = `/v1/accounts/${b.accountId}`;
    await expectError(
      await t.call(`${other}/storage/multipart/${session.id}`, { auth: asB }),
      404,
      'not_found',
    );
    await expectError(await put(other, session.id, 1, randomBytes(10), { auth: asB }), 404, 'not_found');
    await expectError(await complete(other, session.id, asB), 404, 'not_found');
    await expectError(
      await t.call(`${other}/storage/multipart/${session.id}`, { method: 'DELETE', auth: asB }),
      404,
      'not_found',
    );
    // B cannot reach A's account either, and A's other accounts do not see the session.
    await expectError(
      await t.call(`${base}/storage/multipart/${session.id}`, { auth: asB }),
      404,
      'not_found',
    );
    await expectError(await t.call(`${plainBase}/storage/multipart/${session.id}`), 404, 'not_found');
    await expectError(await t.call(`${t.base}/storage/multipart/${session.id}`), 404, 'not_found');
    await expectError(
      await t.call(`/v1/accounts/me/storage/multipart/${session.id}`, { auth: `Bearer ${a.token}` }),
      404,
      'not_found',
    );
    // B's own session is invisible to A.
    const bSession = (await json(
      await init(other, { parent_id: 'root', name: 'b.bin', size: 1 }, '', asB),
    )) as unknown as Session;
    await expectError(await t.call(`${other}/storage/multipart/${bSession.id}`), 404, 'not_found');
    await expectError(await t.call(`${base}/storage/multipart/${bSession.id}`), 404, 'not_found');
    // A bearer token reaches its own account's sessions through `me`.
    const mine = await start(t.base, 'mine.bin', 3);
    const me = await t.call(`/v1/accounts/me/storage/multipart/${mine.id}`, { auth: `Bearer ${a.token}` });
    expect(((await json(me)) as unknown as Session).status).toBe('open');
    // A's session is untouched.
    await putOk(base, session.id, 1, randomBytes(10));
    expect((await completeOk(base, session.id)).name).toBe('isolated.bin');
  });

  it('expires stale sessions and removes their files on the sweep', async () => {
    const manager = multipartManager(t.server.deps);
    const stagedSession = await start(base, 'stale-staged.bin', PS + 1);
    await putOk(base, stagedSession.id, 2, randomBytes(1));
    const nativeSession = await start(base, 'stale-native.bin', PS + 1);
    await putOk(base, nativeSession.id, 1, randomBytes(PS));
    const orphan = sessionDir(t.dataDir.path, 987654321);
    await mkdir(orphan, { recursive: true });
    // Not stale yet: nothing but the orphan goes.
    expect(await manager.sweep()).toMatchObject({ expired: 0, orphans: 1 });
    expect(existsSync(orphan)).toBe(false);
    expect(await staged(stagedSession.id)).toHaveLength(1);

    const result = await manager.sweep(Date.now() + SESSION_TTL_MS + 60_000);
    expect(result.expired).toBeGreaterThanOrEqual(2);
    expect(existsSync(sessionDir(t.dataDir.path, stagedSession.id))).toBe(false);
    expect(await nativeTmpSizes(root)).toEqual([]);
    await expectError(await t.call(`${base}/storage/multipart/${stagedSession.id}`), 404, 'not_found');
    await expectError(await t.call(`${base}/storage/multipart/${nativeSession.id}`), 404, 'not_found');
  });
});
