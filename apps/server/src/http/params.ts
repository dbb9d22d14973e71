/** Query and header parsing shared by routes, with the Kloudless spellings the SDKs send. */
import { CloudmuxError } from '@cloudmux/core';
import * as z from 'zod';

/** `true`/`True`/`1`/`yes` and `false`/`False`/`0`/`no`; absent or empty → undefined. */
export const boolParam = z
  .union([z.string(), z.boolean(), z.array(z.string())])
  .optional()
  .transform((value, ctx) => {
    const v = Array.isArray(value) ? value.at(-1) : value;
    if (v === undefined || v === '') return undefined;
    if (typeof v === 'boolean') return v;
    const lower = v.toLowerCase();
    if (lower === 'true' || lower === '1' || lower === 'yes') return true;
    if (lower === 'false' || lower === '0' || lower === 'no') return false;
    ctx.addIssue({ code: 'custom', message: `expected true or false, got "${v}"` });
    return z.NEVER;
  });

export function parseBool(value: unknown, name: string): boolean | undefined {
  const parsed = boolParam.safeParse(value);
  if (!parsed.success) throw new CloudmuxError('invalid_parameters', `${name}: expected true or false.`);
  return parsed.data;
}

/** `page_size` in 1..max; empty → default. */
export function parsePageSize(value: unknown, defaultSize: number, max = 1000): number {
  const v = Array.isArray(value) ? value.at(-1) : value;
  if (v === undefined || v === '') return defaultSize;
  if (typeof v !== 'string' || !/^\d{1,7}$/.test(v))
    throw new CloudmuxError('invalid_parameters', 'page_size must be an integer between 1 and 1000.');
  const n = Number(v);
  if (n < 1 || n > max)
    throw new CloudmuxError('invalid_parameters', `page_size must be an integer between 1 and ${max}.`);
  return n;
}

export function firstValue(value: unknown): string | undefined {
  if (Array.isArray(value)) return typeof value.at(-1) === 'string' ? (value.at(-1) as string) : undefined;
  return typeof value === 'string' ? value : undefined;
}

/** `X-Kloudless-Raw-Headers`: a JSON object of header names to string values. */
export function parseRawHeaders(header: string | string[] | undefined): Record<string, string> | undefined {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (value === undefined || value.trim() === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new CloudmuxError('invalid_parameters', 'X-Kloudless-Raw-Headers must be a JSON object.');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new CloudmuxError('invalid_parameters', 'X-Kloudless-Raw-Headers must be a JSON object.');
  }
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(parsed)) {
    if (
      !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) ||
      (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
    ) {
      throw new CloudmuxError(
        'invalid_parameters',
        `X-Kloudless-Raw-Headers: invalid header ${JSON.stringify(name)}.`,
      );
    }
    const text = String(v);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: CR, LF and NUL are exactly what is refused
    if (/[\r\n\u0000]/.test(text))
      throw new CloudmuxError('invalid_parameters', `X-Kloudless-Raw-Headers: invalid value for ${name}.`);
    out[name] = text;
  }
  return out;
}

/** A JSON header such as `X-Kloudless-Metadata`. */
export function parseJsonHeader<T>(
  header: string | string[] | undefined,
  name: string,
  schema: z.ZodType<T>,
): T {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value === '')
    throw new CloudmuxError('invalid_parameters', `The ${name} header is required.`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new CloudmuxError('invalid_parameters', `The ${name} header must be JSON.`);
  }
  const result = schema.safeParse(parsed);
  if (!result.success) {
    throw new CloudmuxError(
      'invalid_parameters',
      `${name}: ${result.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ')}`,
    );
  }
  return result.data;
}

/** Validates a JSON body with a zod schema (bodies may be absent on some routes: pass `{}`). */
export function parseBody<T>(body: unknown, schema: z.ZodType<T>): T {
  const result = schema.safeParse(body ?? {});
  if (!result.success) {
    throw new CloudmuxError(
      'invalid_parameters',
      `Invalid body: ${result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
    );
  }
  return result.data;
}

export interface ParsedRange {
  start: number;
  end?: number;
  /** `bytes=-N`: the last N bytes; needs the size. */
  suffix?: number;
}

/** One `bytes=` range; anything else (several ranges, other units, garbage) is ignored per RFC 9110 §14.2. */
export function parseRange(header: string | undefined): ParsedRange | null {
  if (!header) return null;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return null;
  const [, a, b] = match;
  if (a === '' && b === '') return null;
  if (a === '') return { start: 0, suffix: Number(b) };
  const start = Number(a);
  if (b === '') return { start };
  const end = Number(b);
  if (end < start) return null;
  return { start, end };
}

/** Reads a small urlencoded form body from the unparsed request stream (token endpoint, link password form). */
export async function readForm(
  request: { raw: NodeJS.ReadableStream; body?: unknown },
  limit = 64 * 1024,
): Promise<Record<string, string>> {
  if (request.body && typeof request.body === 'object') return request.body as Record<string, string>;
  // Fastify's own text/plain parser has already read such bodies (fetch sends bare strings so).
  if (typeof request.body === 'string') return Object.fromEntries(new URLSearchParams(request.body));
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of request.raw as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new CloudmuxError('bad_request', 'The form body is too large.');
    chunks.push(chunk);
  }
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

/**
 * File bytes are never parsed as a request body, whatever their type (a `.json` file sent as
 * `application/json` is still a file): the client's type is kept here and the parser sees bytes.
 */
const clientTypes = new WeakMap<object, string>();
// Routes whose body is always file bytes, whatever Content-Type the client sent.
const BYTES_ROUTES = new Set([
  'PUT /v1/accounts/:account/storage/files/:id',
  'PUT /v1/accounts/:account/storage/multipart/:id',
]);
const UPLOAD_ROUTE = 'POST /v1/accounts/:account/storage/files';
type HeaderMap = Record<string, string | string[] | undefined>;

export function keepFileBytesUnparsed(request: {
  method: string;
  routeOptions: { url?: string | undefined };
  headers: HeaderMap;
}): void {
  const route = `${request.method} ${request.routeOptions.url ?? ''}`;
  const upload = route === UPLOAD_ROUTE && request.headers['x-kloudless-metadata'] !== undefined;
  const type = request.headers['content-type'];
  if (typeof type !== 'string' || !(upload || BYTES_ROUTES.has(route))) return;
  clientTypes.set(request, type);
  request.headers['content-type'] = 'application/octet-stream';
}

/** The media type the client sent (lower case, no parameters), also where bytes were kept unparsed. */
export function clientContentType(request: { headers: HeaderMap }): string {
  const type = clientTypes.get(request) ?? request.headers['content-type'];
  return (typeof type === 'string' ? type : '').split(';')[0]!.trim().toLowerCase();
}
