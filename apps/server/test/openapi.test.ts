/**
 * The OpenAPI document and the /docs page: structurally valid OpenAPI 3.1, generated from core's
 * zod schemas, and in step with the routes Fastify actually serves (both directions).
 */
import { ERROR_CATALOG, errorEnvelopeSchema, fileSchema, folderSchema } from '@cloudmux/core';
import { Validator } from '@seriousme/openapi-schema-validator';
import type { FastifyInstance } from 'fastify';
import type { OpenAPIV3_1 } from 'openapi-types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOpenApiDocument, openApiPath } from '../src/openapi/document.js';
import { ROUTE_DOCS } from '../src/openapi/routes/index.js';
import { startTestServer, type TestServer } from './harness.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/**
 * Every method + path Fastify serves, read from `printRoutes` (each tree line appends its segment
 * to its parent's path). HEAD routes Fastify adds for each GET are left out.
 */
export function servedRoutes(app: FastifyInstance): string[] {
  const tree = app.printRoutes({ commonPrefix: false });
  const stack: string[] = [];
  const routes = new Set<string>();
  for (const line of tree.split('\n')) {
    const match = /^([│ ]*)(?:├── |└── )(\S*)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    stack.length = depth;
    const path = `${stack.join('')}${match[2]}`;
    stack.push(match[2]!);
    const methods = (match[3] ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean);
    for (const method of methods) {
      if (method === 'HEAD' && methods.includes('GET')) continue;
      routes.add(`${method} ${path}`);
    }
  }
  return [...routes].sort();
}

function documentedRoutes(document: OpenAPIV3_1.Document): string[] {
  const out: string[] = [];
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const method of METHODS) if (item?.[method]) out.push(`${method.toUpperCase()} ${path}`);
  }
  return out.sort();
}

function refsIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const v of node) refsIn(v, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refsIn(v, out);
    }
  }
  return out;
}

function resolvePointer(document: unknown, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  return ref
    .slice(2)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>(
      (node, key) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined),
      document,
    );
}

