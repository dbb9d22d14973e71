/**
 * `GET /v1/openapi.json` (OpenAPI 3.1, built from the route table and the zod schemas) and
 * `GET /docs` (the same document as a static HTML page; nothing is loaded from elsewhere).
 */
import type { FastifyInstance } from 'fastify';
import type { OpenAPIV3_1 } from 'openapi-types';
import pkg from '../../package.json' with { type: 'json' };
import type { ServerDeps } from '../http/deps.js';
import { buildOpenApiDocument } from '../openapi/document.js';
import { renderDocsHtml } from '../openapi/html.js';

// The page has inline styles only: everything else is refused, so a CDN reference could not load.
const DOCS_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function registerOpenapiRoutes(app: FastifyInstance, deps: ServerDeps): void {
  let cached: { document: OpenAPIV3_1.Document; json: string; html: string } | undefined;
  // Built on first use: the document depends only on the route table, the connectors and the public URL.
  const built = () =>
    (cached ??= (() => {
      const document = buildOpenApiDocument({
        publicUrl: deps.config.publicUrl,
        version: pkg.version,
        connectors: deps.registry.all(),
      });
      return { document, json: JSON.stringify(document), html: renderDocsHtml(document) };
    })());

  app.get('/v1/openapi.json', async (_request, reply) => {
    reply.header('cache-control', 'no-cache');
    return reply.status(200).header('content-type', 'application/json').send(built().json);
  });

  app.get('/docs', async (_request, reply) =>
    reply
      .status(200)
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', DOCS_CSP)
      .header('x-content-type-options', 'nosniff')
      .send(built().html),
  );
}
