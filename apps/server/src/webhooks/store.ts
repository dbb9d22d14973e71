/**
 * Webhook registrations and the per-app signing key (kloudless-api.md §2.4, the old Management API).
 *
 * Kloudless receivers verify `X-Kloudless-Signature` with the app's API key, but our API keys are
 * stored hashed. Each app therefore gets a dedicated signing key, generated when it is first needed
 * (the first webhook, or the first read of the key), kept in `apps.webhook_secret_enc` sealed with
 * the credentials box (AES-256-GCM, AAD binds the app id), readable by the app and rotatable.
 * Every query is scoped by `app_id`.
 */
import {
  CloudmuxError,
  createSecretBox,
  generateToken,
  type Keyring,
  type NetworkGuard,
  networkRefusalFrom,
  type SecretBox,
} from '@cloudmux/core';
import type { Kysely, Selectable } from 'kysely';
import type { Database, WebhooksTable } from '../store/schema.js';

export type WebhookRow = Selectable<WebhooksTable>;

/** Prefix of signing keys, so a leaked one is recognisable (receivers use the whole string as the HMAC key). */
export const SIGNING_KEY_PREFIX = 'cmwh_';
/** Webhooks per app: every event of the app fans out to each of them. */
export const MAX_WEBHOOKS_PER_APP = 50;
const MAX_URL_LENGTH = 2048;

/** `conflicting_resource_id` names the existing webhook (unless it was deleted meanwhile). */
function duplicateUrl(existing: { id: number | bigint } | undefined): CloudmuxError {
  return new CloudmuxError('naming_conflict', 'A webhook with this URL already exists.', {
    ...(existing ? { conflictingResourceId: String(existing.id) } : {}),
  });
}

const secretAad = (appId: string) => [`app:${appId}`, 'webhook_secret'];

/**
 * Checks a receiver URL: absolute http(s), no credentials or fragment, and a host the delivery
 * guard may reach (never a cloud metadata address; inside `CLOUDMUX_ALLOWED_NETWORKS` when set).
 * Private and loopback hosts are allowed: receivers are the app's own servers, which self-hosters
 * run next to Cloudmux. Returns the normalized URL.
 */
export async function validateWebhookUrl(value: string, guard: NetworkGuard): Promise<string> {
  if (value.length > MAX_URL_LENGTH)
    throw new CloudmuxError('invalid_parameters', `url must be at most ${MAX_URL_LENGTH} characters.`);
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw new CloudmuxError('invalid_parameters', 'url must be an absolute http or https URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CloudmuxError('invalid_parameters', 'url must use http or https.');
  }
  if (url.username || url.password)
    throw new CloudmuxError('invalid_parameters', 'url must not contain credentials.');
  if (url.hash) throw new CloudmuxError('invalid_parameters', 'url must not contain a fragment.');
  if (!url.hostname) throw new CloudmuxError('invalid_parameters', 'url must name a host.');
  try {
    await guard.assertAllowed(url.hostname);
  } catch (err) {
    const refusal =
      networkRefusalFrom(err) ?? (err instanceof CloudmuxError && err.code === 'forbidden' ? err : undefined);
    if (refusal)
      throw new CloudmuxError('forbidden', `Webhooks may not be sent to this URL: ${refusal.message}`);
    // A name that does not resolve yet is accepted: the guard checks again at every delivery.
  }
  return url.href;
}

export class WebhookStore {
  readonly #box: SecretBox;

  constructor(
    private readonly db: Kysely<Database>,
    keys: Keyring,
    private readonly now: () => number = Date.now,
  ) {
    this.#box = createSecretBox({ keys, purpose: 'credentials' });
  }

  list(appId: string, offset: number, limit: number): Promise<WebhookRow[]> {
    return this.db
      .selectFrom('webhooks')
      .selectAll()
      .where('app_id', '=', appId)
      .orderBy('id')
      .offset(offset)
      .limit(limit)
      .execute();
  }

