/**
 * `X-Kloudless-Raw-Headers` filtering. Raw headers are merged over the connector's headers, but
 * never replace what authenticates the request (auth strategies run after the merge and these
 * names are dropped outright), the Host, framing, or hop-by-hop headers (RFC 9110 §7.6.1).
 */

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);

const PROTECTED = new Set([
  'host',
  'content-length',
  'authorization',
  'proxy-authorization',
  'cookie',
  'forwarded',
  'x-real-ip',
  // set by the signing strategies
  'x-amz-date',
  'x-amz-security-token',
  'x-amz-content-sha256',
  'x-ms-date',
]);

const PROTECTED_PREFIXES = ['proxy-', 'x-forwarded-', 'x-kloudless-'];

// RFC 9110 §5.1 token characters.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export interface FilteredHeaders {
  headers: Record<string, string>;
  /** Names that were refused (for debug logs; values are never logged). */
  dropped: string[];
}

/** Keeps the raw headers a client may set upstream; `extraProtected` adds e.g. an API-key header name. */
export function filterRawHeaders(
  raw: Readonly<Record<string, string>> | undefined,
  extraProtected: readonly string[] = [],
): FilteredHeaders {
  const headers: Record<string, string> = {};
  const dropped: string[] = [];
  if (!raw) return { headers, dropped };
  const extra = new Set(extraProtected.map((n) => n.toLowerCase()));
  // Names listed in a Connection header are hop-by-hop too.
  const connection = Object.entries(raw).find(([k]) => k.toLowerCase() === 'connection')?.[1];
  for (const token of (connection ?? '').split(',')) if (token.trim()) extra.add(token.trim().toLowerCase());
  for (const [name, value] of Object.entries(raw)) {
    const lower = name.toLowerCase();
    const refused =
      !TOKEN.test(name) ||
      typeof value !== 'string' ||
      /[\r\n\0]/.test(value) ||
      HOP_BY_HOP.has(lower) ||
      PROTECTED.has(lower) ||
      extra.has(lower) ||
      PROTECTED_PREFIXES.some((p) => lower.startsWith(p));
    if (refused) dropped.push(name);
    else headers[lower] = value;
  }
  return { headers, dropped };
}
