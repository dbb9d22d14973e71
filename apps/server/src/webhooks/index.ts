/**
 * Webhooks: registration (Management API and CLI), the per-app signing key, and the delivery
 * worker. `attachWebhooks(deps)` builds the one worker of a server; routes reach it through
 * `webhooksFor(deps)`.
 */
import type { Clock, Keyring, NetworkGuard } from '@cloudmux/core';
import { createNetworkGuard } from '@cloudmux/core';
import type { Kysely } from 'kysely';
import type { ServerDeps } from '../http/deps.js';
import type { Database } from '../store/schema.js';
import { validateWebhookUrl, type WebhookRow, WebhookStore } from './store.js';
import { WebhookWorker, type WebhookWorkerOptions } from './worker.js';

export { encodeForm, signBody, webhookFields } from './payload.js';
export {
  MAX_WEBHOOKS_PER_APP,
  reencryptWebhookSecrets,
  SIGNING_KEY_PREFIX,
  validateWebhookUrl,
  type WebhookRow,
  WebhookStore,
} from './store.js';
export {
  DEFAULT_RETRY,
  OUTBOX_DELIVERED,
  OUTBOX_GAVE_UP,
  OUTBOX_PENDING,
  type RetryPolicy,
  retryDelayMs,
  WebhookWorker,
} from './worker.js';

const workers = new WeakMap<ServerDeps, WebhookWorker>();

/** Creates the server's webhook worker (subscribed to the journal at once; `start()` begins delivery). */
export function attachWebhooks(
  deps: ServerDeps,
  options: { clock?: Clock } & Partial<
    Pick<WebhookWorkerOptions, 'random' | 'retry' | 'timeoutMs' | 'leaseMs' | 'pollMs'>
  > = {},
): WebhookWorker {
  const existing = workers.get(deps);
  if (existing) return existing;
  const worker = new WebhookWorker({
    db: deps.storeHandle.db,
    keys: deps.keys.keyring,
    ids: deps.ids,
    journal: deps.journal,
    log: deps.log,
    ...(deps.config.allowedNetworks ? { allowedNetworks: deps.config.allowedNetworks } : {}),
    ...options,
  });
  workers.set(deps, worker);
  return worker;
}

/** The server's worker (created with the system clock if `attachWebhooks` was not called first). */
export function webhooksFor(deps: ServerDeps): WebhookWorker {
  return workers.get(deps) ?? attachWebhooks(deps);
}

// ── For the CLI (`cloudmux webhook add|list|remove|key`) ───────────────────────────────────────

export interface WebhookAdmin {
  /** Validates and registers `url`; the signing key is created with the app's first webhook. */
  add(appId: string, url: string): Promise<{ webhook: WebhookRow; signingKey: string }>;
  list(appId: string): Promise<WebhookRow[]>;
  /** True when a webhook of this app with that id existed. */
  remove(appId: string, id: number): Promise<boolean>;
  signingKey(appId: string): Promise<string>;
  rotateSigningKey(appId: string): Promise<string>;
  /** Releases the guard's sockets. */
  close(): void;
}

/**
 * Webhook administration over an open store, for commands that run without a server: the same
 * validation (and network policy: pass `CLOUDMUX_ALLOWED_NETWORKS`) as the Management API.
 */
export function webhookAdmin(
  db: Kysely<Database>,
  keyring: Keyring,
  options: { allowedNetworks?: readonly string[] } = {},
): WebhookAdmin {
  const store = new WebhookStore(db, keyring);
  const guard: NetworkGuard = createNetworkGuard({
    policy: {
      mode: 'self_hosted',
      ...(options.allowedNetworks ? { allowedNetworks: options.allowedNetworks } : {}),
    },
  });
  return {
    async add(appId, url) {
      const webhook = await store.create(appId, await validateWebhookUrl(url, guard));
      return { webhook, signingKey: await store.signingKey(appId) };
    },
    list: async (appId) => store.list(appId, 0, 10_000),
    remove: (appId, id) => store.remove(appId, id),
    signingKey: (appId) => store.signingKey(appId),
    rotateSigningKey: (appId) => store.rotateSigningKey(appId),
    close: () => guard.destroy(),
  };
}
