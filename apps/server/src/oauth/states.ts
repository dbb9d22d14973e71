/**
 * Short-lived OAuth records in the `oauth_states` table: authorization requests (`flow`, keyed by
 * our `state`) and our one-time authorization codes (`code`). Rows are keyed by the SHA-256 of the
 * random value, so the table never holds a usable state or code; the payload is sealed (AES-256-GCM,
 * AAD = the row id) because it carries PKCE verifiers and pre-filled form data. Single use is one
 * conditional UPDATE, so two racing requests cannot both consume a row (SQLite and PostgreSQL alike).
 */
import { randomBytes } from 'node:crypto';
import { hashToken, type SecretBox } from '@cloudmux/core';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';

export type RecordKind = 'flow' | 'code';

export interface LoadedRecord<T> {
  appId: string;
  data: T;
  expiresAt: number;
  used: boolean;
  expired: boolean;
}

export type ConsumeResult<T> =
  | { ok: true; record: LoadedRecord<T> }
  | { ok: false; reason: 'missing' | 'used' | 'expired'; record?: LoadedRecord<T> };

/** 256 random bits, URL-safe: our `state` values and codes (RFC 6749 §10.10 asks for ≥ 128). */
export function randomSecret(): string {
  return randomBytes(32).toString('base64url');
}

const rowId = (kind: RecordKind, token: string) => `${kind}:${hashToken(token)}`;

export class OAuthRecords {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly box: SecretBox,
    /** Milliseconds since the epoch; tests may inject their own clock. */
    private readonly now: () => number = Date.now,
  ) {}

  /** Stores a new record and returns the random value that names it. */
  async issue<T>(kind: RecordKind, appId: string, data: T, ttlMs: number): Promise<string> {
    const token = randomSecret();
    const id = rowId(kind, token);
    const now = this.now();
    // Expired rows are useless after an hour (kept that long so a late replay still reads "expired").
    await this.db
      .deleteFrom('oauth_states')
      .where('expires_at', '<', now - 3_600_000)
      .execute();
    await this.db
      .insertInto('oauth_states')
      .values({
        id,
        app_id: appId,
        data: this.box.encrypt(JSON.stringify(data), [id]),
        expires_at: now + ttlMs,
        used: 0,
      })
      .execute();
    return token;
  }

  async load<T>(kind: RecordKind, token: string | undefined): Promise<LoadedRecord<T> | undefined> {
    if (!token || token.length > 200) return undefined;
    const id = rowId(kind, token);
    const row = await this.db.selectFrom('oauth_states').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const expiresAt = Number(row.expires_at);
    return {
      appId: row.app_id,
      data: JSON.parse(this.box.decryptString(row.data, [id])) as T,
      expiresAt,
      used: Number(row.used) === 1,
      expired: expiresAt <= this.now(),
    };
  }

  /** Replaces the payload of an unused, unexpired record (the chosen service, the PKCE verifier). */
  async update<T>(kind: RecordKind, token: string, data: T): Promise<boolean> {
    const id = rowId(kind, token);
    const result = await this.db
      .updateTable('oauth_states')
      .set({ data: this.box.encrypt(JSON.stringify(data), [id]) })
      .where('id', '=', id)
      .where('used', '=', 0)
      .where('expires_at', '>', this.now())
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Marks the record used; exactly one caller ever gets `ok`. */
  async consume<T>(kind: RecordKind, token: string | undefined): Promise<ConsumeResult<T>> {
    if (!token || token.length > 200) return { ok: false, reason: 'missing' };
    const id = rowId(kind, token);
    const result = await this.db
      .updateTable('oauth_states')
      .set({ used: 1 })
      .where('id', '=', id)
      .where('used', '=', 0)
      .where('expires_at', '>', this.now())
      .executeTakeFirst();
    const record = await this.load<T>(kind, token);
    if (Number(result.numUpdatedRows) === 1 && record) return { ok: true, record };
    if (!record) return { ok: false, reason: 'missing' };
    return { ok: false, reason: record.used ? 'used' : 'expired', record };
  }

  /** Replaces the payload whatever the record's state (what a consumed code produced). */
  async rewrite<T>(kind: RecordKind, token: string, data: T): Promise<void> {
    const id = rowId(kind, token);
    await this.db
      .updateTable('oauth_states')
      .set({ data: this.box.encrypt(JSON.stringify(data), [id]) })
      .where('id', '=', id)
      .execute();
  }

  /** Marks the record used whatever its state (an expired or failed flow is over). */
  async retire(kind: RecordKind, token: string): Promise<void> {
    await this.db.updateTable('oauth_states').set({ used: 1 }).where('id', '=', rowId(kind, token)).execute();
  }

  /** Tests and operators: the row id of a value, to inspect or age a record. */
  static rowId(kind: RecordKind, token: string): string {
    return rowId(kind, token);
  }
}
