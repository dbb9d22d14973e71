/**
 * Request authentication. `Authorization: APIKey <key>` (scheme matched case-insensitively, so the
 * SDKs' `ApiKey` works) gives app-wide access; `Authorization: Bearer <token>[,<token>…]` gives
 * access to the accounts those tokens were issued for. Accounts a principal cannot see are
 * `not_found`, the same answer as accounts that do not exist.
 */
import { CloudmuxError } from '@cloudmux/core';
import type { FastifyRequest } from 'fastify';
import type { AccountRow, AppRow, Store } from '../store/store.js';

export interface Principal {
  app: AppRow;
  kind: 'api_key' | 'bearer';
  /** Bearer: the accounts of the tokens, in header order. */
  tokenAccountIds: number[];
}

export function parseAuthorization(header: string | undefined): { scheme: string; value: string } | null {
  if (!header) return null;
  const match = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s+(.+?)\s*$/.exec(header);
  if (!match) return null;
  return { scheme: match[1]!.toLowerCase(), value: match[2]! };
}

export async function authenticate(store: Store, request: FastifyRequest): Promise<Principal> {
  const auth = parseAuthorization(request.headers.authorization);
  if (!auth)
    throw new CloudmuxError(
      'authentication_required',
      'An Authorization header with an APIKey or Bearer token is required.',
    );
  if (auth.scheme === 'apikey') {
    const app = await store.appForApiKey(auth.value);
    if (!app) throw new CloudmuxError('unauthorized', 'The API key is invalid or revoked.');
    return { app, kind: 'api_key', tokenAccountIds: [] };
  }
  if (auth.scheme === 'bearer') {
    const tokens = auth.value
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    if (tokens.length === 0 || tokens.length > 100)
      throw new CloudmuxError('invalid_token', 'Invalid bearer token.');
    let appId: string | undefined;
    const accountIds: number[] = [];
    for (const token of tokens) {
      const resolved = await store.resolveAccountToken(token);
      if (!resolved)
        throw new CloudmuxError('invalid_token', 'The bearer token is invalid, expired or revoked.');
      if (appId !== undefined && resolved.appId !== appId)
        throw new CloudmuxError(
          'invalid_token',
          'Bearer tokens of different applications cannot be combined.',
        );
      appId = resolved.appId;
      accountIds.push(resolved.accountId);
    }
    const app = await store.getApp(appId!);
    if (!app) throw new CloudmuxError('invalid_token', 'The bearer token is invalid.');
    return { app, kind: 'bearer', tokenAccountIds: accountIds };
  }
  throw new CloudmuxError(
    'authentication_required',
    `Unsupported authorization scheme "${auth.scheme}"; use APIKey or Bearer.`,
  );
}

/** Parses the `{account_id}` path segment: `me`, `123`, or `1,2,3`. */
export function parseAccountParam(param: string, principal: Principal): number[] {
  const parts = decodeURIComponent(param)
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (parts.length === 0) throw new CloudmuxError('not_found', 'Account not found.');
  const ids: number[] = [];
  for (const part of parts) {
    if (part === 'me') {
      if (principal.kind !== 'bearer')
        throw new CloudmuxError(
          'bad_request',
          '"me" refers to the account of a Bearer token; use the numeric account id with an API key.',
        );
      ids.push(...principal.tokenAccountIds);
      continue;
    }
    if (!/^\d{1,15}$/.test(part)) throw new CloudmuxError('not_found', 'Account not found.');
    ids.push(Number(part));
  }
  return [...new Set(ids)];
}

export async function loadAccounts(store: Store, principal: Principal, param: string): Promise<AccountRow[]> {
  const ids = parseAccountParam(param, principal);
  const rows: AccountRow[] = [];
  for (const id of ids) {
    if (principal.kind === 'bearer' && !principal.tokenAccountIds.includes(id))
      throw new CloudmuxError('not_found', 'Account not found.');
    const row = await store.getAccount(principal.app.id, id);
    if (!row) throw new CloudmuxError('not_found', 'Account not found.');
    rows.push(row);
  }
  return rows;
}