  async count(appId: string): Promise<number> {
    const row = await this.db
      .selectFrom('webhooks')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('app_id', '=', appId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  get(appId: string, id: number): Promise<WebhookRow | undefined> {
    return this.db
      .selectFrom('webhooks')
      .selectAll()
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  /** Registers `url` (already validated) for the app; the same URL twice is a `naming_conflict`. */
  async create(appId: string, url: string): Promise<WebhookRow> {
    const existing = await this.withUrl(appId, url);
    if (existing) throw duplicateUrl(existing);
    if ((await this.count(appId)) >= MAX_WEBHOOKS_PER_APP) {
      throw new CloudmuxError(
        'bad_request',
        `An application may have at most ${MAX_WEBHOOKS_PER_APP} webhooks.`,
      );
    }
    // Receivers must be able to verify the first delivery: the key exists before the webhook does.
    await this.signingKey(appId);
    // The unique index on (app_id, url) settles a race with another create of the same URL.
    const row = await this.db
      .insertInto('webhooks')
      .values({ app_id: appId, url, created: new Date(this.now()).toISOString() })
      .onConflict((oc) => oc.columns(['app_id', 'url']).doNothing())
      .returning('id')
      .executeTakeFirst();
    if (!row) {
      throw duplicateUrl(await this.withUrl(appId, url));
    }
    return (await this.get(appId, Number(row.id)))!;
  }

  private withUrl(appId: string, url: string): Promise<{ id: number | bigint } | undefined> {
    return this.db
      .selectFrom('webhooks')
      .select('id')
      .where('app_id', '=', appId)
      .where('url', '=', url)
      .executeTakeFirst();
  }

  /** Deletes the webhook and (foreign key cascade) its undelivered outbox rows. */
  async remove(appId: string, id: number): Promise<boolean> {
    const result = await this.db
      .deleteFrom('webhooks')
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  /** The app's signing key, generated on first use. */
  async signingKey(appId: string): Promise<string> {
    const row = await this.db
      .selectFrom('apps')
      .select('webhook_secret_enc')
      .where('id', '=', appId)
      .executeTakeFirst();
    if (!row) throw new CloudmuxError('not_found', 'Application not found.');
    if (row.webhook_secret_enc) return this.#box.decryptString(row.webhook_secret_enc, secretAad(appId));
    // Only the first writer sets it; a concurrent first use reads the winner's key.
    await this.db
      .updateTable('apps')
      .set({ webhook_secret_enc: this.#box.encrypt(generateToken(SIGNING_KEY_PREFIX), secretAad(appId)) })
      .where('id', '=', appId)
      .where('webhook_secret_enc', 'is', null)
      .execute();
    return this.signingKey(appId);
  }

  /** Replaces the signing key; deliveries from now on (retries included) are signed with the new one. */
  async rotateSigningKey(appId: string): Promise<string> {
    const key = generateToken(SIGNING_KEY_PREFIX);
    const result = await this.db
      .updateTable('apps')
      .set({ webhook_secret_enc: this.#box.encrypt(key, secretAad(appId)) })
      .where('id', '=', appId)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw new CloudmuxError('not_found', 'Application not found.');
    return key;
  }
}

/**
 * For `cloudmux secret rotate`: re-seals every app's signing key under the box's active key
 * version (the keys themselves do not change, so receivers keep verifying).
 */
export async function reencryptWebhookSecrets(
  db: Kysely<Database>,
  box: SecretBox,
): Promise<{ total: number; changed: number }> {
  const rows = await db
    .selectFrom('apps')
    .select(['id', 'webhook_secret_enc'])
    .where('webhook_secret_enc', 'is not', null)
    .execute();
  let changed = 0;
  for (const row of rows) {
    const result = box.reencrypt(row.webhook_secret_enc!, secretAad(row.id));
    if (!result.changed) continue;
    await db
      .updateTable('apps')
      .set({ webhook_secret_enc: result.sealed })
      .where('id', '=', row.id)
      .execute();
    changed += 1;
  }
  return { total: rows.length, changed };
}
