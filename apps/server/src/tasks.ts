/**
 * Asynchronous requests (API overview "Asynchronous Requests and the Task API"). A task row is
 * written before the 202 leaves, so a crash after that cannot lose it. A runner claims due tasks
 * with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several instances never run one twice),
 * heartbeats while it works, and stores the finished response. A task whose lease ran out while
 * STARTED (its process died) is resumed when its operation is idempotent, and otherwise failed
 * with an explicit error — never lost, never stuck in STARTED.
 */
import { randomUUID } from 'node:crypto';
import { CloudmuxError, type Logger } from '@cloudmux/core';
import { type Kysely, sql } from 'kysely';
import { nowIso } from './store/db.js';
import type { Dialect } from './store/migrations.js';
import type { Database, TasksTable } from './store/schema.js';

/** Kloudless spells the second state `RECIEVED`; clients compare the strings. */
export type RunningStatus = 'PENDING' | 'RECIEVED' | 'STARTED';
export type TaskStatus = RunningStatus | 'SUCCESS' | 'FAILURE';

export interface TaskResult {
  status: number;
  body: unknown;
}

export interface TaskOperation {
  /** Safe to run again from the start after a crash (deletes); copies are not. */
  idempotent: boolean;
  run(
    params: Record<string, unknown>,
    task: { id: string; appId: string; accountId: number },
  ): Promise<TaskResult>;
}

export interface TaskRow {
  id: string;
  appId: string;
  accountId: number;
  kind: string;
  status: TaskStatus;
  result?: TaskResult;
}

const LEASE_MS = 30_000;
const HEARTBEAT_MS = 10_000;
const POLL_MS = 500;

function toRow(
  r: Pick<TasksTable, 'id' | 'app_id' | 'account_id' | 'kind' | 'status' | 'result' | 'result_status'>,
): TaskRow {
  return {
    id: r.id,
    appId: r.app_id,
    accountId: Number(r.account_id),
    kind: r.kind,
    status: r.status as TaskStatus,
    ...(r.result !== null && r.result_status !== null
      ? { result: { status: Number(r.result_status), body: JSON.parse(r.result) } }
      : {}),
  };
}

