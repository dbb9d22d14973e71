/**
 * The `/docs` reference page: static HTML rendered from the OpenAPI document, operations grouped
 * by tag with their parameters, bodies and responses, and the named schemas. No scripts and no
 * external styles, so it works offline and under a strict Content-Security-Policy.
 */
import type { OpenAPIV3_1 } from 'openapi-types';

type Schema = OpenAPIV3_1.SchemaObject & { $ref?: string; const?: unknown; contentMediaType?: string };
type Ref = OpenAPIV3_1.ReferenceObject;

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;
const MAX_DEPTH = 4;

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

/** Escapes, then renders the `code` spans the descriptions use. */
function prose(text: string | undefined): string {
  if (!text) return '';
  return escapeHtml(text).replace(/`([^`]+)`/g, '<code>$1</code>');
}

const anchor = (kind: string, name: string) => `${kind}-${name.replace(/[^A-Za-z0-9_-]/g, '-')}`;
const refName = (ref: string) => ref.slice(ref.lastIndexOf('/') + 1);

function typeLabel(schema: Schema | undefined): string {
  if (!schema || Object.keys(schema).length === 0) return 'any';
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return `<a href="#${anchor('schema', name)}">${escapeHtml(name)}</a>`;
  }
  if (schema.const !== undefined) return `<code>${escapeHtml(JSON.stringify(schema.const))}</code>`;
  if (schema.enum) return schema.enum.map((v) => `<code>${escapeHtml(JSON.stringify(v))}</code>`).join(' | ');
  const variants = (schema.anyOf ?? schema.oneOf) as Schema[] | undefined;
  if (variants) return variants.map((v) => typeLabel(v)).join(' | ');
  if (schema.allOf) return (schema.allOf as Schema[]).map((v) => typeLabel(v)).join(' &amp; ');
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  return (
    types
      .map((t) => {
        if (t === 'array')
          return `array of ${typeLabel((schema as OpenAPIV3_1.ArraySchemaObject).items as Schema)}`;
        if (
          t === 'object' &&
          !schema.properties &&
          schema.additionalProperties &&
          typeof schema.additionalProperties === 'object'
        ) {
          return `map of ${typeLabel(schema.additionalProperties as Schema)}`;
        }
        return escapeHtml(String(t));
      })
      .join(' | ') || 'any'
  );
}

function constraints(schema: Schema): string {
  const parts: string[] = [];
  if (schema.minLength !== undefined) parts.push(`min length ${schema.minLength}`);
  if (schema.maxLength !== undefined) parts.push(`max length ${schema.maxLength}`);
  if (schema.pattern) parts.push(`pattern <code>${escapeHtml(schema.pattern)}</code>`);
  // zod marks every integer with the safe-integer range; only real bounds are worth showing.
  if (schema.minimum !== undefined && Math.abs(schema.minimum) < Number.MAX_SAFE_INTEGER)
    parts.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined && Math.abs(schema.maximum) < Number.MAX_SAFE_INTEGER)
    parts.push(`≤ ${schema.maximum}`);
  return parts.length ? ` <span class="c">(${parts.join(', ')})</span>` : '';
}

/** Nested objects of a schema that deserve their own rows (inline objects, and inline objects in arrays/unions). */
function innerObjects(schema: Schema): Schema[] {
  if (schema.$ref) return [];
  if (schema.properties) return [schema];
  const variants = ((schema.anyOf ?? schema.oneOf ?? []) as Schema[]).flatMap(innerObjects);
  const items = (schema as OpenAPIV3_1.ArraySchemaObject).items as Schema | undefined;
  return items ? [...variants, ...innerObjects(items)] : variants;
}

function propertyRows(schema: Schema, depth: number): string {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {})
    .map(([name, raw]) => {
      const prop = raw as Schema;
      const nested = depth < MAX_DEPTH ? innerObjects(prop) : [];
      const children = nested.map((n) => propertyRows(n, depth + 1)).join('');
      return (
        `<tr><td class="n" style="padding-left:${0.5 + depth * 1.2}em"><code>${escapeHtml(name)}</code>` +
        `${required.has(name) ? ' <span class="req">required</span>' : ''}</td>` +
        `<td>${typeLabel(prop)}${constraints(prop)}</td><td>${prose(prop.description)}</td></tr>${children}`
      );
    })
    .join('');
}

function schemaBlock(schema: Schema | Ref | undefined): string {
  const s = schema as Schema | undefined;
  if (!s) return '';
  const objects = innerObjects(s);
  const head = `<p class="t">${typeLabel(s)}${s.description && !s.$ref ? ` — ${prose(s.description)}` : ''}</p>`;
  if (objects.length === 0) return head;
  const tables = objects
    .map(
      (o) =>
        `<table class="props"><tr><th>Field</th><th>Type</th><th>Description</th></tr>${propertyRows(o, 0)}</table>`,
    )
    .join('');
  return `${s.properties ? '' : head}${tables}`;
}

function contentBlock(content: Record<string, OpenAPIV3_1.MediaTypeObject> | undefined): string {
  if (!content) return '';
  return Object.entries(content)
    .map(
      ([type, media]) =>
        `<div class="media"><span class="mt">${escapeHtml(type)}</span>${schemaBlock(media.schema as Schema)}</div>`,
    )
    .join('');
}

function resolveParam(
  document: OpenAPIV3_1.Document,
  p: OpenAPIV3_1.ParameterObject | Ref,
): OpenAPIV3_1.ParameterObject {
  if ('$ref' in p) return document.components!.parameters![refName(p.$ref)] as OpenAPIV3_1.ParameterObject;
  return p;
}

function operationHtml(
  document: OpenAPIV3_1.Document,
  method: string,
  path: string,
  op: OpenAPIV3_1.OperationObject,
): string {
  const security = (op.security ?? []).map((s) => Object.keys(s)[0]!);
  const auth =
    security.length === 0 ? 'none' : security.map((s) => `<a href="#auth-${s}">${s}</a>`).join(' or ');
  const params = (op.parameters ?? []).map((p) => resolveParam(document, p));
  const paramRows = params
    .map((p) => {
      const schema = (p.schema ?? Object.values(p.content ?? {})[0]?.schema) as Schema | undefined;
      return (
        `<tr><td class="n"><code>${escapeHtml(p.name)}</code>${p.required ? ' <span class="req">required</span>' : ''}</td>` +
        `<td>${escapeHtml(p.in)}</td><td>${typeLabel(schema)}${schema ? constraints(schema) : ''}</td><td>${prose(p.description)}</td></tr>`
      );
    })
    .join('');
  const body = op.requestBody as OpenAPIV3_1.RequestBodyObject | undefined;
  const responses = Object.entries(op.responses ?? {})
    .map(([status, r]) => {
      const response = r as OpenAPIV3_1.ResponseObject;
      const cls = status.startsWith('2') ? 'ok' : status === 'default' ? 'def' : 'err';
      return `<div class="resp"><span class="st ${cls}">${escapeHtml(status)}</span> ${prose(response.description)}${contentBlock(response.content as Record<string, OpenAPIV3_1.MediaTypeObject>)}</div>`;
    })
    .join('');
  return (
    `<section class="op" id="${anchor('op', op.operationId ?? `${method}${path}`)}">` +
    `<h3><span class="m ${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h3>` +
    `<p class="sum">${prose(op.summary)}</p>${op.description ? `<p>${prose(op.description)}</p>` : ''}` +
    `<p class="auth">Authorization: ${auth}</p>` +
    (paramRows
      ? `<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Description</th></tr>${paramRows}</table>`
      : '') +
    (body
      ? `<h4>Request body${body.required ? ' <span class="req">required</span>' : ''}</h4>${prose(body.description)}${contentBlock(body.content as Record<string, OpenAPIV3_1.MediaTypeObject>)}`
      : '') +
    `<h4>Responses</h4>${responses}</section>`
  );
}

