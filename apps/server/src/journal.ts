/**
 * The event journal: every change made through Cloudmux (and, for connectors with a change feed or
 * a watcher, changes made elsewhere) becomes one row. The row id is the integer cursor clients see
 * (`events/latest` → `{cursor}`). Kloudless kept "up to 10,000 events over the previous 24 hours";
 * so do we, per account.
 */
import type { StorageItem } from '@cloudmux/core';
import type { Kysely } from 'kysely';
import { nowIso } from './store/db.js';
import type { Database } from './store/schema.js';

export type EventAction = 'add' | 'delete' | 'update' | 'rename' | 'move' | 'copy' | 'restore';

export interface JournalEvent {
  id: number;
  accountId: number;
  action: EventAction;
  rawId: string;
  itemType: string;
  item: StorageItem | null;
  modified: string;
  userId: string | null;
  ip: string | null;
}

const MAX_EVENTS_PER_ACCOUNT = 10_000;
/** How long a change Cloudmux made hides the watcher's echo of it. */
const OWN_CHANGE_MS = 3_000;
const RETENTION_MS = 24 * 60 * 60 * 1000;

type Listener = (event: JournalEvent) => void;
export type TransactionalWriter = (db: Kysely<Database>, event: JournalEvent) => Promise<void>;

export class EventJournal {
  #writes = 0;
  readonly #listeners = new Set<Listener>();
  readonly #writers = new Set<TransactionalWriter>();
  /** Raw ids Cloudmux changed recently, per account: a watcher reporting them is hearing our own write. */
  readonly #own = new Map<number, Map<string, number>>();

  constructor(private readonly db: Kysely<Database>) {}

  /** Runs inside the transaction that records each event (the webhook outbox writes its rows here). */
  addTransactionalWriter(writer: TransactionalWriter): () => void {
    this.#writers.add(writer);
    return () => this.#writers.delete(writer);
  }

  /** Called for every recorded event, after it is stored (webhook delivery wakes up here). */
  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async record(
    accountId: number,
    action: EventAction,
    target: StorageItem | { rawId: string; type: string },
    meta: { ip?: string | null; userId?: string | null; previousRawId?: string } = {},
  ): Promise<JournalEvent> {
    this.noteOwn(accountId, target.rawId);
    if (meta.previousRawId !== undefined) this.noteOwn(accountId, meta.previousRawId);
    return this.insert(accountId, action, target, meta);
  }

  /**
   * A change reported by a watcher (made outside Cloudmux). Skipped when it is the echo of a change
   * Cloudmux just made to the same item or anything under it.
   */
  async recordExternal(
    accountId: number,
    action: EventAction,
    target: StorageItem | { rawId: string; type: string },
  ): Promise<JournalEvent | null> {
    if (this.isOwn(accountId, target.rawId)) return null;
    return this.insert(accountId, action, target, {});
  }

  private noteOwn(accountId: number, rawId: string): void {
    let recent = this.#own.get(accountId);
    if (!recent) {
      recent = new Map();
      this.#own.set(accountId, recent);
    }
    const now = Date.now();
    recent.set(rawId, now);
    if (recent.size > 1000) for (const [id, at] of recent) if (now - at > OWN_CHANGE_MS) recent.delete(id);
  }

  private isOwn(accountId: number, rawId: string): boolean {
    const recent = this.#own.get(accountId);
    if (!recent) return false;
    const now = Date.now();
    const fresh = (id: string) => {
      const at = recent.get(id);
      return at !== undefined && now - at <= OWN_CHANGE_MS;
    };
    if (fresh(rawId)) return true;
    // Path-like raw ids: a change under a folder Cloudmux just wrote (copied, deleted, moved) is ours too.
    for (let i = rawId.lastIndexOf('/'); i > 0; i = rawId.lastIndexOf('/', i - 1)) {
      if (fresh(rawId.slice(0, i)) || fresh(rawId.slice(0, i + 1))) return true;
    }
    return false;
  }

  private async insert(
    accountId: number,
    action: EventAction,
    target: StorageItem | { rawId: string; type: string },
    meta: { ip?: string | null; userId?: string | null },
  ): Promise<JournalEvent> {
    const item = 'name' in target ? (target as StorageItem) : null;
    const modified = nowIso();
    const write = async (db: Kysely<Database>): Promise<JournalEvent> => {
      const row = await db
        .insertInto('events')
        .values({
          account_id: accountId,
          action,
          raw_id: target.rawId,
          item_type: target.type,
          item: item ? JSON.stringify(item) : null,
          modified,
          user_id: meta.userId ?? null,
          ip: meta.ip ?? null,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      const event: JournalEvent = {
        id: Number(row.id),
        accountId,
        action,
        rawId: target.rawId,
        itemType: target.type,
        item,
        modified,
        userId: meta.userId ?? null,
        ip: meta.ip ?? null,
      };
      for (const writer of this.#writers) await writer(db, event);
      return event;
    };
    // Writers (the webhook outbox) commit with the event or not at all: a crash cannot keep one without the other.
    const event = this.#writers.size > 0 ? await this.db.transaction().execute(write) : await write(this.db);
    if (++this.#writes % 500 === 0) await this.prune(accountId);
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // a listener's failure never fails the write
      }
    }
    return event;
  }

  async latest(accountId: number): Promise<number> {
    const row = await this.db
      .selectFrom('events')
      .select((eb) => eb.fn.max('id').as('max'))
      .where('account_id', '=', accountId)
      .executeTakeFirst();
    return Number(row?.max ?? 0);
  }

  async list(
    accountId: number,
    cursor: number,
    pageSize: number,
  ): Promise<{ events: JournalEvent[]; cursor: number; remaining: number }> {
    const rows = await this.db
      .selectFrom('events')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('id', '>', cursor)
      .orderBy('id')
      .limit(pageSize)
      .execute();
    const events = rows.map((r) => ({
      id: Number(r.id),
      accountId: Number(r.account_id),
      action: r.action as EventAction,
      rawId: r.raw_id,
      itemType: r.item_type,
      item: r.item ? reviveItem(JSON.parse(r.item) as Record<string, unknown>) : null,
      modified: r.modified,
      userId: r.user_id,
      ip: r.ip,
    }));
    const next = events.length ? events[events.length - 1]!.id : cursor;
    const remainingRow = await this.db
      .selectFrom('events')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('account_id', '=', accountId)
      .where('id', '>', next)
      .executeTakeFirstOrThrow();
    return { events, cursor: next, remaining: Number(remainingRow.n) };
  }

  async prune(accountId: number): Promise<void> {
    const cutoff = new Date(Date.now() - RETENTION_MS).toISOString();
    await this.db
      .deleteFrom('events')
      .where('account_id', '=', accountId)
      .where('modified', '<', cutoff)
      .execute();
    const keepFrom = await this.db
      .selectFrom('events')
      .select('id')
      .where('account_id', '=', accountId)
      .orderBy('id', 'desc')
      .offset(MAX_EVENTS_PER_ACCOUNT)
      .limit(1)
      .executeTakeFirst();
    if (keepFrom)
      await this.db
        .deleteFrom('events')
        .where('account_id', '=', accountId)
        .where('id', '<=', keepFrom.id)
        .execute();
  }
}

function reviveItem(raw: Record<string, unknown>): StorageItem {
  const date = (v: unknown) => (typeof v === 'string' ? new Date(v) : null);
  return { ...(raw as unknown as StorageItem), created: date(raw.created), modified: date(raw.modified) };
}
