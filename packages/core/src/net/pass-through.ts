/**
 * Pass-through (`POST /v1/accounts/{id}/raw`) target resolution: which URL `X-Kloudless-Raw-URI`
 * names, and whether the account's credentials may be sent there. Only the URL is decided here;
 * the address it resolves to is checked by the network guard at connect time.
 */

import type { PassThroughSpec } from '../connector.js';
import { CloudmuxError } from '../errors.js';
import { parseIp } from './ip.js';

const MAX_URI_LENGTH = 8192;

function badRequest(reason: string): CloudmuxError {
  return new CloudmuxError('bad_request', `Invalid X-Kloudless-Raw-URI: ${reason}.`);
}

function forbidden(reason: string): CloudmuxError {
  return new CloudmuxError('forbidden', `X-Kloudless-Raw-URI refused: ${reason}.`);
}

function parseBase(text: string, schemes: readonly string[], what: string): URL {
  let base: URL;
  try {
    base = new URL(text);
  } catch {
    throw new CloudmuxError('bad_request', `The ${what} pass-through base URL is not a valid URL.`);
  }
  if (!schemes.includes(base.protocol)) {
    throw new CloudmuxError(
      'bad_request',
      `The ${what} pass-through base URL must use ${schemes.join(' or ')}.`,
    );
  }
  base.username = '';
  base.password = '';
  base.search = '';
  base.hash = '';
  return base;
}

/** `url.host` against allow-list entries: exact names, `*.suffix` (any depth, not the apex), `:port`. */
export function hostAllowed(url: URL, allowedHosts: readonly string[]): boolean {
  const host = url.hostname.toLowerCase();
  const port = url.port;
  return allowedHosts.some((raw) => {
    const entry = raw.trim().toLowerCase();
    const colon = entry.lastIndexOf(':');
    const hasPort = colon !== -1 && /^\d+$/.test(entry.slice(colon + 1));
    const name = hasPort ? entry.slice(0, colon) : entry;
    const entryPort = hasPort ? String(Number(entry.slice(colon + 1))) : '';
    if (entryPort !== port) return false;
    if (name.startsWith('*.')) {
      const suffix = name.slice(1);
      return host.endsWith(suffix) && host.length > suffix.length;
    }
    return host === name;
  });
}

/** C0 controls, DEL and C1 controls. */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
  }
  return false;
}

function isIpLiteralHost(url: URL): boolean {
  return url.hostname.startsWith('[') || parseIp(url.hostname) !== undefined;
}

/**
 * Resolves `X-Kloudless-Raw-URI` against the connector's pass-through spec. A path (`/drive/v3/files`)
 * is appended to the base URL and must stay under it; a full URL must be `https` on an allow-listed
 * host (SaaS) or on the account's own configured origin (`account_host`). Throws `bad_request` for
 * malformed or ambiguous input (control characters, backslashes, userinfo, fragments, other schemes)
 * and `forbidden` for a well-formed URL that points somewhere the credentials may not go.
 */
