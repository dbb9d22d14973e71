/**
 * Storage API: files and folders (shared/reference/kloudless-api.md §3.1–3.3). Ids in paths and
 * bodies are decrypted with the account's id codec; objects go out through `renderItem`.
 */
import {
  assertPageExists,
  CloudmuxError,
  createNetworkGuard,
  type NetworkGuard,
  pageResource,
  type StorageItem,
  type StorageItemType,
  seekPage,
  uploadMetadataSchema,
  validateItemName,
} from '@cloudmux/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as z from 'zod';
import type { ServerDeps } from '../http/deps.js';
import { renderItem } from '../http/objects.js';
import {
  clientContentType,
  firstValue,
  parseBody,
  parseBool,
  parseJsonHeader,
  parsePageSize,
  parseRange,
} from '../http/params.js';
import {
  parentRawId,
  type StorageScope,
  storageRuntimeFor,
  storageScope,
  targetAccount,
} from '../http/scope.js';
import { type ConflictMode, copyAcross, copyWithin, uploadWithMode } from '../storage-ops.js';
import { LinkStore } from '../store/links.js';
import { renderTask } from '../tasks.js';
import { fetchSource, parseSourceUrl } from '../url-source.js';
import { sendJson } from './util.js';

const idParam = z.string().min(1).max(8192);
const accountRef = z.union([z.number().int().positive(), z.string().regex(/^\d{1,15}$/)]);

const moveBody = z.looseObject({
  name: z.string().optional(),
  parent_id: idParam.optional(),
  account: accountRef.optional(),
});
const copyBody = z.looseObject({
  parent_id: idParam.optional(),
  name: z.string().optional(),
  account: accountRef.optional(),
});
const createFolderBody = z.looseObject({ name: z.string(), parent_id: idParam });
const urlUploadBody = z.looseObject({ url: z.string(), parent_id: idParam, name: z.string() });

function render(scope: Pick<StorageScope, 'ids' | 'rawData'>, deps: ServerDeps, item: StorageItem) {
  return renderItem(item, scope.ids, { publicUrl: deps.config.publicUrl, rawData: scope.rawData });
}

/** Connectors say `not_found` for a missing parent; clients of a body `parent_id` get the 400. */
async function asParentError<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (err) {
    if (err instanceof CloudmuxError && err.code === 'not_found') {
      throw new CloudmuxError('invalid_parent_folder', 'The parent folder does not exist.');
    }
    throw err;
  }
}

/** Encodes a connector's conflicting raw id into the client-facing `conflicting_resource_id`. */
function withConflictId(scope: Pick<StorageScope, 'ids'>, type: StorageItemType) {
  return (err: unknown): never => {
    if (
      err instanceof CloudmuxError &&
      err.code === 'naming_conflict' &&
      err.conflictingRawId &&
      !err.conflictingResourceId
    ) {
      err.conflictingResourceId = scope.ids.encode(type, err.conflictingRawId);
    }
    throw err;
  };
}

function conflictMode(request: FastifyRequest, param = 'overwrite'): ConflictMode {
  const value = parseBool((request.query as Record<string, unknown>)[param], param);
  return value ? 'replace' : 'rename';
}

