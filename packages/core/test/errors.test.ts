import { describe, expect, it } from 'vitest';
import {
  CloudmuxError,
  ERROR_CATALOG,
  errorCodeForNetworkError,
  errorCodeForUpstreamStatus,
  errorFromNetworkError,
  errorFromUpstreamResponse,
  parseRetryAfter,
  redactUpstreamBody,
} from '../src/index.js';

// The API overview's "Error Code Table", row by row.
const OVERVIEW_TABLE: Array<[string, number]> = [
  ['bad_request', 400],
  ['request_failed', 400],
  ['invalid_parent_folder', 400],
  ['invalid_parameters', 400],
  ['invalid_resource_type', 400],
  ['unauthorized', 401],
  ['service_unauthorized', 401],
  ['authentication_required', 401],
  ['invalid_token', 401],
  ['folder_not_empty', 403],
  ['permission_denied', 403],
  ['forbidden', 403],
  ['service_forbidden', 403],
  ['not_found', 404],
  ['method_not_allowed', 405],
  ['not_acceptable', 406],
  ['timed_out', 408],
  ['naming_conflict', 409],
  ['too_many_requests', 429],
  ['too_many_service_requests', 429],
  ['internal_error', 500],
  ['link_error', 500],
  ['unsupported_media_type', 500],
  ['not_implemented', 501],
  ['bad_gateway', 502],
  ['service_not_available', 503],
  ['gateway_timeout', 504],
  ['insufficient_storage', 507],
];

describe('error catalog', () => {
  it.each(OVERVIEW_TABLE)('%s has status %i', (code, status) => {
    expect(ERROR_CATALOG[code as keyof typeof ERROR_CATALOG].status).toBe(status);
    expect(new CloudmuxError(code as keyof typeof ERROR_CATALOG).toEnvelope('rid').status_code).toBe(status);
  });

  it('has exactly the overview codes', () => {
    expect(Object.keys(ERROR_CATALOG).sort()).toEqual([...new Set(OVERVIEW_TABLE.map(([c]) => c))].sort());
  });

  it('renders the Kloudless envelope with conflicting_resource_id on 409', () => {
    const err = new CloudmuxError('naming_conflict', 'exists', { conflictingResourceId: 'file_abc' });
    expect(err.toEnvelope('req-1')).toEqual({
      error_code: 'naming_conflict',
      message: 'exists',
      status_code: 409,
      id: 'req-1',
      conflicting_resource_id: 'file_abc',
    });
  });
});

describe('upstream status mapping', () => {
  const cases: Array<[number, string, number]> = [
    [400, 'bad_request', 400],
    [401, 'service_unauthorized', 401],
    [403, 'service_forbidden', 403],
    [404, 'not_found', 404],
    [410, 'not_found', 404],
    [405, 'method_not_allowed', 500],
    [406, 'not_acceptable', 406],
    [408, 'gateway_timeout', 504],
    [409, 'naming_conflict', 409],
    [412, 'naming_conflict', 409],
    [413, 'bad_request', 400],
    [415, 'unsupported_media_type', 500],
    [418, 'request_failed', 400],
    [422, 'request_failed', 400],
    [423, 'permission_denied', 403],
    [429, 'too_many_service_requests', 429],
    [500, 'bad_gateway', 502],
    [501, 'not_implemented', 501],
    [502, 'bad_gateway', 502],
    [503, 'service_not_available', 503],
    [504, 'gateway_timeout', 504],
    [507, 'insufficient_storage', 507],
    [599, 'bad_gateway', 502],
  ];
  it.each(cases)('upstream %i → %s (%i)', (upstream, code, status) => {
    const err = errorFromUpstreamResponse('dropbox', upstream, { body: '{"error":"x"}' });
    expect(err.code).toBe(code);
    expect(err.status).toBe(status);
    expect(err.upstream?.status).toBe(upstream);
    expect(errorCodeForUpstreamStatus(upstream).code).toBe(code);
  });

  it('keeps Retry-After only on 429 and never echoes the upstream body to clients', () => {
    const err = errorFromUpstreamResponse('box', 429, { retryAfter: 7, body: '{"access_token":"sekrit"}' });
    expect(err.retryAfter).toBe(7);
    expect(err.message).not.toContain('sekrit');
    expect(JSON.stringify(err.toEnvelope())).not.toContain('sekrit');
    expect(err.upstream?.body).not.toContain('sekrit');
    expect(errorFromUpstreamResponse('box', 503, { retryAfter: 7 }).retryAfter).toBeUndefined();
  });

  it('redacts credentials in kept upstream bodies and truncates them', () => {
    const body = 'Authorization: Bearer abc.def.ghi {"refresh_token": "r1", "password":"p"} client_secret=s3';
    const redacted = redactUpstreamBody(body);
    for (const secret of ['abc.def.ghi', 'r1', '"p"', 's3']) expect(redacted).not.toContain(secret);
    expect(redactUpstreamBody('x'.repeat(5000)).length).toBeLessThan(2100);
  });
});

describe('network error mapping', () => {
  const cases: Array<[string | undefined, string]> = [
    ['ECONNREFUSED', 'service_not_available'],
    ['ECONNRESET', 'service_not_available'],
    ['ENOTFOUND', 'service_not_available'],
    ['EAI_AGAIN', 'service_not_available'],
    ['EHOSTUNREACH', 'service_not_available'],
    ['EPIPE', 'service_not_available'],
    ['ETIMEDOUT', 'gateway_timeout'],
    ['ECONNABORTED', 'gateway_timeout'],
    ['UND_ERR_HEADERS_TIMEOUT', 'gateway_timeout'],
    ['CERT_HAS_EXPIRED', 'bad_gateway'],
    ['HPE_INVALID_CONSTANT', 'bad_gateway'],
    ['SOMETHING_NEW', 'bad_gateway'],
    [undefined, 'bad_gateway'],
  ];
  it.each(cases)('%s → %s', (code, expected) => {
    expect(errorCodeForNetworkError(code)).toBe(expected);
    const err = errorFromNetworkError('webdav', Object.assign(new Error('boom'), { code }));
    expect(err.code).toBe(expected);
    expect(err.service).toBe('webdav');
  });
});

describe('Retry-After parsing', () => {
  it('reads delta-seconds and HTTP dates', () => {
    expect(parseRetryAfter('12')).toBe(12);
    expect(parseRetryAfter('1.2')).toBe(2);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('garbage')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});
