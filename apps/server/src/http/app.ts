/**
 * The Fastify application: HTTP hygiene the Kloudless clients depend on (kloudless-api.md §8),
 * then the route groups.
 */
import { randomUUID } from 'node:crypto';
import { CloudmuxError } from '@cloudmux/core';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { createGcPacer } from '../ops/gc-pacer.js';
import { registerAccountRoutes } from '../routes/accounts.js';
import { registerStorageRoutes } from '../routes/storage.js';
import { sendJson } from '../routes/util.js';
import type { ServerDeps } from './deps.js';
import { sendError } from './errors.js';
import { keepFileBytesUnparsed } from './params.js';

export interface BuildAppOptions {
  logger: PinoLogger;
  /** Extra route groups (links, multipart, events, …), registered after the core ones. */
  plugins?: Array<(app: FastifyInstance, deps: ServerDeps) => void>;
}

const CORS_HEADERS = [
  'Authorization',
  'Content-Type',
  'Range',
  'X-Kloudless-Metadata',
  'X-Kloudless-Raw-Data',
  'X-Kloudless-Raw-Headers',
  'X-Kloudless-As-User',
  'X-Kloudless-Raw-URI',
  'X-Kloudless-Raw-Method',
  'X-Kloudless-Async',
  'X-Kloudless-Source',
  'X-Drop-Account',
  'X-Drop-Folder',
  'X-Picker-Id',
  'X-Explorer-Id',
].join(', ');
const CORS_EXPOSE =
  'Content-Range, Content-Length, Content-Disposition, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, X-Request-Id';
/** A refused JSON body is read and discarded up to this much, so the client can send it and read the 400. */
const DRAIN_LIMIT = 64 * 1024 * 1024;
/** Routes whose bodies stream (file bytes, pass-through): the GC pacer runs while they do. */
const STREAMING_ROUTES = new Set([
  'POST /v1/accounts/:account/raw',
  'GET /v1/accounts/:account/storage/files/:id/contents',
  'POST /v1/accounts/:account/storage/files',
  'PUT /v1/accounts/:account/storage/files/:id',
  'PUT /v1/accounts/:account/storage/multipart/:id',
  'GET /l/:id',
  'POST /l/:id',
]);

/** Route patterns by method, to tell a wrong method (405) from an unknown path (404). */
class RouteMethods {
  readonly #routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];

  add(url: string, method: string | string[]): void {
    const segment = (s: string) => {
      if (s.startsWith(':')) return '[^/]+';
      return s === '*' ? '.*' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    };
    const source = url.replace(/\/+$/, '').split('/').map(segment).join('/');
    const pattern = new RegExp(`^${source}$`);
    let entry = this.#routes.find((r) => r.pattern.source === pattern.source);
    if (!entry) {
      entry = { pattern, methods: new Set() };
      this.#routes.push(entry);
    }
    for (const m of Array.isArray(method) ? method : [method]) entry.methods.add(m.toUpperCase());
  }

  /** The methods some route serves on this path (the same normalisation as the router's options). */
  allowed(url: string): string[] {
    const path = (url.split('?')[0] ?? '').replace(/\/{2,}/g, '/').replace(/\/+$/, '');
    const methods = new Set<string>();
    for (const route of this.#routes) {
      if (route.pattern.test(path)) for (const m of route.methods) methods.add(m);
    }
    return [...methods];
  }
}

/**
 * Reads and discards the rest of a request body the server refused (bounded), so the client is
 * not reset while still sending and the connection stays usable. False when it was too large.
 */
function drainBody(request: FastifyRequest): Promise<boolean> {
  const raw = request.raw;
  if (raw.readableEnded || raw.destroyed) return Promise.resolve(!raw.destroyed);
  return new Promise((resolve) => {
    let seen = 0;
    const finish = (ok: boolean) => {
      raw.off('data', onData).off('end', onEnd).off('error', onError);
      resolve(ok);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > DRAIN_LIMIT) {
        raw.pause();
        finish(false);
      }
    };
    const onEnd = () => finish(true);
    const onError = () => finish(false);
    raw.on('data', onData).once('end', onEnd).once('error', onError);
    raw.resume();
  });
}