function contentLength(request: FastifyRequest): number | null {
  const header = request.headers['content-length'];
  if (header === undefined) return null;
  const n = Number(header);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

function recordEvent(
  deps: ServerDeps,
  request: FastifyRequest,
  scope: StorageScope,
  action: Parameters<ServerDeps['journal']['record']>[1],
  item: StorageItem | { rawId: string; type: string },
  previousRawId?: string,
) {
  return deps.journal.record(Number(scope.account.id), action, item, {
    ip: request.ip,
    ...(previousRawId !== undefined ? { previousRawId } : {}),
  });
}

export function registerStorageRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const prefix = '/v1/accounts/:account/storage';
  const links = new LinkStore(deps.storeHandle.db);

  // ── files ──────────────────────────────────────────────────────────────

  // §3.1 upload: binary body + X-Kloudless-Metadata, or JSON {url, parent_id, name}.
  app.post(`${prefix}/files`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const mode = conflictMode(request);
    const type = clientContentType(request);
    if (type === 'application/json' && request.headers['x-kloudless-metadata'] === undefined) {
      // Upload from a URL (the File Picker's Saver): fetched by the server through the network guard.
      const body = parseBody(request.body, urlUploadBody);
      validateItemName(body.name);
      parseSourceUrl(body.url);
      const plan: UrlUploadPlan = {
        accountId: Number(scope.account.id),
        url: body.url,
        parentRawId: parentRawId(scope, body.parent_id),
        name: body.name,
        mode,
        rawData: scope.rawData,
      };
      if (isAsync(request)) return acceptAsTask(reply, scope, 'storage.upload_url', { ...plan });
      const result = await executeUrlUpload(deps, plan, request.ip);
      return sendJson(reply, result.status, result.body);
    }
    const meta = parseJsonHeader(
      request.headers['x-kloudless-metadata'],
      'X-Kloudless-Metadata',
      uploadMetadataSchema,
    );
    validateItemName(meta.name);
    const parent = parentRawId(scope, meta.parent_id);
    const item = await asParentError(
      uploadWithMode(scope.storage, parent, meta.name, request.raw, mode, {
        size: contentLength(request),
        mimeType: type && type !== 'application/octet-stream' ? type : null,
      }),
    ).catch(withConflictId(scope, 'file'));
    await recordEvent(deps, request, scope, 'add', item);
    return sendJson(reply, 201, render(scope, deps, item));
  });

  app.get(`${prefix}/files/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, 'file');
    return sendJson(reply, 200, render(scope, deps, await scope.storage.get(rawId, 'file')));
  });

  app.get(`${prefix}/files/:id/contents`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, 'file');
    await sendContents(request, reply, scope, rawId);
    return reply;
  });

  // §3.1 PUT replaces the contents.
  app.put(`${prefix}/files/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, 'file');
    const item = await scope.storage.updateContents(rawId, request.raw, { size: contentLength(request) });
    await recordEvent(deps, request, scope, 'update', item);
    return sendJson(reply, 200, render(scope, deps, item));
  });

  app.patch(`${prefix}/files/:id`, async (request, reply) => moveItem(request, reply, 'file'));
  app.patch(`${prefix}/folders/:id`, async (request, reply) => moveItem(request, reply, 'folder'));
  app.post(`${prefix}/files/:id/copy`, async (request, reply) => copyItem(request, reply, 'file'));
  app.post(`${prefix}/folders/:id/copy`, async (request, reply) => copyItem(request, reply, 'folder'));

  app.delete(`${prefix}/files/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, 'file');
    const permanent = parseBool((request.query as Record<string, unknown>).permanent, 'permanent') ?? false;
    await scope.storage.delete(rawId, 'file', { recursive: false, permanent });
    await recordEvent(deps, request, scope, 'delete', { rawId, type: 'file' });
    return reply.status(204).send();
  });

  // ── folders ────────────────────────────────────────────────────────────

  app.get(`${prefix}/folders/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, 'folder');
    return sendJson(reply, 200, render(scope, deps, await scope.storage.get(rawId, 'folder')));
  });

  app.get(`${prefix}/folders/:id/contents`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const id = (request.params as { id: string }).id;
    const rawId = scope.ids.decode(id, 'folder');
    const query = request.query as Record<string, unknown>;
    const pageSize = parsePageSize(
      query.page_size,
      scope.runtime.definition.policies.pagination.defaultPageSize,
    );
    const context = {
      accountId: Number(scope.account.id),
      resource: pageResource(`folders/${rawId}/contents`),
      pageSize,
    };
    const position = deps.pages.parse(firstValue(query.page), context);
    const page = await seekPage(position, (cursor) =>
      scope.storage.list(rawId, { pageSize, ...(cursor ? { cursor } : {}) }),
    );
    assertPageExists(
      position,
      { itemCount: page.items.length, ...(page.total !== undefined ? { total: page.total } : {}) },
      pageSize,
    );
    return sendJson(reply, 200, {
      count: page.items.length,
      page: position.source === 'token' ? (firstValue(query.page) ?? null) : position.page,
      next_page: deps.pages.next(context, position.page, page.cursor),
      objects: page.items.map((item) => render(scope, deps, item)),
      ...(page.total !== undefined ? { total: page.total } : {}),
      type: 'object_list',
      api: 'storage',
    });
  });

  app.post(`${prefix}/folders`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const body = parseBody(request.body, createFolderBody);
    validateItemName(body.name);
    const conflictIfExists =
      parseBool((request.query as Record<string, unknown>).conflict_if_exists, 'conflict_if_exists') ?? false;
    const parent = parentRawId(scope, body.parent_id);
    try {
      const item = await asParentError(scope.storage.createFolder(parent, body.name));
      await recordEvent(deps, request, scope, 'add', item);
      return sendJson(reply, 201, render(scope, deps, item));
    } catch (err) {
      if (!(err instanceof CloudmuxError) || err.code !== 'naming_conflict') throw err;
      const existing = await scope.storage.lookup(parent, body.name);
      if (conflictIfExists || !existing || existing.type !== 'folder')
        withConflictId(scope, existing?.type ?? 'folder')(err);
      // conflict_if_exists=false: Kloudless returned the existing folder.
      return sendJson(reply, 200, render(scope, deps, existing!));
    }
  });

  app.delete(`${prefix}/folders/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, 'folder');
    if (rawId === scope.storage.rootRawId)
      throw new CloudmuxError('forbidden', 'The root folder cannot be deleted.');
    const query = request.query as Record<string, unknown>;
    const recursive = parseBool(query.recursive, 'recursive') ?? false;
    const permanent = parseBool(query.permanent, 'permanent') ?? false;
    const plan = { accountId: Number(scope.account.id), rawId, recursive, permanent };
    // Only large (recursive) deletes run as tasks; a plain one answers folder_not_empty at once.
    if (recursive && isAsync(request)) {
      await scope.storage.get(rawId, 'folder');
      return acceptAsTask(reply, scope, 'storage.delete_folder', plan);
    }
    await executeFolderDelete(deps, plan, request.ip);
    return reply.status(204).send();
  });

  // ── shared handlers ────────────────────────────────────────────────────

  /** `X-Kloudless-Async`: the plan is persisted as a task before the 202 carrying it is sent. */
  async function acceptAsTask(
    reply: FastifyReply,
    scope: StorageScope,
    kind: string,
    params: { accountId: number } & Record<string, unknown>,
  ) {
    const task = await deps.tasks.enqueue({
      appId: scope.principal.app.id,
      accountId: params.accountId,
      kind,
      params,
    });
    return sendJson(reply, 202, renderTask(task));
  }

  async function moveItem(request: FastifyRequest, reply: FastifyReply, type: StorageItemType) {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, type);
    const body = parseBody(request.body, moveBody);
    if (body.name !== undefined) validateItemName(body.name);
    if (rawId === scope.storage.rootRawId)
      throw new CloudmuxError('forbidden', 'The root folder cannot be renamed or moved.');
    if (body.account !== undefined && String(body.account) !== String(scope.account.id)) {
      // Cross-account move: stream a copy into the target account, then delete the source.
      const target = await targetAccount(deps, request, reply, scope.principal, body.account);
      const source = await scope.storage.get(rawId, type);
      const parent = body.parent_id
        ? parentRawId({ ...scope, ...target }, body.parent_id)
        : target.storage.rootRawId;
      const moved = await asParentError(
        copyAcross(scope.storage, rawId, type, target.storage, parent, body.name ?? source.name, 'fail'),
      ).catch(withConflictId(target, type));
      await scope.storage.delete(rawId, type, { recursive: true, permanent: true });
      await recordEvent(deps, request, scope, 'delete', { rawId, type });
      await deps.journal.record(Number(target.account.id), 'add', moved, { ip: request.ip });
      return sendJson(reply, 200, render(target, deps, moved));
    }
    const parent = body.parent_id !== undefined ? parentRawId(scope, body.parent_id) : undefined;
    const item = await asParentError(
      scope.storage.move(rawId, type, {
        ...(parent !== undefined ? { parentRawId: parent } : {}),
        ...(body.name !== undefined ? { name: body.name } : {}),
      }),
    ).catch(withConflictId(scope, type));
    await links.followMove(Number(scope.account.id), type, rawId, item.rawId);
    await recordEvent(deps, request, scope, parent !== undefined ? 'move' : 'rename', item, rawId);
    return sendJson(reply, 200, render(scope, deps, item));
  }

  async function copyItem(request: FastifyRequest, reply: FastifyReply, type: StorageItemType) {
    const scope = await storageScope(deps, request, reply);
    const rawId = scope.ids.decode((request.params as { id: string }).id, type);
    const body = parseBody(request.body, copyBody);
    if (body.name !== undefined) validateItemName(body.name);
    const plan: CopyPlan = {
      accountId: Number(scope.account.id),
      type,
      rawId,
      mode: conflictMode(request),
      rawData: scope.rawData,
    };
    if (body.name !== undefined) plan.name = body.name;
    let target = scope as Omit<StorageScope, 'principal'>;
    if (body.account !== undefined && String(body.account) !== String(scope.account.id)) {
      // Authorised now, with the caller's credentials; the task only replays the plan.
      target = await targetAccount(deps, request, reply, scope.principal, body.account);
      plan.targetAccountId = Number(target.account.id);
    }
    if (body.parent_id) plan.parentRawId = parentRawId({ ...scope, ...target }, body.parent_id);
    if (isAsync(request)) return acceptAsTask(reply, scope, 'storage.copy', { ...plan });
    const result = await executeCopy(deps, plan, request.ip);
    return sendJson(reply, result.status, result.body);
  }
}

/** What a copy needs once authorised and decoded: replayable by the task runner after a 202. */
interface CopyPlan {
  accountId: number;
  type: StorageItemType;
  rawId: string;
  targetAccountId?: number;
  parentRawId?: string;
  name?: string;
  mode: ConflictMode;
  rawData: boolean;
}

async function accountRow(deps: ServerDeps, id: number) {
  const row = await deps.store.getAccountById(id);
  if (!row) throw new CloudmuxError('not_found', 'Account not found.');
  return row;
}

export async function executeCopy(deps: ServerDeps, plan: CopyPlan, ip: string | null = null) {
  const source = await storageRuntimeFor(deps, await accountRow(deps, plan.accountId), {
    rawData: plan.rawData,
  });
  const item = await source.storage.get(plan.rawId, plan.type);
  const name = plan.name ?? item.name;
  if (plan.targetAccountId !== undefined) {
    const target = await storageRuntimeFor(deps, await accountRow(deps, plan.targetAccountId), {
      rawData: plan.rawData,
    });
    const parent = plan.parentRawId ?? target.storage.rootRawId;
    const copied = await asParentError(
      copyAcross(source.storage, plan.rawId, plan.type, target.storage, parent, name, plan.mode),
    ).catch(withConflictId(target, plan.type));
    await deps.journal.record(plan.targetAccountId, 'add', copied, { ip });
    return { status: 201, body: render(target, deps, copied) };
  }
  const parent = plan.parentRawId ?? item.parentRawId ?? source.storage.rootRawId;
  const copied = await asParentError(
    copyWithin(source.storage, plan.rawId, plan.type, parent, name, plan.mode),
  ).catch(withConflictId(source, plan.type));
  await deps.journal.record(plan.accountId, 'copy', copied, { ip });
  return { status: 201, body: render(source, deps, copied) };
}

export async function executeFolderDelete(
  deps: ServerDeps,
  plan: { accountId: number; rawId: string; recursive: boolean; permanent: boolean },
  ip: string | null = null,
  options: { task?: boolean } = {},
) {
  const scope = await storageRuntimeFor(deps, await accountRow(deps, plan.accountId));
  try {
    await scope.storage.delete(plan.rawId, 'folder', {
      recursive: plan.recursive,
      permanent: plan.permanent,
    });
  } catch (err) {
    // A resumed delete task may find the folder already gone: that is the outcome asked for. A
    // request for a folder that does not exist is still a 404.
    if (!(err instanceof CloudmuxError && err.code === 'not_found' && plan.recursive && options.task))
      throw err;
  }
  await deps.journal.record(plan.accountId, 'delete', { rawId: plan.rawId, type: 'folder' }, { ip });
  return { status: 204, body: null };
}

/** `X-Kloudless-Async: true` or `?return_type=task` (the File Picker sends both). */
function isAsync(request: FastifyRequest): boolean {
  const header = request.headers['x-kloudless-async'];
  const returnType = (request.query as Record<string, unknown>).return_type;
  return (
    parseBool(Array.isArray(header) ? header[0] : header, 'X-Kloudless-Async') === true ||
    firstValue(returnType) === 'task'
  );
}

interface UrlUploadPlan {
  accountId: number;
  url: string;
  parentRawId: string;
  name: string;
  mode: ConflictMode;
  rawData: boolean;
}

const urlGuards = new WeakMap<ServerDeps, NetworkGuard>();

/** The guard URL uploads fetch through: public addresses only unless the operator says otherwise. */
function urlGuard(deps: ServerDeps): NetworkGuard {
  let guard = urlGuards.get(deps);
  if (!guard) {
    guard = createNetworkGuard({
      policy: {
        mode: deps.config.urlUploadNetwork,
        ...(deps.config.allowedNetworks ? { allowedNetworks: deps.config.allowedNetworks } : {}),
      },
    });
    urlGuards.set(deps, guard);
  }
  return guard;
}

export async function executeUrlUpload(deps: ServerDeps, plan: UrlUploadPlan, ip: string | null = null) {
  const scope = await storageRuntimeFor(deps, await accountRow(deps, plan.accountId), {
    rawData: plan.rawData,
  });
  const source = await fetchSource(plan.url, urlGuard(deps));
  const item = await asParentError(
    uploadWithMode(scope.storage, plan.parentRawId, plan.name, source.stream, plan.mode, {
      size: source.size,
      mimeType: source.contentType,
    }),
  )
    .catch(withConflictId(scope, 'file'))
    .finally(() => source.stream.destroy());
  await deps.journal.record(plan.accountId, 'add', item, { ip });
  return { status: 201, body: render(scope, deps, item) };
}

export function registerStorageTasks(deps: ServerDeps): void {
  deps.tasks.register('storage.upload_url', {
    idempotent: false,
    run: (params) => executeUrlUpload(deps, params as unknown as UrlUploadPlan),
  });
  deps.tasks.register('storage.copy', {
    idempotent: false,
    run: (params) => executeCopy(deps, params as unknown as CopyPlan),
  });
  deps.tasks.register('storage.delete_folder', {
    idempotent: true,
    run: (params) =>
      executeFolderDelete(deps, params as unknown as Parameters<typeof executeFolderDelete>[1], null, {
        task: true,
      }),
  });
}

/** Streams a file's bytes, honouring one `Range: bytes=` range (206) or serving it whole. */
export async function sendContents(
  request: FastifyRequest,
  reply: FastifyReply,
  scope: Pick<StorageScope, 'storage'>,
  rawId: string,
  options: { disposition?: 'attachment' | 'inline' } = {},
): Promise<void> {
  const range = parseRange(typeof request.headers.range === 'string' ? request.headers.range : undefined);
  let meta: StorageItem | undefined;
  let wanted: { start: number; end?: number } | undefined;
  if (range) {
    meta = await scope.storage.get(rawId, 'file');
    const size = meta.size;
    if (size !== null) {
      if (range.suffix !== undefined) {
        if (range.suffix === 0) throw unsatisfiable(size);
        wanted = { start: Math.max(0, size - range.suffix) };
      } else {
        if (range.start >= size) throw unsatisfiable(size);
        wanted = {
          start: range.start,
          ...(range.end !== undefined ? { end: Math.min(range.end, size - 1) } : {}),
        };
      }
      if (size === 0) wanted = undefined;
    }
  }
  const result = await scope.storage.download(rawId, wanted ? { range: wanted } : {});
  meta ??= await scope.storage.get(rawId, 'file').catch(() => undefined);
  const name = meta?.name ?? 'download';
  reply.header('accept-ranges', 'bytes');
  reply.header('content-type', result.contentType ?? meta?.mimeType ?? 'application/octet-stream');
  reply.header(
    'content-disposition',
    `${options.disposition ?? 'attachment'}; filename*=UTF-8''${encodeURIComponent(name)}`,
  );
  if (result.range) {
    reply.status(206);
    reply.header('content-range', `bytes ${result.range.start}-${result.range.end}/${result.range.total}`);
    reply.header('content-length', String(result.range.end - result.range.start + 1));
  } else {
    reply.status(200);
    const size = result.size ?? meta?.size;
    if (size !== undefined && size !== null) reply.header('content-length', String(size));
  }
  // If the upstream stream fails midway the status line is already out: abort the connection so
  // the client sees a truncated transfer instead of a silently short file.
  result.stream.once('error', (err) => {
    request.log.warn({ err }, 'download stream failed midway');
    reply.raw.destroy(err);
  });
  await reply.send(result.stream);
}

function unsatisfiable(size: number): CloudmuxError {
  return new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.', {
    status: 416,
    headers: { 'Content-Range': `bytes */${size}` },
  });
}
