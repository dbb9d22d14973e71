/**
 * Webhook delivery: the journal listener writes one `webhook_outbox` row per event and webhook of
 * the event's app, and the worker delivers due rows. At-least-once:
 *
 * - a row is claimed by a compare-and-swap that counts the attempt and pushes `next_attempt_at` a
 *   lease ahead, so two instances never send the same row at once and a process that dies
 *   mid-attempt leaves a row that becomes due again when the lease runs out (it is re-sent);
 * - `delivered` is set only after the receiver answered 2xx with the app id in its body;
 * - failures are retried with full-jitter exponential backoff (a Retry-After on 429/503 is the
 *   floor of the wait) until 24 hours or 40 attempts have passed; the row then keeps its last error.
 *
 * `delivered`: 0 pending, 1 delivered, 2 given up. Time comes from an injectable clock.
 */
import {
  type Clock,
  createNetworkGuard,
  type IdCodec,
  type Keyring,
  type Logger,
  type NetworkGuard,
  systemClock,
} from '@cloudmux/core';
import type { Kysely } from 'kysely';
import type { EventJournal, JournalEvent } from '../journal.js';
import type { Database } from '../store/schema.js';
import { deliver } from './delivery.js';
import { encodeForm, signBody, webhookFields } from './payload.js';
import { WebhookStore } from './store.js';

export const OUTBOX_PENDING = 0;
export const OUTBOX_DELIVERED = 1;
export const OUTBOX_GAVE_UP = 2;

export interface RetryPolicy {
  baseDelayMs: number;
  maxDelayMs: number;
  /** Smallest wait between attempts, so a zero jitter never re-sends in the same instant. */
  minDelayMs: number;
  maxAttempts: number;
  /** Rows older than this are given up after their next failure. */
  maxAgeMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  baseDelayMs: 10_000,
  maxDelayMs: 60 * 60_000,
  minDelayMs: 1_000,
  maxAttempts: 40,
  maxAgeMs: 24 * 60 * 60_000,
};

export interface WebhookWorkerOptions {
  db: Kysely<Database>;
  keys: Keyring;
  ids: IdCodec;
  journal: EventJournal;
  log: Logger;
  /** `CLOUDMUX_ALLOWED_NETWORKS`: receivers must lie inside these networks when set. */
  allowedNetworks?: readonly string[];
  clock?: Clock;
  random?: () => number;
  retry?: Partial<RetryPolicy>;
  /** How long a claimed row stays invisible to other workers (must exceed the attempt timeout). */
  leaseMs?: number;
  timeoutMs?: number;
  /** Longest idle wait between polls (other instances may have enqueued rows). */
  pollMs?: number;
  /** Rows sent in parallel per batch. */
  concurrency?: number;
  guard?: NetworkGuard;
}

/** Wait before the attempt after `attempts` failed ones (full jitter, AWS architecture blog "Exponential Backoff And Jitter"). */
export function retryDelayMs(
  policy: RetryPolicy,
  attempts: number,
  random: () => number,
  retryAfterSeconds?: number,
): number {
  const ceiling = Math.min(
    policy.maxDelayMs,
    policy.baseDelayMs * 2 ** Math.max(0, Math.min(attempts - 1, 30)),
  );
  const jitter = Math.floor(random() * ceiling);
  const floor = retryAfterSeconds === undefined ? 0 : Math.min(retryAfterSeconds * 1000, policy.maxAgeMs);
  return Math.max(policy.minDelayMs, jitter, floor);
}

interface ClaimedRow {
  id: number;
  appId: string;
  url: string;
  body: string;
  attempts: number;
  createdMs: number;
}

const PRUNE_EVERY_MS = 60 * 60_000;
const DELIVERED_RETENTION_MS = 24 * 60 * 60_000;
const GAVE_UP_RETENTION_MS = 7 * 24 * 60 * 60_000;

export class WebhookWorker {
  readonly store: WebhookStore;
  readonly guard: NetworkGuard;
  readonly retry: RetryPolicy;
  readonly #db: Kysely<Database>;
  readonly #ids: IdCodec;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #leaseMs: number;
  readonly #timeoutMs: number;
  readonly #pollMs: number;
  readonly #concurrency: number;
  readonly #unsubscribe: () => void;
  #chain: Promise<void> = Promise.resolve();
  #stop: AbortController | null = null;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  /** Set by every enqueue: the loop runs again instead of sleeping. */
  #kicked = false;
  #lastBatchFailed = false;
  #lastPrune = 0;
  #closed = false;

