/**
 * The webhooks part of the old Kloudless Management API (kloudless-api.md §2.4):
 * `GET|POST /v1/applications/{app_id}/webhooks` and `GET|DELETE /v1/applications/{app_id}/webhooks/{id}`,
 * plus the app's signing key (`GET` reads it, `POST` rotates it), which receivers use where a
 * Kloudless receiver used the API key. Authenticated with the app's own API key; the legacy
 * DeveloperKey is not supported. Another app's id answers `not_found`, as an unknown one does.
 */
import {
  assertPageExists,
  CloudmuxError,
  pageResource,
  toKloudlessTime,
  tooManyRequests,
} from '@cloudmux/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import * as z from 'zod';
import type { ServerDeps } from '../http/deps.js';
import { firstValue, parseBody, parsePageSize } from '../http/params.js';
import { principalOf } from '../http/scope.js';
import { validateWebhookUrl, type WebhookRow, webhooksFor } from '../webhooks/index.js';
import { sendJson } from './util.js';

const DEFAULT_PAGE_SIZE = 100;
const createBody = z.looseObject({ url: z.string().min(1).max(4096) });

export function registerWebhooksRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const prefix = '/v1/applications/:app_id/webhooks';
  const worker = () => webhooksFor(deps);

  /** The calling app, which must be the one the path names, authenticated with an API key. */
  const appOf = async (request: FastifyRequest): Promise<string> => {
    const principal = await principalOf(deps, request);
    if (principal.kind !== 'api_key') {
      throw new CloudmuxError(
        'forbidden',
        'The Management API needs the application’s API key (Authorization: APIKey …).',
      );
    }
    const appId = decodeURIComponent((request.params as { app_id: string }).app_id);
    if (appId !== principal.app.id) throw new CloudmuxError('not_found', 'Application not found.');
    const decision = await deps.limiter.take(`app:${appId}:management`);
    if (!decision.allowed) throw tooManyRequests(decision);
    return appId;
  };

  const webhookId = (request: FastifyRequest): number => {
    const id = (request.params as { webhook_id: string }).webhook_id;
    if (!/^\d{1,15}$/.test(id)) throw new CloudmuxError('not_found', 'Webhook not found.');
    return Number(id);
  };

  const render = (row: WebhookRow) => ({
    id: Number(row.id),
    url: row.url,
    application: row.app_id,
    created: toKloudlessTime(new Date(row.created)),
    href: `${deps.config.publicUrl}/v1/applications/${encodeURIComponent(row.app_id)}/webhooks/${row.id}`,
    api: 'meta',
    type: 'webhook',
  });

  const renderKey = (appId: string, key: string) => ({
    signing_key: key,
    application: appId,
    algorithm: 'HMAC-SHA256',
    header: 'X-Kloudless-Signature',
    api: 'meta',
    type: 'webhook_signing_key',
  });

  app.get(prefix, async (request, reply) => {
    const appId = await appOf(request);
    const query = request.query as Record<string, unknown>;
    const pageSize = parsePageSize(query.page_size, DEFAULT_PAGE_SIZE);
    const context = { accountId: `app:${appId}`, resource: pageResource('webhooks'), pageSize };
    const position = deps.pages.parse(firstValue(query.page), context);
    let offset = (position.page - 1) * pageSize;
    if (position.cursor !== undefined) {
      if (!/^\d{1,15}$/.test(position.cursor))
        throw new CloudmuxError('invalid_parameters', 'Invalid page parameter.');
      offset = Number(position.cursor);
    }
    const [rows, total] = await Promise.all([
      worker().store.list(appId, offset, pageSize),
      worker().store.count(appId),
    ]);
    assertPageExists(position, { itemCount: rows.length, total }, pageSize);
    const nextOffset = offset + rows.length;
    return sendJson(reply, 200, {
      count: rows.length,
      page: position.source === 'token' ? firstValue(query.page) : position.page,
      next_page: deps.pages.next(
        context,
        position.page,
        rows.length > 0 && nextOffset < total ? String(nextOffset) : null,
      ),
      objects: rows.map(render),
      total,
      type: 'object_list',
      api: 'meta',
    });
  });

  app.post(prefix, async (request, reply) => {
    const appId = await appOf(request);
    const body = parseBody(request.body, createBody);
    const url = await validateWebhookUrl(body.url, worker().guard);
    return sendJson(reply, 201, render(await worker().store.create(appId, url)));
  });

  app.get(`${prefix}/signing_key`, async (request, reply) => {
    const appId = await appOf(request);
    return sendJson(reply, 200, renderKey(appId, await worker().store.signingKey(appId)));
  });

  // Rotation: the old key stops verifying at once; queued retries are signed with the new key.
  app.post(`${prefix}/signing_key`, async (request, reply) => {
    const appId = await appOf(request);
    return sendJson(reply, 200, renderKey(appId, await worker().store.rotateSigningKey(appId)));
  });

  app.get(`${prefix}/:webhook_id`, async (request, reply) => {
    const appId = await appOf(request);
    const row = await worker().store.get(appId, webhookId(request));
    if (!row) throw new CloudmuxError('not_found', 'Webhook not found.');
    return sendJson(reply, 200, render(row));
  });

  app.delete(`${prefix}/:webhook_id`, async (request, reply) => {
    const appId = await appOf(request);
    if (!(await worker().store.remove(appId, webhookId(request))))
      throw new CloudmuxError('not_found', 'Webhook not found.');
    return reply.status(204).send();
  });
}
