/**
 * OAuth 2.0 protocol values. Errors that go back to an application's redirect URI or into the popup
 * message carry the RFC 6749 codes (§4.1.2.1 authorization errors, §5.2 token errors) — the values
 * the Kloudless SDKs read from `error` — not the Kloudless envelope codes of `CloudmuxError`.
 */

/** RFC 6749 §4.1.2.1 (also §4.2.2.1). */
export const AUTHORIZATION_ERRORS = [
  'invalid_request',
  'unauthorized_client',
  'access_denied',
  'unsupported_response_type',
  'invalid_scope',
  'server_error',
  'temporarily_unavailable',
] as const;
export type AuthorizationErrorCode = (typeof AUTHORIZATION_ERRORS)[number];

/** RFC 6749 §5.2. */
export type TokenErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type';

/** The redirect URI of the popup (out-of-band) flow: the result is shown or posted, not redirected. */
export const OOB_REDIRECT_URI = 'urn:ietf:wg:oauth:2.0:oob';

/** How long an authorization request (our `state`) lives: RFC 9700 / perf-reliability §4.3 ask for ≤ 10 min. */
export const FLOW_TTL_MS = 10 * 60_000;
/** How long our one-time authorization code lives (RFC 6749 §4.1.2: short, 10 min at most). */
export const CODE_TTL_MS = 5 * 60_000;

/** An error to hand back to the application, through the channel of its flow. */
export class AuthorizationError extends Error {
  constructor(
    readonly error: AuthorizationErrorCode,
    readonly description: string,
  ) {
    super(description);
  }
}

export function isAuthorizationErrorCode(value: unknown): value is AuthorizationErrorCode {
  return typeof value === 'string' && (AUTHORIZATION_ERRORS as readonly string[]).includes(value);
}
