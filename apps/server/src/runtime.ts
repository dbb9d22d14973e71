/**
 * Connector instances per connected account. An instance is created from the account's decrypted
 * credentials on first use, reused while the credentials version is unchanged, disposed after it
 * has been idle for a while, and disposed at once when the account is deleted.
 */
import { join } from 'node:path';
import {
  type AnyConnectorDefinition,
  CloudmuxError,
  type ConnectorContext,
  type ConnectorInstance,
  type CreateConnectorContextOptions,
  createConnectorContext,
  instantiateConnector,
  type Logger,
} from '@cloudmux/core';
import type { ServerConfig } from './config.js';
import type { ConnectorRegistry } from './connectors.js';
import { recordUpstreamCall } from './ops/metrics.js';
import { SqlCredentialStore } from './store/credentials.js';
import type { AccountRow, Store } from './store/store.js';

export interface AccountRuntime {
  definition: AnyConnectorDefinition;
  instance: ConnectorInstance<never> & Record<string, unknown>;
  /** The connector's context: its HTTP client serves pass-through requests. */
  ctx: ConnectorContext<unknown>;
}

interface CacheEntry {
  version: number;
  key: string;
  runtime: Promise<AccountRuntime>;
  lastUsed: number;
}

export interface RequestScope {
  rawHeaders?: Record<string, string>;
  asUser?: string;
}

const IDLE_MS = 5 * 60_000;

export class ConnectorRuntime {
  readonly #cache = new Map<number, CacheEntry>();
  readonly #timer: NodeJS.Timeout;
  readonly #credentialStore: SqlCredentialStore;

  constructor(
    private readonly registry: ConnectorRegistry,
    private readonly store: Store,
    private readonly config: ServerConfig,
    private readonly log: Logger,
    /** Tests inject a guard with a fake resolver or a connect hook per connector. */
    private readonly contextOverrides?: (
      definition: AnyConnectorDefinition,
    ) => Partial<CreateConnectorContextOptions> | undefined,
  ) {
    this.#credentialStore = new SqlCredentialStore(store.db, store);
    this.#timer = setInterval(() => void this.sweep(), 30_000);
    this.#timer.unref();
  }

  definitionFor(service: string): AnyConnectorDefinition {
    const definition = this.registry.get(service);
    if (!definition)
      throw new CloudmuxError('not_implemented', `The service ${service} is not installed on this server.`);
    return definition;
  }

  /** Builds an instance from credentials that are not stored yet (`?validate=true`, connect forms). */
  async transient(
    service: string,
    credentials: unknown,
  ): Promise<{ runtime: AccountRuntime; dispose: () => Promise<void> }> {
    const definition = this.definitionFor(service);
    const { instance, ctx } = await this.instantiate(definition, 0, credentials, {});
    return { runtime: { definition, instance, ctx }, dispose: async () => instance.dispose?.() };
  }

  async forAccount(account: AccountRow, scope: RequestScope = {}): Promise<AccountRuntime> {
    const definition = this.definitionFor(account.service);
    if (!account.active) {
      throw new CloudmuxError(
        'service_unauthorized',
        `The account is inactive${account.inactive_reason ? `: ${account.inactive_reason}` : ''}.`,
      );
    }
    if (scope.asUser !== undefined && !definition.impersonation) {
      throw new CloudmuxError(
        'not_implemented',
        `X-Kloudless-As-User is not supported by ${definition.service}.`,
      );
    }
    const id = Number(account.id);
    const key = JSON.stringify([scope.rawHeaders ?? {}, scope.asUser ?? null]);
    const scoped = key !== '[{},null]';
    const existing = this.#cache.get(id);
    // OAuth accounts read (and refresh) their tokens from the store on every request: a version bump
    // from a refresh does not need a new instance.
    const refreshable = definition.auth.type === 'oauth2';
    if (!scoped && existing && (refreshable || existing.version === account.credentials_version)) {
      existing.lastUsed = Date.now();
      return existing.runtime;
    }
    const runtime = (async () => {
      const credentials = this.store.decryptCredentials(account);
      const { instance, ctx } = await this.instantiate(definition, id, credentials, scope);
      return { definition, instance, ctx };
    })();
    if (!scoped) {
      if (existing) void this.disposeEntry(existing);
      const entry: CacheEntry = { version: account.credentials_version, key, runtime, lastUsed: Date.now() };
      this.#cache.set(id, entry);
      runtime.catch(() => {
        if (this.#cache.get(id) === entry) this.#cache.delete(id);
      });
    }
    return runtime;
  }

  private async instantiate(
    definition: AnyConnectorDefinition,
    accountId: number,
    credentials: unknown,
    scope: RequestScope,
  ): Promise<Pick<AccountRuntime, 'instance' | 'ctx'>> {
    const parsed = definition.credentials.safeParse(credentials);
    if (!parsed.success) {
      throw new CloudmuxError(
        'invalid_parameters',
        `Invalid credentials for ${definition.service}: ${parsed.error.issues.map((i: { path: PropertyKey[]; message: string }) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
      );
    }
    const oauthClient = this.config.oauthClients[definition.service];
    const ctx = createConnectorContext({
      definition,
      accountId: String(accountId),
      credentials: parsed.data,
      // Stored accounts of OAuth services refresh through the SQL store (lease + version CAS).
      ...(definition.auth.type === 'oauth2' && accountId > 0
        ? { credentialStore: this.#credentialStore }
        : {}),
      ...(oauthClient ? { oauthClient } : {}),
      onUpstreamAttempt: (attempt) => recordUpstreamCall(attempt.service, attempt.status, attempt.seconds),
      log: this.log,
      ...(scope.rawHeaders ? { rawHeaders: scope.rawHeaders } : {}),
      ...(scope.asUser !== undefined ? { asUser: scope.asUser } : {}),
      scratchDir: join(this.config.dataDir, 'tmp'),
      ...this.contextOverrides?.(definition),
    });
    return { instance: (await instantiateConnector(definition, ctx)) as AccountRuntime['instance'], ctx };
  }

  /** Drops (and disposes) the cached instance, e.g. after the account was deleted or its credentials changed. */
  async evict(accountId: number): Promise<void> {
    const entry = this.#cache.get(accountId);
    if (!entry) return;
    this.#cache.delete(accountId);
    await this.disposeEntry(entry);
  }

  private async disposeEntry(entry: CacheEntry): Promise<void> {
    try {
      const runtime = await entry.runtime;
      await runtime.instance.dispose?.();
    } catch (err) {
      this.log.warn({ err }, 'disposing a connector instance failed');
    }
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const [id, entry] of this.#cache) {
      if (now - entry.lastUsed > IDLE_MS) {
        this.#cache.delete(id);
        await this.disposeEntry(entry);
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    const entries = [...this.#cache.values()];
    this.#cache.clear();
    await Promise.all(entries.map((e) => this.disposeEntry(e)));
  }
}
