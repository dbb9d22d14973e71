/**
 * The S3 REST calls the connector makes, over core's HTTP client (`ctx.http`): core signs every
 * attempt with SigV4 (streams as `UNSIGNED-PAYLOAD`), retries idempotent replayable requests, never
 * follows redirects and maps failures to CloudmuxErrors; `mapS3Error` refines them by S3 code.
 * URLs are built here with strict RFC 3986 encoding (axios's own params encoding turns spaces into
 * `+`, which S3 reads as a plus sign).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { type ConnectorContext, type Logger, rfc3986Encode } from '@cloudmux/core';
import type { ResolvedS3Settings } from './credentials.js';
import { errorFromBody, garbage, isNotImplemented, isPreconditionFailure, mapS3Error } from './errors.js';
import { childrenNamed, childText, escapeXml, parseXml, type XmlElement, XmlError } from './xml.js';

export interface ObjectHead {
  key: string;
  size: number;
  lastModified: Date | null;
  etag: string | null;
  contentType: string | null;
  /** `x-amz-meta-*` headers, names without the prefix. */
  metadata: Record<string, string>;
}

export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date | null;
  etag: string | null;
  storageClass: string | null;
}

export interface ListResult {
  objects: ListedObject[];
  prefixes: string[];
  truncated: boolean;
  nextToken: string | null;
}

export interface ListRequest {
  prefix: string;
  delimiter?: string;
  maxKeys: number;
  continuationToken?: string;
  startAfter?: string;
  signal?: AbortSignal;
}

/** A request body: bytes (replayable, payload signed), a one-shot stream, or a replayable stream factory. */
export type Body =
  | { kind: 'buffer'; data: Buffer }
  | { kind: 'stream'; stream: Readable; length: number }
  | { kind: 'factory'; open: () => Readable; length: number };

export interface CompletedPart {
  partNumber: number;
  etag: string;
}

/** Whether the endpoint honours `If-None-Match: *` on writes (S3 since 2024, MinIO, R2, recent Ceph). */
export type ConditionalSupport = 'yes' | 'no' | 'unknown';

/** Thrown (as the cause of a naming conflict) when a conditional write found the key taken. */
export class KeyExistsError extends Error {
  override readonly name = 'KeyExistsError';
  constructor(readonly key: string) {
    super(`An object already exists at ${key}`);
  }
}

/** Core's axios instance (typed through core, so this package needs no axios dependency of its own). */
export type Http = ConnectorContext<unknown>['http'];
interface HttpResponse<T = unknown> {
  data: T;
  status: number;
  headers: unknown;
}
type Headers = Record<string, string>;

const encodeKey = (key: string) => key.split('/').map(rfc3986Encode).join('/');