export class TaskRunner {
  readonly #operations = new Map<string, TaskOperation>();
  readonly #owner = `${process.pid}-${randomUUID()}`;
  readonly #running = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #ticking: Promise<void> | null = null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: Dialect,
    private readonly log: Logger,
    private readonly options: { concurrency?: number; leaseMs?: number } = {},
  ) {}

  register(kind: string, operation: TaskOperation): void {
    if (this.#operations.has(kind)) throw new Error(`task kind ${kind} registered twice`);
    this.#operations.set(kind, operation);
  }

  /** Persists a PENDING task (before the caller answers 202) and wakes the runner. */
  async enqueue(input: {
    appId: string;
    accountId: number;
    kind: string;
    params: Record<string, unknown>;
  }): Promise<TaskRow> {
    if (!this.#operations.has(input.kind)) throw new Error(`unknown task kind ${input.kind}`);
    const now = nowIso();
    const id = randomUUID();
    await this.db
      .insertInto('tasks')
      .values({
        id,
        app_id: input.appId,
        account_id: input.accountId,
        kind: input.kind,
        params: JSON.stringify(input.params),
        status: 'PENDING',
        result: null,
        result_status: null,
        attempts: 0,
        lease_owner: null,
        lease_until: null,
        created: now,
        modified: now,
      })
      .execute();
    this.kick();
    return { id, appId: input.appId, accountId: input.accountId, kind: input.kind, status: 'PENDING' };
  }

  async get(appId: string, accountId: number, id: string): Promise<TaskRow | undefined> {
    const row = await this.db
      .selectFrom('tasks')
      .select(['id', 'app_id', 'account_id', 'kind', 'status', 'result', 'result_status'])
      .where('id', '=', id)
      .where('app_id', '=', appId)
      .where('account_id', '=', accountId)
      .executeTakeFirst();
    return row ? toRow(row) : undefined;
  }

  start(): void {
    this.#stopped = false;
    this.#timer = setInterval(() => this.kick(), POLL_MS);
    this.#timer.unref();
    this.kick();
  }

  /** Stops claiming; in-flight tasks finish (their leases keep them safe if the process dies instead). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#ticking;
    await Promise.allSettled([...this.#running.values()]);
  }

  kick(): void {
    if (this.#stopped || this.#ticking) return;
    this.#ticking = this.tick()
      .catch((err: unknown) => this.log.error({ err }, 'task runner tick failed'))
      .finally(() => {
        this.#ticking = null;
      });
  }

  private async tick(): Promise<void> {
    const concurrency = this.options.concurrency ?? 2;
    while (!this.#stopped && this.#running.size < concurrency) {
      const claimed = await this.claim();
      if (!claimed) return;
      const run = this.execute(claimed).finally(() => this.#running.delete(claimed.id));
      this.#running.set(claimed.id, run);
    }
  }

  /** Claims one due task: PENDING, or any running status whose lease expired (its process died). */
  private async claim(): Promise<
    (TaskRow & { params: Record<string, unknown>; previous: TaskStatus }) | undefined
  > {
    const now = Date.now();
    const leaseUntil = now + (this.options.leaseMs ?? LEASE_MS);
    return this.db.transaction().execute(async (trx) => {
      let query = trx
        .selectFrom('tasks')
        .select(['id', 'app_id', 'account_id', 'kind', 'status', 'result', 'result_status', 'params'])
        .where((eb) =>
          eb.or([
            eb('status', '=', 'PENDING'),
            eb.and([
              eb('status', 'in', ['RECIEVED', 'STARTED']),
              eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]),
            ]),
          ]),
        )
        .orderBy('created')
        .limit(1);
      if (this.dialect === 'postgres') query = query.forUpdate().skipLocked();
      const row = await query.executeTakeFirst();
      if (!row) return undefined;
      const updated = await trx
        .updateTable('tasks')
        .set({
          status: 'RECIEVED',
          lease_owner: this.#owner,
          lease_until: leaseUntil,
          attempts: sql`attempts + 1`,
          modified: nowIso(),
        })
        .where('id', '=', row.id)
        .where('status', '=', row.status)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) return undefined;
      return {
        ...toRow(row),
        params: JSON.parse(row.params) as Record<string, unknown>,
        previous: row.status as TaskStatus,
      };
    });
  }

  private async execute(
    task: TaskRow & { params: Record<string, unknown>; previous: TaskStatus },
  ): Promise<void> {
    const operation = this.#operations.get(task.kind);
    if (!operation) {
      await this.finish(
        task.id,
        'FAILURE',
        new CloudmuxError('internal_error', `Unknown task kind ${task.kind}.`),
      );
      return;
    }
    if (task.previous === 'STARTED' && !operation.idempotent) {
      // It was running when its process died: effects may be partial, so do not run it twice.
      await this.finish(
        task.id,
        'FAILURE',
        new CloudmuxError(
          'internal_error',
          'The task was interrupted (its server stopped) before it finished; it may have partly completed. Check the target and retry the request.',
        ),
      );
      return;
    }
    await this.db
      .updateTable('tasks')
      .set({ status: 'STARTED', modified: nowIso() })
      .where('id', '=', task.id)
      .where('lease_owner', '=', this.#owner)
      .execute();
    const heartbeat = setInterval(
      () => {
        void this.db
          .updateTable('tasks')
          .set({ lease_until: Date.now() + (this.options.leaseMs ?? LEASE_MS) })
          .where('id', '=', task.id)
          .where('lease_owner', '=', this.#owner)
          .execute()
          .catch((err: unknown) => this.log.warn({ err, task: task.id }, 'task heartbeat failed'));
      },
      Math.min(HEARTBEAT_MS, (this.options.leaseMs ?? LEASE_MS) / 3),
    );
    heartbeat.unref();
    try {
      const result = await operation.run(task.params, {
        id: task.id,
        appId: task.appId,
        accountId: task.accountId,
      });
      await this.finish(task.id, 'SUCCESS', result);
    } catch (err) {
      const error =
        err instanceof CloudmuxError ? err : new CloudmuxError('internal_error', undefined, { cause: err });
      if (error.status >= 500) this.log.error({ err, task: task.id }, 'task failed');
      await this.finish(task.id, 'FAILURE', error);
    } finally {
      clearInterval(heartbeat);
    }
  }

  private async finish(
    id: string,
    status: 'SUCCESS' | 'FAILURE',
    outcome: TaskResult | CloudmuxError,
  ): Promise<void> {
    const result: TaskResult =
      outcome instanceof CloudmuxError ? { status: outcome.status, body: outcome.toEnvelope(id) } : outcome;
    await this.db
      .updateTable('tasks')
      .set({
        status,
        result: JSON.stringify(result.body),
        result_status: result.status,
        lease_owner: null,
        lease_until: null,
        modified: nowIso(),
      })
      .where('id', '=', id)
      .execute();
  }
}

export function renderTask(task: TaskRow) {
  return {
    id: task.id,
    status: task.status as RunningStatus,
    account: task.accountId,
    api: 'core' as const,
    type: 'task' as const,
  };
}
