/**
 * The WebDAV requests, each through core's HTTP client (basic auth, retries of idempotent requests,
 * error mapping, no redirects). Statuses with a WebDAV-specific meaning are remapped here; everything
 * else keeps core's mapping (401 → service_unauthorized, 403 → service_forbidden, 5xx → gateway codes).
 */
import type { Readable } from 'node:stream';
import { CloudmuxError, errorFromUpstreamResponse, isCloudmuxError, namingConflict } from '@cloudmux/core';
import type { AxiosInstance, AxiosResponse } from 'axios';
import { type DavLocation, SERVICE } from './paths.js';
import { type DavResponse, PROPFIND_BODY, parseMultistatus } from './xml.js';

/** A Depth-1 answer is buffered to be parsed and sorted; bigger ones are refused, not held. */
export const MAX_MULTISTATUS_BYTES = 64 * 1024 * 1024;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export function upstreamStatus(error: unknown): number | undefined {
  return isCloudmuxError(error) ? error.upstream?.status : undefined;
}

export function badGateway(message: string, code = 'DAV_BAD_REPLY'): CloudmuxError {
  return new CloudmuxError('bad_gateway', message, {
    service: SERVICE,
    upstream: { service: SERVICE, code },
  });
}

function header(response: AxiosResponse, name: string): string | undefined {
  const value = (response.headers as Record<string, unknown>)[name];
  if (Array.isArray(value)) return value.length > 0 ? String(value[0]) : undefined;
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

export function discard(response: AxiosResponse): void {
  const data = response.data as { destroy?: () => void } | undefined;
  if (data && typeof data.destroy === 'function') data.destroy();
}

/** Reads a (small) reply body, refusing more than `limit` bytes. */
export async function readText(stream: Readable, limit = MAX_MULTISTATUS_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buf.length;
    if (size > limit) {
      stream.destroy();
      throw badGateway(`The WebDAV server's reply is larger than ${limit} bytes.`, 'DAV_REPLY_TOO_LARGE');
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Whether a 3xx only adds the trailing slash of a collection (Apache's mod_dir does this for a
 * collection addressed without it). Any other redirect is refused: it is never followed.
 */
export function isSlashRedirect(response: AxiosResponse, requestUrl: string): boolean {
  const location = header(response, 'location');
  if (!location) return false;
  let target: URL;
  try {
    target = new URL(location, requestUrl);
  } catch {
    return false;
  }
  const asked = new URL(requestUrl);
  return target.host === asked.host && !target.search && target.pathname === `${asked.pathname}/`;
}

function refusedRedirect(status: number): CloudmuxError {
  return badGateway(
    `The WebDAV server answered with a redirect (HTTP ${status}); redirects are not followed.`,
    'DAV_REDIRECT',
  );
}

export interface PropfindResult {
  /** The URL that answered (with a trailing slash when the server redirected to it). */
  url: string;
  responses: DavResponse[];
}

export class DavClient {
  constructor(
    readonly http: AxiosInstance,
    readonly location: DavLocation,
  ) {}

  /**
   * PROPFIND with an explicit property list. A redirect that only appends `/` is taken once (the
   * resource is a collection); the retry is built from our own URL, not from `Location`.
   */
  async propfind(url: string, depth: 0 | 1, signal?: AbortSignal): Promise<PropfindResult> {
    for (let hop = 0; ; hop++) {
      // RFC 4918 §9.1 PROPFIND (Depth 0 or 1; Depth infinity is commonly disabled, §9.1 + §10.2)
      const response = await this.http.request<Readable>({
        method: 'PROPFIND',
        url,
        headers: {
          Depth: String(depth),
          'Content-Type': 'application/xml; charset=utf-8',
          Accept: 'application/xml, text/xml',
        },
        data: PROPFIND_BODY,
        responseType: 'stream',
        // PROPFIND is safe (RFC 4918 §9.1), so transient failures may be retried.
        idempotent: true,
        validateStatus: (s) => s === 207 || s === 200 || REDIRECTS.has(s),
        ...(signal ? { signal } : {}),
      });
      if (REDIRECTS.has(response.status)) {
        discard(response);
        if (hop === 0 && !url.endsWith('/') && isSlashRedirect(response, url)) {
          url = `${url}/`;
          continue;
        }
        throw refusedRedirect(response.status);
      }
      const body = await readText(response.data);
      return { url, responses: parseMultistatus(body) };
    }
  }

  /** MKCOL (RFC 4918 §9.3). Returns the status so callers can tell "exists" (405, or a redirect). */
  async mkcol(url: string): Promise<number> {
    try {
      // RFC 4918 §9.3 MKCOL
      const response = await this.http.request({
        method: 'MKCOL',
        url,
        validateStatus: (s) => (s >= 200 && s < 300) || s === 405 || REDIRECTS.has(s),
      });
      discard(response);
      return response.status;
    } catch (error) {
      // §9.3.1: 409 = an intermediate collection is missing.
      if (upstreamStatus(error) === 409) throw parentMissing();
      throw error;
    }
  }

  /** PUT with a streamed body (RFC 4918 §9.7, RFC 9110 §9.3.4). */
  async put(
    url: string,
    body: Readable,
    options: { size?: number | null; mimeType?: string | null; signal?: AbortSignal },
  ): Promise<void> {
    const headers: Record<string, string> = {
      'Content-Type': options.mimeType || 'application/octet-stream',
    };
    if (typeof options.size === 'number' && options.size >= 0)
      headers['Content-Length'] = String(options.size);
    try {
      // RFC 4918 §9.7 PUT (RFC 9110 §9.3.4)
      const response = await this.http.request({
        method: 'PUT',
        url,
        headers,
        data: body,
        // A stream is sent once; never replayed.
        idempotent: false,
        validateStatus: (s) => s >= 200 && s < 300,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      discard(response);
    } catch (error) {
      // §9.7.1: 409 = the parent collection does not exist.
      if (upstreamStatus(error) === 409) throw parentMissing();
      throw error;
    }
  }

  /**
   * MOVE or COPY with `Destination` (same server, our own percent-encoded URL) and `Overwrite`.
   * 412 (§9.8.5, §9.9.4: the destination exists and Overwrite is F) is a naming conflict on
   * `conflictRawId`. Returns the status: a 3xx means the server redirected the destination lookup
   * (Apache does for an existing collection named without its slash); the caller decides.
   */
  async transfer(
    method: 'MOVE' | 'COPY',
    from: string,
    to: string,
    options: { overwrite: boolean; conflictRawId: string; collection: boolean },
  ): Promise<number> {
    const headers: Record<string, string> = { Destination: to, Overwrite: options.overwrite ? 'T' : 'F' };
    // §9.8.3: a collection is copied with Depth infinity; §9.9.2: MOVE of a collection is always infinity.
    if (options.collection) headers.Depth = 'infinity';
    let response: AxiosResponse;
    try {
      // RFC 4918 §9.8 COPY / §9.9 MOVE
      response = await this.http.request({
        method,
        url: from,
        headers,
        validateStatus: (s) => (s >= 200 && s < 300) || s === 207 || REDIRECTS.has(s),
      });
    } catch (error) {
      const status = upstreamStatus(error);
      if (status === 412)
        throw namingConflict(
          options.conflictRawId,
          'A file or folder with that name already exists.',
          SERVICE,
        );
      if (status === 409) throw parentMissing();
      throw error;
    }
    if (response.status === 207) await this.failOnMultistatus(response, `${method} partly failed`);
    else discard(response);
    return response.status;
  }

  /** DELETE (RFC 4918 §9.6); a collection goes with everything in it. */
  async delete(url: string): Promise<void> {
    // RFC 4918 §9.6 DELETE
    const response = await this.http.request<Readable>({
      method: 'DELETE',
      url,
      responseType: 'stream',
      validateStatus: (s) => (s >= 200 && s < 300) || s === 207,
    });
    if (response.status === 207) await this.failOnMultistatus(response, 'DELETE partly failed');
    else discard(response);
  }

  /** §9.6.1 / §9.8.8: a 207 to DELETE/COPY/MOVE lists the members that failed. */
  private async failOnMultistatus(response: AxiosResponse, what: string): Promise<void> {
    const data = response.data as Readable | string | undefined;
    const body = typeof data === 'string' ? data : data ? await readText(data, 1024 * 1024) : '';
    const failed = parseMultistatus(body).find((r) => r.status !== null && r.status >= 400);
    if (failed?.status) {
      throw errorFromUpstreamResponse(SERVICE, failed.status, {
        message: `${what}: the WebDAV server answered HTTP ${failed.status} for a member.`,
      });
    }
  }
}

export function parentMissing(): CloudmuxError {
  return new CloudmuxError('not_found', 'The parent folder does not exist.', { service: SERVICE });
}

export { REDIRECTS };
