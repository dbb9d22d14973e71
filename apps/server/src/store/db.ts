/**
 * Opens the store: SQLite in the data dir by default (better-sqlite3), PostgreSQL when
 * `DATABASE_URL` is set. Migrations run on open.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { type Dialect, migrationProvider } from './migrations.js';
import type { Database as Schema } from './schema.js';

export interface StoreHandle {
  db: Kysely<Schema>;
  dialect: Dialect;
  close(): Promise<void>;
  /** True once every migration is applied (`/ready`). */
  migrated(): Promise<boolean>;
}

export interface OpenStoreOptions {
  /** SQLite file path (used when `databaseUrl` is absent). */
  sqlitePath?: string;
  databaseUrl?: string;
  /** PostgreSQL schema to use (created if missing): tests use a throwaway one per run. */
  pgSchema?: string;
}

export async function openStore(options: OpenStoreOptions): Promise<StoreHandle> {
  let db: Kysely<Schema>;
  let dialect: Dialect;
  if (options.databaseUrl) {
    dialect = 'postgres';
    const schema = options.pgSchema;
    if (schema && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema))
      throw new Error(`invalid PostgreSQL schema name: ${schema}`);
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: 10,
      ...(schema ? { options: `-c search_path=${schema}` } : {}),
    });
    // bigint columns come back as strings by default; our values fit in a double.
    pg.types.setTypeParser(20, (v: string) => Number(v));
    if (schema) {
      const client = await pool.connect();
      try {
        await client.query(`create schema if not exists ${schema}`);
      } finally {
        client.release();
      }
    }
    db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  } else {
    dialect = 'sqlite';
    const path = options.sqlitePath ?? ':memory:';
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const sqlite = new Database(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('synchronous = NORMAL');
    db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: sqlite }) });
  }
  // Name the schema explicitly: Kysely's existence check otherwise sees migration tables of other
  // schemas in the same database (several instances or test runs side by side) and skips creating ours.
  const migrationTableSchema = dialect === 'postgres' ? (options.pgSchema ?? 'public') : undefined;
  const migrator = new Migrator({
    db,
    provider: migrationProvider(dialect),
    migrationTableName: 'cloudmux_migrations',
    migrationLockTableName: 'cloudmux_migrations_lock',
    ...(migrationTableSchema ? { migrationTableSchema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(
      `database migration ${failed?.migrationName ?? ''} failed: ${(error as Error).message ?? String(error)}`,
    );
  }
  return {
    db,
    dialect,
    close: () => db.destroy(),
    migrated: async () => {
      await sql`select 1`.execute(db);
      const all = await migrator.getMigrations();
      return all.every((m) => m.executedAt !== undefined);
    },
  };
}

/** Drops a throwaway PostgreSQL schema (tests). */
export async function dropPgSchema(databaseUrl: string, schema: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid schema ${schema}`);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`drop schema if exists ${schema} cascade`);
  } finally {
    await client.end();
  }
}

export const nowIso = (): string => new Date().toISOString();
