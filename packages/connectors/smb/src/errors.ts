/** SMB failures → the Kloudless catalog. */
import { CloudmuxError, type ErrorCode, errorFromNetworkError } from '@cloudmux/core';
import { SmbConnectionError, SmbStatusError } from './smb2/client.js';
import { Status, statusName } from './smb2/constants.js';

const SERVICE = 'smb';

const STATUS_CODES = new Map<number, ErrorCode>([
  [Status.NO_SUCH_FILE, 'not_found'],
  [Status.OBJECT_NAME_NOT_FOUND, 'not_found'],
  [Status.OBJECT_PATH_NOT_FOUND, 'not_found'],
  [Status.NOT_A_DIRECTORY, 'not_found'],
  [Status.FILE_IS_A_DIRECTORY, 'not_found'],
  [Status.DELETE_PENDING, 'not_found'],
  [Status.BAD_NETWORK_NAME, 'not_found'],
  [Status.OBJECT_NAME_COLLISION, 'naming_conflict'],
  [Status.DIRECTORY_NOT_EMPTY, 'folder_not_empty'],
  [Status.ACCESS_DENIED, 'service_forbidden'],
  [Status.NETWORK_ACCESS_DENIED, 'service_forbidden'],
  [Status.MEDIA_WRITE_PROTECTED, 'service_forbidden'],
  [Status.CANNOT_DELETE, 'service_forbidden'],
  [Status.PRIVILEGE_NOT_HELD, 'service_forbidden'],
  [Status.SHARING_VIOLATION, 'permission_denied'],
  [Status.LOGON_FAILURE, 'service_unauthorized'],
  [Status.WRONG_PASSWORD, 'service_unauthorized'],
  [Status.NO_SUCH_USER, 'service_unauthorized'],
  [Status.ACCOUNT_RESTRICTION, 'service_unauthorized'],
  [Status.INVALID_LOGON_HOURS, 'service_unauthorized'],
  [Status.INVALID_WORKSTATION, 'service_unauthorized'],
  [Status.PASSWORD_EXPIRED, 'service_unauthorized'],
  [Status.PASSWORD_MUST_CHANGE, 'service_unauthorized'],
  [Status.ACCOUNT_DISABLED, 'service_unauthorized'],
  [Status.ACCOUNT_LOCKED_OUT, 'service_unauthorized'],
  [Status.DISK_FULL, 'insufficient_storage'],
  [Status.QUOTA_EXCEEDED, 'insufficient_storage'],
  [Status.OBJECT_NAME_INVALID, 'invalid_parameters'],
  [Status.OBJECT_PATH_INVALID, 'invalid_parameters'],
  [Status.OBJECT_PATH_SYNTAX_BAD, 'invalid_parameters'],
  [Status.NAME_TOO_LONG, 'invalid_parameters'],
  [Status.NOT_SUPPORTED, 'not_implemented'],
  [Status.INVALID_DEVICE_REQUEST, 'not_implemented'],
  [Status.INSUFFICIENT_RESOURCES, 'service_not_available'],
  [Status.NETWORK_NAME_DELETED, 'service_not_available'],
  [Status.USER_SESSION_DELETED, 'service_not_available'],
  [Status.NETWORK_SESSION_EXPIRED, 'service_not_available'],
  [Status.IO_TIMEOUT, 'gateway_timeout'],
]);

export function hasStatus(err: unknown, ...statuses: number[]): boolean {
  return err instanceof SmbStatusError && statuses.includes(err.status);
}

/** Whether the failure broke the connection (as opposed to one request failing). */
export function isConnectionFailure(err: unknown): boolean {
  return err instanceof SmbConnectionError;
}

export function toCloudmuxError(err: unknown): CloudmuxError {
  if (err instanceof CloudmuxError) return err;
  if (err instanceof SmbStatusError) {
    const code = STATUS_CODES.get(err.status) ?? 'bad_gateway';
    const message =
      code === 'service_unauthorized'
        ? `The SMB server refused the credentials (${statusName(err.status)}).`
        : `The SMB server answered ${err.message}.`;
    return new CloudmuxError(code, message, {
      service: SERVICE,
      upstream: { service: SERVICE, code: statusName(err.status) },
      cause: err,
    });
  }
  if (err instanceof SmbConnectionError) {
    const code: ErrorCode =
      err.kind === 'timeout'
        ? 'gateway_timeout'
        : err.kind === 'protocol'
          ? 'bad_gateway'
          : 'service_not_available';
    return new CloudmuxError(code, err.message, {
      service: SERVICE,
      upstream: { service: SERVICE, ...(err.code ? { code: err.code } : {}) },
      cause: err,
    });
  }
  if (
    err &&
    typeof err === 'object' &&
    'code' in err &&
    typeof (err as { code: unknown }).code === 'string'
  ) {
    return errorFromNetworkError(SERVICE, err);
  }
  return new CloudmuxError(
    'bad_gateway',
    `Unexpected SMB failure: ${(err as Error)?.message ?? String(err)}`,
    { service: SERVICE, cause: err },
  );
}
