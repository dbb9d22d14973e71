/**
 * Upload from a URL (`POST /storage/files` with `{url, parent_id, name}`, the File Picker's Saver):
 * the server fetches a URL the client names, so the fetch is an SSRF path. It goes through core's
 * network guard — by default `saas` (public addresses only), or what the operator sets with
 * `CLOUDMUX_URL_UPLOAD_NETWORK` — and follows at most 5 redirects, each hop checked again (the
 * guard checks the address actually connected to, every time). No credentials are ever sent.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { CloudmuxError, errorFromNetworkError, type NetworkGuard, networkRefusalFrom } from '@cloudmux/core';

const MAX_REDIRECTS = 5;
const TIMEOUT_MS = 60_000;

export interface FetchedSource {
  stream: Readable;
  size: number | null;
  contentType: string | null;
}

export function parseSourceUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CloudmuxError('invalid_parameters', 'url must be an absolute http(s) URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CloudmuxError('invalid_parameters', 'url must use http or https.');
  if (url.username || url.password)
    throw new CloudmuxError('invalid_parameters', 'url cannot carry credentials.');
  url.hash = '';
  return url;
}

function get(url: URL, guard: NetworkGuard, signal?: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      {
        method: 'GET',
        agent: url.protocol === 'https:' ? guard.httpsAgent : guard.httpAgent,
        headers: { 'user-agent': 'cloudmux (upload from URL)', accept: '*/*' },
        timeout: TIMEOUT_MS,
        ...(signal ? { signal } : {}),
      },
      resolve,
    );
    request.once('timeout', () =>
      request.destroy(Object.assign(new Error('source timed out'), { code: 'ETIMEDOUT' })),
    );
    request.once('error', reject);
    request.end();
  });
}

export async function fetchSource(
  text: string,
  guard: NetworkGuard,
  signal?: AbortSignal,
): Promise<FetchedSource> {
  let url = parseSourceUrl(text);
  for (let hop = 0; ; hop++) {
    let response: IncomingMessage;
    try {
      response = await get(url, guard, signal);
    } catch (err) {
      throw networkRefusalFrom(err) ?? errorFromNetworkError('url', err);
    }
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400 && response.headers.location) {
      response.resume();
      if (hop >= MAX_REDIRECTS)
        throw new CloudmuxError('request_failed', `The URL redirected more than ${MAX_REDIRECTS} times.`);
      url = parseSourceUrl(new URL(response.headers.location, url).toString());
      continue;
    }
    if (status < 200 || status >= 300) {
      response.resume();
      throw new CloudmuxError('request_failed', `Fetching the URL answered HTTP ${status}.`, {
        upstream: { service: 'url', status },
      });
    }
    const length = Number(response.headers['content-length']);
    return {
      stream: response,
      size: Number.isSafeInteger(length) && length >= 0 ? length : null,
      contentType: response.headers['content-type']?.split(';')[0]?.trim() || null,
    };
  }
}
