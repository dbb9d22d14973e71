/**
 * Links hosted by Cloudmux (kloudless-api.md §3.4) for every connector that can download: the
 * CRUD API under `/v1/accounts/{id}/storage/links` and the public link URL `/l/<link id>`.
 *
 * The link id is 128 random bits and doubles as the unguessable token of the public URL; it is only
 * shown to the app that owns the link. A password-protected link answers with a form; the right
 * password sets a short-lived HttpOnly, SameSite=Strict cookie bound to the link and its current
 * password hash, then redirects back to the link URL. Public visitors never reach the account's
 * request options (raw headers, impersonation): the connector runs with the account's own scope.
 */
import { createHmac } from 'node:crypto';
import {
  assertPageExists,
  CloudmuxError,
  constantTimeEqual,
  type LinkObject,
  pageResource,
  type StorageApi,
  type StorageItem,
  toKloudlessTime,
  tooManyRequests,
} from '@cloudmux/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as z from 'zod';
import type { ServerDeps } from '../http/deps.js';
import { sendError, toCloudmuxError } from '../http/errors.js';
import { boolParam, firstValue, parseBody, parseBool, parsePageSize, readForm } from '../http/params.js';
import { accountsOf, storageScope } from '../http/scope.js';
import { errorPage, linkPage, PAGE_HEADERS, passwordPage } from '../pages/link-pages.js';
import { hashLinkPassword, type LinkRow, LinkStore, verifyLinkPassword } from '../store/links.js';
import type { AccountRow } from '../store/store.js';
import { sendContents } from './storage.js';
import { sendJson } from './util.js';

const DEFAULT_PAGE_SIZE = 100;
/** How long a correct password opens its link in that browser. */
const ACCESS_SECONDS = 15 * 60;
const COOKIE = 'cm_link';
/** Password attempts per link: a burst of 10, then one every 5 seconds. */
const PASSWORD_RATE = { requestsPerSecond: 0.2, burst: 10 };

const passwordField = z.string().max(1024).nullable().optional();
const expirationField = z.union([z.string().max(64), z.null()]).optional();

const createLinkBody = z.looseObject({
  file_id: z.string().min(1).max(8192),
  direct: boolParam,
  password: passwordField,
  expiration: expirationField,
  active: boolParam,
});
const patchLinkBody = z.looseObject({
  direct: boolParam,
  password: passwordField,
  expiration: expirationField,
  active: boolParam,
});

const ISO_RE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/** An ISO-8601 date or date-time; a time without a zone is UTC (as Kloudless' Python SDK sent it). */
export function parseIsoTime(value: string, name: string): Date {
  const text = value.trim();
  const match = ISO_RE.exec(text);
  const time = match
    ? Date.parse(`${text.replace(' ', 'T')}${text.length > 10 && match[1] === undefined ? 'Z' : ''}`)
    : Number.NaN;
  if (Number.isNaN(time))
    throw new CloudmuxError('invalid_parameters', `${name} must be an ISO-8601 date and time.`);
  return new Date(time);
}

/** `expiration`: ISO-8601; `null` or `''` clears it. */
export function parseExpiration(value: string | null | undefined): string | null | undefined {
  if (value === undefined) return undefined;
  if (value === null || value === '') return null;
  return parseIsoTime(value, 'expiration').toISOString();
}

/** A password of `''` or `null` means none. */
async function passwordHashFor(password: string | null | undefined): Promise<string | null | undefined> {
  if (password === undefined) return undefined;
  if (password === null || password === '') return null;
  return hashLinkPassword(password);
}

/** PageContext's account binding: the listed account ids (hashed when very many). */
export function pageAccountKey(ids: readonly number[]): string {
  const key = ids.join(',');
  return key.length <= 256 ? key : createHmac('sha256', 'cloudmux/accounts').update(key).digest('hex');
}

function pathOf(publicUrl: string): string {
  return new URL(publicUrl).pathname.replace(/\/+$/, '');
}

