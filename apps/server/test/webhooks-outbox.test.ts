/**
 * The outbox row of a webhook is written in the same transaction as its event, and the worker's
 * loop stops whenever stop() comes.
 */
import { ManualClock } from '@cloudmux/core';
import type {
  KyselyPlugin,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryResult,
  RootOperationNode,
  UnknownRow,
} from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookWorker } from '../src/webhooks/index.js';
import { STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

describe.each(STORE_KINDS)('webhook outbox on %s', (store) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store });
  });
  afterAll(async () => t?.close());

  it('an event and its outbox rows are committed together', async () => {
    const app = t.apps[0]!;
    const res = await t.call(`/v1/applications/${app.appId}/webhooks`, {
      method: 'POST',
      json: { url: 'http://127.0.0.1:9/hook' },
    });
    expect(res.status).toBe(201);
    await upload(t, t.base, 'outboxed.txt', 'o');
    const { db } = t.server.deps.storeHandle;
    // Right after the request returns — no waiting for a background write.
    const event = await db
      .selectFrom('events')
      .select(['id'])
      .where('account_id', '=', app.accountId)
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    const rows = await db
      .selectFrom('webhook_outbox')
      .select(['body'])
      .where('app_id', '=', app.appId)
      .execute();
    expect(rows.some((r) => r.body.includes(`event_id=${event.id}`))).toBe(true);
  });
});

/**
 * Holds the result of the worker's idle-wait query (`min(next_attempt_at)`) until released, so a
 * test can call stop() exactly while the loop is inside it.
 */
class HoldIdleWaitQuery implements KyselyPlugin {
  readonly #queries = new Set<unknown>();
  #gate: Promise<void> | null = null;
  #release: () => void = () => undefined;
  #reached: () => void = () => undefined;
  readonly reached = new Promise<void>((resolve) => {
    this.#reached = resolve;
  });

  constructor() {
    this.#gate = new Promise<void>((resolve) => {
      this.#release = resolve;
    });
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    if (this.#gate && JSON.stringify(args.node).includes('"func":"min"')) this.#queries.add(args.queryId);
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    if (this.#gate && this.#queries.has(args.queryId)) {
      const gate = this.#gate;
      this.#gate = null;
      this.#reached();
      await gate;
    }
    return args.result;
  }

  release(): void {
    this.#release();
  }
}

describe.each(STORE_KINDS)('webhook worker on %s', (store) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store });
  });
  afterAll(async () => t?.close());

  it('stop() during the idle-wait query returns instead of sleeping forever', async () => {
    const { deps } = t.server;
    const hold = new HoldIdleWaitQuery();
    const worker = new WebhookWorker({
      db: deps.storeHandle.db.withPlugin(hold),
      keys: deps.keys.keyring,
      ids: deps.ids,
      journal: deps.journal,
      log: deps.log,
      // Never advanced: a sleep the stop signal does not reach would never end.
      clock: new ManualClock(Date.now()),
    });
    worker.start();
    await hold.reached;
    const stopped = worker.stop().then(() => 'stopped' as const);
    hold.release();
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<'still sleeping'>((resolve) => {
      timer = setTimeout(() => resolve('still sleeping'), 10_000);
    });
    try {
      expect(await Promise.race([stopped, stuck])).toBe('stopped');
    } finally {
      clearTimeout(timer);
    }
  });
});
