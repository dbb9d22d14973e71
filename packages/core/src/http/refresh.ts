/**
 * Token refresh that never spends a single-use refresh token twice:
 * 1. in process, one refresh per account at a time (callers join the in-flight promise);
 * 2. across processes, a lease in the `CredentialStore`: only the holder calls the token endpoint,
 *    the others poll (through the clock) and re-read;
 * 3. the holder re-reads after taking the lease and commits with a compare-and-swap on the version;
 * 4. `invalid_grant` → re-read once: a changed refresh token means we lost a race, the same one
 *    means the grant is dead and the account is marked inactive.
 */
import { randomUUID } from 'node:crypto';
import { type Logger, silentLogger } from '../connector.js';
import { CloudmuxError } from '../errors.js';
import { type Clock, systemClock } from './clock.js';
import {
  type CredentialRecord,
  type CredentialStore,
  loadActiveRecord,
  type OAuthCredentialFields,
} from './credentials.js';
import { isInvalidGrant, mergeTokenFields } from './oauth.js';

/** Calls the token endpoint with a refresh token; returns the parsed response fields. */
export type RefreshExchange = (refreshToken: string) => Promise<OAuthCredentialFields>;

export interface TokenRefresherOptions {
  store: CredentialStore;
  clock?: Clock;
  /** Refresh this long before `expires_at` (default 60 s). */
  skewMs?: number;
  /** Lease lifetime; longer than a token endpoint call can take (default 30 s). */
  leaseTtlMs?: number;
  /** How often a process waiting on another's lease re-reads the store (default 250 ms). */
  pollIntervalMs?: number;
  /** Give up waiting for another process after this long (default leaseTtlMs + 5 s). */
  maxWaitMs?: number;
  log?: Logger;
  /** Lease owner ids; unique per refresh attempt. */
  ownerId?: () => string;
}

export interface FreshTokenOptions {
  /** The access token the upstream just rejected with 401: refresh even if it has not expired. */
  rejectedAccessToken?: string;
  service?: string;
  signal?: AbortSignal;
}

/**
 * One per process (per store). The server shares one instance between all accounts' clients;
 * tests make two to play two processes.
 */
export class TokenRefresher {
  readonly store: CredentialStore;
  private readonly clock: Clock;
  private readonly skewMs: number;
  private readonly leaseTtlMs: number;
  private readonly pollIntervalMs: number;
  private readonly maxWaitMs: number;
  private readonly log: Logger;
  private readonly ownerId: () => string;
  private readonly inflight = new Map<string, Promise<CredentialRecord>>();

  constructor(options: TokenRefresherOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.skewMs = options.skewMs ?? 60_000;
    this.leaseTtlMs = options.leaseTtlMs ?? 30_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    this.maxWaitMs = options.maxWaitMs ?? this.leaseTtlMs + 5_000;
    this.log = options.log ?? silentLogger;
    this.ownerId = options.ownerId ?? (() => randomUUID());
  }

  /** A record whose access token is usable now, refreshing (once, shared) when it is not. */
  async getFresh(
    accountId: string,
    exchange: RefreshExchange,
    options: FreshTokenOptions = {},
  ): Promise<CredentialRecord> {
    const needs = (r: CredentialRecord) => this.needsRefresh(r, options.rejectedAccessToken);
    const record = await loadActiveRecord(this.store, accountId, options.service);
    if (!needs(record)) return record;
    for (;;) {
      let flight = this.inflight.get(accountId);
      if (!flight) {
        flight = this.refresh(accountId, exchange, needs, options.service).finally(() => {
          if (this.inflight.get(accountId) === flight) this.inflight.delete(accountId);
        });
        this.inflight.set(accountId, flight);
        return abortable(flight, options.signal);
      }
      // Joined someone else's refresh; theirs may have answered a different question (expiry vs 401).
      const result = await abortable(flight, options.signal);
      if (!needs(result)) return result;
    }
  }

  private needsRefresh(record: CredentialRecord, rejected: string | undefined): boolean {
    const token = record.credentials.access_token;
    if (typeof token !== 'string' || token === '') return true;
    if (rejected !== undefined && token === rejected) return true;
    const expiresAt = record.credentials.expires_at;
    return typeof expiresAt === 'number' && expiresAt - this.skewMs <= this.clock.now();
  }

