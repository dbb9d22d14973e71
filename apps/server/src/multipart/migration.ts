/**
 * `0002_multipart`: what the session manager needs beyond the 0001 tables — a phase, an exclusive
 * lease (native part forwarding and completion are serialized per session across instances), the
 * name a native session was begun with, and per part whether its bytes went to the native session
 * plus their SHA-256 (a re-sent part is compared with it).
 */
import type { Kysely, Migration } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists
type AnyDb = Kysely<any>;

export const multipartMigration: Migration = {
  async up(db: AnyDb) {
    // One ADD COLUMN per statement: SQLite accepts no more.
    const sessions = () => db.schema.alterTable('multipart_sessions');
    await sessions()
      .addColumn('phase', 'text', (c) => c.notNull().defaultTo('open'))
      .execute();
    await sessions().addColumn('busy_owner', 'text').execute();
    await sessions().addColumn('busy_until', 'bigint').execute();
    await sessions().addColumn('target_name', 'text').execute();
    await sessions().addColumn('failure', 'text').execute();
    const parts = () => db.schema.alterTable('multipart_parts');
    await parts()
      .addColumn('native', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await parts().addColumn('sha256', 'text').execute();
    await db.schema
      .createIndex('multipart_sessions_modified')
      .on('multipart_sessions')
      .column('modified')
      .execute();
    await db.schema
      .createIndex('multipart_sessions_owner')
      .on('multipart_sessions')
      .columns(['app_id', 'account_id', 'id'])
      .execute();
  },
};
