/**
 * Builds the OpenAPI 3.1 document from the route table and the zod schemas (`z.toJSONSchema`,
 * draft 2020-12, which OpenAPI 3.1 uses as its schema dialect).
 */
import { ERROR_CATALOG, type ErrorCode } from '@cloudmux/core';
import type { OpenAPIV3_1 } from 'openapi-types';
import * as z from 'zod';
import { ROUTE_DOCS, TAGS } from './routes/index.js';
import { named } from './schemas.js';
import type { DocContext, RouteAuth, RouteDoc } from './types.js';

export interface DocumentOptions extends DocContext {
  /** The server's public base URL (`CLOUDMUX_PUBLIC_URL`). */
  publicUrl: string;
  version: string;
  routes?: readonly RouteDoc[];
}

type Json = OpenAPIV3_1.SchemaObject | OpenAPIV3_1.ReferenceObject;
const COMPONENT = '#/components/schemas/';
const INLINE = '__inline_';

/** Fastify `:param` → OpenAPI `{param}`. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

/**
 * Collects every schema a document needs, then converts them in one registry pass so that named
 * schemas become `$ref`s and descriptions survive (a per-schema pass with a custom registry drops
 * the descriptions zod keeps in its global registry).
 */
class SchemaSet {
  readonly #registry = z.registry<{ id: string }>();
  readonly #ids = new Map<z.ZodType, string>();
  #next = 0;
  #converted?: Record<string, Json>;

  constructor() {
    for (const [id, schema] of Object.entries(named)) this.#add(schema, id);
  }

  #add(schema: z.ZodType, id: string): string {
    this.#registry.add(schema, { id });
    this.#ids.set(schema, id);
    return id;
  }

  /** A placeholder reference, resolved by `resolve` after `convert`. */
  ref(schema: z.ZodType): { $ref: string } {
    const id = this.#ids.get(schema) ?? this.#add(schema, `${INLINE}${this.#next++}`);
    return { $ref: `${COMPONENT}${id}` };
  }

  convert(): void {
    const { schemas } = z.toJSONSchema(this.#registry, {
      io: 'input',
      unrepresentable: 'any',
      uri: (id) => `${COMPONENT}${id}`,
    }) as { schemas: Record<string, Record<string, unknown>> };
    const clean: Record<string, Json> = {};
    for (const [id, schema] of Object.entries(schemas)) {
      const { $schema: _s, $id: _i, ...rest } = schema;
      clean[id] = rest as Json;
    }
    this.#converted = clean;
  }

  /** Inlines the placeholders of unnamed schemas, keeping `$ref`s to named ones. */
  resolve<T>(value: T): T {
    const converted = this.#converted;
    if (!converted) throw new Error('SchemaSet.resolve before convert');
    const walk = (node: unknown): unknown => {
      if (Array.isArray(node)) return node.map(walk);
      if (!node || typeof node !== 'object') return node;
      const ref = (node as { $ref?: unknown }).$ref;
      if (typeof ref === 'string' && ref.startsWith(`${COMPONENT}${INLINE}`)) {
        const target = converted[ref.slice(COMPONENT.length)];
        if (!target) throw new Error(`unresolved schema ${ref}`);
        const { $ref: _r, ...siblings } = node as Record<string, unknown>;
        return { ...(walk(target) as object), ...siblings };
      }
      return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v)]));
    };
    return walk(value) as T;
  }

  /** `components.schemas`: the named ones. */
  components(): Record<string, Json> {
    const converted = this.#converted;
    if (!converted) throw new Error('SchemaSet.components before convert');
    return Object.fromEntries(Object.keys(named).map((id) => [id, this.resolve(converted[id]!)]));
  }
}

const SHARED_PATH_PARAMS: Record<string, string> = {
  account:
    'Account id (numeric), `me` for the account of a bearer token, or comma-separated ids where a route takes several',
  token: 'The bearer token to revoke',
};

