/**
 * Where an account's credentials live, and the contract that makes token refresh safe across
 * processes: a versioned record, a refresh lease (only its holder calls the token endpoint) and a
 * compare-and-swap commit. The server implements `CredentialStore` on SQLite/PostgreSQL (one row
 * per account: `version`, encrypted `credentials`, `lease_owner`, `lease_expires_at`, `inactive_reason`).
 */
import { CloudmuxError } from '../errors.js';
import { type Clock, systemClock } from './clock.js';

/**
 * Credential fields as the account stores them. OAuth accounts use the token-response names
 * (`access_token`, `refresh_token`, `token_type`, `scope`, provider extras such as `instance_url`)
 * plus `expires_at` in ms since the epoch; other strategies read the fields their `AuthSpec` names.
 */
export type CredentialFields = Readonly<Record<string, unknown>>;

export interface OAuthCredentialFields {
  access_token?: string;
  refresh_token?: string;
  /** Access-token expiry, ms since the epoch; absent when the provider gave no `expires_in`. */
  expires_at?: number;
  token_type?: string;
  scope?: string;
  [extra: string]: unknown;
}

export interface CredentialRecord {
  /** Bumped by every successful `commit`; the compare-and-swap key. */
  version: number;
  credentials: CredentialFields;
  /** Set by `markInactive`; the account needs reconnecting. */
  inactive?: { reason: string; at: number };
}

export interface CredentialStore {
  /** The current record, or `undefined` for an unknown account. */
  load(accountId: string): Promise<CredentialRecord | undefined>;
  /**
   * Takes the refresh lease for `ttlMs` if nobody holds an unexpired one and the record is still at
   * `version`. Returns whether `owner` now holds it. Must be atomic (a conditional UPDATE, `SET NX`).
   */
  tryLease(accountId: string, version: number, owner: string, ttlMs: number): Promise<boolean>;
  /** Drops the lease if (and only if) `owner` holds it. */
  releaseLease(accountId: string, owner: string): Promise<void>;
  /**
   * Replaces the credentials if the record is still at `expectedVersion` and no other owner holds an
   * unexpired lease; clears the lease. Returns the new version, or `null` when the swap lost.
   */
  commit(
    accountId: string,
    expectedVersion: number,
    owner: string,
    credentials: CredentialFields,
  ): Promise<number | null>;
  /** Marks the account inactive (refresh failed for good), keeping the reason for the API and logs. */
  markInactive(accountId: string, reason: string): Promise<void>;
}

interface MemoryRow {
  version: number;
  credentials: CredentialFields;
  inactive?: { reason: string; at: number };
  lease?: { owner: string; expiresAt: number };
}

/** A `CredentialStore` in process memory: the embedded default's reference and the tests' store. */
export class InMemoryCredentialStore implements CredentialStore {
  private readonly rows = new Map<string, MemoryRow>();
  private readonly clock: Clock;

  constructor(options: { clock?: Clock } = {}) {
    this.clock = options.clock ?? systemClock;
  }

  /** Creates or replaces an account's credentials (connect / reconnect): new version, active, no lease. */
  put(accountId: string, credentials: CredentialFields): number {
    const version = (this.rows.get(accountId)?.version ?? 0) + 1;
    this.rows.set(accountId, { version, credentials: Object.freeze({ ...credentials }) });
    return version;
  }

  async load(accountId: string): Promise<CredentialRecord | undefined> {
    const row = this.rows.get(accountId);
    if (!row) return undefined;
    return {
      version: row.version,
      credentials: row.credentials,
      ...(row.inactive ? { inactive: { ...row.inactive } } : {}),
    };
  }

  async tryLease(accountId: string, version: number, owner: string, ttlMs: number): Promise<boolean> {
    const row = this.rows.get(accountId);
    if (!row || row.version !== version) return false;
    const now = this.clock.now();
    if (row.lease && row.lease.expiresAt > now && row.lease.owner !== owner) return false;
    row.lease = { owner, expiresAt: now + ttlMs };
    return true;
  }

  async releaseLease(accountId: string, owner: string): Promise<void> {
    const row = this.rows.get(accountId);
    if (row?.lease?.owner === owner) delete row.lease;
  }

  async commit(
    accountId: string,
    expectedVersion: number,
    owner: string,
    credentials: CredentialFields,
  ): Promise<number | null> {
    const row = this.rows.get(accountId);
    if (!row || row.version !== expectedVersion) return null;
    if (row.lease && row.lease.owner !== owner && row.lease.expiresAt > this.clock.now()) return null;
    row.version += 1;
    row.credentials = Object.freeze({ ...credentials });
    delete row.lease;
    return row.version;
  }

  async markInactive(accountId: string, reason: string): Promise<void> {
    const row = this.rows.get(accountId);
    if (row) row.inactive = { reason, at: this.clock.now() };
  }
}

/**
 * What the HTTP client reads current credentials from: fixed fields (API keys, SigV4 keys, …) or
 * a store (required for OAuth authorization-code accounts, whose tokens change).
 */
export type CredentialSource =
  | { kind: 'static'; credentials: CredentialFields }
  | { kind: 'store'; store: CredentialStore };

export function staticCredentials(credentials: CredentialFields): CredentialSource {
  return { kind: 'static', credentials };
}

export function storedCredentials(store: CredentialStore): CredentialSource {
  return { kind: 'store', store };
}

/** Loads a record and refuses unknown or inactive accounts with `service_unauthorized`. */
export async function loadActiveRecord(
  store: CredentialStore,
  accountId: string,
  service?: string,
): Promise<CredentialRecord> {
  const record = await store.load(accountId);
  if (!record) {
    throw new CloudmuxError(
      'service_unauthorized',
      'No credentials are stored for this account.',
      service ? { service } : {},
    );
  }
  if (record.inactive) {
    throw new CloudmuxError(
      'service_unauthorized',
      `The account is inactive and must be reconnected: ${record.inactive.reason}`,
      service ? { service } : {},
    );
  }
  return record;
}

export async function readCredentialFields(
  source: CredentialSource,
  accountId: string,
  service?: string,
): Promise<CredentialFields> {
  if (source.kind === 'static') return source.credentials;
  return (await loadActiveRecord(source.store, accountId, service)).credentials;
}

/** A credential field as a non-empty string, or `service_unauthorized` naming the missing field. */
export function credentialString(fields: CredentialFields, name: string, service?: string): string {
  const value = fields[name];
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  throw new CloudmuxError(
    'service_unauthorized',
    `The account's credentials have no "${name}".`,
    service ? { service } : {},
  );
}

export function optionalCredentialString(
  fields: CredentialFields,
  name: string | undefined,
): string | undefined {
  if (name === undefined) return undefined;
  const value = fields[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
