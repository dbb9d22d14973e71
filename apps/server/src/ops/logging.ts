/**
 * Structured JSON logs (pino). Every line written while a request is handled carries its request
 * id — Fastify's request loggers bind `reqId`, and lines written through the root logger (the
 * connector runtime, connectors) get it from the request context — and secrets never reach a line.
 */
import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';
import { currentRequest } from './context.js';

const SECRET_KEYS = [
  'authorization',
  'Authorization',
  'cookie',
  'password',
  'token',
  'token_secret',
  'refresh_token',
  'access_token',
  'bearer_token',
  'api_key',
  'apiKey',
  'client_secret',
  'secret',
  'secret_key',
  'credentials',
  'signing_key',
  'webhook_secret',
];

/** Paths and header values that must never reach a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-kloudless-raw-headers"]',
  'headers.authorization',
  'headers.Authorization',
  '*.headers.authorization',
  '*.headers.Authorization',
  '*.headers.cookie',
  // Axios errors kept as causes carry the request config, headers included.
  'err.config.headers.Authorization',
  'err.config.headers.authorization',
  'err.cause.config.headers.Authorization',
  'err.cause.config.headers.authorization',
  ...SECRET_KEYS.flatMap((key) => [key, `*.${key}`]),
];

export const REDACTED = '[redacted]';

// Query parameters that carry secrets (link passwords, OAuth codes and state, tokens, keys).
const SECRET_QUERY =
  /([?&](?:password|token|access_token|refresh_token|code|client_secret|state|api_key|key)=)[^&#]*/gi;
// Path segments that are secrets: account tokens in `/tokens/{token}`, public link ids in `/l/{id}`
// (the link id is the link's capability), and any Cloudmux key or token.
const SECRET_SEGMENT = /(\/tokens\/|\/l\/)[^/?#]+|\b(?:cmt|cmk)_[A-Za-z0-9_-]+/g;

/** A URL as it may be logged. */
export function redactUrl(url: string): string {
  return url
    .replace(SECRET_SEGMENT, (_match, prefix: string | undefined) =>
      prefix ? `${prefix}${REDACTED}` : REDACTED,
    )
    .replace(SECRET_QUERY, `$1${REDACTED}`);
}

export function createLogger(level: string, destination?: DestinationStream): PinoLogger {
  const chindings = pino.symbols.chindingsSym as unknown as string;
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'cloudmux' },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    serializers: {
      req: (req: { method: string; url: string; ip?: string }) => ({
        method: req.method,
        url: redactUrl(req.url),
        ip: req.ip,
      }),
    },
    mixin: (_object, _level, logger) => {
      const context = currentRequest();
      if (!context) return {};
      // Fastify's per-request child loggers already bind reqId; do not write the key twice.
      const bound = (logger as unknown as Record<string, unknown>)[chindings];
      return typeof bound === 'string' && bound.includes('"reqId":') ? {} : { reqId: context.reqId };
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
