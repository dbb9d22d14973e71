/**
 * Two task runners ("two server instances") on one database: every task runs exactly once
 * (PostgreSQL claims with FOR UPDATE SKIP LOCKED; SQLite has a single writer).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { silentLogger } from '@cloudmux/core';
import { makeTempDir } from '@cloudmux/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { dropPgSchema, openStore, type StoreHandle } from '../src/store/db.js';
import { TaskRunner } from '../src/tasks.js';
import { PG_URL, STORE_KINDS } from './harness.js';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe.each(STORE_KINDS)('task runners sharing one %s store', (kind) => {
  it('run 60 tasks exactly once between them', async () => {
    const dir = await makeTempDir();
    const schema = `cm_tasks_${randomBytes(4).toString('hex')}`;
    const open = () =>
      kind === 'sqlite'
        ? openStore({ sqlitePath: join(dir.path, 'tasks.db') })
        : openStore({ databaseUrl: PG_URL, pgSchema: schema });
    const a: StoreHandle = await open();
    const b: StoreHandle = await open();
    cleanups.push(async () => {
      await a.close();
      await b.close();
      if (kind === 'postgres') await dropPgSchema(PG_URL, schema);
      await dir.remove();
    });
    const now = new Date().toISOString();
    await a.db
      .insertInto('apps')
      .values({ id: 'app', name: 'a', settings: '{}', webhook_secret_enc: null, created: now, modified: now })
      .execute();
    const account = await a.db
      .insertInto('accounts')
      .values({
        app_id: 'app',
        service: 'local',
        account: 'x',
        active: 1,
        admin: 0,
        inactive_reason: null,
        effective_scope: '',
        custom_properties: '{}',
        token_expiry: null,
        refresh_token_expiry: null,
        credentials_enc: 'x',
        credentials_version: 1,
        refresh_lease_owner: null,
        refresh_lease_until: null,
        created: now,
        modified: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const runs = new Map<string, string[]>();
    const runnerFor = (handle: StoreHandle, name: string) => {
      const runner = new TaskRunner(handle.db, handle.dialect, silentLogger, { concurrency: 3 });
      runner.register('test.record', {
        idempotent: false,
        run: async (params) => {
          const key = String(params.n);
          runs.set(key, [...(runs.get(key) ?? []), name]);
          await new Promise((r) => setTimeout(r, 5));
          return { status: 200, body: { n: params.n, by: name } };
        },
      });
      return runner;
    };
    const one = runnerFor(a, 'one');
    const two = runnerFor(b, 'two');
    const ids: string[] = [];
    for (let n = 0; n < 60; n++)
      ids.push(
        (
          await one.enqueue({
            appId: 'app',
            accountId: Number(account.id),
            kind: 'test.record',
            params: { n },
          })
        ).id,
      );
    one.start();
    two.start();
    for (let i = 0; i < 600; i++) {
      const done = await a.db
        .selectFrom('tasks')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('status', '=', 'SUCCESS')
        .executeTakeFirstOrThrow();
      if (Number(done.n) === 60) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await one.stop();
    await two.stop();
    expect(runs.size).toBe(60);
    expect([...runs.values()].filter((by) => by.length !== 1)).toEqual([]);
    const byRunner = [...runs.values()].flat();
    if (kind === 'postgres') {
      // Both instances took part (SKIP LOCKED lets them claim side by side).
      expect(byRunner).toContain('one');
      expect(byRunner).toContain('two');
    }
    const task = await two.get('app', Number(account.id), ids[7]!);
    expect(task?.result?.body).toMatchObject({ n: 7 });
  });
});
