/**
 * Every error leaves the server as the Kloudless envelope with the right status, `Content-Type:
 * application/json` exactly, and the request id. Framework errors (validation, bodies, routing)
 * are mapped onto the catalog here; nothing else reaches a client as a 500 with a stack.
 */
import { CloudmuxError, type ErrorCode } from '@cloudmux/core';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';

export function toCloudmuxError(err: unknown): CloudmuxError {
  if (err instanceof CloudmuxError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation
      .map((v) => `${v.instancePath.replace(/^\//, '').replace(/\//g, '.') || 'request'}: ${v.message}`)
      .slice(0, 5)
      .join('; ');
    return new CloudmuxError(
      'invalid_parameters',
      `Invalid ${err.validationContext ?? 'request'}: ${issues}`,
    );
  }
  const fe = err as Partial<FastifyError> & { code?: string; statusCode?: number };
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CloudmuxError('bad_request', 'The request body is larger than this endpoint accepts.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new CloudmuxError('invalid_parameters', 'The request body is not valid JSON.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new CloudmuxError('bad_request', fe.message ?? 'The request body could not be read.');
    case 'FST_ERR_VALIDATION':
      return new CloudmuxError('invalid_parameters', fe.message ?? 'Invalid parameters.');
    case 'ECONNRESET':
    case 'ERR_STREAM_PREMATURE_CLOSE':
      return new CloudmuxError('timed_out', 'The client did not complete the request.');
    default:
      break;
  }
  if (err instanceof SyntaxError)
    return new CloudmuxError('invalid_parameters', 'The request body is not valid JSON.');
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code: ErrorCode =
      fe.statusCode === 404
        ? 'not_found'
        : fe.statusCode === 405
          ? 'method_not_allowed'
          : fe.statusCode === 408
            ? 'timed_out'
            : 'bad_request';
    return new CloudmuxError(code, fe.message);
  }
  return new CloudmuxError('internal_error', undefined, { cause: err });
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const error = toCloudmuxError(err);
  if (error.status >= 500)
    request.log.error(
      { err: error.cause ?? error, upstream: error.upstream, code: error.code },
      error.message,
    );
  else request.log.info({ code: error.code, upstream: error.upstream }, error.message);
  if (error.headers) for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
  if (error.retryAfter !== undefined) reply.header('Retry-After', String(error.retryAfter));
  // A Buffer keeps Fastify from adding `; charset=utf-8` where no onSend hook runs (URL errors).
  return reply
    .status(error.status)
    .header('content-type', 'application/json')
    .send(Buffer.from(JSON.stringify(error.toEnvelope(request.id))));
}
