/**
 * Service-account JWTs: an RS256 (RFC 7518 §3.3, RSASSA-PKCS1-v1_5 + SHA-256) JWT (RFC 7519) used
 * as the assertion of the jwt-bearer grant (RFC 7523 §2.1). Signed with node:crypto.
 */
import { createPrivateKey, sign } from 'node:crypto';

export interface JwtAssertionClaims {
  iss: string;
  aud: string;
  scope?: string;
  sub?: string;
  iat: number;
  exp: number;
  [claim: string]: unknown;
}

const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

export function signJwtRs256(claims: Record<string, unknown>, privateKeyPem: string, keyId?: string): string {
  const header = { alg: 'RS256', typ: 'JWT', ...(keyId ? { kid: keyId } : {}) };
  const input = `${encode(header)}.${encode(claims)}`;
  const key = createPrivateKey(privateKeyPem);
  const signature = sign('sha256', Buffer.from(input), key).toString('base64url');
  return `${input}.${signature}`;
}

export interface ServiceAccountAssertionOptions {
  issuer: string;
  audience: string;
  scopes: string[];
  privateKeyPem: string;
  keyId?: string;
  /** The user to act as (domain-wide delegation). */
  subject?: string;
  nowMs: number;
  /** Assertion lifetime; Google caps it at one hour. */
  lifetimeSeconds?: number;
}

export function serviceAccountAssertion(options: ServiceAccountAssertionOptions): string {
  const iat = Math.floor(options.nowMs / 1000);
  const claims: JwtAssertionClaims = {
    iss: options.issuer,
    aud: options.audience,
    iat,
    exp: iat + (options.lifetimeSeconds ?? 3600),
  };
  if (options.scopes.length > 0) claims.scope = options.scopes.join(' ');
  if (options.subject) claims.sub = options.subject;
  return signJwtRs256(claims, options.privateKeyPem, options.keyId);
}

/** RFC 7523 §2.1 grant type. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
