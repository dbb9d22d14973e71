import * as z from 'zod';
import { queries } from '../schemas.js';
import type { RouteDoc } from '../types.js';

const prefix = '/v1/applications/:app_id/webhooks';
const appId = { app_id: 'Application id (the API key’s own; another app’s is `not_found`)' };

const webhook = z.object({
  id: z.number().int(),
  url: z.string().describe('Receiver URL'),
  application: z.string(),
  created: z.string(),
  href: z.string(),
  api: z.literal('meta'),
  type: z.literal('webhook'),
});
const webhookList = z.object({
  count: z.number().int(),
  page: z.union([z.string(), z.number().int()]).nullable(),
  next_page: z.string().nullable(),
  objects: z.array(webhook),
  total: z.number().int(),
  type: z.literal('object_list'),
  api: z.literal('meta'),
});
const signingKey = z.object({
  signing_key: z.string().describe('HMAC-SHA256 key of `X-Kloudless-Signature` on every delivery'),
  application: z.string(),
  algorithm: z.literal('HMAC-SHA256'),
  header: z.literal('X-Kloudless-Signature'),
  api: z.literal('meta'),
  type: z.literal('webhook_signing_key'),
});
const errors = ['forbidden', 'not_found', 'too_many_requests'] as const;

export const webhookRoutes: RouteDoc[] = [
  {
    method: 'GET',
    path: prefix,
    operationId: 'listWebhooks',
    tag: 'Webhooks',
    summary: 'List webhooks',
    auth: 'api_key',
    params: appId,
    query: queries.paging,
    responses: { 200: { description: 'A page of webhooks (with `total`).', json: webhookList } },
    errors: [...errors, 'invalid_parameters'],
  },
  {
    method: 'POST',
    path: prefix,
    operationId: 'createWebhook',
    tag: 'Webhooks',
    summary: 'Add a webhook',
    description: 'Event notifications are POSTed to `url`, signed with the application’s signing key.',
    auth: 'api_key',
    params: appId,
    body: {
      required: true,
      json: z.looseObject({ url: z.string().min(1).max(4096).describe('Receiver URL') }),
    },
    responses: { 201: { description: 'The webhook.', json: webhook } },
    errors: [...errors, 'invalid_parameters'],
  },
  {
    method: 'GET',
    path: `${prefix}/signing_key`,
    operationId: 'getWebhookSigningKey',
    tag: 'Webhooks',
    summary: 'The signing key of deliveries',
    auth: 'api_key',
    params: appId,
    responses: { 200: { description: 'The key.', json: signingKey } },
    errors: [...errors],
  },
  {
    method: 'POST',
    path: `${prefix}/signing_key`,
    operationId: 'rotateWebhookSigningKey',
    tag: 'Webhooks',
    summary: 'Rotate the signing key',
    description: 'The old key stops verifying at once; queued retries are signed with the new one.',
    auth: 'api_key',
    params: appId,
    responses: { 200: { description: 'The new key.', json: signingKey } },
    errors: [...errors],
  },
  {
    method: 'GET',
    path: `${prefix}/:webhook_id`,
    operationId: 'getWebhook',
    tag: 'Webhooks',
    summary: 'Get a webhook',
    auth: 'api_key',
    params: { ...appId, webhook_id: 'Webhook id' },
    responses: { 200: { description: 'The webhook.', json: webhook } },
    errors: [...errors],
  },
  {
    method: 'DELETE',
    path: `${prefix}/:webhook_id`,
    operationId: 'deleteWebhook',
    tag: 'Webhooks',
    summary: 'Remove a webhook',
    auth: 'api_key',
    params: { ...appId, webhook_id: 'Webhook id' },
    responses: { 204: { description: 'Removed; the body is empty.' } },
    errors: [...errors],
  },
];
