/**
 * A SigV4 checker for the fake S3 server, written from the AWS reference
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html and, for S3's
 * rules, https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html) on
 * node:crypto, independent of the signer in core. S3 canonicalizes the path as sent (encoded once),
 * and the payload hash is the `x-amz-content-sha256` header, which must match the body unless it is
 * `UNSIGNED-PAYLOAD`.
 */
import { createHash, createHmac } from 'node:crypto';

const strict = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const AUTH = new RegExp(
  '^AWS4-HMAC-SHA256 Credential=([^/,]+)/(\\d{8})/([^/]+)/([^/]+)/aws4_request, ?' +
    'SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$',
);

export interface SignedRequest {
  method: string;
  /** Path and query exactly as received. */
  target: string;
  headers: Record<string, string | string[] | undefined>;
}

export type Verdict =
  | {
      ok: true;
      accessKeyId: string;
      region: string;
      service: string;
      signedHeaders: string[];
      payloadHash: string;
    }
  | {
      ok: false;
      code: 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'AccessDenied' | 'XAmzContentSHA256Mismatch';
      reason: string;
    };

function headerValue(headers: SignedRequest['headers'], name: string): string {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : (v ?? '');
}

/** Checks the Authorization header; the payload hash is checked against `bodySha256` when given. */
export function verifySigV4(
  req: SignedRequest,
  keys: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
  bodySha256?: string,
): Verdict {
  const auth = headerValue(req.headers, 'authorization');
  const m = AUTH.exec(auth);
  if (!m) return { ok: false, code: 'AccessDenied', reason: `no SigV4 Authorization header: ${auth}` };
  const [, accessKeyId, day, region, service, signedList, signature] = m as unknown as string[];
  if (accessKeyId !== keys.accessKeyId)
    return { ok: false, code: 'InvalidAccessKeyId', reason: accessKeyId! };
  const signedHeaders = signedList!.split(';');
  if (!signedHeaders.includes('host'))
    return { ok: false, code: 'SignatureDoesNotMatch', reason: 'host is not signed' };
  if (!signedHeaders.includes('x-amz-date'))
    return { ok: false, code: 'SignatureDoesNotMatch', reason: 'x-amz-date is not signed' };
  const amzDate = headerValue(req.headers, 'x-amz-date');
  if (!amzDate.startsWith(day!))
    return { ok: false, code: 'SignatureDoesNotMatch', reason: 'scope date differs from x-amz-date' };
  if (keys.sessionToken !== undefined) {
    if (
      headerValue(req.headers, 'x-amz-security-token') !== keys.sessionToken ||
      !signedHeaders.includes('x-amz-security-token')
    ) {
      return { ok: false, code: 'SignatureDoesNotMatch', reason: 'session token missing, wrong or unsigned' };
    }
  }
  const payloadHash = headerValue(req.headers, 'x-amz-content-sha256');
  if (!payloadHash)
    return { ok: false, code: 'SignatureDoesNotMatch', reason: 'x-amz-content-sha256 is required by S3' };
  if (payloadHash !== 'UNSIGNED-PAYLOAD' && bodySha256 !== undefined && payloadHash !== bodySha256) {
    return {
      ok: false,
      code: 'XAmzContentSHA256Mismatch',
      reason: `payload hash ${payloadHash} != ${bodySha256}`,
    };
  }
  const q = req.target.indexOf('?');
  const path = q === -1 ? req.target : req.target.slice(0, q);
  const rawQuery = q === -1 ? '' : req.target.slice(q + 1);
  const query = rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      return eq === -1
        ? [strict(decode(p)), '']
        : [strict(decode(p.slice(0, eq))), strict(decode(p.slice(eq + 1)))];
    })
    .sort(([ak, av], [bk, bv]) => (ak! < bk! ? -1 : ak! > bk! ? 1 : av! < bv! ? -1 : av! > bv! ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalHeaders = signedHeaders
    .map((h) => `${h}:${headerValue(req.headers, h).trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonical = [
    req.method.toUpperCase(),
    path || '/',
    query,
    canonicalHeaders,
    signedList,
    payloadHash,
  ].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    scope,
    createHash('sha256').update(canonical).digest('hex'),
  ].join('\n');
  const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
  const signingKey = hmac(
    hmac(hmac(hmac(`AWS4${keys.secretAccessKey}`, day!), region!), service!),
    'aws4_request',
  );
  const expected = createHmac('sha256', signingKey).update(toSign).digest('hex');
  if (expected !== signature) {
    return {
      ok: false,
      code: 'SignatureDoesNotMatch',
      reason: `signature mismatch for canonical request:\n${canonical}`,
    };
  }
  return {
    ok: true,
    accessKeyId: accessKeyId!,
    region: region!,
    service: service!,
    signedHeaders,
    payloadHash,
  };
}