const STYLE = `
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;background:#fff}
header{background:#16324f;color:#fff;padding:1.2em 2em}header h1{margin:0 0 .3em}header p{margin:.2em 0;max-width:70em}
header code{background:#24476b;color:#fff}
.wrap{display:flex}nav{width:19em;flex:none;padding:1em;border-right:1px solid #dde3ea;position:sticky;top:0;height:100vh;overflow:auto;font-size:13px}
nav a{display:block;color:#16324f;text-decoration:none;padding:.1em 0}nav h2{font-size:14px;margin:1em 0 .3em}
main{padding:1em 2em;max-width:70em;flex:1}code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f4f8;padding:0 .2em;border-radius:3px}
.op{border:1px solid #dde3ea;border-radius:6px;padding:.2em 1em 1em;margin:1em 0}.op h3{margin:.6em 0 .2em}
.m{display:inline-block;min-width:4.2em;text-align:center;color:#fff;border-radius:3px;font-size:12px;padding:.1em .3em}
.get{background:#2f7d32}.post{background:#1565c0}.put{background:#8e5b00}.patch{background:#6a1b9a}.delete{background:#b71c1c}
table{border-collapse:collapse;width:100%;margin:.3em 0}th,td{border-bottom:1px solid #e6eaef;text-align:left;padding:.25em .5em;vertical-align:top}
th{background:#f6f8fa;font-weight:600}.req{color:#b71c1c;font-size:11px}.c{color:#5b6b7b;font-size:12px}
.st{display:inline-block;min-width:3.5em;font-weight:600}.ok{color:#2f7d32}.err{color:#b71c1c}.def{color:#5b6b7b}
.resp{margin:.4em 0}.t{margin:.1em 0}.nm{display:inline-block;width:4.2em;font-size:10px;color:#fff;text-align:center;border-radius:2px}.media{margin:.2em 0 .2em 1.2em}.mt{font:12px ui-monospace,monospace;color:#5b6b7b}.sum{font-weight:600}
.auth{color:#5b6b7b;font-size:13px}h2.tag{border-bottom:2px solid #16324f;padding-bottom:.2em;margin-top:1.5em}
`;