const HEADER_PARAMS: Record<string, OpenAPIV3_1.ParameterObject> = {
  RawData: {
    name: 'X-Kloudless-Raw-Data',
    in: 'header',
    description: '`true` adds the upstream object as `raw` to each object',
    schema: { type: 'string', enum: ['true', 'false'] },
  },
  RawHeaders: {
    name: 'X-Kloudless-Raw-Headers',
    in: 'header',
    description: 'JSON object of headers forwarded to the upstream service',
    schema: { type: 'string' },
  },
  AsUser: {
    name: 'X-Kloudless-As-User',
    in: 'header',
    description:
      'Act as this user of an admin account (connectors with impersonation only; others answer `not_implemented`)',
    schema: { type: 'string' },
  },
  Metadata: {
    name: 'X-Kloudless-Metadata',
    in: 'header',
    description: 'JSON: the name of the new file and its parent folder id; required for binary uploads',
    content: { 'application/json': { schema: { $ref: `${COMPONENT}UploadMetadata` } } },
  },
  RawUri: {
    name: 'X-Kloudless-Raw-URI',
    in: 'header',
    required: true,
    description:
      'Pass-through target: a path relative to the service API base, or an absolute URL on its allowed hosts',
    schema: { type: 'string' },
  },
  RawMethod: {
    name: 'X-Kloudless-Raw-Method',
    in: 'header',
    description: 'Pass-through HTTP method (default `GET`)',
    schema: { type: 'string' },
  },
  Async: {
    name: 'X-Kloudless-Async',
    in: 'header',
    description:
      '`true`: run as a task; the answer is 202 with a Task to poll at `/v1/accounts/{account}/tasks/{task}`',
    schema: { type: 'string', enum: ['true', 'false'] },
  },
  Range: {
    name: 'Range',
    in: 'header',
    description: 'One range, `bytes=start-end`, `bytes=start-` or `bytes=-suffix`',
    schema: { type: 'string' },
  },
};

const string = { schema: { type: 'string' } } as const;
const integer = { schema: { type: 'integer' } } as const;
const HEADERS: Record<string, OpenAPIV3_1.HeaderObject> = {
  RequestId: {
    description: 'The request id, also the `id` of an error envelope and the `reqId` of its log lines',
    ...string,
  },
  RetryAfter: { description: 'Seconds to wait before retrying', ...integer },
  RateLimitLimit: { description: 'Requests allowed per window for this account', ...integer },
  RateLimitRemaining: { description: 'Requests left in the window', ...integer },
  RateLimitReset: { description: 'Seconds until the window refills', ...integer },
  ContentRange: { description: '`bytes start-end/total` (or `bytes */total` on 416)', ...string },
  ContentDisposition: { description: "`attachment; filename*=UTF-8''<name>`", ...string },
  AcceptRanges: { description: '`bytes`', ...string },
};

const headerRef = (name: string) => ({ $ref: `#/components/headers/${name}` });

function securityOf(auth: RouteAuth): OpenAPIV3_1.SecurityRequirementObject[] {
  switch (auth) {
    case 'none':
      return [];
    case 'api_key':
      return [{ APIKey: [] }];
    case 'account':
      return [{ APIKey: [] }, { Bearer: [] }];
    case 'bearer':
      return [{ Bearer: [] }];
  }
}

/** The errors a route can answer with: what its auth and account path imply, plus its own. */
export function errorsOf(route: RouteDoc): ErrorCode[] {
  const codes = new Set<ErrorCode>(route.errors ?? []);
  if (route.auth === 'api_key' || route.auth === 'account') {
    codes.add('authentication_required');
    codes.add('unauthorized');
  }
  if (route.auth === 'account') codes.add('invalid_token');
  if (route.path.includes(':account')) {
    codes.add('not_found');
    codes.add('too_many_requests');
    // `me` with an API key.
    codes.add('bad_request');
  }
  if (route.body?.json) codes.add('invalid_parameters');
  return [...codes];
}

