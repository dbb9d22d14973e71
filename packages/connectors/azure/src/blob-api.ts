/**
 * The Blob service REST calls the connector makes, each through `ctx.http` (core signs or appends
 * the SAS; this file never touches credentials, except that Copy Blob's source URL of a SAS account
 * carries the same SAS). Upstream errors arrive as CloudmuxErrors with `upstream.code` = the Azure
 * error code, refined here where the status alone says too little.
 */
import type { Readable } from 'node:stream';
import { CloudmuxError, type ConnectorContext, errorFromUpstreamResponse } from '@cloudmux/core';
import type { AuthMode, AzureSettings } from './credentials.js';
import { encodeBlobPath } from './paths.js';
import { child, children, childText, escapeXml, parseXml } from './xml.js';

// core's axios instance, typed through the context (the connector does not depend on axios).
type Http = ConnectorContext<unknown>['http'];
interface HttpResponse {
  status: number;
  headers: unknown;
  data: unknown;
}
type RequestHeaders = Record<string, string>;

/** Sent on every request (core's Shared Key strategy would default to it; SAS requests need it too). */
export const AZURE_VERSION = '2021-08-06';
const SERVICE = 'azure';

export interface BlobProperties {
  name: string;
  size: number;
  contentType: string | null;
  created: Date | null;
  modified: Date | null;
  etag: string | null;
  contentMd5: string | null;
  copyId?: string | null;
  copyStatus?: string | null;
  copyStatusDescription?: string | null;
}

export interface BlobListing {
  blobs: BlobProperties[];
  prefixes: string[];
  nextMarker: string | null;
}

export interface ListOptions {
  prefix: string;
  delimiter?: string;
  marker?: string | undefined;
  maxResults: number;
  signal?: AbortSignal | undefined;
}

/** Azure error codes that mean "the destination exists" for our conditional (`If-None-Match: *`) writes. */
const CONFLICT_CODES = new Set(['BlobAlreadyExists', 'ConditionNotMet', 'TargetConditionNotMet']);

