/**
 * AWS Signature Version 4 with `@smithy/signature-v4`
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html).
 * Path and query are re-encoded strictly (RFC 3986) first so that what goes on the wire is exactly
 * what was signed. S3 signs the path as sent (single encoding) and needs `x-amz-content-sha256`;
 * other services double-encode the path. Streamed bodies are signed as `UNSIGNED-PAYLOAD`.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { type PreparedRequest, parseRawQuery, rfc3986Encode } from './prepared.js';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface SigV4Options {
  credentials: AwsCredentials;
  region: string;
  service: string;
  date: Date;
  /** Sign `UNSIGNED-PAYLOAD` even for a buffered body. Streams always are. */
  unsignedPayload?: boolean;
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

const toBuffer = (data: SourceData): Buffer =>
  typeof data === 'string'
    ? Buffer.from(data, 'utf8')
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(new Uint8Array(data));

/** smithy's `Checksum` on node:crypto: ~15× faster than the pure-JS hash on multi-MiB bodies. */
class NodeSha256 {
  private hash: Hash | Hmac;
  constructor(private readonly secret?: SourceData) {
    this.hash = this.create();
  }
  private create(): Hash | Hmac {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.secret));
  }
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    this.hash = this.create();
  }
}

/** Re-encodes each path segment per RFC 3986 (keeping `/`), so the signed and sent paths agree. */
export function canonicalWirePath(pathname: string): string {
  return pathname
    .split('/')
    .map((segment) => {
      let decoded = segment;
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        // a stray `%` is data: encode it
      }
      return rfc3986Encode(decoded);
    })
    .join('/');
}

/** Signs `req` in place: rewrites its URL to the strict encoding and adds the SigV4 headers. */
export async function signAwsSigV4(req: PreparedRequest, options: SigV4Options): Promise<void> {
  const isS3 = options.service === 's3';
  const pairs = parseRawQuery(req.url.search);
  req.url.pathname = canonicalWirePath(req.url.pathname || '/');
  const wireQuery = pairs
    .map((p) => (p.hasValue ? `${rfc3986Encode(p.key)}=${rfc3986Encode(p.value)}` : rfc3986Encode(p.key)))
    .join('&');
  req.url.search = wireQuery === '' ? '' : `?${wireQuery}`;

  const query: Record<string, string | string[]> = {};
  for (const { key, value } of pairs) {
    const existing = query[key];
    if (existing === undefined) query[key] = value;
    else query[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  const headers: Record<string, string> = { ...req.headers, host: req.url.host };
  const buffered = req.body === undefined || Buffer.isBuffer(req.body);
  if (!buffered || options.unsignedPayload) headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';

  const signer = new SignatureV4({
    credentials: options.credentials,
    region: options.region,
    service: options.service,
    sha256: NodeSha256,
    uriEscapePath: !isS3,
    applyChecksum: isS3,
  });
  const request = new HttpRequest({
    method: req.method,
    protocol: req.url.protocol,
    hostname: req.url.hostname,
    ...(req.url.port ? { port: Number(req.url.port) } : {}),
    path: req.url.pathname,
    query,
    headers,
    body: buffered ? req.body : undefined,
  });
  const signed = await signer.sign(request, { signingDate: options.date });
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed.headers)) out[name.toLowerCase()] = String(value);
  req.headers = out;
}