  constructor(options: WebhookWorkerOptions) {
    this.#db = options.db;
    this.#ids = options.ids;
    this.#log = options.log;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#timeoutMs = options.timeoutMs ?? 15_000;
    this.#leaseMs = Math.max(options.leaseMs ?? 120_000, this.#timeoutMs * 2);
    this.#pollMs = options.pollMs ?? 5_000;
    this.#concurrency = options.concurrency ?? 8;
    this.guard =
      options.guard ??
      createNetworkGuard({
        policy: {
          mode: 'self_hosted',
          ...(options.allowedNetworks ? { allowedNetworks: options.allowedNetworks } : {}),
        },
        agentOptions: { keepAlive: false },
      });
    this.store = new WebhookStore(options.db, options.keys, () => this.#clock.now());
    // Outbox rows are written in the event's own transaction; the listener only wakes the loop.
    const removeWriter = options.journal.addTransactionalWriter(async (db, event) => {
      if (!this.#closed) await this.enqueue(event, db, { rethrow: true });
    });
    const unsubscribe = options.journal.subscribe(() => {
      if (this.#closed) return;
      this.#kicked = true;
      this.#wake?.();
    });
    this.#unsubscribe = () => {
      removeWriter();
      unsubscribe();
    };
  }

  /** Writes one outbox row per webhook of the event's app (nothing when the app has none). */
  async enqueue(
    event: JournalEvent,
    db: Kysely<Database> = this.#db,
    options: { rethrow?: boolean } = {},
  ): Promise<number> {
    try {
      const hooks = await db
        .selectFrom('webhooks')
        .innerJoin('accounts', 'accounts.app_id', 'webhooks.app_id')
        .select(['webhooks.id as webhook_id', 'webhooks.app_id as app_id', 'accounts.service as service'])
        .where('accounts.id', '=', event.accountId)
        .execute();
      if (hooks.length === 0) return 0;
      const body = encodeForm(webhookFields(event, hooks[0]!.service, this.#ids));
      const now = this.#clock.now();
      const created = new Date(now).toISOString();
      await db
        .insertInto('webhook_outbox')
        .values(
          hooks.map((h) => ({
            app_id: h.app_id,
            webhook_id: Number(h.webhook_id),
            body,
            attempts: 0,
            next_attempt_at: now,
            last_error: null,
            delivered: OUTBOX_PENDING,
            created,
          })),
        )
        .execute();
      return hooks.length;
    } catch (err) {
      this.#log.error({ err, event: event.id, account: event.accountId }, 'webhook outbox write failed');
      if (options.rethrow) throw err;
      return 0;
    }
  }

  /** Starts the delivery loop (rows left over by a previous process are picked up at once). */
  start(): void {
    if (this.#loop || this.#closed) return;
    const stop = new AbortController();
    this.#stop = stop;
    this.#loop = this.#run(stop.signal);
  }

  /** Stops the loop, aborts attempts in flight (their rows are released for the next start) and waits. */
  async stop(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    this.#stop?.abort();
    this.#wake?.();
    await this.#loop;
    await this.settled();
    this.guard.destroy();
  }

  /** Resolves once no delivery batch is in progress (outbox rows are written with their events). */
  async settled(): Promise<void> {
    await this.#chain;
  }

  /**
   * Delivers every row due now (after any batch already running). The loop calls it; tests call
   * it after moving their clock.
   */
  runDue(): Promise<void> {
    this.#chain = this.#chain
      .then(() => this.#deliverDue(this.#stop?.signal))
      .then(
        () => {
          this.#lastBatchFailed = false;
        },
        (err: unknown) => {
          this.#lastBatchFailed = true;
          this.#log.error({ err }, 'webhook delivery batch failed');
        },
      );
    return this.#chain;
  }

  async #run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.#kicked = false;
      await this.runDue();
      if (signal.aborted) break;
      // A failing store is not hammered: the next try waits a full poll interval.
      const wait = this.#lastBatchFailed ? this.#pollMs : await this.#idleWait();
      // No await between these checks and arming #wake and the abort listener, so neither an
      // enqueue nor a stop() that came during the query above can slip in unnoticed (a listener
      // added to an already aborted signal never fires: the loop would sleep forever).
      if (signal.aborted) break;
      if (this.#kicked || wait <= 0) continue;
      const sleeper = new AbortController();
      const onStop = () => sleeper.abort();
      signal.addEventListener('abort', onStop, { once: true });
      await Promise.race([
        this.#clock.sleep(wait, sleeper.signal).catch(() => undefined),
        new Promise<void>((resolve) => {
          this.#wake = resolve;
        }),
      ]);
      this.#wake = null;
      signal.removeEventListener('abort', onStop);
      sleeper.abort();
    }
  }

  /** Until the next row is due, at most `pollMs`. */
  async #idleWait(): Promise<number> {
    try {
      const row = await this.#db
        .selectFrom('webhook_outbox')
        .select((eb) => eb.fn.min('next_attempt_at').as('next'))
        .where('delivered', '=', OUTBOX_PENDING)
        .executeTakeFirst();
      const next = row?.next === null || row?.next === undefined ? undefined : Number(row.next);
      if (next === undefined) return this.#pollMs;
      return Math.min(this.#pollMs, Math.max(0, next - this.#clock.now()));
    } catch {
      return this.#pollMs;
    }
  }

  async #deliverDue(signal: AbortSignal | undefined): Promise<void> {
    for (;;) {
      if (signal?.aborted) return;
      const batch = await this.#claimBatch();
      if (batch.length === 0) break;
      await Promise.all(batch.map((row) => this.#attempt(row, signal)));
    }
    await this.#prune();
  }

  async #claimBatch(): Promise<ClaimedRow[]> {
    const now = this.#clock.now();
    const due = await this.#db
      .selectFrom('webhook_outbox')
      .innerJoin('webhooks', 'webhooks.id', 'webhook_outbox.webhook_id')
      .select([
        'webhook_outbox.id as id',
        'webhook_outbox.app_id as app_id',
        'webhooks.url as url',
        'webhook_outbox.body as body',
        'webhook_outbox.attempts as attempts',
        'webhook_outbox.next_attempt_at as next_attempt_at',
        'webhook_outbox.created as created',
      ])
      .where('webhook_outbox.delivered', '=', OUTBOX_PENDING)
      .where('webhook_outbox.next_attempt_at', '<=', now)
      .orderBy('webhook_outbox.next_attempt_at')
      .orderBy('webhook_outbox.id')
      .limit(this.#concurrency)
      .execute();
    const claimed: ClaimedRow[] = [];
    for (const row of due) {
      const attempts = Number(row.attempts);
      // Compare-and-swap on (attempts, next_attempt_at): only one worker wins each claim.
      const result = await this.#db
        .updateTable('webhook_outbox')
        .set({ attempts: attempts + 1, next_attempt_at: now + this.#leaseMs })
        .where('id', '=', row.id)
        .where('delivered', '=', OUTBOX_PENDING)
        .where('attempts', '=', attempts)
        .where('next_attempt_at', '=', Number(row.next_attempt_at))
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) !== 1) continue;
      claimed.push({
        id: Number(row.id),
        appId: row.app_id,
        url: row.url,
        body: row.body,
        attempts: attempts + 1,
        createdMs: Date.parse(row.created),
      });
    }
    return claimed;
  }

  async #attempt(row: ClaimedRow, signal: AbortSignal | undefined): Promise<void> {
    let outcome: Awaited<ReturnType<typeof deliver>>;
    try {
      // Signed at send time: after a rotation, retries carry the new key's signature.
      const key = await this.store.signingKey(row.appId);
      outcome = await deliver(
        this.guard,
        {
          url: row.url,
          body: row.body,
          signature: signBody(row.body, key),
          appId: row.appId,
          deliveryId: row.id,
          timeoutMs: this.#timeoutMs,
          ...(signal ? { signal } : {}),
        },
        () => this.#clock.now(),
      );
    } catch (err) {
      outcome = { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
    // Failure updates apply only while the row is still this attempt's (not re-claimed meanwhile).
    const mine = (set: { next_attempt_at?: number; last_error: string; delivered?: number }) =>
      this.#db
        .updateTable('webhook_outbox')
        .set(set)
        .where('id', '=', row.id)
        .where('delivered', '=', OUTBOX_PENDING)
        .where('attempts', '=', row.attempts)
        .execute();
    if (outcome.ok) {
      // Unconditional: even if another worker re-claimed the row meanwhile, it was delivered.
      await this.#db
        .updateTable('webhook_outbox')
        .set({ delivered: OUTBOX_DELIVERED, last_error: null, next_attempt_at: this.#clock.now() })
        .where('id', '=', row.id)
        .execute();
      return;
    }
    const now = this.#clock.now();
    if (outcome.aborted) {
      // Shutdown, not the receiver's fault: due again at the next start, the attempt already counted.
      await mine({ next_attempt_at: now, last_error: outcome.error });
      return;
    }
    const expired = now - row.createdMs >= this.retry.maxAgeMs;
    if (row.attempts >= this.retry.maxAttempts || expired) {
      const error = `gave up after ${row.attempts} attempts: ${outcome.error}`.slice(0, 1000);
      await mine({ delivered: OUTBOX_GAVE_UP, last_error: error });
      this.#log.warn(
        { delivery: row.id, app: row.appId, attempts: row.attempts },
        'webhook delivery given up',
      );
      return;
    }
    const delay = retryDelayMs(this.retry, row.attempts, this.#random, outcome.retryAfter);
    await mine({ next_attempt_at: now + delay, last_error: outcome.error.slice(0, 1000) });
    this.#log.info(
      { delivery: row.id, app: row.appId, attempts: row.attempts, retryInMs: delay, status: outcome.status },
      'webhook delivery failed',
    );
  }

  async #prune(): Promise<void> {
    const now = this.#clock.now();
    if (now - this.#lastPrune < PRUNE_EVERY_MS) return;
    this.#lastPrune = now;
    const iso = (ms: number) => new Date(ms).toISOString();
    await this.#db
      .deleteFrom('webhook_outbox')
      .where((eb) =>
        eb.or([
          eb.and([
            eb('delivered', '=', OUTBOX_DELIVERED),
            eb('created', '<', iso(now - DELIVERED_RETENTION_MS)),
          ]),
          eb.and([eb('delivered', '=', OUTBOX_GAVE_UP), eb('created', '<', iso(now - GAVE_UP_RETENTION_MS))]),
        ]),
      )
      .execute();
  }
}
