/**
 * Operations: request metrics and the request context on every route, and `GET /metrics`
 * (Prometheus text). `/health` and `/ready` are part of the app itself (src/http/app.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { ServerDeps } from '../http/deps.js';
import { runInRequest } from '../ops/context.js';
import { markLive, metricsOf, UNMATCHED_ROUTE } from '../ops/metrics.js';

/** nginx's "client closed request": the response never finished. */
const CLIENT_CLOSED = 499;

export function registerOpsRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const metrics = metricsOf(deps);
  markLive(metrics, true);
  app.addHook('onClose', async () => markLive(metrics, false));

  // Counted when the response closes, which also covers requests whose client went away (Fastify's
  // onResponse does not run for those).
  app.addHook('onRequest', async (request, reply) => {
    const started = process.hrtime.bigint();
    metrics.requestStarted();
    reply.raw.once('close', () => {
      metrics.requestFinished();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const status = reply.raw.writableFinished ? reply.raw.statusCode : CLIENT_CLOSED;
      metrics.recordRequest(request.method, request.routeOptions.url ?? UNMATCHED_ROUTE, status, seconds);
    });
  });

  // The handler runs inside the request context (set after body parsing, whose stream callbacks
  // would not carry it), so root-logger lines and upstream calls are tied to this request.
  app.addHook('preHandler', (request, _reply, done) => {
    runInRequest({ reqId: request.id, metrics }, done);
  });

  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await metrics.render();
    return reply
      .status(200)
      .header('content-type', contentType)
      .header('cache-control', 'no-store')
      .send(body);
  });
}