export function registerLinksRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const prefix = '/v1/accounts/:account/storage';
  const links = new LinkStore(deps.storeHandle.db);
  const publicUrl = deps.config.publicUrl;
  const publicPath = pathOf(publicUrl);
  const secureCookie = publicUrl.startsWith('https:');
  const cookieKey = deps.keys.keyring.derive('link-access');

  const linkPath = (id: string) => `${publicPath}/l/${id}`;

  function render(row: LinkRow, service: string): LinkObject {
    const accountId = Number(row.account_id);
    const fileId = deps.ids.encode({ accountId, service, type: 'file', rawId: row.raw_id });
    return {
      id: row.id,
      file_id: fileId,
      url: `${publicUrl}/l/${row.id}`,
      account: accountId,
      active: row.active === 1,
      direct: row.direct === 1,
      password: row.password_hash !== null,
      expiration: row.expiration ? toKloudlessTime(new Date(row.expiration)) : null,
      created: toKloudlessTime(new Date(row.created)),
      modified: toKloudlessTime(new Date(row.modified)),
      href: `${publicUrl}/v1/accounts/${accountId}/storage/links/${row.id}`,
      api: 'storage',
      type: 'link',
    };
  }

  const serviceOf = (accounts: AccountRow[], accountId: number) =>
    accounts.find((a) => Number(a.id) === accountId)!.service;
  const linkId = (request: FastifyRequest) => (request.params as { id: string }).id;
  const notFound = () => new CloudmuxError('not_found', 'Link not found.');

  // ── API ────────────────────────────────────────────────────────────────

  // §3.4 list; the path may name several accounts (`/accounts/1,2/storage/links`).
  app.get(`${prefix}/links`, async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    const query = request.query as Record<string, unknown>;
    const active = parseBool(query.active, 'active');
    const pageSize = parsePageSize(query.page_size, DEFAULT_PAGE_SIZE);
    const ids = accounts.map((a) => Number(a.id));
    const context = {
      accountId: pageAccountKey(ids),
      resource: pageResource('links', { active: active === undefined ? undefined : String(active) }),
      pageSize,
    };
    const position = deps.pages.parse(firstValue(query.page), context);
    let offset = (position.page - 1) * pageSize;
    if (position.cursor !== undefined) {
      if (!/^\d{1,15}$/.test(position.cursor))
        throw new CloudmuxError('invalid_parameters', 'Invalid page parameter.');
      offset = Number(position.cursor);
    }
    const { rows, total } = await links.list(
      principal.app.id,
      ids,
      active === undefined ? {} : { active },
      offset,
      pageSize,
    );
    assertPageExists(position, { itemCount: rows.length, total }, pageSize);
    const nextOffset = offset + rows.length;
    return sendJson(reply, 200, {
      count: rows.length,
      page: position.source === 'token' ? firstValue(query.page) : position.page,
      next_page: deps.pages.next(
        context,
        position.page,
        rows.length > 0 && nextOffset < total ? String(nextOffset) : null,
      ),
      objects: rows.map((row) => render(row, serviceOf(accounts, Number(row.account_id)))),
      total,
      type: 'object_list',
      api: 'storage',
    });
  });

  app.post(`${prefix}/links`, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const body = parseBody(request.body, createLinkBody);
    let rawId: string;
    try {
      rawId = scope.ids.decode(body.file_id, 'file');
    } catch (err) {
      if (err instanceof CloudmuxError && err.code === 'not_found') {
        throw new CloudmuxError('invalid_parameters', 'file_id does not name a file of this account.');
      }
      throw err;
    }
    const item = await scope.storage.get(rawId, 'file');
    if (item.downloadable === false)
      throw new CloudmuxError(
        'invalid_parameters',
        'This file cannot be downloaded, so it cannot be linked.',
      );
    const expiration = parseExpiration(body.expiration) ?? null;
    const row = await links.create({
      appId: scope.principal.app.id,
      accountId: Number(scope.account.id),
      rawId: item.rawId,
      direct: body.direct ?? false,
      passwordHash: (await passwordHashFor(body.password)) ?? null,
      expiration,
      active: body.active ?? true,
    });
    return sendJson(reply, 201, render(row, scope.account.service));
  });

  app.get(`${prefix}/links/:id`, async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    const row = await links.get(
      principal.app.id,
      accounts.map((a) => Number(a.id)),
      linkId(request),
    );
    if (!row) throw notFound();
    return sendJson(reply, 200, render(row, serviceOf(accounts, Number(row.account_id))));
  });

  // PATCH {active?, password?, expiration?, direct?}; unknown query parameters (py1's `file_id`) are ignored.
  app.patch(`${prefix}/links/:id`, async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    const body = parseBody(request.body, patchLinkBody);
    const expiration = parseExpiration(body.expiration);
    const passwordHash = await passwordHashFor(body.password);
    const row = await links.update(
      principal.app.id,
      accounts.map((a) => Number(a.id)),
      linkId(request),
      {
        ...(body.active !== undefined ? { active: body.active } : {}),
        ...(body.direct !== undefined ? { direct: body.direct } : {}),
        ...(passwordHash !== undefined ? { passwordHash } : {}),
        ...(expiration !== undefined ? { expiration } : {}),
      },
    );
    if (!row) throw notFound();
    return sendJson(reply, 200, render(row, serviceOf(accounts, Number(row.account_id))));
  });

  app.delete(`${prefix}/links/:id`, async (request, reply) => {
    const { principal, accounts } = await accountsOf(deps, request, reply);
    const deleted = await links.delete(
      principal.app.id,
      accounts.map((a) => Number(a.id)),
      linkId(request),
    );
    if (!deleted) throw notFound();
    return reply.status(204).send();
  });

  // ── the public link URL ────────────────────────────────────────────────

  function accessMac(link: LinkRow, expires: number): string {
    return createHmac('sha256', cookieKey)
      .update(`${link.id}\n${expires}\n${link.password_hash ?? ''}`)
      .digest('base64url');
  }

  function hasAccess(request: FastifyRequest, link: LinkRow): boolean {
    const header = request.headers.cookie;
    if (!header) return false;
    const now = Math.floor(Date.now() / 1000);
    for (const part of header.split(';')) {
      const [name, value] = part.trim().split('=', 2);
      if (name !== COOKIE || !value) continue;
      const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value);
      if (!match) continue;
      const expires = Number(match[1]);
      if (expires <= now || expires > now + ACCESS_SECONDS) continue;
      if (constantTimeEqual(match[2]!, accessMac(link, expires))) return true;
    }
    return false;
  }

  function grantAccess(reply: FastifyReply, link: LinkRow): void {
    const expires = Math.floor(Date.now() / 1000) + ACCESS_SECONDS;
    const attributes = [
      `Path=${linkPath(link.id)}`,
      `Max-Age=${ACCESS_SECONDS}`,
      'HttpOnly',
      'SameSite=Strict',
    ];
    if (secureCookie) attributes.push('Secure');
    reply.header('set-cookie', `${COOKIE}=${expires}.${accessMac(link, expires)}; ${attributes.join('; ')}`);
  }

  /** The link itself: unknown → 404, disabled → 403, expired → 404. */
  async function liveLink(request: FastifyRequest): Promise<LinkRow> {
    const link = await links.getPublic(linkId(request));
    if (!link) throw new CloudmuxError('not_found', 'This link does not exist.');
    if (link.active !== 1) throw new CloudmuxError('forbidden', 'This link has been disabled.');
    if (link.expiration && Date.parse(link.expiration) <= Date.now())
      throw new CloudmuxError('not_found', 'This link has expired.');
    return link;
  }

  /** The linked file, through the account's connector; a deleted file is 404. */
  async function linkedFile(link: LinkRow): Promise<{ storage: StorageApi; item: StorageItem }> {
    const account = await deps.store.getAccountById(Number(link.account_id));
    if (!account) throw new CloudmuxError('not_found', 'This link does not exist.');
    if (account.active !== 1) throw new CloudmuxError('forbidden', 'The file of this link is not available.');
    const runtime = await deps.runtime.forAccount(account);
    const storage = runtime.instance.storage as StorageApi | undefined;
    if (!storage) throw new CloudmuxError('not_found', 'The file of this link is not available.');
    try {
      return { storage, item: await storage.get(link.raw_id, 'file') };
    } catch (err) {
      const error = toCloudmuxError(err);
      // Upstream credential trouble is the owner's problem; a visitor only learns it is unavailable.
      if (error.status === 401)
        throw new CloudmuxError('forbidden', 'The file of this link is not available.', { cause: err });
      throw error;
    }
  }

  function sendPage(reply: FastifyReply, status: number, html: string): FastifyReply {
    return reply.status(status).headers(PAGE_HEADERS).send(html);
  }

  /** Browsers get an HTML error page, API clients the Kloudless envelope. */
  function sendPublicError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
    const error = toCloudmuxError(err);
    if (reply.sent) return reply;
    if (!/\btext\/html\b/i.test(request.headers.accept ?? '')) return sendError(request, reply, error);
    if (error.status >= 500)
      request.log.error({ err: error.cause ?? error, code: error.code }, error.message);
    if (error.headers) for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
    if (error.retryAfter !== undefined) reply.header('retry-after', String(error.retryAfter));
    const message = error.status >= 500 ? 'The file could not be retrieved. Try again later.' : error.message;
    return sendPage(reply, error.status, errorPage(error.status, message));
  }

  async function serveLink(
    request: FastifyRequest,
    reply: FastifyReply,
    link: LinkRow,
    download: boolean,
  ): Promise<FastifyReply> {
    const { storage, item } = await linkedFile(link);
    if (link.direct !== 1 && !download) {
      return sendPage(
        reply,
        200,
        linkPage({ name: item.name, size: item.size }, `${linkPath(link.id)}?download=1`),
      );
    }
    // The bytes are the account owner's content served from our origin: never let a browser run them.
    reply.headers({
      'x-content-type-options': 'nosniff',
      'content-security-policy': "sandbox; default-src 'none'",
      'referrer-policy': 'no-referrer',
      'cache-control': 'private, no-store',
    });
    await sendContents(request, reply, { storage }, link.raw_id, { disposition: 'attachment' });
    return reply;
  }

  app.get('/l/:id', async (request, reply) => {
    try {
      const link = await liveLink(request);
      if (link.password_hash !== null && !hasAccess(request, link))
        return sendPage(reply, 200, passwordPage());
      const download = ['1', 'true'].includes(
        (firstValue((request.query as Record<string, unknown>).download) ?? '').toLowerCase(),
      );
      return await serveLink(request, reply, link, download);
    } catch (err) {
      return sendPublicError(request, reply, err);
    }
  });

  // The password form posts here (application/x-www-form-urlencoded, field `password`).
  app.post('/l/:id', async (request, reply) => {
    try {
      const link = await liveLink(request);
      if (link.password_hash === null) return reply.status(303).header('location', linkPath(link.id)).send();
      const decision = await deps.limiter.take(`link-password:${link.id}`, PASSWORD_RATE);
      if (!decision.allowed) throw tooManyRequests(decision);
      const form = await readForm(request);
      const password = typeof form.password === 'string' ? form.password : '';
      if (password === '' || !(await verifyLinkPassword(password, link.password_hash))) {
        return sendPage(reply, 401, passwordPage('The password is not correct.'));
      }
      grantAccess(reply, link);
      return reply.status(303).header('location', linkPath(link.id)).send();
    } catch (err) {
      return sendPublicError(request, reply, err);
    }
  });
}