export function resolvePassThroughUrl<TCredentials>(
  spec: PassThroughSpec<TCredentials>,
  rawUri: string,
  credentials: TCredentials,
): URL {
  if (typeof rawUri !== 'string' || rawUri === '') throw badRequest('it is empty');
  if (rawUri.length > MAX_URI_LENGTH) throw badRequest(`it is longer than ${MAX_URI_LENGTH} characters`);
  // WHATWG URL silently drops tabs and newlines and trims spaces: refuse them, so we check what was sent.
  if (hasControlCharacter(rawUri)) throw badRequest('it contains control characters');
  if (rawUri.trim() !== rawUri) throw badRequest('it has leading or trailing whitespace');
  // WHATWG treats `\` as `/` in http(s) URLs, so `/\evil.com` would become `//evil.com`.
  if (rawUri.includes('\\')) throw badRequest('it contains a backslash');
  if (rawUri.includes('#')) throw badRequest('it contains a fragment');

  const base =
    spec.kind === 'saas'
      ? parseBase(spec.baseUrl, ['https:'], 'connector')
      : parseBase(
          (() => {
            try {
              return spec.baseUrl(credentials);
            } catch {
              throw new CloudmuxError(
                'bad_request',
                'The account has no configured host for pass-through requests.',
              );
            }
          })(),
          ['https:', 'http:'],
          "account's",
        );

  if (rawUri.startsWith('/')) {
    if (rawUri.startsWith('//'))
      throw badRequest('a URI starting with // names another host; send a full URL');
    const basePath = base.pathname.replace(/\/+$/, '');
    let target: URL;
    try {
      target = new URL(`${base.origin}${basePath}${rawUri}`);
    } catch {
      throw badRequest('it is not a valid path');
    }
    if (target.origin !== base.origin) throw forbidden('the path leaves the base URL');
    if (basePath !== '' && target.pathname !== basePath && !target.pathname.startsWith(`${basePath}/`)) {
      throw forbidden(`the path leaves the base path ${basePath}`);
    }
    return target;
  }

  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rawUri)?.[1]?.toLowerCase();
  if (scheme === undefined) throw badRequest('it must be a path starting with / or a full https URL');
  if (scheme !== 'https' && scheme !== 'http') throw badRequest(`the ${scheme} scheme is not allowed`);
  if (!rawUri.slice(scheme.length + 1).startsWith('//')) throw badRequest('it is not an absolute URL');
  const authority = rawUri.slice(scheme.length + 3).split(/[/?]/, 1)[0]!;
  if (authority === '') throw badRequest('it has no host');
  if (authority.includes('@')) throw badRequest('it contains user information');
  if (authority.includes('%')) throw badRequest('it contains a percent-encoded host');
  let target: URL;
  try {
    target = new URL(rawUri);
  } catch {
    throw badRequest('it is not a valid URL');
  }
  if (target.username !== '' || target.password !== '') throw badRequest('it contains user information');

  if (spec.kind === 'saas') {
    if (target.protocol !== 'https:') throw badRequest('pass-through requests must use https');
    if (isIpLiteralHost(target)) throw forbidden('IP address hosts are not allowed for this service');
    if (!hostAllowed(target, spec.allowedHosts))
      throw forbidden(`${target.host} is not an allowed host for this service`);
    return target;
  }
  if (target.origin !== base.origin) throw forbidden(`${target.host} is not the account's configured host`);
  return target;
}

// RFC 9110 §7.6.1 hop-by-hop fields, plus framing fields our HTTP client owns.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'host',
  'authorization',
  'cookie',
  'forwarded',
  'x-real-ip',
]);
const DROPPED_PREFIXES = ['proxy-', 'x-forwarded-', 'x-kloudless-'];
// RFC 9110 §5.6.2 token.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * The headers of `X-Kloudless-Raw-Headers` that may go upstream: names lowercased; dropped are
 * hop-by-hop and framing headers (and any named in `Connection`), `Host`, `Authorization`, `Cookie`,
 * `Proxy-*`, `X-Forwarded-*`, `Forwarded`, `X-Kloudless-*`, invalid names, and values with CR, LF or NUL.
 */
export function filterForwardedHeaders(
  headers: Record<string, string | number | readonly string[] | undefined | null>,
): Record<string, string> {
  const entries = Object.entries(headers ?? {});
  const named = new Set<string>();
  for (const [name, value] of entries) {
    if (name.toLowerCase() !== 'connection' || value == null) continue;
    for (const token of (Array.isArray(value) ? value.join(',') : String(value)).split(',')) {
      named.add(token.trim().toLowerCase());
    }
  }
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    const lower = name.toLowerCase();
    if (value == null || !TOKEN.test(name)) continue;
    if (HOP_BY_HOP.has(lower) || named.has(lower) || DROPPED_PREFIXES.some((p) => lower.startsWith(p)))
      continue;
    const text = Array.isArray(value) ? value.join(', ') : String(value);
    if (/[\r\n\0]/.test(text)) continue;
    out[lower] = text;
  }
  return out;
}
