/**
 * Repositories over the Kysely schema. Everything an app can reach is scoped by `app_id` in the
 * query itself, so an app can never read or touch another app's rows. Credentials are encrypted
 * at rest (AES-256-GCM, AAD binds account id + field); API keys and bearer tokens are stored hashed.
 */
import { randomInt } from 'node:crypto';
import { CloudmuxError, generateToken, hashToken, type SecretBox } from '@cloudmux/core';
import type { Kysely, Selectable, Updateable } from 'kysely';
import { nowIso } from './db.js';
import type { AccountsTable, AppsTable, Database } from './schema.js';

const APP_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * 16 letters and digits (95 bits). Not base64url: an id starting with `-` would read as an option
 * in `cloudmux … --app <id>`, and a `_` or `-` gets cut off when double-clicked in a terminal.
 */
export function newAppId(): string {
  let id = '';
  for (let i = 0; i < 16; i++) id += APP_ID_ALPHABET[randomInt(APP_ID_ALPHABET.length)];
  return id;
}

export type AppRow = Selectable<AppsTable>;
export type AccountRow = Selectable<AccountsTable>;

export interface AppSettings {
  redirect_uris: string[];
  trusted_origins: string[];
}

export const API_KEY_PREFIX = 'cmk_';
export const ACCOUNT_TOKEN_PREFIX = 'cmt_';

const credentialsAad = (accountId: number) => [`account:${accountId}`, 'credentials'];

export class Store {
  constructor(
    readonly db: Kysely<Database>,
    private readonly credentialBox: SecretBox,
  ) {}

  // ── apps and API keys ────────────────────────────────────────────────────

  async createApp(name: string, options: { id?: string } = {}): Promise<{ app: AppRow; apiKey: string }> {
    const id = options.id ?? newAppId();
    const now = nowIso();
    const settings: AppSettings = { redirect_uris: [], trusted_origins: [] };
    await this.db
      .insertInto('apps')
      .values({
        id,
        name,
        settings: JSON.stringify(settings),
        webhook_secret_enc: null,
        created: now,
        modified: now,
      })
      .execute();
    const apiKey = await this.createApiKey(id, 'default');
    return { app: (await this.getApp(id))!, apiKey: apiKey.key };
  }

  getApp(id: string): Promise<AppRow | undefined> {
    return this.db.selectFrom('apps').selectAll().where('id', '=', id).executeTakeFirst();
  }

  listApps(): Promise<AppRow[]> {
    return this.db.selectFrom('apps').selectAll().orderBy('created').execute();
  }

  appSettings(app: AppRow): AppSettings {
    const parsed = JSON.parse(app.settings) as Partial<AppSettings>;
    return { redirect_uris: parsed.redirect_uris ?? [], trusted_origins: parsed.trusted_origins ?? [] };
  }

  async updateAppSettings(appId: string, settings: AppSettings): Promise<void> {
    await this.db
      .updateTable('apps')
      .set({ settings: JSON.stringify(settings), modified: nowIso() })
      .where('id', '=', appId)
      .execute();
  }

