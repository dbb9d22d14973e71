/**
 * Events (kloudless-api.md §3.9): `events/latest` → `{cursor}` and `events?cursor=&page_size=` →
 * `{objects, cursor, count, remaining}`, served from the server's journal. Cursors are integers.
 */
import { CloudmuxError, type StorageApi } from '@cloudmux/core';
import type { FastifyInstance } from 'fastify';
import type { ServerDeps } from '../http/deps.js';
import { AccountIds, renderItem } from '../http/objects.js';
import { firstValue, parseBool, parsePageSize } from '../http/params.js';
import { accountsOf, storageRuntime } from '../http/scope.js';
import type { JournalEvent } from '../journal.js';
import { sendJson } from './util.js';

const ACTION_SYMBOLS: Record<string, string> = {
  add: '+',
  delete: '-',
  update: 'M',
  rename: 'R',
  move: 'M',
  copy: '+',
  restore: '+',
};

export function registerEventsRoutes(app: FastifyInstance, deps: ServerDeps): void {
  app.get('/v1/accounts/:account/events/latest', async (request, reply) => {
    const { accounts } = await accountsOf(deps, request, reply);
    if (accounts.length !== 1)
      throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
    return sendJson(reply, 200, { cursor: await deps.journal.latest(Number(accounts[0]!.id)) });
  });

  app.get('/v1/accounts/:account/events', async (request, reply) => {
    const { accounts } = await accountsOf(deps, request, reply);
    if (accounts.length !== 1)
      throw new CloudmuxError('invalid_parameters', 'This endpoint takes a single account id.');
    const account = accounts[0]!;
    const query = request.query as Record<string, unknown>;
    const cursorText = firstValue(query.cursor);
    if (cursorText !== undefined && cursorText !== '' && !/^\d{1,15}$/.test(cursorText)) {
      throw new CloudmuxError(
        'invalid_parameters',
        'cursor must be an integer from events/latest or a previous events page.',
      );
    }
    const cursor = cursorText ? Number(cursorText) : 0;
    // A cursor this server never handed out (beyond the newest event) is the client's mistake.
    if (cursor > 0 && cursor > (await deps.journal.latest(Number(account.id)))) {
      throw new CloudmuxError(
        'invalid_parameters',
        'cursor is newer than the latest event; use events/latest.',
      );
    }
    const pageSize = parsePageSize(query.page_size, 100);
    const rawData = parseBool(request.headers['x-kloudless-raw-data'], 'X-Kloudless-Raw-Data') ?? false;
    const page = await deps.journal.list(Number(account.id), cursor, pageSize);
    let ids: AccountIds;
    try {
      const runtime = await storageRuntime(deps, request, account);
      ids = runtime.ids;
    } catch {
      // The connector may be unreachable; ids only need the root id, which the journal cannot know.
      ids = new AccountIds(deps.ids, Number(account.id), account.service, '/');
    }
    return sendJson(reply, 200, {
      objects: page.events.map((event) => renderEvent(event, ids, deps, rawData)),
      cursor: page.cursor,
      count: page.events.length,
      remaining: page.remaining,
      type: 'object_list',
      api: 'events',
    });
  });
}

function renderEvent(event: JournalEvent, ids: AccountIds, deps: ServerDeps, rawData: boolean) {
  const objectId = ids.encode(event.itemType, event.rawId);
  return {
    // py1 matches delete events on the top-level id (the deleted object's id), others on metadata.id.
    id: event.action === 'delete' ? objectId : String(event.id),
    event_id: event.id,
    account: event.accountId,
    action: ACTION_SYMBOLS[event.action] ?? event.action,
    type: event.action,
    modified: `${event.modified.slice(0, 19)}Z`,
    user_id: event.userId,
    ip: event.ip,
    metadata: event.item ? renderItem(event.item, ids, { publicUrl: deps.config.publicUrl, rawData }) : null,
    api: 'events',
  };
}

export type { StorageApi };
