/**
 * One error catalog for the whole project: the Kloudless v1 error table (API overview, "Error Code
 * Table"). Every error a client sees is a `CloudmuxError` rendered as the Kloudless envelope
 * `{error_code, message, status_code, id, conflicting_resource_id?}`.
 */

export const ERROR_CATALOG = {
  bad_request: { status: 400, message: 'The request is malformed.' },
  request_failed: { status: 400, message: 'The request failed.' },
  invalid_parent_folder: { status: 400, message: 'Invalid parent folder_id parameter.' },
  invalid_parameters: { status: 400, message: 'The request is malformed: the parameters are incorrect.' },
  invalid_resource_type: { status: 400, message: 'The resource_type provided is not correct.' },
  unauthorized: { status: 401, message: 'The Cloudmux credentials or token provided are invalid.' },
  service_unauthorized: {
    status: 401,
    message: 'The credentials or token provided for the upstream service are invalid.',
  },
  authentication_required: { status: 401, message: 'An authorization parameter is missing.' },
  invalid_token: { status: 401, message: 'Invalid request token provided.' },
  folder_not_empty: {
    status: 403,
    message: 'Cannot delete the folder as it is not empty and the recursive parameter is not set to True.',
  },
  permission_denied: { status: 403, message: 'Unable to access resource.' },
  forbidden: { status: 403, message: 'Forbidden request made to Cloudmux.' },
  service_forbidden: { status: 403, message: 'Forbidden request made to the upstream service.' },
  not_found: { status: 404, message: 'The requested resource was not found.' },
  // 405 when a client uses a wrong method on Cloudmux; 500 when the upstream rejects the method we used.
  method_not_allowed: { status: 405, message: 'The request was made using an unsupported method.' },
  not_acceptable: { status: 406, message: 'The request was made with unacceptable data.' },
  timed_out: {
    status: 408,
    message: 'The request timed out since the client did not complete the request in time.',
  },
  naming_conflict: { status: 409, message: 'Resource already exists.' },
  too_many_requests: { status: 429, message: 'Too many requests to the Cloudmux API were made.' },
  too_many_service_requests: {
    status: 429,
    message: 'Too many requests to the underlying service API were made.',
  },
  internal_error: { status: 500, message: 'Cloudmux experienced an internal error.' },
  link_error: { status: 500, message: 'Cloudmux experienced an error retrieving link data.' },
  unsupported_media_type: {
    status: 500,
    message: 'Cloudmux experienced an error making an invalid request.',
  },
  not_implemented: {
    status: 501,
    message: 'The request method is not currently implemented for the service.',
  },
  bad_gateway: { status: 502, message: 'Cloudmux received an invalid response from the upstream service.' },
  service_not_available: { status: 503, message: 'The upstream service is unavailable.' },
  gateway_timeout: { status: 504, message: 'The upstream service is unavailable.' },
  insufficient_storage: {
    status: 507,
    message: 'There is not enough free space in the account to complete the request.',
  },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export const ERROR_CODES = Object.keys(ERROR_CATALOG) as ErrorCode[];

/** What the upstream said, kept for logs and debugging; never rendered to clients. */
export interface UpstreamDetail {
  service?: string;
  status?: number;
  /** First bytes of the upstream body, with credentials redacted. */
  body?: string;
  code?: string;
}

export interface CloudmuxErrorOptions {
  /** Overrides the catalog status (e.g. 500 for an upstream `method_not_allowed`). */
  status?: number;
  conflictingResourceId?: string;
  /**
   * Connectors report a conflict with the existing item's native raw id; the server encodes it
   * into `conflictingResourceId` before rendering.
   */
  conflictingRawId?: string;
  /** Seconds, sent as `Retry-After` on 429s. */
  retryAfter?: number;
  upstream?: UpstreamDetail;
  /** Which connector raised it; prefixed to logs, not to client messages. */
  service?: string;
  /** Extra response headers (e.g. `RateLimit-*`). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export interface ErrorEnvelope {
  error_code: ErrorCode;
  message: string;
  status_code: number;
  id?: string;
  conflicting_resource_id?: string;
}

export class CloudmuxError extends Error {
  override readonly name = 'CloudmuxError';
  readonly code: ErrorCode;
  readonly status: number;
  conflictingResourceId?: string;
  readonly conflictingRawId?: string;
  readonly retryAfter?: number;
  readonly upstream?: UpstreamDetail;
  readonly service?: string;
  readonly headers?: Record<string, string>;

  constructor(code: ErrorCode, message?: string, options: CloudmuxErrorOptions = {}) {
    const entry = ERROR_CATALOG[code];
    super(message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? entry.status;
    if (options.conflictingResourceId !== undefined)
      this.conflictingResourceId = options.conflictingResourceId;
    if (options.conflictingRawId !== undefined) this.conflictingRawId = options.conflictingRawId;
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter;
    if (options.upstream !== undefined) this.upstream = options.upstream;
    if (options.service !== undefined) this.service = options.service;
    if (options.headers !== undefined) this.headers = options.headers;
  }

  /** The Kloudless error envelope; `requestId` is the per-request GUID. */
  toEnvelope(requestId?: string): ErrorEnvelope {
    const envelope: ErrorEnvelope = {
      error_code: this.code,
      message: this.message,
      status_code: this.status,
    };
    if (requestId !== undefined) envelope.id = requestId;
    if (this.conflictingResourceId !== undefined)
      envelope.conflicting_resource_id = this.conflictingResourceId;
    return envelope;
  }
}

export function isCloudmuxError(value: unknown): value is CloudmuxError {
  return value instanceof CloudmuxError;
}

export function cloudmuxError(
  code: ErrorCode,
  message?: string,
  options?: CloudmuxErrorOptions,
): CloudmuxError {
  return new CloudmuxError(code, message, options);
}

/** A connector's "already exists": carries the existing item's raw id for `conflicting_resource_id`. */
export function namingConflict(
  conflictingRawId: string | undefined,
  message?: string,
  service?: string,
): CloudmuxError {
  return new CloudmuxError('naming_conflict', message, {
    ...(conflictingRawId !== undefined ? { conflictingRawId } : {}),
    ...(service !== undefined ? { service } : {}),
  });
}

export function notFound(message?: string, service?: string): CloudmuxError {
  return new CloudmuxError('not_found', message, service !== undefined ? { service } : {});
}

export function notImplemented(service: string, operation: string): CloudmuxError {
  return new CloudmuxError('not_implemented', `${operation} is not implemented for ${service}.`, { service });
}

/** Upstream HTTP status → Kloudless code. Client faults are marshalled; server faults become gateway codes. */
export function errorCodeForUpstreamStatus(status: number): { code: ErrorCode; status?: number } {
  switch (status) {
    case 400:
      return { code: 'bad_request' };
    case 401:
      return { code: 'service_unauthorized' };
    case 402:
    case 403:
      return { code: 'service_forbidden' };
    case 404:
    case 410:
      return { code: 'not_found' };
    case 405:
      return { code: 'method_not_allowed', status: 500 };
    case 406:
      return { code: 'not_acceptable' };
    case 408:
      return { code: 'gateway_timeout' };
    case 409:
    case 412:
      return { code: 'naming_conflict' };
    case 413:
      return { code: 'bad_request' };
    case 415:
      return { code: 'unsupported_media_type' };
    case 423:
      return { code: 'permission_denied' };
    case 429:
      return { code: 'too_many_service_requests' };
    case 501:
      return { code: 'not_implemented' };
    case 503:
      return { code: 'service_not_available' };
    case 504:
      return { code: 'gateway_timeout' };
    case 507:
      return { code: 'insufficient_storage' };
    default:
      if (status >= 500) return { code: 'bad_gateway' };
      if (status >= 400) return { code: 'request_failed' };
      return { code: 'bad_gateway' };
  }
}

const NETWORK_CODES: Record<string, ErrorCode> = {
  ECONNREFUSED: 'service_not_available',
  ECONNRESET: 'service_not_available',
  EPIPE: 'service_not_available',
  ENOTFOUND: 'service_not_available',
  EAI_AGAIN: 'service_not_available',
  EHOSTUNREACH: 'service_not_available',
  ENETUNREACH: 'service_not_available',
  EHOSTDOWN: 'service_not_available',
  ETIMEDOUT: 'gateway_timeout',
  ECONNABORTED: 'gateway_timeout',
  ESOCKETTIMEDOUT: 'gateway_timeout',
  ERR_SOCKET_CONNECTION_TIMEOUT: 'gateway_timeout',
  UND_ERR_CONNECT_TIMEOUT: 'gateway_timeout',
  UND_ERR_HEADERS_TIMEOUT: 'gateway_timeout',
  UND_ERR_BODY_TIMEOUT: 'gateway_timeout',
  HPE_INVALID_CONSTANT: 'bad_gateway',
  HPE_HEADER_OVERFLOW: 'bad_gateway',
  ERR_TLS_CERT_ALTNAME_INVALID: 'bad_gateway',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'bad_gateway',
  SELF_SIGNED_CERT_IN_CHAIN: 'bad_gateway',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'bad_gateway',
  CERT_HAS_EXPIRED: 'bad_gateway',
  ERR_STREAM_PREMATURE_CLOSE: 'bad_gateway',
};

/** Network / socket error (Node `err.code`) → Kloudless code; unknown codes are a bad gateway. */
export function errorCodeForNetworkError(code: string | undefined): ErrorCode {
  if (code !== undefined && code in NETWORK_CODES) return NETWORK_CODES[code]!;
  return 'bad_gateway';
}

// Scheme patterns first, so `Authorization: Bearer x` loses the token, not just the word `Bearer`.
const SECRET_PATTERNS: RegExp[] = [
  /(Bearer\s+)[A-Za-z0-9._~+/=-]+/gi,
  /(Basic\s+)[A-Za-z0-9+/=]+/gi,
  /("?(?:access_token|refresh_token|id_token|client_secret|password|secret|token|api_key|apikey|authorization|signature|sig)"?\s*[:=]\s*"?)([^"&,\s}]+)/gi,
];

