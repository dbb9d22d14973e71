/**
 * Multipart session rows. Every lookup a client can trigger is scoped by app and account in the
 * query itself. Exclusive work on a session (a part sent to the native session, complete, abort)
 * holds a lease — `busy_owner` / `busy_until` taken with one conditional UPDATE — so two requests,
 * or two server instances on one PostgreSQL database, never drive the same native session at once.
 */
import type { Kysely, Selectable, Updateable } from 'kysely';
import { nowIso } from '../store/db.js';
import type { Database, MultipartPartsTable, MultipartSessionsTable } from '../store/schema.js';

export type SessionRow = Selectable<MultipartSessionsTable>;
export type PartRow = Selectable<MultipartPartsTable>;

export interface NewSession {
  appId: string;
  accountId: number;
  parentRawId: string;
  name: string;
  size: number | null;
  partSize: number;
  overwrite: boolean;
  staged: boolean;
}

export interface LeaseCondition {
  /** The phase the session must be in (default `open`). */
  phase?: string;
  nextPart?: number;
  staged?: 0 | 1;
  /** Phase to set with the lease (`closing` for complete and abort). */
  setPhase?: string;
}

export class SessionStore {
  constructor(readonly db: Kysely<Database>) {}

  async create(input: NewSession): Promise<SessionRow> {
    const now = nowIso();
    const row = await this.db
      .insertInto('multipart_sessions')
      .values({
        app_id: input.appId,
        account_id: input.accountId,
        parent_raw_id: input.parentRawId,
        name: input.name,
        size: input.size,
        part_size: input.partSize,
        overwrite: input.overwrite ? 1 : 0,
        native_state: null,
        next_part: 1,
        staged: input.staged ? 1 : 0,
        busy_owner: null,
        busy_until: null,
        target_name: null,
        failure: null,
        created: now,
        modified: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return (await this.byId(Number(row.id)))!;
  }

  get(appId: string, accountId: number, id: number): Promise<SessionRow | undefined> {
    return this.db
      .selectFrom('multipart_sessions')
      .selectAll()
      .where('app_id', '=', appId)
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  /** Internal (after a scoped lookup, and the sweep). */
  byId(id: number): Promise<SessionRow | undefined> {
    return this.db.selectFrom('multipart_sessions').selectAll().where('id', '=', id).executeTakeFirst();
  }

  parts(sessionId: number): Promise<PartRow[]> {
    return this.db
      .selectFrom('multipart_parts')
      .selectAll()
      .where('session_id', '=', sessionId)
      .orderBy('part_number')
      .execute();
  }

  /** Takes the session's lease when it is free (or expired) and the conditions hold. */
  async tryLease(
    id: number,
    owner: string,
    now: number,
    ttlMs: number,
    condition: LeaseCondition = {},
  ): Promise<boolean> {
    let query = this.db
      .updateTable('multipart_sessions')
      .set({
        busy_owner: owner,
        busy_until: now + ttlMs,
        modified: nowIso(),
        ...(condition.setPhase ? { phase: condition.setPhase } : {}),
      })
      .where('id', '=', id)
      .where('phase', '=', condition.phase ?? 'open')
      .where((eb) => eb.or([eb('busy_owner', 'is', null), eb('busy_until', '<', now)]));
    if (condition.nextPart !== undefined) query = query.where('next_part', '=', condition.nextPart);
    if (condition.staged !== undefined) query = query.where('staged', '=', condition.staged);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async renewLease(id: number, owner: string, until: number): Promise<void> {
    await this.db
      .updateTable('multipart_sessions')
      .set({ busy_until: until, modified: nowIso() })
      .where('id', '=', id)
      .where('busy_owner', '=', owner)
      .execute();
  }

  /** Gives the lease back, optionally changing other columns in the same statement. */
  async releaseLease(id: number, owner: string, set: Updateable<MultipartSessionsTable> = {}): Promise<void> {
    await this.db
      .updateTable('multipart_sessions')
      .set({ ...set, busy_owner: null, busy_until: null, modified: nowIso() })
      .where('id', '=', id)
      .where('busy_owner', '=', owner)
      .execute();
  }

  /** A lease whose holder vanished (crash) leaves the native session in an unknown state. */
  async markFailed(id: number, expiredOwner: string, reason: string): Promise<void> {
    await this.db
      .updateTable('multipart_sessions')
      .set({ phase: 'failed', failure: reason, busy_owner: null, busy_until: null, modified: nowIso() })
      .where('id', '=', id)
      .where('busy_owner', '=', expiredOwner)
      .execute();
  }

  async update(id: number, owner: string, set: Updateable<MultipartSessionsTable>): Promise<void> {
    await this.db
      .updateTable('multipart_sessions')
      .set({ ...set, modified: nowIso() })
      .where('id', '=', id)
      .where('busy_owner', '=', owner)
      .execute();
  }

  /**
   * Records a staged part — from then on the session stays staged — unless it stopped taking parts
   * meanwhile. `check` runs inside
   * the transaction on the current parts (size bound, native duplicate): it throws to refuse, or
   * returns false to record nothing (the same bytes are already there). Returns the file name of
   * the staged part it replaced, if any.
   */
  async commitStagedPart(
    sessionId: number,
    part: { partNumber: number; size: number; path: string; sha256: string },
    check: (parts: PartRow[]) => boolean,
  ): Promise<{ accepted: boolean; replaced: string | null }> {
    return this.db.transaction().execute(async (trx) => {
      // Touching the row first takes its row lock (PostgreSQL), ordering this commit against a
      // concurrent complete/abort that sets the phase.
      const touched = await trx
        .updateTable('multipart_sessions')
        .set({ staged: 1, modified: nowIso() })
        .where('id', '=', sessionId)
        .where('phase', '=', 'open')
        .executeTakeFirst();
      if (Number(touched.numUpdatedRows) !== 1) return { accepted: false, replaced: null };
      const parts = await trx
        .selectFrom('multipart_parts')
        .selectAll()
        .where('session_id', '=', sessionId)
        .orderBy('part_number')
        .execute();
      if (!check(parts)) return { accepted: true, replaced: null };
      const previous = parts.find((p) => p.part_number === part.partNumber);
      await trx
        .insertInto('multipart_parts')
        .values({
          session_id: sessionId,
          part_number: part.partNumber,
          size: part.size,
          path: part.path,
          native: 0,
          sha256: part.sha256,
        })
        .onConflict((oc) =>
          oc
            .columns(['session_id', 'part_number'])
            .doUpdateSet({ size: part.size, path: part.path, native: 0, sha256: part.sha256 }),
        )
        .execute();
      return {
        accepted: true,
        replaced: previous && previous.native === 0 && previous.path ? previous.path : null,
      };
    });
  }

  /** Records a part the native session accepted, with the state it returned; the lease is kept. */
  async commitNativePart(
    sessionId: number,
    owner: string,
    part: { partNumber: number; size: number; sha256: string },
    nativeState: string,
  ): Promise<string | null> {
    return this.db.transaction().execute(async (trx) => {
      await trx
        .updateTable('multipart_sessions')
        .set({ native_state: nativeState, next_part: part.partNumber + 1, modified: nowIso() })
        .where('id', '=', sessionId)
        .where('busy_owner', '=', owner)
        .execute();
      const previous = await trx
        .selectFrom('multipart_parts')
        .select(['path', 'native'])
        .where('session_id', '=', sessionId)
        .where('part_number', '=', part.partNumber)
        .executeTakeFirst();
      await trx
        .insertInto('multipart_parts')
        .values({
          session_id: sessionId,
          part_number: part.partNumber,
          size: part.size,
          path: '',
          native: 1,
          sha256: part.sha256,
        })
        .onConflict((oc) =>
          oc
            .columns(['session_id', 'part_number'])
            .doUpdateSet({ size: part.size, path: '', native: 1, sha256: part.sha256 }),
        )
        .execute();
      return previous && previous.native === 0 && previous.path ? previous.path : null;
    });
  }

  async delete(id: number): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('multipart_parts').where('session_id', '=', id).execute();
      await trx.deleteFrom('multipart_sessions').where('id', '=', id).execute();
    });
  }

  /** Sessions untouched since `cutoff` (ISO), oldest first. */
  stale(cutoffIso: string, limit: number): Promise<SessionRow[]> {
    return this.db
      .selectFrom('multipart_sessions')
      .selectAll()
      .where('modified', '<', cutoffIso)
      .orderBy('modified')
      .limit(limit)
      .execute();
  }

  async existing(ids: number[]): Promise<Set<number>> {
    if (ids.length === 0) return new Set();
    const rows = await this.db.selectFrom('multipart_sessions').select('id').where('id', 'in', ids).execute();
    return new Set(rows.map((r) => Number(r.id)));
  }
}
