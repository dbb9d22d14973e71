/**
 * Migrations, shared by SQLite and PostgreSQL. Only auto-increment keys differ between dialects;
 * everything else uses portable types (text, integer, bigint).
 */
import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';
import { multipartMigration } from '../multipart/migration.js';

export type Dialect = 'sqlite' | 'postgres';

// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists
type AnyDb = Kysely<any>;

function serialId(dialect: Dialect) {
  return dialect === 'sqlite' ? ('integer' as const) : ('bigserial' as const);
}

export function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001_initial': {
      async up(db: AnyDb) {
        const idType = serialId(dialect);
        const autoIncrement = dialect === 'sqlite';
        const serial = (name: string) => (col: ReturnType<AnyDb['schema']['createTable']>) =>
          col.addColumn(name, idType, (c) => {
            const pk = c.primaryKey();
            return autoIncrement ? pk.autoIncrement() : pk;
          });
        await db.schema
          .createTable('apps')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('settings', 'text', (c) => c.notNull().defaultTo('{}'))
          .addColumn('webhook_secret_enc', 'text')
          .addColumn('created', 'text', (c) => c.notNull())
          .addColumn('modified', 'text', (c) => c.notNull())
          .execute();
        await serial('id')(db.schema.createTable('api_keys'))
          .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id').onDelete('cascade'))
          .addColumn('key_hash', 'text', (c) => c.notNull().unique())
          .addColumn('key_prefix', 'text', (c) => c.notNull())
          .addColumn('label', 'text')
          .addColumn('created', 'text', (c) => c.notNull())
          .addColumn('revoked', 'text')
          .execute();
        await serial('id')(db.schema.createTable('accounts'))
          .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id').onDelete('cascade'))
          .addColumn('service', 'text', (c) => c.notNull())
          .addColumn('account', 'text', (c) => c.notNull())
          .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('admin', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('inactive_reason', 'text')
          .addColumn('effective_scope', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('custom_properties', 'text', (c) => c.notNull().defaultTo('{}'))
          .addColumn('token_expiry', 'text')
          .addColumn('refresh_token_expiry', 'text')
          .addColumn('credentials_enc', 'text', (c) => c.notNull())
          .addColumn('credentials_version', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('refresh_lease_owner', 'text')
          .addColumn('refresh_lease_until', 'bigint')
          .addColumn('created', 'text', (c) => c.notNull())
          .addColumn('modified', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('accounts_app').on('accounts').columns(['app_id', 'id']).execute();
        await db.schema
          .createTable('account_tokens')
          .addColumn('token_hash', 'text', (c) => c.primaryKey())
          .addColumn('account_id', 'integer', (c) =>
            c.notNull().references('accounts.id').onDelete('cascade'),
          )
          .addColumn('app_id', 'text', (c) => c.notNull())
          .addColumn('created', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text')
          .execute();
        await db.schema
          .createIndex('account_tokens_account')
          .on('account_tokens')
          .column('account_id')
          .execute();
        await db.schema
          .createTable('links')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('app_id', 'text', (c) => c.notNull())
          .addColumn('account_id', 'integer', (c) =>
            c.notNull().references('accounts.id').onDelete('cascade'),
          )
          .addColumn('raw_id', 'text', (c) => c.notNull())
          .addColumn('direct', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('password_hash', 'text')
          .addColumn('expiration', 'text')
          .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('created', 'text', (c) => c.notNull())
          .addColumn('modified', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('links_account').on('links').columns(['account_id', 'created']).execute();
        await serial('id')(db.schema.createTable('multipart_sessions'))
          .addColumn('app_id', 'text', (c) => c.notNull())
          .addColumn('account_id', 'integer', (c) =>
            c.notNull().references('accounts.id').onDelete('cascade'),
          )
          .addColumn('parent_raw_id', 'text', (c) => c.notNull())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('size', 'bigint')
          .addColumn('part_size', 'bigint', (c) => c.notNull())
          .addColumn('overwrite', 'integer', (c) => c.notNull())
          .addColumn('native_state', 'text')
          .addColumn('next_part', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('staged', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created', 'text', (c) => c.notNull())
          .addColumn('modified', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('multipart_parts')
          .addColumn('session_id', 'integer', (c) =>
            c.notNull().references('multipart_sessions.id').onDelete('cascade'),
          )
          .addColumn('part_number', 'integer', (c) => c.notNull())
          .addColumn('size', 'bigint', (c) => c.notNull())
          .addColumn('path', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('multipart_parts_pk', ['session_id', 'part_number'])
          .execute();
        await serial('id')(db.schema.createTable('events'))
          .addColumn('account_id', 'integer', (c) =>
            c.notNull().references('accounts.id').onDelete('cascade'),
          )
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('raw_id', 'text', (c) => c.notNull())
          .addColumn('item_type', 'text', (c) => c.notNull())
          .addColumn('item', 'text')
          .addColumn('modified', 'text', (c) => c.notNull())
          .addColumn('user_id', 'text')
          .addColumn('ip', 'text')
          .execute();
        await db.schema.createIndex('events_account').on('events').columns(['account_id', 'id']).execute();
        await db.schema
          .createTable('tasks')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('app_id', 'text', (c) => c.notNull())
          .addColumn('account_id', 'integer', (c) =>
            c.notNull().references('accounts.id').onDelete('cascade'),
          )
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('params', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('result', 'text')
          .addColumn('result_status', 'integer')
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('lease_owner', 'text')
          .addColumn('lease_until', 'bigint')
          .addColumn('created', 'text', (c) => c.notNull())
          .addColumn('modified', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('tasks_status').on('tasks').columns(['status', 'lease_until']).execute();
        await db.schema
          .createTable('oauth_states')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('app_id', 'text', (c) => c.notNull())
          .addColumn('data', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .addColumn('used', 'integer', (c) => c.notNull().defaultTo(0))
          .execute();
        await serial('id')(db.schema.createTable('webhooks'))
          .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id').onDelete('cascade'))
          .addColumn('url', 'text', (c) => c.notNull())
          .addColumn('created', 'text', (c) => c.notNull())
          .execute();
        await serial('id')(db.schema.createTable('webhook_outbox'))
          .addColumn('app_id', 'text', (c) => c.notNull())
          .addColumn('webhook_id', 'integer', (c) =>
            c.notNull().references('webhooks.id').onDelete('cascade'),
          )
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
          .addColumn('last_error', 'text')
          .addColumn('delivered', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('webhook_outbox_due')
          .on('webhook_outbox')
          .columns(['delivered', 'next_attempt_at'])
          .execute();
        await db.schema
          .createTable('meta')
          .addColumn('key', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .execute();
        await sql`select 1`.execute(db);
      },
    },
    '0002_multipart': multipartMigration,
    '0003_webhook_url_unique': {
      // One URL once per app, also when two requests (or two instances) register it at once.
      async up(db: AnyDb) {
        await db.schema
          .createIndex('webhooks_app_url')
          .unique()
          .on('webhooks')
          .columns(['app_id', 'url'])
          .execute();
      },
    },
  };
}

export function migrationProvider(dialect: Dialect): MigrationProvider {
  return { getMigrations: async () => migrations(dialect) };
}
