/**
 * S3 error codes (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html) onto the
 * Kloudless catalog. Core already mapped the HTTP status and put the S3 `<Code>` in `upstream.code`;
 * this refines what the status alone gets wrong: S3 answers 403 both for a bad signature and for a
 * denied permission, and 200 with an `<Error>` body for some failed copies and completions.
 */
import { CloudmuxError, type ErrorCode, isCloudmuxError, redactUpstreamBody } from '@cloudmux/core';
import { SERVICE } from './keys.js';
import { childText, type XmlElement } from './xml.js';

/** The credentials themselves are wrong (not the permissions they carry). */
const UNAUTHORIZED = new Set([
  'SignatureDoesNotMatch',
  'InvalidAccessKeyId',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'InvalidSecurity',
  'MissingSecurityHeader',
  'RequestTimeTooSkewed',
  'CredentialsNotSupported',
]);

const FORBIDDEN = new Set(['AccessDenied', 'AllAccessDisabled', 'AccountProblem', 'InvalidObjectState']);

const NOT_FOUND = new Set(['NoSuchKey', 'NoSuchBucket', 'NoSuchUpload']);

const BAD_REQUEST = new Set([
  'EntityTooSmall',
  'EntityTooLarge',
  'InvalidPart',
  'InvalidPartOrder',
  'InvalidRange',
  'MalformedXML',
  'KeyTooLongError',
  'IncompleteBody',
  'BadDigest',
  'InvalidDigest',
  'MetadataTooLarge',
  'InvalidArgument',
  'InvalidRequest',
]);

const UNAVAILABLE = new Set(['SlowDown', 'ServiceUnavailable', 'Busy']);

function codeFor(s3Code: string | undefined, status: number | undefined): ErrorCode | null {
  if (s3Code === undefined) return null;
  if (UNAUTHORIZED.has(s3Code)) return 'service_unauthorized';
  if (FORBIDDEN.has(s3Code)) return 'service_forbidden';
  if (NOT_FOUND.has(s3Code)) return 'not_found';
  if (BAD_REQUEST.has(s3Code)) return 'bad_request';
  if (UNAVAILABLE.has(s3Code)) return status === 429 ? 'too_many_service_requests' : 'service_not_available';
  if (s3Code === 'NotImplemented') return 'not_implemented';
  if (s3Code === 'InternalError') return 'bad_gateway';
  return null;
}

const WRONG_REGION = new Set([
  'PermanentRedirect',
  'AuthorizationHeaderMalformed',
  'IllegalLocationConstraintException',
]);

/** A CloudmuxError from `ctx.http`, with the code refined by the S3 error code. */
export function mapS3Error(error: unknown): unknown {
  if (!isCloudmuxError(error)) return error;
  const upstream = error.upstream;
  const s3Code = upstream?.code;
  if (s3Code !== undefined && WRONG_REGION.has(s3Code) && /region|endpoint/i.test(upstream?.body ?? s3Code)) {
    const region = /<Region>([^<]{1,64})<\/Region>/.exec(upstream?.body ?? '')?.[1];
    return new CloudmuxError(
      'invalid_parameters',
      region
        ? `The bucket is in region ${region}; set the account's region to ${region}.`
        : 'The bucket is not reachable at this endpoint and region; check the region and endpoint.',
      { service: SERVICE, ...(upstream ? { upstream } : {}), cause: error },
    );
  }
  if (upstream?.status !== undefined && upstream.status >= 300 && upstream.status < 400) {
    return new CloudmuxError(
      'invalid_parameters',
      'S3 redirected the request (wrong region or endpoint for this bucket); check the region and endpoint.',
      { service: SERVICE, upstream, cause: error },
    );
  }
  const code = codeFor(s3Code, upstream?.status);
  if (code === null || (code === error.code && s3Code !== 'NoSuchBucket')) return error;
  const message =
    code === 'not_found' && s3Code === 'NoSuchBucket'
      ? 'The bucket does not exist.'
      : code === 'service_unauthorized'
        ? `The S3 credentials were refused (${s3Code}).`
        : `${error.message} [${s3Code}]`;
  return new CloudmuxError(code, message, {
    service: SERVICE,
    ...(upstream ? { upstream } : {}),
    ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
    ...(error.headers ? { headers: error.headers } : {}),
    cause: error,
  });
}

/** A 200 whose body is an `<Error>` document (CopyObject, UploadPartCopy, CompleteMultipartUpload). */
export function errorFromBody(root: XmlElement, body: string): CloudmuxError {
  const s3Code = childText(root, 'Code') ?? 'InternalError';
  const base = new CloudmuxError(
    codeFor(s3Code, 200) ?? 'bad_gateway',
    `S3 reported ${s3Code} in a 200 response.`,
    {
      service: SERVICE,
      upstream: { service: SERVICE, status: 200, code: s3Code, body: redactUpstreamBody(body) },
    },
  );
  return base;
}

export function garbage(what: string, body?: string): CloudmuxError {
  return new CloudmuxError('bad_gateway', `S3 sent an invalid ${what}.`, {
    service: SERVICE,
    upstream: { service: SERVICE, ...(body !== undefined ? { body: redactUpstreamBody(body) } : {}) },
  });
}

/** The target exists: 412 PreconditionFailed or 409 ConditionalRequestConflict. */
export function isPreconditionFailure(error: unknown): boolean {
  if (!isCloudmuxError(error)) return false;
  const status = error.upstream?.status;
  const code = error.upstream?.code;
  return status === 412 || code === 'PreconditionFailed' || code === 'ConditionalRequestConflict';
}

/** The endpoint does not implement a header or feature we sent (501 / NotImplemented). */
export function isNotImplemented(error: unknown): boolean {
  if (!isCloudmuxError(error)) return false;
  return error.upstream?.status === 501 || error.upstream?.code === 'NotImplemented';
}
