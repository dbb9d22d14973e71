/**
 * Search and Recent (kloudless-api.md §3.5), also across several accounts
 * (`/accounts/1,2/storage/search`): every object carries its own `account` and id.
 *
 * Paging over several accounts is the server's: search results come account after account (one
 * connector page per response, empty pages skipped); recent results are merged by `modified`
 * (newest first) with a per-account position (connector cursor + items already taken from that
 * page). Either state goes into the usual authenticated `next_page` token.
 */
import {
  assertPageExists,
  assertSafeCursor,
  CloudmuxError,
  type Page,
  pageResource,
  type StorageItem,
  seekPage,
} from '@cloudmux/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerDeps } from '../http/deps.js';
import { renderItem } from '../http/objects.js';
import { firstValue, parsePageSize } from '../http/params.js';
import { accountsOf, type StorageScope, storageRuntime } from '../http/scope.js';
import { pageAccountKey, parseIsoTime } from './links.js';
import { sendJson } from './util.js';

type Source = Omit<StorageScope, 'principal'>;
type Fetch = (source: Source, cursor: string | undefined, pageSize: number) => Promise<Page<StorageItem>>;

interface Tagged {
  item: StorageItem;
  source: number;
}

interface CompositePage extends Page<Tagged> {
  total?: number;
}

/** Bounds the connector calls one request may make while skipping empty pages. */
const MAX_FETCHES = 50;

function badPage(): CloudmuxError {
  return new CloudmuxError('invalid_parameters', 'Invalid page parameter.');
}

function connectorCursor(page: Page<StorageItem>): string | null {
  const next = page.cursor;
  if (next === undefined || next === null || next === '') return null;
  assertSafeCursor(next);
  return next;
}

/** Search: the accounts one after the other. State `c:<source index>:<connector cursor>`. */
async function concatPage(
  sources: Source[],
  fetch: Fetch,
  pageSize: number,
  state: string | undefined,
): Promise<CompositePage> {
  let index = 0;
  let cursor: string | undefined;
  if (state !== undefined) {
    const match = /^c:(\d{1,4}):([\s\S]*)$/.exec(state);
    if (!match || Number(match[1]) >= sources.length) throw badPage();
    index = Number(match[1]);
    cursor = match[2] === '' ? undefined : match[2];
  }
  for (let fetches = 0; fetches < MAX_FETCHES; fetches++) {
    const page = await fetch(sources[index]!, cursor, pageSize);
    const next = connectorCursor(page);
    const nextState =
      next !== null ? `c:${index}:${next}` : index + 1 < sources.length ? `c:${index + 1}:` : null;
    const total = sources.length === 1 ? page.total : undefined;
    if (page.items.length > 0 || nextState === null) {
      return {
        items: page.items.map((item) => ({ item, source: index })),
        cursor: nextState,
        ...(total !== undefined ? { total } : {}),
      };
    }
    if (next !== null) cursor = next;
    else {
      index += 1;
      cursor = undefined;
    }
  }
  return { items: [], cursor: `c:${index}:${cursor ?? ''}` };
}

/** Per account: the connector cursor of the page being read, items taken from it, done, last total. */
type MergeState = [cursor: string | null, skip: number, done: 0 | 1, total: number | null];

function parseMergeState(state: string | undefined, count: number): MergeState[] {
  if (state === undefined) return Array.from({ length: count }, () => [null, 0, 0, null] as MergeState);
  if (!state.startsWith('m:')) throw badPage();
  let parsed: unknown;
  try {
    parsed = JSON.parse(state.slice(2));
  } catch {
    throw badPage();
  }
  const valid =
    Array.isArray(parsed) &&
    parsed.length === count &&
    parsed.every(
      (s) =>
        Array.isArray(s) &&
        s.length === 4 &&
        (s[0] === null || typeof s[0] === 'string') &&
        Number.isSafeInteger(s[1]) &&
        s[1] >= 0 &&
        (s[2] === 0 || s[2] === 1) &&
        (s[3] === null || Number.isSafeInteger(s[3])),
    );
  if (!valid) throw badPage();
  return parsed as MergeState[];
}

