/**
 * Raw data (API overview "Raw Data and the Pass-through API"): `POST /accounts/{id}/raw` streams an
 * arbitrary upstream request with the account's auth applied, and `encode_raw_id` / the older
 * `storage/convert_id` turn upstream ids into Kloudless ids.
 */
import type { Readable } from 'node:stream';
import {
  CloudmuxError,
  filterForwardedHeaders,
  resolvePassThroughUrl,
  type StorageApi,
} from '@cloudmux/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as z from 'zod';
import type { ServerDeps } from '../http/deps.js';
import { parseBody } from '../http/params.js';
import { accountIds, accountsOf, requestScope } from '../http/scope.js';
import type { AccountRow } from '../store/store.js';
import { sendJson } from './util.js';

/** Response headers that describe our hop, not the upstream resource (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
]);
const METHOD_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/;

function single(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function oneAccount(
  deps: ServerDeps,
  request: FastifyRequest,
  reply: Parameters<typeof accountsOf>[2],
): Promise<AccountRow> {
  const { accounts } = await accountsOf(deps, request, reply);
  if (accounts.length !== 1)
    throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
  return accounts[0]!;
}

export function registerRawRoutes(app: FastifyInstance, deps: ServerDeps): void {
  // Pass-through bodies go upstream unread, whatever their type: in this child context no
  // content-type parser runs (the app's JSON and text parsers would consume a JSON or text body,
  // and the upstream would wait for it forever). Encapsulation keeps the app's parsers elsewhere.
  app.register(async (passThrough) => {
    passThrough.removeAllContentTypeParsers();
    passThrough.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
    passThrough.post('/v1/accounts/:account/raw', { config: { upstreamHeaders: true } }, (request, reply) =>
      forward(request, reply),
    );
  });

  async function forward(request: FastifyRequest, reply: FastifyReply) {
    const account = await oneAccount(deps, request, reply);
    const runtime = await deps.runtime.forAccount(account, requestScope(request));
    const spec = runtime.definition.passThrough;
    if (!spec)
      throw new CloudmuxError(
        'not_implemented',
        `Pass-through requests are not supported for ${runtime.definition.name}.`,
      );
    const rawUri = single(request, 'x-kloudless-raw-uri');
    if (!rawUri) throw new CloudmuxError('bad_request', 'The X-Kloudless-Raw-URI header is required.');
    const method = (single(request, 'x-kloudless-raw-method') ?? 'GET').toUpperCase();
    if (!METHOD_RE.test(method) || method === 'CONNECT')
      throw new CloudmuxError('bad_request', 'Invalid X-Kloudless-Raw-Method.');
    const credentials = runtime.definition.credentials.parse(deps.store.decryptCredentials(account));
    const target = resolvePassThroughUrl(spec, rawUri, credentials);

    const headers = filterForwardedHeaders(request.headers as Record<string, string | string[] | undefined>);
    // The body is whatever the client sent (streamed, any size); GET/HEAD without one send none.
    const hasBody =
      request.headers['content-length'] !== undefined
        ? request.headers['content-length'] !== '0'
        : request.headers['transfer-encoding'] !== undefined;
    const contentLength = request.headers['content-length'];
    if (hasBody && contentLength !== undefined) headers['content-length'] = String(contentLength);
    let upstream: { status: number; headers: Record<string, unknown>; data: Readable };
    try {
      upstream = await runtime.ctx.http.request<Readable>({
        url: target.toString(),
        method,
        headers,
        ...(hasBody ? { data: request.raw } : {}),
        responseType: 'stream',
        decompress: false,
        validateStatus: () => true,
        maxRedirects: 0,
        // The client's body is a live stream: never replayed.
        idempotent: false,
      });
    } catch (err) {
      if (hasBody) request.raw.resume();
      throw err;
    }
    reply.status(upstream.status);
    // An answer to HEAD, a 204 or a 304 has no body. Its Content-Length describes the resource, but
    // ours answers the client's POST, whose body it would describe: it is dropped, or the client
    // would wait for bytes that never come.
    const bodyless = method === 'HEAD' || upstream.status === 204 || upstream.status === 304;
    for (const [name, value] of Object.entries(upstream.headers)) {
      if (value === undefined || value === null || HOP_BY_HOP.has(name.toLowerCase())) continue;
      if (bodyless && name.toLowerCase() === 'content-length') continue;
      reply.header(name, value as string | string[]);
    }
    if (bodyless) {
      upstream.data.resume();
      return reply.send();
    }
    upstream.data.once('error', (err: Error) => {
      request.log.warn({ err }, 'pass-through response stream failed midway');
      reply.raw.destroy(err);
    });
    return reply.send(upstream.data);
  }

  const encodeBody = z.looseObject({
    id: z.string().min(1).max(8192),
    type: z.enum(['file', 'folder']).optional(),
  });

  // API overview "Raw Data -> Kloudless ID": per-service attributes, `root` and `trash` special ids.
  app.post('/v1/accounts/:account/encode_raw_id', async (request, reply) => {
    const account = await oneAccount(deps, request, reply);
    const body = parseBody(request.body, encodeBody);
    return sendJson(reply, 200, {
      id: await encodeRawId(deps, request, account, body),
      api: 'core',
      type: 'kloudless_id',
    });
  });

  const convertBody = z.looseObject({
    raw_id: z.string().min(1).max(8192),
    type: z.enum(['file', 'folder']).optional(),
  });
  // The older form (py1 `Account.convert`): `{raw_id, type}`.
  app.post('/v1/accounts/:account/storage/convert_id', async (request, reply) => {
    const account = await oneAccount(deps, request, reply);
    const body = parseBody(request.body, convertBody);
    const id = await encodeRawId(deps, request, account, { ...body, id: body.raw_id });
    return sendJson(reply, 200, { id, ...(body.type ? { type: body.type } : {}), api: 'core' });
  });
}

async function encodeRawId(
  deps: ServerDeps,
  request: FastifyRequest,
  account: AccountRow,
  body: Record<string, unknown> & { id: string; type?: 'file' | 'folder' },
): Promise<string> {
  const runtime = await deps.runtime.forAccount(account, requestScope(request));
  const { definition } = runtime;
  const storage = runtime.instance.storage as StorageApi | undefined;
  if (body.id === 'root' || body.id === 'trash') {
    if (body.id === 'trash' && storage && storage.trashRawId === undefined)
      throw new CloudmuxError('not_found', 'This service has no trash.');
    return body.id;
  }
  let rawId = body.id;
  if (definition.rawId) {
    const parsed = definition.rawId.attributes.safeParse(body);
    if (!parsed.success) {
      throw new CloudmuxError(
        'invalid_parameters',
        `Invalid attributes for ${definition.service}: ${parsed.error.issues.map((i: { path: PropertyKey[]; message: string }) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
      );
    }
    rawId = definition.rawId.toRawId(parsed.data as Record<string, unknown>);
  }
  if (!storage)
    return deps.ids.encode({
      accountId: Number(account.id),
      service: account.service,
      type: 'object',
      rawId,
    });
  const ids = accountIds(deps, account, storage);
  // Ids are typed (a folder id is not a file id): use the type the client gives, else ask the service.
  let type = body.type;
  if (!type) {
    const asFile = await storage
      .get(rawId, 'file')
      .catch((err: unknown) =>
        err instanceof CloudmuxError && err.code === 'not_found' ? null : Promise.reject(err),
      );
    if (asFile) type = 'file';
    else {
      await storage.get(rawId, 'folder');
      type = 'folder';
    }
  }
  return ids.encode(type, rawId);
}
