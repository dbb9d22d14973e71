/**
 * Accounts (kloudless-api.md §1.5, §1.6, §2.1–2.2): import, list, get (`retrieve_full`), `me`,
 * PATCH, DELETE (revokes its tokens), bearer tokens, token verification, and the public service
 * list the widgets read.
 */
import { lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { type AnyConnectorDefinition, CloudmuxError, type StorageApi } from '@cloudmux/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import * as z from 'zod';
import { parseAuthorization } from '../http/auth.js';
import type { ServerDeps } from '../http/deps.js';
import { accountCapabilities, renderAccount } from '../http/objects.js';
import { firstValue, parseBody, parseBool, parsePageSize } from '../http/params.js';
import { accountsOf, principalOf } from '../http/scope.js';
import type { AccountRow } from '../store/store.js';
import { sendJson } from './util.js';

/** Fields of `POST /v1/accounts` that are not credentials (the rest of the body is). */
const ACCOUNT_FIELDS = [
  'account',
  'service',
  'active',
  'admin',
  'custom_properties',
  'effective_scope',
  'token_expiry',
  'refresh_token_expiry',
] as const;
const OAUTH_FIELDS = [
  'token',
  'token_secret',
  'refresh_token',
  'token_expiry',
  'refresh_token_expiry',
] as const;

const importBody = z.looseObject({
  service: z.string().min(1),
  account: z.string().min(1).max(512).optional(),
  admin: z.boolean().optional(),
  custom_properties: z.record(z.string(), z.unknown()).optional(),
  token_expiry: z.string().nullable().optional(),
  refresh_token_expiry: z.string().nullable().optional(),
});

const patchBody = z.looseObject({
  account: z.string().min(1).max(512).optional(),
  active: z.boolean().optional(),
  service: z.string().optional(),
  custom_properties: z.record(z.string(), z.unknown()).optional(),
  token: z.string().optional(),
  token_secret: z.string().optional(),
  refresh_token: z.string().optional(),
  token_expiry: z.string().nullable().optional(),
  refresh_token_expiry: z.string().nullable().optional(),
});

const tokenBody = z.looseObject({
  expires_in: z
    .number()
    .int()
    .positive()
    .max(10 * 365 * 86400)
    .optional(),
});

function isoOrNull(value: string | null | undefined, name: string): string | null | undefined {
  if (value === undefined || value === null) return value;
  const t = Date.parse(value);
  if (Number.isNaN(t))
    throw new CloudmuxError('invalid_parameters', `${name} must be an ISO-8601 timestamp.`);
  return new Date(t).toISOString();
}

/** The credential object a connector's schema parses, from the import body (Kloudless put them at the top level). */
function credentialsFrom(
  definition: AnyConnectorDefinition,
  body: Record<string, unknown>,
): Record<string, unknown> {
  const credentials: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (
      (ACCOUNT_FIELDS as readonly string[]).includes(key) &&
      !(OAUTH_FIELDS as readonly string[]).includes(key)
    )
      continue;
    credentials[key] = value;
  }
  const parsed = definition.credentials.safeParse(credentials);
  if (!parsed.success) {
    throw new CloudmuxError(
      'invalid_parameters',
      `Invalid fields for ${definition.service}: ${parsed.error.issues.map((i: { path: PropertyKey[]; message: string }) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data as Record<string, unknown>;
}

/**
 * `path` with the symbolic links of its existing part resolved (the rest need not exist yet, as
 * offline imports allow); null when a component is a dangling link, whose target is unknowable.
 */
function realPathOf(path: string): string | null {
  const missing: string[] = [];
  for (let current = path; ; current = dirname(current)) {
    try {
      return join(realpathSync(current), ...missing);
    } catch {
      if (lstatSync(current, { throwIfNoEntry: false })) return null;
      if (dirname(current) === current) return path;
      missing.unshift(basename(current));
    }
  }
}

/** `local` accounts may only live inside the operator's CLOUDMUX_LOCAL_ROOTS. */
export function assertLocalRoot(deps: ServerDeps, credentials: Record<string, unknown>): void {
  // Compared as real paths: a symbolic link inside an allowed directory may point anywhere.
  const root = realPathOf(resolve(String(credentials.root)));
  const inside = deps.config.localRoots.some((allowed) => {
    if (root === null) return false;
    const rel = relative(realPathOf(allowed) ?? allowed, root);
    return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
  });
  if (!inside)
    throw new CloudmuxError(
      'forbidden',
      'The root directory is outside the directories this server allows for local accounts.',
    );
}

export function registerAccountRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const definitionOf = (row: AccountRow) => deps.registry.get(row.service);

  async function render(row: AccountRow, full: boolean) {
    const definition = definitionOf(row);
    if (!full || !definition) return renderAccount(row, definition, deps.config.publicUrl);
    let storage: StorageApi | undefined;
    if (definition.apis.includes('storage') && row.active) {
      storage = await deps.runtime
        .forAccount(row)
        .then((rt) => rt.instance.storage as StorageApi | undefined)
        .catch(() => undefined);
    }
    return renderAccount(row, definition, deps.config.publicUrl, {
      capabilities: accountCapabilities(definition, storage),
    });
  }

  // §1.6 import.
  app.post('/v1/accounts', async (request, reply) => {
    const principal = await principalOf(deps, request);
    if (principal.kind !== 'api_key')
      throw new CloudmuxError('forbidden', 'Importing accounts needs the application API key.');
    const body = parseBody(request.body, importBody) as Record<string, unknown> & z.infer<typeof importBody>;
    const definition = deps.registry.get(body.service);
    if (!definition) throw new CloudmuxError('invalid_parameters', `Unknown service "${body.service}".`);
    const credentials = credentialsFrom(definition, body);
    if (definition.service === 'local') assertLocalRoot(deps, credentials);
    const validate = parseBool((request.query as Record<string, unknown>).validate, 'validate') ?? false;
    if (validate) {
      const { runtime, dispose } = await deps.runtime.transient(definition.service, credentials);
      try {
        await runtime.instance.validate?.();
      } catch (err) {
        // "Not found" while checking credentials means the account points at nothing (a missing root,
        // share or bucket): a bad field of this request, not a missing route.
        if (err instanceof CloudmuxError && err.code === 'not_found') {
          throw new CloudmuxError('invalid_parameters', `The credentials do not work: ${err.message}`, {
            cause: err,
          });
        }
        throw err;
      } finally {
        await dispose();
      }
    }
    const row = await deps.store.createAccount({
      appId: principal.app.id,
      service: definition.service,
      account: body.account ?? `${definition.name} account`,
      credentials,
      admin: body.admin ?? false,
      tokenExpiry: isoOrNull(body.token_expiry, 'token_expiry') ?? null,
      refreshTokenExpiry: isoOrNull(body.refresh_token_expiry, 'refresh_token_expiry') ?? null,
      ...(body.custom_properties ? { customProperties: body.custom_properties } : {}),
    });
    await deps.watchers.start(row);
    return sendJson(reply, 201, await render(row, false));
  });

  // §2.1 list: an API key lists the app's accounts; a Bearer token lists its own.
  app.get('/v1/accounts', async (request, reply) => {
    const principal = await principalOf(deps, request);
    const query = request.query as Record<string, unknown>;
    const pageSize = parsePageSize(query.page_size, 100);
    const pageText = firstValue(query.page);
    const page = pageText === undefined || pageText === '' ? 1 : Number(pageText);
    if (!Number.isInteger(page) || page < 1 || page > 1_000_000)
      throw new CloudmuxError('invalid_parameters', 'page must be a positive integer.');
    const filter: { active?: boolean; admin?: boolean; ids?: number[] } = {};
    const active = parseBool(query.active, 'active');
    const admin = parseBool(query.admin, 'admin');
    if (active !== undefined) filter.active = active;
    if (admin !== undefined) filter.admin = admin;
    if (principal.kind === 'bearer') filter.ids = principal.tokenAccountIds;
    const { rows, total } = await deps.store.listAccounts(
      principal.app.id,
      filter,
      (page - 1) * pageSize,
      pageSize,
    );
    if (page > 1 && rows.length === 0)
      throw new CloudmuxError('not_found', 'The requested page is past the end of the listing.');
    const full = parseBool(query.retrieve_full, 'retrieve_full') ?? false;
    return sendJson(reply, 200, {
      count: rows.length,
      page,
      next_page: page * pageSize < total ? String(page + 1) : null,
      total,
      objects: await Promise.all(rows.map((r) => render(r, full))),
      type: 'object_list',
      api: 'core',
    });
  });

  app.get('/v1/accounts/:account', async (request, reply) => {
    const { accounts } = await accountsOf(deps, request, reply);
    const query = request.query as Record<string, unknown>;
    const full = parseBool(query.retrieve_full, 'retrieve_full') ?? false;
    const active = parseBool(query.active, 'active');
    const visible = active === undefined ? accounts : accounts.filter((a) => (a.active === 1) === active);
    if (visible.length === 0) throw new CloudmuxError('not_found', 'Account not found.');
    if (visible.length === 1) return sendJson(reply, 200, await render(visible[0]!, full));
    return sendJson(reply, 200, {
      count: visible.length,
      page: 1,
      next_page: null,
      objects: await Promise.all(visible.map((r) => render(r, full))),
      type: 'object_list',
      api: 'core',
    });
  });

  app.patch('/v1/accounts/:account', async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    if (accounts.length !== 1)
      throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
    const row = accounts[0]!;
    const body = parseBody(request.body, patchBody);
    if (body.service !== undefined && body.service !== row.service)
      throw new CloudmuxError('invalid_parameters', 'The service of an account cannot change.');
    const credentialChange = OAUTH_FIELDS.some(
      (f) => f !== 'token_expiry' && f !== 'refresh_token_expiry' && body[f] !== undefined,
    );
    if (credentialChange) {
      if (principal.kind !== 'api_key')
        throw new CloudmuxError('forbidden', 'Changing credentials needs the application API key.');
      const definition = definitionOf(row);
      if (!definition)
        throw new CloudmuxError('not_implemented', `The service ${row.service} is not installed.`);
      const current = deps.store.decryptCredentials(row);
      const next = credentialsFrom(definition, {
        ...current,
        ...Object.fromEntries(
          OAUTH_FIELDS.map((f) => [f, body[f] ?? current[f]]).filter(([, v]) => v !== undefined),
        ),
      });
      await deps.store.replaceCredentials(principal.app.id, Number(row.id), next);
      await deps.runtime.evict(Number(row.id));
    }
    const updated = await deps.store.updateAccount(principal.app.id, Number(row.id), {
      ...(body.account !== undefined ? { account: body.account } : {}),
      ...(body.active !== undefined ? { active: body.active } : {}),
      ...(body.custom_properties !== undefined ? { customProperties: body.custom_properties } : {}),
      ...(body.token_expiry !== undefined
        ? { tokenExpiry: isoOrNull(body.token_expiry, 'token_expiry') ?? null }
        : {}),
      ...(body.refresh_token_expiry !== undefined
        ? { refreshTokenExpiry: isoOrNull(body.refresh_token_expiry, 'refresh_token_expiry') ?? null }
        : {}),
    });
    if (body.active !== undefined) await deps.runtime.evict(Number(row.id));
    return sendJson(reply, 200, await render(updated!, false));
  });

  app.delete('/v1/accounts/:account', async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    for (const row of accounts) {
      await deps.watchers.stop(Number(row.id));
      await deps.runtime.evict(Number(row.id));
      await deps.store.deleteAccount(principal.app.id, Number(row.id));
    }
    return reply.status(204).send();
  });

  // Account bearer tokens, minted with the API key.
  app.post('/v1/accounts/:account/tokens', async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    if (principal.kind !== 'api_key')
      throw new CloudmuxError('forbidden', 'Minting tokens needs the application API key.');
    if (accounts.length !== 1)
      throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
    const body = parseBody(request.body, tokenBody);
    const token = await deps.store.createAccountToken(
      principal.app.id,
      Number(accounts[0]!.id),
      body.expires_in,
    );
    return sendJson(reply, 201, {
      access_token: token,
      token_type: 'Bearer',
      account_id: Number(accounts[0]!.id),
      ...(body.expires_in ? { expires_in: body.expires_in } : {}),
    });
  });

  app.delete('/v1/accounts/:account/tokens/:token', async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    if (accounts.length !== 1)
      throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
    const revoked = await deps.store.revokeAccountToken(
      principal.app.id,
      Number(accounts[0]!.id),
      (request.params as { token: string }).token,
    );
    if (!revoked) throw new CloudmuxError('not_found', 'Token not found.');
    return reply.status(204).send();
  });

  // §1.5 token verification: invalid tokens are a 400, which the SDKs read as "invalid token".
  app.get('/v1/oauth/token', async (request, reply) => {
    const auth = parseAuthorization(request.headers.authorization);
    if (auth?.scheme !== 'bearer') throw new CloudmuxError('bad_request', 'A Bearer token is required.');
    const resolved = await deps.store.resolveAccountToken(auth.value.split(',')[0]!.trim());
    if (!resolved) throw new CloudmuxError('bad_request', 'The token is invalid, expired or revoked.');
    const account = await deps.store.getAccount(resolved.appId, resolved.accountId);
    return sendJson(reply, 200, {
      client_id: resolved.appId,
      account_id: resolved.accountId,
      scope: account?.effective_scope ?? '',
      token_type: 'Bearer',
    });
  });

  // §2.4 the services the widgets list (no auth).
  app.get('/v1/public/services', async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const apis = firstValue(query.apis)
      ?.split(',')
      .map((a) => a.trim())
      .filter(Boolean);
    const withProperties = parseBool(query.retrieve_properties, 'retrieve_properties') ?? true;
    const objects = deps.registry
      .all()
      .filter((d) => !apis || apis.some((a) => d.apis.includes(a as never)))
      .map((d) => publicService(d, withProperties));
    return sendJson(reply, 200, {
      count: objects.length,
      page: 1,
      next_page: null,
      objects,
      type: 'object_list',
      api: 'core',
    });
  });
}

/** A connector as `/v1/public/services` lists it, with widget capabilities per API. */
export function publicService(definition: AnyConnectorDefinition, withProperties: boolean) {
  const result = (value: boolean) => [{ admin: false, result: value }];
  const capabilities: Record<string, Array<{ admin: boolean; result: boolean }>> = {};
  if (definition.apis.includes('storage')) {
    for (const op of [
      'folders.list',
      'folders.read',
      'folders.create',
      'files.read',
      'files.create',
      'files.delete',
      'links.create',
    ]) {
      capabilities[`storage.${op}`] = result(true);
    }
  }
  return {
    name: definition.service,
    friendly_name: definition.name,
    logo_url: definition.logoUrl ?? null,
    category: definition.category,
    apis: [...definition.apis],
    auth: definition.auth.type === 'oauth2' ? 'oauth2' : 'credentials',
    ...(withProperties ? { properties: { capabilities } } : {}),
  };
}

export type { FastifyRequest };