function errorResponses(route: RouteDoc): Record<string, OpenAPIV3_1.ResponseObject> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorsOf(route)) {
    const status = ERROR_CATALOG[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, OpenAPIV3_1.ResponseObject> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    if (route.responses[status]) continue;
    const headers: Record<string, OpenAPIV3_1.ReferenceObject> = { 'X-Request-Id': headerRef('RequestId') };
    if (status === 429) {
      headers['Retry-After'] = headerRef('RetryAfter');
      headers['RateLimit-Limit'] = headerRef('RateLimitLimit');
      headers['RateLimit-Remaining'] = headerRef('RateLimitRemaining');
      headers['RateLimit-Reset'] = headerRef('RateLimitReset');
    }
    out[String(status)] = {
      description: `Error envelope; \`error_code\`: ${codes.map((c) => `\`${c}\``).join(', ')}`,
      headers,
      content: { 'application/json': { schema: { $ref: `${COMPONENT}Error` } } },
    };
  }
  out.default = {
    description:
      'Any other error, in the error envelope (`internal_error`, upstream errors such as `bad_gateway`, …)',
    headers: { 'X-Request-Id': headerRef('RequestId') },
    content: { 'application/json': { schema: { $ref: `${COMPONENT}Error` } } },
  };
  return out;
}

function operationOf(route: RouteDoc, schemas: SchemaSet, context: DocContext): OpenAPIV3_1.OperationObject {
  const schemaOf = (source: z.ZodType | ((c: DocContext) => z.ZodType)) =>
    schemas.ref(typeof source === 'function' ? source(context) : source);
  const parameters: Array<OpenAPIV3_1.ParameterObject | OpenAPIV3_1.ReferenceObject> = [];
  for (const [, name] of route.path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)) {
    const description = route.params?.[name!] ?? SHARED_PATH_PARAMS[name!];
    if (!description)
      throw new Error(`${route.method} ${route.path}: path parameter ${name} has no description`);
    parameters.push({ name: name!, in: 'path', required: true, description, schema: { type: 'string' } });
  }
  if (route.query) {
    // One object schema for the whole query; split into parameters after conversion.
    parameters.push({ name: '__query__', in: 'query', schema: schemas.ref(route.query) });
  }
  for (const header of route.headers ?? []) parameters.push({ $ref: `#/components/parameters/${header}` });

  const operation: OpenAPIV3_1.OperationObject = {
    operationId: route.operationId,
    tags: [route.tag],
    summary: route.summary,
    ...(route.description ? { description: route.description } : {}),
    security: securityOf(route.auth),
    parameters,
    responses: {},
  };
  if (route.body) {
    const content: Record<string, OpenAPIV3_1.MediaTypeObject> = {};
    if (route.body.binary) {
      content['application/octet-stream'] = {
        schema: {
          type: 'string',
          contentMediaType: 'application/octet-stream',
          description: route.body.binary,
        },
      };
    }
    if (route.body.json) content['application/json'] = { schema: schemaOf(route.body.json) };
    if (route.body.form) content['application/x-www-form-urlencoded'] = { schema: schemaOf(route.body.form) };
    operation.requestBody = {
      required: route.body.required ?? false,
      content,
      ...(route.body.description ? { description: route.body.description } : {}),
    };
  }
  const responses: Record<string, OpenAPIV3_1.ResponseObject> = {};
  for (const [status, response] of Object.entries(route.responses)) {
    const headers: Record<string, OpenAPIV3_1.ReferenceObject> = { 'X-Request-Id': headerRef('RequestId') };
    for (const h of response.headers ?? []) {
      headers[
        {
          ContentRange: 'Content-Range',
          ContentDisposition: 'Content-Disposition',
          AcceptRanges: 'Accept-Ranges',
        }[h]
      ] = headerRef(h);
    }
    const content: Record<string, OpenAPIV3_1.MediaTypeObject> = {};
    if (response.json) content['application/json'] = { schema: schemaOf(response.json) };
    if (response.binary) content['*/*'] = { schema: { type: 'string', description: response.binary } };
    if (response.html) content['text/html'] = { schema: { type: 'string', description: response.html } };
    if (response.text) content['text/plain'] = { schema: { type: 'string', description: response.text } };
    responses[status] = {
      description: response.description,
      headers,
      ...(Object.keys(content).length ? { content } : {}),
    };
  }
  operation.responses = { ...responses, ...errorResponses(route) };
  return operation;
}