/** Keeps at most `limit` characters of an upstream body with obvious credentials masked. */
export function redactUpstreamBody(body: string, limit = 2048): string {
  let text = body.length > limit ? `${body.slice(0, limit)}…` : body;
  for (const pattern of SECRET_PATTERNS) text = text.replace(pattern, '$1[redacted]');
  return text;
}

/** Builds the error for an upstream HTTP response. The client message never echoes the upstream body. */
export function errorFromUpstreamResponse(
  service: string,
  status: number,
  options: { body?: string; retryAfter?: number; upstreamCode?: string; message?: string } = {},
): CloudmuxError {
  const mapped = errorCodeForUpstreamStatus(status);
  const upstream: UpstreamDetail = { service, status };
  if (options.body !== undefined) upstream.body = redactUpstreamBody(options.body);
  if (options.upstreamCode !== undefined) upstream.code = options.upstreamCode;
  const errorOptions: CloudmuxErrorOptions = { upstream, service };
  if (mapped.status !== undefined) errorOptions.status = mapped.status;
  if (mapped.code === 'too_many_service_requests' && options.retryAfter !== undefined) {
    errorOptions.retryAfter = options.retryAfter;
  }
  const message =
    options.message ?? `${ERROR_CATALOG[mapped.code].message} (${service} returned HTTP ${status})`;
  return new CloudmuxError(mapped.code, message, errorOptions);
}

export function errorFromNetworkError(service: string, error: unknown): CloudmuxError {
  const code = (error as { code?: string } | null)?.code;
  const mapped = errorCodeForNetworkError(code);
  const detail = code ? ` (${code})` : '';
  return new CloudmuxError(mapped, `${ERROR_CATALOG[mapped].message}${detail}`, {
    service,
    upstream: { service, ...(code ? { code } : {}) },
    cause: error,
  });
}

/** Parses `Retry-After` (delta-seconds or HTTP date) into whole seconds. */
export function parseRetryAfter(
  value: string | undefined | null,
  now: number = Date.now(),
): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed));
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}
