/**
 * Table types for Kysely. Both dialects store timestamps as ISO-8601 text, booleans as 0/1
 * integers and JSON as text, so one set of migrations and queries serves SQLite and PostgreSQL.
 */
import type { Generated } from 'kysely';

export interface AppsTable {
  id: string;
  name: string;
  /** JSON: `{ redirect_uris: string[], trusted_origins: string[] }`. */
  settings: string;
  /** Webhook signing secret, encrypted with the credentials key. */
  webhook_secret_enc: string | null;
  created: string;
  modified: string;
}

export interface ApiKeysTable {
  id: Generated<number>;
  app_id: string;
  key_hash: string;
  /** First characters of the key, for listings (`cmk_AbCd…`). */
  key_prefix: string;
  label: string | null;
  created: string;
  revoked: string | null;
}

export interface AccountsTable {
  id: Generated<number>;
  app_id: string;
  service: string;
  account: string;
  active: number;
  admin: number;
  inactive_reason: string | null;
  effective_scope: string;
  custom_properties: string;
  token_expiry: string | null;
  refresh_token_expiry: string | null;
  /** AES-256-GCM ciphertext of the credential object (AAD: account id + `credentials`). */
  credentials_enc: string;
  /** Bumped on every credential write: the compare-and-swap version of token refresh. */
  credentials_version: number;
  refresh_lease_owner: string | null;
  refresh_lease_until: number | null;
  created: string;
  modified: string;
}

export interface AccountTokensTable {
  token_hash: string;
  account_id: number;
  app_id: string;
  created: string;
  expires_at: string | null;
}

export interface LinksTable {
  id: string;
  app_id: string;
  account_id: number;
  raw_id: string;
  direct: number;
  password_hash: string | null;
  expiration: string | null;
  active: number;
  created: string;
  modified: string;
}

export interface MultipartSessionsTable {
  id: Generated<number>;
  app_id: string;
  account_id: number;
  parent_raw_id: string;
  name: string;
  size: number | null;
  part_size: number;
  overwrite: number;
  /** Native session state once begun; kept after a fallback to staging (it holds the in-order prefix). */
  native_state: string | null;
  next_part: number;
  staged: number;
  created: string;
  modified: string;
  /** `open`, `closing` (complete or abort running) or `failed` (0002). */
  phase: Generated<string>;
  /** Exclusive lease for native forwarding and completion (0002). */
  busy_owner: string | null;
  busy_until: number | null;
  /** The name the native session was begun with, after the renaming rule (0002). */
  target_name: string | null;
  failure: string | null;
}

export interface MultipartPartsTable {
  session_id: number;
  part_number: number;
  size: number;
  /** File name inside the session's staging folder; empty for parts sent to the native session. */
  path: string;
  /** 1 when the bytes went to the connector's native session (0002). */
  native: Generated<number>;
  sha256: string | null;
}

export interface EventsTable {
  id: Generated<number>;
  account_id: number;
  action: string;
  raw_id: string;
  item_type: string;
  /** JSON of the StorageItem (with dates as ISO strings), or null for deletes. */
  item: string | null;
  modified: string;
  user_id: string | null;
  ip: string | null;
}

export interface TasksTable {
  id: string;
  app_id: string;
  account_id: number;
  kind: string;
  params: string;
  status: string;
  /** JSON of the finished response body. */
  result: string | null;
  result_status: number | null;
  attempts: number;
  lease_owner: string | null;
  lease_until: number | null;
  created: string;
  modified: string;
}

export interface OauthStatesTable {
  id: string;
  app_id: string;
  data: string;
  expires_at: number;
  used: number;
}

export interface WebhooksTable {
  id: Generated<number>;
  app_id: string;
  url: string;
  created: string;
}

export interface WebhookOutboxTable {
  id: Generated<number>;
  app_id: string;
  webhook_id: number;
  body: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  delivered: number;
  created: string;
}

export interface MetaTable {
  key: string;
  value: string;
}

export interface Database {
  apps: AppsTable;
  api_keys: ApiKeysTable;
  accounts: AccountsTable;
  account_tokens: AccountTokensTable;
  links: LinksTable;
  multipart_sessions: MultipartSessionsTable;
  multipart_parts: MultipartPartsTable;
  events: EventsTable;
  tasks: TasksTable;
  oauth_states: OauthStatesTable;
  webhooks: WebhooksTable;
  webhook_outbox: WebhookOutboxTable;
  meta: MetaTable;
}