/** Recent: a k-way merge of the accounts' own newest-first listings. */
async function mergePage(
  sources: Source[],
  fetch: Fetch,
  pageSize: number,
  state: string | undefined,
): Promise<CompositePage> {
  const states = parseMergeState(state, sources.length);
  const buffers: Array<{ items: StorageItem[]; next: string | null }> = sources.map(() => ({
    items: [],
    next: null,
  }));
  let fetches = 0;
  const load = async (i: number) => {
    const [cursor, skip] = states[i]!;
    const page = await fetch(sources[i]!, cursor ?? undefined, pageSize);
    fetches += 1;
    buffers[i] = { items: page.items.slice(skip), next: connectorCursor(page) };
    if (page.total !== undefined) states[i]![3] = page.total;
  };
  await Promise.all(states.map((s, i) => (s[2] === 0 ? load(i) : undefined)));

  const out: Tagged[] = [];
  const time = (item: StorageItem) => item.modified?.getTime() ?? Number.NEGATIVE_INFINITY;
  while (out.length < pageSize) {
    for (let i = 0; i < sources.length; i++) {
      // An exhausted page with more behind it: move to the next page before comparing heads.
      while (
        states[i]![2] === 0 &&
        buffers[i]!.items.length === 0 &&
        buffers[i]!.next !== null &&
        fetches < MAX_FETCHES
      ) {
        states[i] = [buffers[i]!.next, 0, 0, states[i]![3]];
        await load(i);
      }
    }
    let best = -1;
    for (let i = 0; i < sources.length; i++) {
      const head = states[i]![2] === 0 ? buffers[i]!.items[0] : undefined;
      if (head && (best < 0 || time(head) > time(buffers[best]!.items[0]!))) best = i;
    }
    if (best < 0) break;
    out.push({ item: buffers[best]!.items.shift()!, source: best });
    states[best]![1] += 1;
  }
  for (let i = 0; i < sources.length; i++) {
    const s = states[i]!;
    if (s[2] === 1 || buffers[i]!.items.length > 0) continue;
    if (buffers[i]!.next === null) s[2] = 1;
    else states[i] = [buffers[i]!.next, 0, 0, s[3]];
  }
  const more = states.some((s) => s[2] === 0);
  const totals = states.map((s) => s[3]);
  const total = totals.every((t) => t !== null)
    ? totals.reduce<number>((a, b) => a + (b ?? 0), 0)
    : undefined;
  return {
    items: out,
    cursor: more ? `m:${JSON.stringify(states)}` : null,
    ...(total !== undefined ? { total } : {}),
  };
}

/** All values of a repeatable, comma-separated query parameter. */
function listParam(value: unknown): string[] {
  const values = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return values
    .filter((v): v is string => typeof v === 'string')
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
}

function emptyList(page: number) {
  return { count: 0, page, next_page: null, objects: [], total: 0, type: 'object_list', api: 'storage' };
}