function query(pairs: Array<[string, string | number | undefined | null]>): string {
  const parts: string[] = [];
  for (const [name, value] of pairs) {
    if (value === undefined) continue;
    parts.push(
      value === null ? rfc3986Encode(name) : `${rfc3986Encode(name)}=${rfc3986Encode(String(value))}`,
    );
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

function header(response: HttpResponse, name: string): string | undefined {
  const headers = response.headers as Record<string, unknown> & { get?: (n: string) => unknown };
  const value = headers[name] ?? headers.get?.(name);
  if (Array.isArray(value)) return value.length ? String(value[0]) : undefined;
  return value === undefined || value === null ? undefined : String(value);
}

function parseDate(value: string | undefined): Date | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** `encoding-type=url` answers (`+` is a space there, `%2B` a plus). */
function urlDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}

function parse(body: string, what: string): XmlElement {
  try {
    return parseXml(body);
  } catch (err) {
    if (err instanceof XmlError) throw garbage(what, body);
    throw err;
  }
}

/** A 200 whose body may still be an `<Error>` (documented for CopyObject, UploadPartCopy, Complete). */
function resultOrError(body: string, what: string): XmlElement {
  const root = parse(body, what);
  if (root.name === 'Error') throw errorFromBody(root, body);
  return root;
}

export class S3Client {
  conditionalWrites: ConditionalSupport;

  constructor(
    private readonly http: Http,
    readonly settings: ResolvedS3Settings,
    private readonly log: Logger,
  ) {
    // Amazon S3 has honoured If-None-Match on PutObject/CompleteMultipartUpload since August 2024.
    this.conditionalWrites = settings.endpoint.custom ? 'unknown' : 'yes';
  }

  private objectUrl(key: string, q = ''): string {
    const { origin, basePath } = this.settings.endpoint;
    return `${origin}${basePath}/${encodeKey(key)}${q}`;
  }

  private bucketUrl(q = ''): string {
    const { origin, basePath } = this.settings.endpoint;
    return `${origin}${basePath || '/'}${q}`;
  }

  private async call<T = unknown>(run: () => Promise<HttpResponse<T>>): Promise<HttpResponse<T>> {
    try {
      return await run();
    } catch (error) {
      throw mapS3Error(error);
    }
  }

  private bodyConfig(body: Body): { data?: unknown; bodyFactory?: () => Readable; headers: Headers } {
    if (body.kind === 'buffer') return { data: body.data, headers: {} };
    if (body.kind === 'stream') {
      return { data: body.stream, headers: { 'Content-Length': String(body.length) } };
    }
    return { bodyFactory: body.open, headers: { 'Content-Length': String(body.length) } };
  }

  /**
   * Runs a write with `If-None-Match: *` when asked and the endpoint supports it — or, with
   * `probe`, when support is still unknown. A 412/409 is `KeyExistsError`; a 501 marks the endpoint
   * as not supporting it and, when the request can be sent again (`replayable`), sends it once more
   * without the header.
   */
  private async conditional<T>(
    key: string,
    wanted: boolean,
    mode: { probe: boolean; replayable: boolean },
    run: (headers: Headers) => Promise<T>,
  ): Promise<T> {
    const send =
      wanted && (this.conditionalWrites === 'yes' || (mode.probe && this.conditionalWrites === 'unknown'));
    if (!send) return run({});
    try {
      return await run({ 'If-None-Match': '*' });
    } catch (error) {
      if (isPreconditionFailure(error)) {
        this.conditionalWrites = 'yes';
        throw new KeyExistsError(key);
      }
      if (isNotImplemented(error)) {
        this.log.debug(
          { service: 's3' },
          'endpoint does not implement If-None-Match on writes; using HEAD checks',
        );
        this.conditionalWrites = 'no';
        if (mode.replayable) return run({});
      }
      throw error;
    }
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
  async listObjects(request: ListRequest): Promise<ListResult> {
    const q = query([
      ['list-type', 2],
      ['continuation-token', request.continuationToken],
      ['delimiter', request.delimiter],
      ['encoding-type', 'url'],
      ['max-keys', request.maxKeys],
      ['prefix', request.prefix || undefined],
      ['start-after', request.continuationToken ? undefined : request.startAfter],
    ]);
    const response = await this.call(() =>
      this.http.get<string>(this.bucketUrl(q), {
        responseType: 'text',
        ...(request.signal ? { signal: request.signal } : {}),
      }),
    );
    const body = String(response.data ?? '');
    const root = parse(body, 'ListObjectsV2 response');
    if (root.name !== 'ListBucketResult') throw garbage('ListObjectsV2 response', body);
    const encoded = childText(root, 'EncodingType')?.trim().toLowerCase() === 'url';
    const decode = (v: string) => (encoded ? urlDecode(v) : v);
    const objects: ListedObject[] = childrenNamed(root, 'Contents').map((c) => {
      const key = childText(c, 'Key');
      const size = Number(childText(c, 'Size') ?? Number.NaN);
      if (key === undefined || !Number.isFinite(size)) throw garbage('ListObjectsV2 entry', body);
      return {
        key: decode(key),
        size,
        lastModified: parseDate(childText(c, 'LastModified')),
        etag: childText(c, 'ETag') ?? null,
        storageClass: childText(c, 'StorageClass') ?? null,
      };
    });
    const prefixes = childrenNamed(root, 'CommonPrefixes').flatMap((p) => {
      const value = childText(p, 'Prefix');
      return value === undefined ? [] : [decode(value)];
    });
    const truncated = childText(root, 'IsTruncated')?.trim() === 'true';
    const nextToken = childText(root, 'NextContinuationToken') ?? null;
    if (truncated && !nextToken) throw garbage('ListObjectsV2 response (truncated without a token)', body);
    return { objects, prefixes, truncated, nextToken: truncated ? nextToken : null };
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html
  async headObject(key: string, signal?: AbortSignal): Promise<ObjectHead> {
    const response = await this.call(() =>
      this.http.head(this.objectUrl(key), { ...(signal ? { signal } : {}) }),
    );
    const metadata: Record<string, string> = {};
    for (const [name, value] of Object.entries(response.headers as Record<string, unknown>)) {
      if (name.toLowerCase().startsWith('x-amz-meta-') && value !== undefined) {
        metadata[name.toLowerCase().slice('x-amz-meta-'.length)] = String(value);
      }
    }
    const size = Number(header(response, 'content-length') ?? Number.NaN);
    if (!Number.isFinite(size)) throw garbage('HeadObject response (no Content-Length)');
    return {
      key,
      size,
      lastModified: parseDate(header(response, 'last-modified')),
      etag: header(response, 'etag') ?? null,
      contentType: header(response, 'content-type') ?? null,
      metadata,
    };
  }

  /** HeadObject, with a missing key as `null`. */
  async headOrNull(key: string, signal?: AbortSignal): Promise<ObjectHead | null> {
    try {
      return await this.headObject(key, signal);
    } catch (error) {
      if (
        (error as { code?: string }).code === 'not_found' &&
        (error as { upstream?: { code?: string } }).upstream?.code !== 'NoSuchBucket'
      ) {
        return null;
      }
      throw error;
    }
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
  async getObject(
    key: string,
    range: { start: number; end?: number } | undefined,
    signal?: AbortSignal,
  ): Promise<{
    stream: Readable;
    status: number;
    length: number | null;
    contentType: string | null;
    contentRange: string | null;
  }> {
    const response = await this.call(() =>
      this.http.get<Readable>(this.objectUrl(key), {
        responseType: 'stream',
        headers: range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {},
        validateStatus: (s) => s === 200 || s === 206,
        decompress: false,
        ...(signal ? { signal } : {}),
      }),
    );
    const length = header(response, 'content-length');
    return {
      stream: response.data,
      status: response.status,
      length: length === undefined ? null : Number(length),
      contentType: header(response, 'content-type') ?? null,
      contentRange: header(response, 'content-range') ?? null,
    };
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
  async putObject(
    key: string,
    body: Body,
    options: { contentType: string; ifNoneMatch?: boolean; signal?: AbortSignal },
  ): Promise<{ etag: string | null }> {
    // A stream cannot be sent twice: the header goes only where support is known.
    const replayable = body.kind !== 'stream';
    const mode = { probe: replayable, replayable };
    return this.conditional(key, options.ifNoneMatch ?? false, mode, async (extra) => {
      const config = this.bodyConfig(body);
      const response = await this.call(() =>
        this.http.put(this.objectUrl(key), config.data, {
          ...(config.bodyFactory ? { bodyFactory: config.bodyFactory } : {}),
          headers: { ...config.headers, 'Content-Type': options.contentType, ...extra },
          responseType: 'text',
          ...(options.signal ? { signal: options.signal } : {}),
        }),
      );
      return { etag: header(response, 'etag') ?? null };
    });
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html
  async createMultipartUpload(
    key: string,
    options: { contentType: string; metadata?: Record<string, string>; signal?: AbortSignal },
  ): Promise<string> {
    const headers: Headers = { 'Content-Type': options.contentType };
    for (const [name, value] of Object.entries(options.metadata ?? {})) headers[`x-amz-meta-${name}`] = value;
    const response = await this.call(() =>
      this.http.post<string>(this.objectUrl(key, query([['uploads', null]])), Buffer.alloc(0), {
        headers,
        responseType: 'text',
        ...(options.signal ? { signal: options.signal } : {}),
      }),
    );
    const body = String(response.data ?? '');
    const root = parse(body, 'CreateMultipartUpload response');
    const uploadId = root.name === 'InitiateMultipartUploadResult' ? childText(root, 'UploadId') : undefined;
    if (!uploadId) throw garbage('CreateMultipartUpload response', body);
    return uploadId;
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html
  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Body,
    signal?: AbortSignal,
  ): Promise<string> {
    const config = this.bodyConfig(body);
    const url = this.objectUrl(
      key,
      query([
        ['partNumber', partNumber],
        ['uploadId', uploadId],
      ]),
    );
    const response = await this.call(() =>
      this.http.put(url, config.data, {
        ...(config.bodyFactory ? { bodyFactory: config.bodyFactory } : {}),
        headers: { ...config.headers, 'Content-Type': 'application/octet-stream' },
        responseType: 'text',
        ...(signal ? { signal } : {}),
      }),
    );
    const etag = header(response, 'etag');
    if (!etag) throw garbage('UploadPart response (no ETag)');
    return etag;
  }

  private copySource(sourceKey: string): string {
    return `/${rfc3986Encode(this.settings.bucket)}/${encodeKey(sourceKey)}`;
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
  async uploadPartCopy(
    key: string,
    uploadId: string,
    partNumber: number,
    sourceKey: string,
    range: { start: number; end: number },
    signal?: AbortSignal,
  ): Promise<string> {
    const url = this.objectUrl(
      key,
      query([
        ['partNumber', partNumber],
        ['uploadId', uploadId],
      ]),
    );
    const response = await this.call(() =>
      this.http.put<string>(url, undefined, {
        headers: {
          'x-amz-copy-source': this.copySource(sourceKey),
          'x-amz-copy-source-range': `bytes=${range.start}-${range.end}`,
        },
        responseType: 'text',
        ...(signal ? { signal } : {}),
      }),
    );
    const body = String(response.data ?? '');
    const root = resultOrError(body, 'UploadPartCopy response');
    const etag = root.name === 'CopyPartResult' ? childText(root, 'ETag') : undefined;
    if (!etag) throw garbage('UploadPartCopy response', body);
    return etag;
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
  async completeMultipartUpload(
    key: string,
    uploadId: string,
    parts: CompletedPart[],
    options: { ifNoneMatch?: boolean; signal?: AbortSignal } = {},
  ): Promise<void> {
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    const xml =
      '<?xml version="1.0" encoding="UTF-8"?>' +
      '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
      sorted
        .map((p) => `<Part><PartNumber>${p.partNumber}</PartNumber><ETag>${escapeXml(p.etag)}</ETag></Part>`)
        .join('') +
      '</CompleteMultipartUpload>';
    const url = this.objectUrl(key, query([['uploadId', uploadId]]));
    await this.conditional(
      key,
      options.ifNoneMatch ?? false,
      { probe: true, replayable: true },
      async (extra) => {
        const response = await this.call(() =>
          this.http.post<string>(url, Buffer.from(xml, 'utf8'), {
            headers: { 'Content-Type': 'application/xml', ...extra },
            responseType: 'text',
            ...(options.signal ? { signal: options.signal } : {}),
          }),
        );
        const body = String(response.data ?? '');
        const root = resultOrError(body, 'CompleteMultipartUpload response');
        if (root.name !== 'CompleteMultipartUploadResult')
          throw garbage('CompleteMultipartUpload response', body);
      },
    );
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html
  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    await this.call(() =>
      this.http.delete(this.objectUrl(key, query([['uploadId', uploadId]])), { responseType: 'text' }),
    );
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
  async copyObject(
    sourceKey: string,
    targetKey: string,
    options: { ifNoneMatch?: boolean; signal?: AbortSignal } = {},
  ): Promise<void> {
    // Sent only where support is known (Amazon S3, or an endpoint that answered 412 before): an
    // older server could read a plain If-None-Match on a copy as a condition on the source.
    await this.conditional(
      targetKey,
      options.ifNoneMatch ?? false,
      { probe: false, replayable: true },
      async (extra) => {
        const response = await this.call(() =>
          this.http.put<string>(this.objectUrl(targetKey), undefined, {
            headers: {
              'x-amz-copy-source': this.copySource(sourceKey),
              'x-amz-metadata-directive': 'COPY',
              ...extra,
            },
            responseType: 'text',
            ...(options.signal ? { signal: options.signal } : {}),
          }),
        );
        const body = String(response.data ?? '');
        const root = resultOrError(body, 'CopyObject response');
        if (root.name !== 'CopyObjectResult') throw garbage('CopyObject response', body);
      },
    );
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObject.html
  async deleteObject(key: string, signal?: AbortSignal): Promise<void> {
    await this.call(() =>
      this.http.delete(this.objectUrl(key), { responseType: 'text', ...(signal ? { signal } : {}) }),
    );
  }

  // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html
  async deleteObjects(keys: string[], signal?: AbortSignal): Promise<void> {
    if (keys.length === 0) return;
    if (keys.length > 1000) throw new RangeError('DeleteObjects takes at most 1000 keys');
    const xml = Buffer.from(
      '<?xml version="1.0" encoding="UTF-8"?>' +
        '<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>' +
        keys.map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`).join('') +
        '</Delete>',
      'utf8',
    );
    const response = await this.call(() =>
      this.http.post<string>(this.bucketUrl(query([['delete', null]])), xml, {
        headers: {
          'Content-Type': 'application/xml',
          // Required by the API (or an x-amz-checksum-* header).
          'Content-MD5': createHash('md5').update(xml).digest('base64'),
        },
        responseType: 'text',
        // Deleting the same keys twice is harmless, so a transient failure may be retried.
        idempotent: true,
        ...(signal ? { signal } : {}),
      }),
    );
    const body = String(response.data ?? '');
    const root = resultOrError(body, 'DeleteObjects response');
    const errors = childrenNamed(root, 'Error');
    if (errors.length > 0) {
      throw errorFromBody(errors[0]!, body);
    }
  }
}