function date(value: string | undefined | null): Date | null {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

function header(response: HttpResponse, name: string): string | null {
  const value = (response.headers as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : Array.isArray(value) ? String(value[0]) : null;
}

function badGateway(detail: string): CloudmuxError {
  return new CloudmuxError('bad_gateway', `azure returned an unexpected response (${detail}).`, {
    service: SERVICE,
    upstream: { service: SERVICE },
  });
}

function queryString(query: Record<string, string | undefined>): string {
  const pairs = Object.entries(query)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return pairs.length > 0 ? `?${pairs.join('&')}` : '';
}

export class BlobClient {
  constructor(
    private readonly http: Http,
    private readonly settings: AzureSettings,
  ) {}

  get authMode(): AuthMode {
    return this.settings.authMode;
  }

  containerUrl(query: Record<string, string | undefined> = {}): string {
    return `${this.settings.endpoint}/${this.settings.container}${queryString(query)}`;
  }

  blobUrl(name: string, query: Record<string, string | undefined> = {}): string {
    return `${this.settings.endpoint}/${this.settings.container}/${encodeBlobPath(name)}${queryString(query)}`;
  }

  /** Refines core's status mapping with the Azure error code. */
  refine(error: unknown): unknown {
    if (!(error instanceof CloudmuxError)) return error;
    const code = error.upstream?.code;
    const keep = { service: SERVICE, cause: error, ...(error.upstream ? { upstream: error.upstream } : {}) };
    // A bad Shared Key signature is wrong credentials; for a SAS, 403s stay forbidden (expired, revoked, lacking a permission).
    if (code === 'AuthenticationFailed' && this.settings.authMode === 'shared_key') {
      return new CloudmuxError(
        'service_unauthorized',
        'azure refused the account key (AuthenticationFailed).',
        keep,
      );
    }
    if (code === 'ContainerNotFound') {
      return new CloudmuxError(
        'not_found',
        `The container "${this.settings.container}" does not exist.`,
        keep,
      );
    }
    if (code === 'InvalidRange') {
      return new CloudmuxError('invalid_parameters', 'The requested range is not satisfiable.', keep);
    }
    if (error.code === 'naming_conflict' && code !== undefined && !CONFLICT_CODES.has(code)) {
      // 409/412 that are not our precondition: leases lock a blob; the rest is a refused request.
      return code.includes('Lease')
        ? new CloudmuxError('permission_denied', `The blob is locked by a lease (${code}).`, keep)
        : new CloudmuxError('request_failed', `azure refused the request (${code}).`, keep);
    }
    return error;
  }

  private async send<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.refine(error);
    }
  }

  private headers(extra: RequestHeaders = {}): RequestHeaders {
    return { 'x-ms-version': AZURE_VERSION, ...extra };
  }

  private xmlBody(response: HttpResponse): string {
    const data: unknown = response.data;
    if (Buffer.isBuffer(data)) return data.toString('utf8');
    if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
    if (typeof data === 'string') return data;
    throw badGateway('no XML body');
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/list-blobs
  async listBlobs(options: ListOptions): Promise<BlobListing> {
    const url = this.containerUrl({
      restype: 'container',
      comp: 'list',
      prefix: options.prefix === '' ? undefined : options.prefix,
      delimiter: options.delimiter,
      marker: options.marker,
      maxresults: String(options.maxResults),
    });
    const response = await this.send(() =>
      this.http.get(url, { headers: this.headers(), responseType: 'arraybuffer', signal: options.signal }),
    );
    const doc = parseXml(this.xmlBody(response));
    if (doc.name !== 'EnumerationResults') throw badGateway(`<${doc.name}> instead of <EnumerationResults>`);
    const blobsElement = child(doc, 'Blobs');
    const nameOf = (el: ReturnType<typeof child>): string => {
      const nameEl = child(el, 'Name');
      if (!nameEl) throw badGateway('a listing entry without <Name>');
      // Names with characters XML cannot carry come percent-encoded (version 2020-12-06+).
      return nameEl.attributes.Encoded === 'true' ? decodeURIComponent(nameEl.text) : nameEl.text;
    };
    const blobs = children(blobsElement, 'Blob').map((el): BlobProperties => {
      const props = child(el, 'Properties');
      const length = Number(childText(props, 'Content-Length') ?? 'NaN');
      if (!Number.isSafeInteger(length) || length < 0)
        throw badGateway('a blob without a valid Content-Length');
      return {
        name: nameOf(el),
        size: length,
        contentType: childText(props, 'Content-Type') || null,
        created: date(childText(props, 'Creation-Time')),
        modified: date(childText(props, 'Last-Modified')),
        etag: childText(props, 'Etag') ?? null,
        contentMd5: childText(props, 'Content-MD5') || null,
      };
    });
    const prefixes = children(blobsElement, 'BlobPrefix').map(nameOf);
    const next = childText(doc, 'NextMarker');
    return { blobs, prefixes, nextMarker: next ? next : null };
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/get-blob-properties
  async getProperties(name: string, signal?: AbortSignal): Promise<BlobProperties | null> {
    const response = await this.send(() =>
      this.http.head(this.blobUrl(name), {
        headers: this.headers(),
        signal,
        // A HEAD error has no body: read the code from x-ms-error-code ourselves.
        validateStatus: (s: number) => s < 300 || (s >= 400 && s < 500),
      }),
    );
    if (response.status === 404) return null;
    if (response.status >= 400) {
      const upstreamCode = header(response, 'x-ms-error-code') ?? undefined;
      throw this.refine(
        errorFromUpstreamResponse(SERVICE, response.status, upstreamCode ? { upstreamCode } : {}),
      );
    }
    return this.propertiesFrom(name, response);
  }

  private propertiesFrom(name: string, response: HttpResponse): BlobProperties {
    const length = Number(header(response, 'content-length') ?? 'NaN');
    if (!Number.isSafeInteger(length) || length < 0) throw badGateway('no valid Content-Length');
    return {
      name,
      size: length,
      contentType: header(response, 'content-type'),
      created: date(header(response, 'x-ms-creation-time')),
      modified: date(header(response, 'last-modified')),
      etag: header(response, 'etag'),
      contentMd5: header(response, 'content-md5'),
      copyId: header(response, 'x-ms-copy-id'),
      copyStatus: header(response, 'x-ms-copy-status'),
      copyStatusDescription: header(response, 'x-ms-copy-status-description'),
    };
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/get-blob (x-ms-range)
  async getBlob(
    name: string,
    options: {
      range?: { start: number; end?: number | undefined } | undefined;
      signal?: AbortSignal | undefined;
    },
  ): Promise<{
    stream: Readable;
    status: number;
    size: number | null;
    contentType: string | null;
    contentRange: string | null;
  }> {
    const range = options.range;
    const response = await this.send(() =>
      this.http.get<Readable>(this.blobUrl(name), {
        headers: this.headers(range ? { 'x-ms-range': `bytes=${range.start}-${range.end ?? ''}` } : {}),
        responseType: 'stream',
        // The stored bytes exactly, even for blobs saved with Content-Encoding: gzip.
        decompress: false,
        signal: options.signal,
      }),
    );
    const length = header(response, 'content-length');
    return {
      stream: response.data,
      status: response.status,
      size: length === null ? null : Number(length),
      contentType: header(response, 'content-type'),
      contentRange: header(response, 'content-range'),
    };
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/put-blob
  async putBlob(
    name: string,
    body: Buffer,
    options: { contentType: string; ifNoneMatch: boolean; md5: string; signal?: AbortSignal | undefined },
  ): Promise<void> {
    await this.send(() =>
      this.http.put(this.blobUrl(name), body, {
        headers: this.headers({
          'x-ms-blob-type': 'BlockBlob',
          'Content-Type': options.contentType,
          'x-ms-blob-content-type': options.contentType,
          'Content-MD5': options.md5,
          ...(options.ifNoneMatch ? { 'If-None-Match': '*' } : {}),
        }),
        signal: options.signal,
        // A replayed conditional create would report our own first attempt as a conflict.
        ...(options.ifNoneMatch ? { idempotent: false } : {}),
      }),
    );
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/put-block
  async putBlock(
    name: string,
    blockId: string,
    body: Buffer | Readable,
    options: { size: number; md5?: string | undefined; signal?: AbortSignal | undefined },
  ): Promise<void> {
    await this.send(() =>
      this.http.put(this.blobUrl(name, { comp: 'block', blockid: blockId }), body, {
        headers: this.headers({
          'Content-Type': 'application/octet-stream',
          'Content-Length': String(options.size),
          ...(options.md5 ? { 'Content-MD5': options.md5 } : {}),
        }),
        signal: options.signal,
      }),
    );
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/put-block-list
  async putBlockList(
    name: string,
    blockIds: readonly string[],
    options: {
      contentType: string;
      ifNoneMatch: boolean;
      md5?: string | undefined;
      signal?: AbortSignal | undefined;
    },
  ): Promise<void> {
    const xml = `<?xml version="1.0" encoding="utf-8"?><BlockList>${blockIds
      .map((id) => `<Latest>${escapeXml(id)}</Latest>`)
      .join('')}</BlockList>`;
    await this.send(() =>
      this.http.put(this.blobUrl(name, { comp: 'blocklist' }), Buffer.from(xml, 'utf8'), {
        headers: this.headers({
          'Content-Type': 'application/xml; charset=utf-8',
          'x-ms-blob-content-type': options.contentType,
          ...(options.md5 ? { 'x-ms-blob-content-md5': options.md5 } : {}),
          ...(options.ifNoneMatch ? { 'If-None-Match': '*' } : {}),
        }),
        signal: options.signal,
        ...(options.ifNoneMatch ? { idempotent: false } : {}),
      }),
    );
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/copy-blob
  async copyBlob(
    source: string,
    destination: string,
    options: { ifNoneMatch: boolean },
  ): Promise<{ status: string; copyId: string | null }> {
    // Same account: Shared Key authorizes the source too; a SAS account's source needs the SAS.
    const sourceUrl = this.blobUrl(source) + (this.settings.sasQuery ? `?${this.settings.sasQuery}` : '');
    const response = await this.send(() =>
      this.http.put(this.blobUrl(destination), undefined, {
        headers: this.headers({
          'x-ms-copy-source': sourceUrl,
          ...(options.ifNoneMatch ? { 'If-None-Match': '*' } : {}),
        }),
        ...(options.ifNoneMatch ? { idempotent: false } : {}),
      }),
    );
    const status = header(response, 'x-ms-copy-status');
    if (!status) throw badGateway('Copy Blob without x-ms-copy-status');
    return { status, copyId: header(response, 'x-ms-copy-id') };
  }

  // https://learn.microsoft.com/en-us/rest/api/storageservices/abort-copy-blob
  async abortCopy(destination: string, copyId: string): Promise<void> {
    await this.send(() =>
      this.http.put(this.blobUrl(destination, { comp: 'copy', copyid: copyId }), undefined, {
        headers: this.headers({ 'x-ms-copy-action': 'abort' }),
      }),
    );
  }

  /** False when the blob was already gone. */
  // https://learn.microsoft.com/en-us/rest/api/storageservices/delete-blob
  async deleteBlob(name: string): Promise<boolean> {
    const response = await this.send(() =>
      this.http.delete(this.blobUrl(name), {
        // Snapshots would otherwise make the delete fail (SnapshotsPresent).
        headers: this.headers({ 'x-ms-delete-snapshots': 'include' }),
        validateStatus: (s: number) => s < 300 || s === 404,
      }),
    );
    if (response.status === 404) return false;
    return true;
  }
}