  async createApiKey(appId: string, label: string | null = null): Promise<{ id: number; key: string }> {
    const key = generateToken(API_KEY_PREFIX);
    const row = await this.db
      .insertInto('api_keys')
      .values({
        app_id: appId,
        key_hash: hashToken(key),
        key_prefix: key.slice(0, API_KEY_PREFIX.length + 6),
        label,
        created: nowIso(),
        revoked: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { id: Number(row.id), key };
  }

  listApiKeys(appId: string) {
    return this.db
      .selectFrom('api_keys')
      .select(['id', 'key_prefix', 'label', 'created', 'revoked'])
      .where('app_id', '=', appId)
      .orderBy('id')
      .execute();
  }

  /** Revokes a key by its numeric id or its full value; returns whether one was revoked. */
  async revokeApiKey(appId: string, idOrKey: string): Promise<boolean> {
    let query = this.db
      .updateTable('api_keys')
      .set({ revoked: nowIso() })
      .where('app_id', '=', appId)
      .where('revoked', 'is', null);
    query = /^\d+$/.test(idOrKey)
      ? query.where('id', '=', Number(idOrKey))
      : query.where('key_hash', '=', hashToken(idOrKey));
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async appForApiKey(key: string): Promise<AppRow | undefined> {
    const row = await this.db
      .selectFrom('api_keys')
      .innerJoin('apps', 'apps.id', 'api_keys.app_id')
      .selectAll('apps')
      .where('api_keys.key_hash', '=', hashToken(key))
      .where('api_keys.revoked', 'is', null)
      .executeTakeFirst();
    return row;
  }

  // ── accounts ─────────────────────────────────────────────────────────────

  async createAccount(input: {
    appId: string;
    service: string;
    account: string;
    credentials: Record<string, unknown>;
    admin?: boolean;
    effectiveScope?: string;
    tokenExpiry?: string | null;
    refreshTokenExpiry?: string | null;
    customProperties?: Record<string, unknown>;
  }): Promise<AccountRow> {
    const now = nowIso();
    // Insert with a placeholder first: the credential ciphertext is bound to the new row's id.
    const inserted = await this.db
      .insertInto('accounts')
      .values({
        app_id: input.appId,
        service: input.service,
        account: input.account,
        active: 1,
        admin: input.admin ? 1 : 0,
        inactive_reason: null,
        effective_scope: input.effectiveScope ?? `${input.service}:normal.storage`,
        custom_properties: JSON.stringify(input.customProperties ?? {}),
        token_expiry: input.tokenExpiry ?? null,
        refresh_token_expiry: input.refreshTokenExpiry ?? null,
        credentials_enc: '',
        credentials_version: 1,
        refresh_lease_owner: null,
        refresh_lease_until: null,
        created: now,
        modified: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const id = Number(inserted.id);
    await this.db
      .updateTable('accounts')
      .set({
        credentials_enc: this.credentialBox.encrypt(JSON.stringify(input.credentials), credentialsAad(id)),
      })
      .where('id', '=', id)
      .execute();
    return (await this.getAccount(input.appId, id))!;
  }

  getAccount(appId: string, id: number): Promise<AccountRow | undefined> {
    return this.db
      .selectFrom('accounts')
      .selectAll()
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  /** Internal: an account by id regardless of app (task runner, link pages). */
  getAccountById(id: number): Promise<AccountRow | undefined> {
    return this.db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async listAccounts(
    appId: string,
    filter: { active?: boolean; admin?: boolean; ids?: number[] },
    offset: number,
    limit: number,
  ): Promise<{ rows: AccountRow[]; total: number }> {
    let base = this.db.selectFrom('accounts').where('app_id', '=', appId);
    if (filter.active !== undefined) base = base.where('active', '=', filter.active ? 1 : 0);
    if (filter.admin !== undefined) base = base.where('admin', '=', filter.admin ? 1 : 0);
    if (filter.ids) base = base.where('id', 'in', filter.ids.length ? filter.ids : [-1]);
    const [rows, count] = await Promise.all([
      base.selectAll().orderBy('id').offset(offset).limit(limit).execute(),
      base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { rows, total: Number(count.n) };
  }

  async updateAccount(
    appId: string,
    id: number,
    patch: Partial<{
      account: string;
      active: boolean;
      inactiveReason: string | null;
      tokenExpiry: string | null;
      refreshTokenExpiry: string | null;
      customProperties: Record<string, unknown>;
    }>,
  ): Promise<AccountRow | undefined> {
    const set: Updateable<AccountsTable> = { modified: nowIso() };
    if (patch.account !== undefined) set.account = patch.account;
    if (patch.active !== undefined) {
      set.active = patch.active ? 1 : 0;
      if (patch.active) set.inactive_reason = null;
    }
    if (patch.inactiveReason !== undefined) set.inactive_reason = patch.inactiveReason;
    if (patch.tokenExpiry !== undefined) set.token_expiry = patch.tokenExpiry;
    if (patch.refreshTokenExpiry !== undefined) set.refresh_token_expiry = patch.refreshTokenExpiry;
    if (patch.customProperties !== undefined) set.custom_properties = JSON.stringify(patch.customProperties);
    await this.db.updateTable('accounts').set(set).where('app_id', '=', appId).where('id', '=', id).execute();
    return this.getAccount(appId, id);
  }

  /** Deletes the account; its tokens, links, sessions, events and tasks go with it (foreign keys). */
  async deleteAccount(appId: string, id: number): Promise<boolean> {
    await this.db
      .deleteFrom('account_tokens')
      .where('account_id', '=', id)
      .where('app_id', '=', appId)
      .execute();
    const result = await this.db
      .deleteFrom('accounts')
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  decryptCredentials(row: Pick<AccountRow, 'id' | 'credentials_enc'>): Record<string, unknown> {
    return JSON.parse(
      this.credentialBox.decryptString(row.credentials_enc, credentialsAad(Number(row.id))),
    ) as Record<string, unknown>;
  }

  encryptCredentials(accountId: number, credentials: Record<string, unknown>): string {
    return this.credentialBox.encrypt(JSON.stringify(credentials), credentialsAad(accountId));
  }

  /** Replaces an account's credentials, bumping the version (used by imports and PATCH). */
  async replaceCredentials(appId: string, id: number, credentials: Record<string, unknown>): Promise<void> {
    const row = await this.getAccount(appId, id);
    if (!row) throw new CloudmuxError('not_found', 'Account not found.');
    await this.db
      .updateTable('accounts')
      .set({
        credentials_enc: this.encryptCredentials(id, credentials),
        credentials_version: row.credentials_version + 1,
        modified: nowIso(),
      })
      .where('id', '=', id)
      .execute();
  }

  /** `cloudmux secret rotate`: re-encrypts every stored credential under the box's active key. */
  async reencryptAllCredentials(box: SecretBox): Promise<{ total: number; changed: number }> {
    const rows = await this.db.selectFrom('accounts').select(['id', 'credentials_enc']).execute();
    let changed = 0;
    for (const row of rows) {
      const result = box.reencrypt(row.credentials_enc, credentialsAad(Number(row.id)));
      if (!result.changed) continue;
      await this.db
        .updateTable('accounts')
        .set({ credentials_enc: result.sealed })
        .where('id', '=', row.id)
        .execute();
      changed += 1;
    }
    return { total: rows.length, changed };
  }

  // ── account bearer tokens ────────────────────────────────────────────────

  async createAccountToken(appId: string, accountId: number, expiresInSeconds?: number): Promise<string> {
    const token = generateToken(ACCOUNT_TOKEN_PREFIX);
    await this.db
      .insertInto('account_tokens')
      .values({
        token_hash: hashToken(token),
        account_id: accountId,
        app_id: appId,
        created: nowIso(),
        expires_at: expiresInSeconds ? new Date(Date.now() + expiresInSeconds * 1000).toISOString() : null,
      })
      .execute();
    return token;
  }

  async resolveAccountToken(token: string): Promise<{ accountId: number; appId: string } | undefined> {
    const row = await this.db
      .selectFrom('account_tokens')
      .innerJoin('accounts', 'accounts.id', 'account_tokens.account_id')
      .select(['account_tokens.account_id', 'account_tokens.app_id', 'account_tokens.expires_at'])
      .where('account_tokens.token_hash', '=', hashToken(token))
      .executeTakeFirst();
    if (!row) return undefined;
    if (row.expires_at && Date.parse(row.expires_at) <= Date.now()) return undefined;
    return { accountId: Number(row.account_id), appId: row.app_id };
  }

  async revokeAccountToken(appId: string, accountId: number, token: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom('account_tokens')
      .where('app_id', '=', appId)
      .where('account_id', '=', accountId)
      .where('token_hash', '=', hashToken(token))
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  // ── meta ─────────────────────────────────────────────────────────────────

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.db.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst())
      ?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    const existing = await this.getMeta(key);
    if (existing === undefined) await this.db.insertInto('meta').values({ key, value }).execute();
    else await this.db.updateTable('meta').set({ value }).where('key', '=', key).execute();
  }
}
