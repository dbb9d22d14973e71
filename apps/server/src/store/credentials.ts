/**
 * Core's `CredentialStore` on the accounts table: the refresh lease and the version
 * compare-and-swap are single conditional UPDATEs, so two server instances on one PostgreSQL
 * database never both spend a single-use refresh token (packages/core/docs/http.md).
 */
import type { CredentialFields, CredentialRecord, CredentialStore } from '@cloudmux/core';
import type { Kysely } from 'kysely';
import { nowIso } from './db.js';
import type { Database } from './schema.js';
import type { Store } from './store.js';

export class SqlCredentialStore implements CredentialStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  async load(accountId: string): Promise<CredentialRecord | undefined> {
    const row = await this.store.getAccountById(Number(accountId));
    if (!row) return undefined;
    return {
      version: row.credentials_version,
      credentials: this.store.decryptCredentials(row),
      ...(row.active === 0 && row.inactive_reason
        ? { inactive: { reason: row.inactive_reason, at: Date.parse(row.modified) } }
        : {}),
    };
  }

  async tryLease(accountId: string, version: number, owner: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const result = await this.db
      .updateTable('accounts')
      .set({ refresh_lease_owner: owner, refresh_lease_until: now + ttlMs })
      .where('id', '=', Number(accountId))
      .where('credentials_version', '=', version)
      .where((eb) =>
        eb.or([
          eb('refresh_lease_owner', 'is', null),
          eb('refresh_lease_until', '<=', now),
          eb('refresh_lease_owner', '=', owner),
        ]),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async releaseLease(accountId: string, owner: string): Promise<void> {
    await this.db
      .updateTable('accounts')
      .set({ refresh_lease_owner: null, refresh_lease_until: null })
      .where('id', '=', Number(accountId))
      .where('refresh_lease_owner', '=', owner)
      .execute();
  }

  async commit(
    accountId: string,
    expectedVersion: number,
    owner: string,
    credentials: CredentialFields,
  ): Promise<number | null> {
    const now = this.now();
    const id = Number(accountId);
    const expiresAt =
      typeof credentials.expires_at === 'number' ? new Date(credentials.expires_at).toISOString() : null;
    const result = await this.db
      .updateTable('accounts')
      .set({
        credentials_enc: this.store.encryptCredentials(id, { ...credentials }),
        credentials_version: expectedVersion + 1,
        refresh_lease_owner: null,
        refresh_lease_until: null,
        token_expiry: expiresAt,
        modified: nowIso(),
      })
      .where('id', '=', id)
      .where('credentials_version', '=', expectedVersion)
      .where((eb) =>
        eb.or([
          eb('refresh_lease_owner', 'is', null),
          eb('refresh_lease_owner', '=', owner),
          eb('refresh_lease_until', '<=', now),
        ]),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1 ? expectedVersion + 1 : null;
  }

  async markInactive(accountId: string, reason: string): Promise<void> {
    await this.db
      .updateTable('accounts')
      .set({ active: 0, inactive_reason: reason.slice(0, 500), modified: nowIso() })
      .where('id', '=', Number(accountId))
      .execute();
  }
}