  private async refresh(
    accountId: string,
    exchange: RefreshExchange,
    needs: (r: CredentialRecord) => boolean,
    service: string | undefined,
  ): Promise<CredentialRecord> {
    const deadline = this.clock.now() + this.maxWaitMs;
    for (;;) {
      const record = await loadActiveRecord(this.store, accountId, service);
      if (!needs(record)) return record;
      const owner = this.ownerId();
      if (await this.store.tryLease(accountId, record.version, owner, this.leaseTtlMs)) {
        try {
          const result = await this.refreshHoldingLease(accountId, owner, exchange, needs, service);
          if (result) return result;
        } finally {
          await this.store.releaseLease(accountId, owner);
        }
        continue;
      }
      if (this.clock.now() >= deadline) {
        throw new CloudmuxError(
          'service_not_available',
          'Timed out waiting for another process to refresh the access token.',
          service ? { service } : {},
        );
      }
      await this.clock.sleep(this.pollIntervalMs);
    }
  }

  /** Returns the fresh record, or `undefined` to go round the outer loop again. */
  private async refreshHoldingLease(
    accountId: string,
    owner: string,
    exchange: RefreshExchange,
    needs: (r: CredentialRecord) => boolean,
    service: string | undefined,
  ): Promise<CredentialRecord | undefined> {
    // Re-read under the lease: another process may have committed between our read and the lease.
    const current = await loadActiveRecord(this.store, accountId, service);
    if (!needs(current)) return current;
    const refreshToken = current.credentials.refresh_token;
    if (typeof refreshToken !== 'string' || refreshToken === '') {
      throw new CloudmuxError(
        'service_unauthorized',
        'The access token is no longer valid and the account has no refresh token.',
        service ? { service } : {},
      );
    }
    let update: OAuthCredentialFields;
    try {
      update = await exchange(refreshToken);
    } catch (error) {
      if (!isInvalidGrant(error)) throw error;
      const again = await loadActiveRecord(this.store, accountId, service);
      if (again.credentials.refresh_token !== refreshToken) return needs(again) ? undefined : again;
      const reason = 'the provider rejected the refresh token (invalid_grant)';
      await this.store.markInactive(accountId, reason);
      this.log.warn({ accountId, service }, 'refresh token rejected; account marked inactive');
      throw new CloudmuxError(
        'service_unauthorized',
        `The account's authorization was revoked or expired: ${reason}.`,
        {
          ...(service ? { service } : {}),
          ...((error as CloudmuxError).upstream ? { upstream: (error as CloudmuxError).upstream } : {}),
          cause: error,
        },
      );
    }
    const credentials = mergeTokenFields(current.credentials, update);
    const version = await this.store.commit(accountId, current.version, owner, credentials);
    if (version === null) {
      // Only possible if our lease expired mid-call and someone else committed: theirs wins in the store.
      this.log.error(
        { accountId, service },
        'refresh lease lost before commit; the new tokens were not stored',
      );
      const latest = await loadActiveRecord(this.store, accountId, service);
      return needs(latest) ? { version: current.version, credentials } : latest;
    }
    this.log.debug({ accountId, service, version }, 'access token refreshed');
    return { version, credentials };
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

const sharedRefreshers = new WeakMap<CredentialStore, TokenRefresher>();

/** The process-wide refresher for a store (so every client of an account shares one in-flight refresh). */
export function refresherFor(
  store: CredentialStore,
  options: Omit<TokenRefresherOptions, 'store'> = {},
): TokenRefresher {
  let refresher = sharedRefreshers.get(store);
  if (!refresher) {
    refresher = new TokenRefresher({ ...options, store });
    sharedRefreshers.set(store, refresher);
  }
  return refresher;
}

/**
 * Cache for tokens that can be re-minted at will (client credentials, service-account JWT): kept
 * until shortly before expiry, one fetch per key at a time, dropped when the upstream rejects it.
 */
export class TokenCache {
  private readonly entries = new Map<string, { token: string; expiresAt: number | undefined }>();
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(private readonly options: { clock?: Clock; skewMs?: number } = {}) {}

  async get(
    key: string,
    fetch: () => Promise<OAuthCredentialFields>,
    rejectedToken?: string,
  ): Promise<string> {
    const now = (this.options.clock ?? systemClock).now();
    const skew = this.options.skewMs ?? 60_000;
    const entry = this.entries.get(key);
    if (
      entry &&
      entry.token !== rejectedToken &&
      (entry.expiresAt === undefined || entry.expiresAt - skew > now)
    )
      return entry.token;
    let flight = this.inflight.get(key);
    if (!flight) {
      flight = fetch()
        .then((fields) => {
          const token = fields.access_token as string;
          this.entries.set(key, { token, expiresAt: fields.expires_at });
          return token;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, flight);
    }
    return flight;
  }

  invalidate(key: string, token: string): void {
    if (this.entries.get(key)?.token === token) this.entries.delete(key);
  }
}

export const sharedTokenCache = new TokenCache();
