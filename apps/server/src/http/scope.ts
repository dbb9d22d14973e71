/**
 * Per-request resolution for account-scoped routes: who is calling, which account(s) the path
 * names, the per-account rate limit, and the connector instance with the request's raw headers.
 */
import { CloudmuxError, rateLimitHeaders, type StorageApi, tooManyRequests } from '@cloudmux/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AccountRuntime } from '../runtime.js';
import type { AccountRow } from '../store/store.js';
import { authenticate, loadAccounts, type Principal } from './auth.js';
import type { ServerDeps } from './deps.js';
import { AccountIds } from './objects.js';
import { parseBool, parseRawHeaders } from './params.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export async function principalOf(deps: ServerDeps, request: FastifyRequest): Promise<Principal> {
  request.principal ??= await authenticate(deps.store, request);
  return request.principal;
}

/** Takes one token per account from its bucket; a denial is `429 too_many_requests` with `Retry-After`. */
export async function rateLimit(
  deps: ServerDeps,
  reply: FastifyReply,
  accounts: AccountRow[],
): Promise<void> {
  for (const account of accounts) {
    const decision = await deps.limiter.take(`account:${account.id}`);
    for (const [name, value] of Object.entries(rateLimitHeaders(decision))) {
      if (name !== 'Retry-After') reply.header(name, value);
    }
    if (!decision.allowed) throw tooManyRequests(decision);
  }
}

export async function accountsOf(
  deps: ServerDeps,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<{ principal: Principal; accounts: AccountRow[] }> {
  const principal = await principalOf(deps, request);
  const param = (request.params as { account?: string }).account ?? '';
  const accounts = await loadAccounts(deps.store, principal, param);
  await rateLimit(deps, reply, accounts);
  return { principal, accounts };
}

export interface StorageScope {
  principal: Principal;
  account: AccountRow;
  runtime: AccountRuntime;
  storage: StorageApi;
  ids: AccountIds;
  rawData: boolean;
}

export function requestScope(request: FastifyRequest): {
  rawHeaders?: Record<string, string>;
  asUser?: string;
} {
  const rawHeaders = parseRawHeaders(request.headers['x-kloudless-raw-headers']);
  const asUserHeader = request.headers['x-kloudless-as-user'];
  const asUser = Array.isArray(asUserHeader) ? asUserHeader[0] : asUserHeader;
  return { ...(rawHeaders ? { rawHeaders } : {}), ...(asUser ? { asUser } : {}) };
}

export async function storageRuntime(
  deps: ServerDeps,
  request: FastifyRequest,
  account: AccountRow,
): Promise<Omit<StorageScope, 'principal'>> {
  return storageRuntimeFor(deps, account, {
    scope: requestScope(request),
    rawData: parseBool(request.headers['x-kloudless-raw-data'], 'X-Kloudless-Raw-Data') ?? false,
  });
}

/** The id codec bound to one account, with its storage's `root` and `trash` special ids. */
export function accountIds(deps: ServerDeps, account: AccountRow, storage: StorageApi): AccountIds {
  return new AccountIds(deps.ids, Number(account.id), account.service, storage.rootRawId, storage.trashRawId);
}

/** The storage side of an account outside a request (tasks run it after the 202). */
export async function storageRuntimeFor(
  deps: ServerDeps,
  account: AccountRow,
  options: { scope?: { rawHeaders?: Record<string, string>; asUser?: string }; rawData?: boolean } = {},
): Promise<Omit<StorageScope, 'principal'>> {
  const runtime = await deps.runtime.forAccount(account, options.scope ?? {});
  const storage = runtime.instance.storage as StorageApi | undefined;
  if (!storage)
    throw new CloudmuxError(
      'not_implemented',
      `${runtime.definition.name} does not provide the Storage API.`,
    );
  const ids = accountIds(deps, account, storage);
  return { account, runtime, storage, ids, rawData: options.rawData ?? false };
}

/** One account (the path may not name several) with its storage connector. */
export async function storageScope(
  deps: ServerDeps,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<StorageScope> {
  const { principal, accounts } = await accountsOf(deps, request, reply);
  if (accounts.length !== 1)
    throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
  return { principal, ...(await storageRuntime(deps, request, accounts[0]!)) };
}

/** Another account of the same principal (cross-account copy and move targets). */
export async function targetAccount(
  deps: ServerDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  principal: Principal,
  id: unknown,
): Promise<Omit<StorageScope, 'principal'>> {
  const text = typeof id === 'number' ? String(id) : typeof id === 'string' ? id : '';
  if (!/^\d{1,15}$/.test(text))
    throw new CloudmuxError('invalid_parameters', 'account must be a numeric account id.');
  const [account] = await loadAccounts(deps.store, principal, text);
  await rateLimit(deps, reply, [account!]);
  return storageRuntime(deps, request, account!);
}

/** A parent folder id from a body: anything that does not resolve is `invalid_parent_folder` (400). */
export function parentRawId(scope: StorageScope, id: string): string {
  try {
    return scope.ids.decode(id, 'folder');
  } catch (err) {
    if (err instanceof CloudmuxError && err.code === 'not_found') {
      throw new CloudmuxError(
        'invalid_parent_folder',
        'The parent_id does not name a folder of this account.',
      );
    }
    throw err;
  }
}