export function renderDocsHtml(document: OpenAPIV3_1.Document): string {
  const byTag = new Map<string, string[]>();
  const nav = new Map<string, string[]>();
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const method of METHODS) {
      const op = item?.[method] as OpenAPIV3_1.OperationObject | undefined;
      if (!op) continue;
      const tag = op.tags?.[0] ?? 'Other';
      byTag.set(tag, [...(byTag.get(tag) ?? []), operationHtml(document, method, path, op)]);
      const link =
        `<a href="#${anchor('op', op.operationId ?? `${method}${path}`)}" title="${escapeHtml(`${method.toUpperCase()} ${path}`)}">` +
        `<span class="nm ${method}">${method.toUpperCase()}</span> ${prose(op.summary ?? path)}</a>`;
      nav.set(tag, [...(nav.get(tag) ?? []), link]);
    }
  }
  const tags = [
    ...(document.tags ?? []).map((t) => t.name),
    ...[...byTag.keys()].filter((t) => !(document.tags ?? []).some((d) => d.name === t)),
  ];
  const tagInfo = new Map((document.tags ?? []).map((t) => [t.name, t.description]));
  const sections = tags
    .filter((t) => byTag.has(t))
    .map(
      (t) =>
        `<h2 class="tag" id="${anchor('tag', t)}">${escapeHtml(t)}</h2><p>${prose(tagInfo.get(t))}</p>${byTag.get(t)!.join('')}`,
    )
    .join('');
  const schemes = Object.entries(document.components?.securitySchemes ?? {})
    .map(
      ([name, s]) =>
        `<p id="auth-${name}"><b>${escapeHtml(name)}</b>: ${prose((s as OpenAPIV3_1.SecuritySchemeObject).description)}</p>`,
    )
    .join('');
  const schemas = Object.entries(document.components?.schemas ?? {})
    .map(
      ([name, s]) =>
        `<section class="op" id="${anchor('schema', name)}"><h3>${escapeHtml(name)}</h3>${schemaBlock(s as Schema)}</section>`,
    )
    .join('');
  const navHtml = `${tags
    .filter((t) => nav.has(t))
    .map((t) => `<h2><a href="#${anchor('tag', t)}">${escapeHtml(t)}</a></h2>${nav.get(t)!.join('')}`)
    .join('')}<h2><a href="#schemas">Schemas</a></h2>`;
  const { info } = document;
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${escapeHtml(info.title)} ${escapeHtml(info.version)} — reference</title><style>${STYLE}</style></head><body>` +
    `<header><h1>${escapeHtml(info.title)} <small>${escapeHtml(info.version)}</small></h1><p>${prose(info.description)}</p>` +
    `<p>Base URL: <code>${escapeHtml(document.servers?.[0]?.url ?? '')}</code> · OpenAPI document: <a style="color:#fff" href="/v1/openapi.json">/v1/openapi.json</a></p></header>` +
    `<div class="wrap"><nav>${navHtml}</nav><main><h2 class="tag" id="auth">Authorization</h2>${schemes}${sections}` +
    `<h2 class="tag" id="schemas">Schemas</h2>${schemas}</main></div></body></html>`
  );
}