describe('OpenAPI document', () => {
  let t: TestServer;
  let document: OpenAPIV3_1.Document;
  beforeAll(async () => {
    t = await startTestServer({ store: 'sqlite' });
    const res = await fetch(`${t.url}/v1/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    document = (await res.json()) as OpenAPIV3_1.Document;
  });
  afterAll(async () => t?.close());

  it('is valid OpenAPI 3.1 (and the validator does reject a broken document)', async () => {
    expect(document.openapi).toBe('3.1.0');
    const result = await new Validator().validate(
      structuredClone(document) as unknown as Record<string, unknown>,
    );
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    const broken = structuredClone(document) as unknown as Record<string, unknown>;
    (broken.paths as Record<string, Record<string, Record<string, unknown>>>)['/health']!.get!.responses =
      'none';
    expect((await new Validator().validate(broken)).valid).toBe(false);
  });

  it('documents every route the server serves, and only those', () => {
    const served = servedRoutes(t.server.app).map((r) => r.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}'));
    // The parser must see the routes this test knows exist, or the comparison below proves nothing.
    expect(served).toEqual(
      expect.arrayContaining([
        'GET /health',
        'POST /v1/accounts/{account}/storage/files',
        'GET /v1/openapi.json',
      ]),
    );
    expect(served.length).toBeGreaterThan(20);
    const documented = documentedRoutes(document);
    expect(
      documented.filter((r) => !served.includes(r)),
      'documented but not served',
    ).toEqual([]);
    expect(
      served.filter((r) => !documented.includes(r)),
      'served but not documented',
    ).toEqual([]);
  });

  it('has unique operation ids, declared path parameters and resolvable references', () => {
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(document.paths ?? {})) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const method of METHODS) {
        const op = item?.[method];
        if (!op) continue;
        expect(ids.has(op.operationId!), op.operationId).toBe(false);
        ids.add(op.operationId!);
        const pathParams = (op.parameters ?? [])
          .filter((p) => 'in' in p && p.in === 'path')
          .map((p) => (p as OpenAPIV3_1.ParameterObject).name);
        expect(pathParams.sort(), `${method} ${path}`).toEqual([...names].sort());
        expect(
          Object.keys(op.responses ?? {}).some((s) => /^[23]/.test(s)),
          `${method} ${path} has a success response`,
        ).toBe(true);
        expect(
          op.tags?.every((tag) => document.tags?.some((t) => t.name === tag)),
          `${method} ${path} tag is listed`,
        ).toBe(true);
      }
    }
    const refs = refsIn(document);
    expect(refs.length).toBeGreaterThan(50);
    for (const ref of new Set(refs)) expect(resolvePointer(document, ref), ref).toBeDefined();
  });

  it('takes its object schemas from core’s zod schemas', () => {
    const schemas = document.components!.schemas!;
    const props = (name: string) =>
      Object.keys((schemas[name] as OpenAPIV3_1.SchemaObject).properties ?? {}).sort();
    expect(props('File')).toEqual(Object.keys(fileSchema.shape).sort());
    expect(props('Folder')).toEqual(Object.keys(folderSchema.shape).sort());
    expect(props('Error')).toEqual(Object.keys(errorEnvelopeSchema.shape).sort());
    expect((schemas.File as OpenAPIV3_1.SchemaObject).properties!.type).toEqual({
      type: 'string',
      const: 'file',
    });
    const list = schemas.StorageItemList as OpenAPIV3_1.SchemaObject;
    expect((list.properties!.objects as OpenAPIV3_1.ArraySchemaObject).items).toEqual({
      $ref: '#/components/schemas/StorageItem',
    });
    expect((list.properties!.type as { const?: string }).const).toBe('object_list');
    // Request shapes are input schemas: extra keys are tolerated (Kloudless clients send them).
    const create = document.paths!['/v1/accounts/{account}/storage/folders']!.post!;
    const body = (create.requestBody as OpenAPIV3_1.RequestBodyObject).content['application/json']!
      .schema as OpenAPIV3_1.SchemaObject;
    expect(body.required).toEqual(['name', 'parent_id']);
    expect(body.additionalProperties).not.toBe(false);
  });

  it('describes the auth schemes, the Kloudless headers and the error envelope', () => {
    const components = document.components!;
    expect(components.securitySchemes!.APIKey).toMatchObject({
      type: 'apiKey',
      in: 'header',
      name: 'Authorization',
    });
    expect(components.securitySchemes!.Bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    const headerNames = Object.values(components.parameters!).map(
      (p) => (p as OpenAPIV3_1.ParameterObject).name,
    );
    expect(headerNames).toEqual(
      expect.arrayContaining([
        'X-Kloudless-Metadata',
        'X-Kloudless-Raw-Data',
        'X-Kloudless-Raw-Headers',
        'X-Kloudless-As-User',
      ]),
    );

    const upload = document.paths!['/v1/accounts/{account}/storage/files']!.post!;
    expect(upload.security).toEqual([{ APIKey: [] }, { Bearer: [] }]);
    expect(upload.parameters).toContainEqual({ $ref: '#/components/parameters/Metadata' });
    expect(Object.keys((upload.requestBody as OpenAPIV3_1.RequestBodyObject).content)).toContain(
      'application/octet-stream',
    );
    const responses = upload.responses as Record<string, OpenAPIV3_1.ResponseObject>;
    for (const status of ['400', '401', '404', '409', '429', '501', 'default']) {
      expect(responses[status]?.content?.['application/json']?.schema, status).toEqual({
        $ref: '#/components/schemas/Error',
      });
    }
    expect(responses['401']!.description).toContain('`invalid_token`');
    expect(Object.keys(responses['429']!.headers!)).toEqual(
      expect.arrayContaining(['Retry-After', 'RateLimit-Remaining']),
    );
    // Every documented error code exists in the catalog with that status.
    for (const item of Object.values(document.paths!)) {
      for (const method of METHODS) {
        for (const [status, response] of Object.entries(item?.[method]?.responses ?? {})) {
          const codes = [
            ...(
              (response as OpenAPIV3_1.ResponseObject).description.match(/`error_code`: (.*)$/)?.[1] ?? ''
            ).matchAll(/`(\w+)`/g),
          ].map((m) => m[1]!);
          for (const code of codes)
            expect(String(ERROR_CATALOG[code as keyof typeof ERROR_CATALOG]?.status), code).toBe(status);
        }
      }
    }
    expect(document.paths!['/health']!.get!.security).toEqual([]);
    expect(document.paths!['/v1/accounts']!.post!.security).toEqual([{ APIKey: [] }]);
  });

  it('lists the credential fields of the installed connectors for account imports', () => {
    const body = (document.paths!['/v1/accounts']!.post!.requestBody as OpenAPIV3_1.RequestBodyObject)
      .content['application/json']!.schema as OpenAPIV3_1.SchemaObject;
    const variants = (body.anyOf ?? [body]) as OpenAPIV3_1.SchemaObject[];
    const localVariant = variants.find(
      (v) => (v.properties?.service as { const?: string })?.const === 'local',
    );
    expect(localVariant?.properties).toHaveProperty('root');
    expect(localVariant?.required).toEqual(expect.arrayContaining(['service', 'root']));
  });

  it('points its server at the public URL, and builds the same paths without a server', () => {
    expect(document.servers).toEqual([{ url: t.server.deps.config.publicUrl }]);
    const offline = buildOpenApiDocument({
      publicUrl: 'https://cloudmux.example',
      version: '0.0.0',
      connectors: t.server.deps.registry.all(),
    });
    expect(Object.keys(offline.paths ?? {}).sort()).toEqual(Object.keys(document.paths ?? {}).sort());
    expect(new Set(ROUTE_DOCS.map((r) => openApiPath(r.path))).size).toBe(
      Object.keys(document.paths ?? {}).length,
    );
    expect(() =>
      buildOpenApiDocument({
        publicUrl: 'x',
        version: '0',
        connectors: [],
        routes: [ROUTE_DOCS[0]!, ROUTE_DOCS[0]!],
      }),
    ).toThrow(/twice/);
  });
});

describe('/docs reference page', () => {
  let t: TestServer;
  let html: string;
  let document: OpenAPIV3_1.Document;
  let res: Response;
  beforeAll(async () => {
    t = await startTestServer({ store: 'sqlite' });
    res = await fetch(`${t.url}/docs`);
    html = await res.text();
    document = (await (await fetch(`${t.url}/v1/openapi.json`)).json()) as OpenAPIV3_1.Document;
  });
  afterAll(async () => t?.close());

  it('is a self-contained HTML page', () => {
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link[^>]+stylesheet/i);
    // No resource is fetched from anywhere: no src attributes, no absolute URLs in href/url().
    expect(html).not.toMatch(/\ssrc=/i);
    expect(html).not.toMatch(/href="(?:https?:)?\/\//i);
    expect(html).not.toMatch(/url\(/i);
  });

  it('shows every operation grouped by tag, with parameters, bodies, responses and schemas', () => {
    for (const tag of document.tags ?? []) {
      expect(html.includes(`id="tag-${tag.name.replace(/[^A-Za-z0-9_-]/g, '-')}"`), tag.name).toBe(true);
    }
    for (const [path, item] of Object.entries(document.paths ?? {})) {
      for (const method of METHODS) {
        const op = item?.[method];
        if (!op) continue;
        const start = html.indexOf(`id="op-${op.operationId}"`);
        expect(start, op.operationId).toBeGreaterThan(0);
        const section = html.slice(start, html.indexOf('</section>', start));
        expect(section).toContain(`<code>${path}</code>`);
        expect(section).toContain('<h4>Responses</h4>');
        for (const p of op.parameters ?? []) {
          if ('name' in p) expect(section, `${op.operationId} ${p.name}`).toContain(`<code>${p.name}</code>`);
        }
        if (op.requestBody) expect(section).toContain('<h4>Request body');
      }
    }
    // Folder listing: its query parameters and the list schema it answers with.
    const list = html.slice(html.indexOf('id="op-listFolder"'));
    expect(list).toContain('<code>page_size</code>');
    expect(list).toContain('href="#schema-StorageItemList"');
    // Each named schema has a section with its fields.
    const file = html.slice(html.indexOf('id="schema-File"'));
    for (const field of ['mime_type', 'downloadable', 'raw_id', 'ancestors'])
      expect(file.slice(0, file.indexOf('</section>'))).toContain(`<code>${field}</code>`);
  });
});
