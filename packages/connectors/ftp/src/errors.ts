/**
 * FTP replies and socket failures mapped onto the Kloudless error catalog. FTP reply codes are
 * kept in `upstream.code` (`FTP 550`), never in `upstream.status`, which core reads as an HTTP status.
 */
import { CloudmuxError, type ErrorCode, errorFromNetworkError, redactUpstreamBody } from '@cloudmux/core';

export const SERVICE = 'ftp';

export interface FtpReply {
  code: number;
  /** All lines of the reply joined with `\n`, codes included. */
  message: string;
  /** The text lines without the leading code. */
  lines: string[];
}

/** Errors that mean the control or data connection is gone (the session cannot be reused). */
const dropped = new WeakSet<CloudmuxError>();

export function isDroppedConnection(error: unknown): boolean {
  return error instanceof CloudmuxError && dropped.has(error);
}

function markDropped(error: CloudmuxError): CloudmuxError {
  dropped.add(error);
  return error;
}

/** A socket error (ECONNRESET, ECONNREFUSED, TLS failures, …) or an already mapped guard error. */
export function connectionError(err: unknown): CloudmuxError {
  if (err instanceof CloudmuxError) return err;
  return markDropped(errorFromNetworkError(SERVICE, err));
}

export function connectionClosed(what = 'control'): CloudmuxError {
  return markDropped(
    new CloudmuxError('service_not_available', `The FTP server closed the ${what} connection.`, {
      service: SERVICE,
      upstream: { service: SERVICE, code: 'FTP_CONNECTION_CLOSED' },
    }),
  );
}

export function timeoutError(what: string): CloudmuxError {
  return markDropped(
    new CloudmuxError('gateway_timeout', `The FTP server did not answer in time (${what}).`, {
      service: SERVICE,
      upstream: { service: SERVICE, code: 'ETIMEDOUT' },
    }),
  );
}

export function garbageError(detail: string): CloudmuxError {
  return markDropped(
    new CloudmuxError('bad_gateway', `The FTP server sent an invalid reply (${detail}).`, {
      service: SERVICE,
      upstream: { service: SERVICE, code: 'FTP_BAD_REPLY', body: redactUpstreamBody(detail, 256) },
    }),
  );
}

const FORBIDDEN = /permission denied|access denied|not allowed|forbidden|prohibited|read-only|no permission/i;
const MISSING =
  /no such file|not found|does not exist|doesn't exist|can't check for file existence|cannot find/i;

function codeForReply(reply: FtpReply): ErrorCode {
  const { code, message } = reply;
  switch (code) {
    case 421:
    case 425:
    case 450:
      return 'service_not_available';
    case 426:
      return 'bad_gateway';
    case 430:
    case 530:
    case 532:
      return 'service_unauthorized';
    case 452:
    case 552:
      return 'insufficient_storage';
    case 534:
    case 533:
      return 'service_forbidden';
    case 550:
    case 553:
    case 451:
      if (FORBIDDEN.test(message)) return 'service_forbidden';
      if (MISSING.test(message)) return 'not_found';
      if (/not empty/i.test(message)) return 'folder_not_empty';
      if (/exists/i.test(message)) return 'naming_conflict';
      // RFC 959 §4.2: 550 "file unavailable (e.g., file not found, no access)", 553 "name not allowed".
      if (code === 550) return 'not_found';
      if (code === 553) return 'service_forbidden';
      return 'bad_gateway';
    default:
      if (code >= 400 && code < 500) return 'service_not_available';
      return 'bad_gateway';
  }
}

/** The error for a negative (or unexpected) reply to `command` (the verb only; never the arguments). */
export function replyError(reply: FtpReply, command: string): CloudmuxError {
  const code = codeForReply(reply);
  const verb = command.split(' ', 1)[0]!.toUpperCase();
  const text = reply.lines.join(' ').trim();
  const error = new CloudmuxError(
    code,
    `The FTP server refused ${verb}: ${reply.code} ${text}`.slice(0, 300),
    {
      service: SERVICE,
      upstream: { service: SERVICE, code: `FTP ${reply.code}`, body: redactUpstreamBody(reply.message, 512) },
    },
  );
  // A 421 means the server is closing the control connection.
  return reply.code === 421 ? markDropped(error) : error;
}