/** Replaces the `__query__` placeholder of each operation with one parameter per query field. */
function splitQueries(document: OpenAPIV3_1.Document): void {
  for (const item of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(item ?? {}) as OpenAPIV3_1.OperationObject[]) {
      const params = operation.parameters as Array<OpenAPIV3_1.ParameterObject | OpenAPIV3_1.ReferenceObject>;
      const index = params.findIndex((p) => 'name' in p && p.name === '__query__');
      if (index < 0) continue;
      const query = (params[index] as OpenAPIV3_1.ParameterObject).schema as OpenAPIV3_1.SchemaObject;
      const required = new Set(query.required ?? []);
      const expanded = Object.entries(query.properties ?? {}).map(([name, schema]) => {
        const { description, ...rest } = schema as OpenAPIV3_1.SchemaObject;
        return {
          name,
          in: 'query',
          required: required.has(name),
          ...(description ? { description } : {}),
          schema: rest,
        } as OpenAPIV3_1.ParameterObject;
      });
      params.splice(index, 1, ...expanded);
    }
  }
}

export function buildOpenApiDocument(options: DocumentOptions): OpenAPIV3_1.Document {
  const routes = options.routes ?? ROUTE_DOCS;
  const schemas = new SchemaSet();
  const paths: Record<string, OpenAPIV3_1.PathItemObject> = {};
  const seen = new Set<string>();
  for (const route of routes) {
    const key = `${route.method} ${route.path}`;
    if (seen.has(key)) throw new Error(`route documented twice: ${key}`);
    seen.add(key);
    const path = openApiPath(route.path);
    const item = paths[path] ?? {};
    paths[path] = item;
    (item as Record<string, unknown>)[route.method.toLowerCase()] = operationOf(route, schemas, options);
  }
  schemas.convert();
  const used = new Set(routes.map((r) => r.tag));
  const document: OpenAPIV3_1.Document = {
    openapi: '3.1.0',
    info: {
      title: 'Cloudmux API',
      version: options.version,
      summary: 'The Kloudless v1 unified API, self-hosted',
      description:
        'Cloudmux re-implements the Kloudless v1 API: existing Kloudless clients work by changing their base URL. ' +
        'Authenticate with `Authorization: APIKey <api key>` (application-wide; the scheme is matched case-insensitively) ' +
        'or `Authorization: Bearer <token>[,<token>…]` (one or more accounts). JSON replies carry ' +
        '`Content-Type: application/json` exactly; every error is the envelope `{error_code, message, status_code, id}`; ' +
        'paths tolerate trailing and double slashes.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: options.publicUrl }],
    tags: TAGS.filter((t) => used.has(t.name)).map((t) => ({ name: t.name, description: t.description })),
    paths: schemas.resolve(paths),
    components: {
      schemas: schemas.components(),
      securitySchemes: {
        APIKey: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description:
            'The application API key as `Authorization: APIKey <key>` (`ApiKey`, any case, works too).',
        },
        Bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'Account bearer tokens: `Authorization: Bearer <token>`, or comma-separated tokens for comma-separated account ids.',
        },
      },
      parameters: schemas.resolve(HEADER_PARAMS),
      headers: HEADERS,
    },
  };
  splitQueries(document);
  return document;
}
