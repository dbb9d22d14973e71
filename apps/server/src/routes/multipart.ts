/**
 * Storage API multipart uploads (shared/reference/kloudless-api.md §3.6):
 * `POST /storage/multipart[?overwrite=]` → session (201), `GET /storage/multipart/{id}`,
 * `PUT /storage/multipart/{id}?part_number=N` → 200, `POST /storage/multipart/{id}/complete` → File
 * (201, like an upload), `DELETE /storage/multipart/{id}` → 204. Sessions belong to the app and the
 * account; `parallel_uploads` is true only while parts cannot go to a native session (see
 * src/multipart/manager.ts): parts are accepted in any order either way, but in order they stream
 * straight to the service instead of being staged on our disk.
 */
import { CloudmuxError, toKloudlessTime } from '@cloudmux/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import * as z from 'zod';
import type { ServerDeps } from '../http/deps.js';
import { renderItem } from '../http/objects.js';
import { firstValue, parseBody, parseBool } from '../http/params.js';
import { parentRawId, type StorageScope, storageScope } from '../http/scope.js';
import {
  MAX_PARTS,
  multipartManager,
  SESSION_TTL_MS,
  type SessionContext,
  type SessionView,
} from '../multipart/index.js';
import { sendJson } from './util.js';

const initBody = z.looseObject({
  parent_id: z.string().min(1).max(8192),
  name: z.string(),
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).nullable().optional(),
});

function context(scope: StorageScope): SessionContext {
  return {
    appId: scope.principal.app.id,
    accountId: Number(scope.account.id),
    service: scope.account.service,
    storage: scope.storage,
  };
}

function sessionId(request: FastifyRequest): number {
  const id = (request.params as { id: string }).id;
  if (!/^\d{1,15}$/.test(id)) throw new CloudmuxError('not_found', 'Upload session not found.');
  return Number(id);
}

function partNumber(request: FastifyRequest): number {
  const value = firstValue((request.query as Record<string, unknown>).part_number);
  if (value === undefined || !/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > MAX_PARTS) {
    throw new CloudmuxError(
      'invalid_parameters',
      `part_number must be an integer between 1 and ${MAX_PARTS}.`,
    );
  }
  return Number(value);
}

function contentLength(request: FastifyRequest): number | null {
  const header = request.headers['content-length'];
  if (header === undefined) return null;
  const n = Number(header);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

function renderSession(scope: StorageScope, view: SessionView) {
  const { row, parts } = view;
  return {
    id: Number(row.id),
    account: Number(scope.account.id),
    parent_id: scope.ids.encode('folder', row.parent_raw_id),
    name: row.name,
    size: row.size,
    part_size: row.part_size,
    part_count: row.size === null ? null : Math.max(1, Math.ceil(row.size / row.part_size)),
    parallel_uploads: !view.nativeOpen,
    overwrite: row.overwrite === 1,
    status: row.phase,
    ...(row.failure ? { failure: row.failure } : {}),
    parts_received: parts.map((p) => p.part_number),
    bytes_received: parts.reduce((n, p) => n + p.size, 0),
    created: toKloudlessTime(new Date(row.created)),
    modified: toKloudlessTime(new Date(row.modified)),
    expires: toKloudlessTime(new Date(Date.parse(row.modified) + SESSION_TTL_MS)),
    api: 'storage',
    type: 'multipart',
  };
}

export function registerMultipartRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const manager = multipartManager(deps);
  // Stale sessions are swept on startup and periodically.
  app.addHook('onReady', async () => manager.start());
  app.addHook('onClose', async () => manager.stop());

  const prefix = '/v1/accounts/:account/storage/multipart';

  app.post(prefix, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const body = parseBody(request.body, initBody);
    const overwrite = parseBool((request.query as Record<string, unknown>).overwrite, 'overwrite') ?? false;
    const view = await manager.create(context(scope), {
      parentRawId: parentRawId(scope, body.parent_id),
      name: body.name,
      size: body.size ?? null,
      overwrite,
    });
    return sendJson(reply, 201, renderSession(scope, view));
  });

  app.get(`${prefix}/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    return sendJson(
      reply,
      200,
      renderSession(scope, await manager.status(context(scope), sessionId(request))),
    );
  });

  app.put(`${prefix}/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const id = sessionId(request);
    const n = partNumber(request);
    // A JSON content type was parsed (and consumed) by the JSON parser: parts are raw bytes.
    if (request.body !== undefined) {
      throw new CloudmuxError(
        'invalid_parameters',
        'Send the part as raw bytes (Content-Type: application/octet-stream).',
      );
    }
    const view = await manager.putPart(context(scope), id, n, request.raw, contentLength(request));
    return sendJson(reply, 200, renderSession(scope, view));
  });

  app.post(`${prefix}/:id/complete`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const item = await manager.complete(context(scope), sessionId(request), { ip: request.ip });
    return sendJson(
      reply,
      201,
      renderItem(item, scope.ids, { publicUrl: deps.config.publicUrl, rawData: scope.rawData }),
    );
  });

  app.delete(`${prefix}/:id`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    await manager.abort(context(scope), sessionId(request));
    return reply.status(204).send();
  });
}