export function buildApp(deps: ServerDeps, options: BuildAppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger as unknown as FastifyBaseLogger,
    routerOptions: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: true, maxParamLength: 10_000 },
    bodyLimit: deps.config.bodyLimit,
    genReqId: () => randomUUID(),
    // Answered below in the Kloudless envelope instead of Fastify's own 503 body.
    return503OnClosing: false,
    // Uploads are long: no request timeout; idle sockets still time out.
    requestTimeout: 0,
    // Malformed URLs (bad percent-encoding, overlong ids) get the envelope too, not Fastify's own body.
    frameworkErrors: (err, request, reply) => sendError(request, reply, err),
  });
  const routes = new RouteMethods();
  app.addHook('onRoute', (route) => routes.add(route.url, route.method));

  // JSON: an empty body (the SDKs send `Content-Type: application/json` with nothing) is no body.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(
    ['application/json', 'application/merge-patch+json'],
    { parseAs: 'string' },
    (_request, body, done) => {
      const text = (body as string).trim();
      if (text === '') return done(null, undefined);
      try {
        done(null, JSON.parse(text));
      } catch {
        done(new CloudmuxError('invalid_parameters', 'The request body is not valid JSON.'), undefined);
      }
    },
  );
  // Everything else — file bytes, and form bodies (curl's default for --data-binary), which the few
  // form routes read with `readForm` — is left unread for the route to stream from `request.raw`.
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });

  const pacer = createGcPacer({ intervalMs: deps.config.gcPaceMs });
  app.addHook('onClose', async () => pacer.close());
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    keepFileBytesUnparsed(request);
    if (STREAMING_ROUTES.has(`${request.method} ${request.routeOptions.url ?? ''}`)) pacer.track(reply.raw);
    if (closing) {
      // Draining for shutdown: new requests on kept-alive connections are refused, and the connection closed.
      reply.header('connection', 'close');
      return sendError(
        request,
        reply,
        new CloudmuxError('service_not_available', 'The server is shutting down; retry the request.'),
      );
    }
    const origin = request.headers.origin;
    if (origin) {
      reply.header('access-control-allow-origin', origin);
      reply.header('vary', 'Origin');
      reply.header('access-control-expose-headers', CORS_EXPOSE);
    }
    if (request.method === 'OPTIONS' && origin) {
      reply
        .header('access-control-allow-methods', 'GET, POST, PUT, PATCH, DELETE, OPTIONS')
        .header(
          'access-control-allow-headers',
          request.headers['access-control-request-headers'] ?? CORS_HEADERS,
        )
        .header('access-control-max-age', '600')
        .status(204)
        .send();
    }
  });

  // Kloudless clients compare `Content-Type` to `application/json` exactly: no charset suffix.
  // Pass-through answers (route config `upstreamHeaders`) keep the upstream's header as it was.
  app.addHook('onSend', async (request, reply, payload) => {
    if ((request.routeOptions.config as { upstreamHeaders?: boolean } | undefined)?.upstreamHeaders)
      return payload;
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('application/json'))
      reply.header('content-type', 'application/json');
    return payload;
  });

  app.setErrorHandler(async (err, request, reply) => {
    if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const declared = Number(request.headers['content-length']);
      // Fastify asks for `Connection: close` after a body error; drained, the connection can stay.
      if (!(declared > DRAIN_LIMIT) && (await drainBody(request))) reply.removeHeader('connection');
    }
    return sendError(request, reply, err);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const allowed = routes.allowed(request.url);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      const message = `${request.method} is not allowed on ${path}; use ${allowed.join(', ')}.`;
      return sendError(request, reply, new CloudmuxError('method_not_allowed', message));
    }
    const notFound = `No route for ${request.method} ${path}.`;
    return sendError(request, reply, new CloudmuxError('not_found', notFound));
  });

  app.get('/health', async (_request, reply) => sendJson(reply, 200, { status: 'ok' }));
  app.get('/ready', async (_request, reply) => {
    const ready = await deps.storeHandle.migrated().catch(() => false);
    return sendJson(reply, ready ? 200 : 503, {
      status: ready ? 'ready' : 'unavailable',
      store: deps.storeHandle.dialect,
    });
  });

  registerAccountRoutes(app, deps);
  registerStorageRoutes(app, deps);
  for (const plugin of options.plugins ?? []) plugin(app, deps);
  return app;
}