export function registerSearchRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const prefix = '/v1/accounts/:account/storage';

  async function sourcesFor(
    request: FastifyRequest,
    reply: FastifyReply,
    method: 'search' | 'recent',
  ): Promise<Source[]> {
    const { accounts } = await accountsOf(deps, request, reply);
    const sources: Source[] = [];
    for (const account of accounts) {
      const source = await storageRuntime(deps, request, account);
      if (typeof source.storage[method] !== 'function') {
        throw new CloudmuxError(
          'not_implemented',
          `${source.runtime.definition.name} does not support ${method === 'search' ? 'search' : 'recent'}.`,
        );
      }
      sources.push(source);
    }
    return sources;
  }

  /** Pages through `compose`, with page numbers (`seekPage`) and tokens, and renders the envelope. */
  async function respond(
    reply: FastifyReply,
    query: Record<string, unknown>,
    sources: Source[],
    resource: string,
    compose: (pageSize: number, state: string | undefined) => Promise<CompositePage>,
  ) {
    const pageSize = parsePageSize(
      query.page_size,
      sources[0]?.runtime.definition.policies.pagination.defaultPageSize ?? 100,
    );
    const context = {
      accountId: pageAccountKey(sources.map((s) => Number(s.account.id))),
      resource,
      pageSize,
    };
    const position = deps.pages.parse(firstValue(query.page), context);
    const page = (await seekPage(position, (state) => compose(pageSize, state))) as CompositePage;
    assertPageExists(
      position,
      { itemCount: page.items.length, ...(page.total !== undefined ? { total: page.total } : {}) },
      pageSize,
    );
    return sendJson(reply, 200, {
      count: page.items.length,
      page: position.source === 'token' ? (firstValue(query.page) ?? null) : position.page,
      next_page: deps.pages.next(context, position.page, page.cursor),
      objects: page.items.map(({ item, source }) =>
        renderItem(item, sources[source]!.ids, {
          publicUrl: deps.config.publicUrl,
          rawData: sources[source]!.rawData,
        }),
      ),
      ...(page.total !== undefined ? { total: page.total } : {}),
      type: 'object_list',
      api: 'storage',
    });
  }

  // §3.5 search: `q` (required), `parents` (folder ids, comma-separated), `page`, `page_size`.
  app.get(`${prefix}/search`, async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const sources = await sourcesFor(request, reply, 'search');
    const q = (firstValue(query.q) ?? '').trim();
    if (q === '') throw new CloudmuxError('invalid_parameters', 'The search query q is required.');
    if (q.length > 1024) throw new CloudmuxError('invalid_parameters', 'The search query q is too long.');
    const parentIds = listParam(query.parents);
    // A parent id is bound to one account (or is `root`, which every account has).
    const parents = new Map<Source, string[]>();
    const resolved = new Set<string>();
    for (const source of sources) {
      const raw: string[] = [];
      for (const id of parentIds) {
        try {
          raw.push(source.ids.decode(id, 'folder'));
          resolved.add(id);
        } catch (err) {
          if (!(err instanceof CloudmuxError) || err.code !== 'not_found') throw err;
        }
      }
      parents.set(source, raw);
    }
    if (parentIds.some((id) => !resolved.has(id))) {
      throw new CloudmuxError('invalid_parent_folder', 'parents must name folders of the accounts searched.');
    }
    const searched = parentIds.length > 0 ? sources.filter((s) => parents.get(s)!.length > 0) : sources;
    const fetch: Fetch = (source, cursor, pageSize) => {
      const within = parents.get(source)!;
      return source.storage.search!(q, {
        pageSize,
        ...(cursor !== undefined ? { cursor } : {}),
        ...(within.length ? { parents: within } : {}),
      });
    };
    const resource = pageResource('search', {
      q,
      parents: parentIds.length ? parentIds.join(',') : undefined,
    });
    return respond(reply, query, searched, resource, (pageSize, state) =>
      concatPage(searched, fetch, pageSize, state),
    );
  });

  // §3.5 recent: newest first, `after` (ISO-8601; unparsable → an empty list, as Kloudless did), `total`.
  app.get(`${prefix}/recent`, async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const sources = await sourcesFor(request, reply, 'recent');
    const afterText = (firstValue(query.after) ?? '').trim();
    let after: Date | undefined;
    if (afterText !== '') {
      try {
        after = parseIsoTime(afterText, 'after');
      } catch {
        // Kloudless answered an unparsable `after` with an empty list; bad paging input still gets its 400.
        const pageSize = parsePageSize(query.page_size, 100);
        const resource = pageResource('recent', { after: afterText });
        deps.pages.parse(firstValue(query.page), {
          accountId: pageAccountKey(sources.map((s) => Number(s.account.id))),
          resource,
          pageSize,
        });
        return sendJson(reply, 200, emptyList(1));
      }
    }
    const fetch: Fetch = (source, cursor, pageSize) =>
      source.storage.recent!({
        pageSize,
        ...(cursor !== undefined ? { cursor } : {}),
        ...(after ? { after } : {}),
      });
    const resource = pageResource('recent', { after: afterText || undefined });
    return respond(reply, query, sources, resource, (pageSize, state) =>
      mergePage(sources, fetch, pageSize, state),
    );
  });
}
