import { afterEach, describe, expect, it } from 'vitest';
import {
  type AuthSpec,
  createHttpClient,
  InMemoryCredentialStore,
  ManualClock,
  type OAuth2Spec,
  refreshAccessToken,
  storedCredentials,
  TokenRefresher,
} from '../src/index.js';
import { makeDefinition } from './fixtures/http/definitions.js';
import { rejection } from './fixtures/http/rejection.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const T0 = 1_800_000_000_000;
const POLL = 250;

/**
 * A token endpoint with single-use refresh tokens (like Box): each refresh token works once and
 * is replaced by a new one; spending a used one is `invalid_grant`.
 */
async function singleUseTokenServer(options: { hold?: Promise<void> } = {}) {
  const valid = new Set(['r1']);
  let issued = 0;
  const spends: string[] = [];
  const server = await startServer(async (req, res) => {
    const form = new URLSearchParams(req.body.toString());
    const rt = form.get('refresh_token') ?? '';
    spends.push(rt);
    if (options.hold) await options.hold;
    if (!valid.delete(rt))
      return json(res, 400, { error: 'invalid_grant', error_description: 'refresh token already used' });
    issued++;
    valid.add(`r${issued + 1}`);
    json(res, 200, { access_token: `at${issued + 1}`, refresh_token: `r${issued + 1}`, expires_in: 3600 });
  });
  servers.push(server);
  return { server, spends, valid };
}

async function apiServer() {
  const s = await startServer((req, res) => json(res, 200, { auth: req.headers.authorization }));
  servers.push(s);
  return s;
}

const oauthSpec = (tokenUrl: string): OAuth2Spec & AuthSpec => ({
  type: 'oauth2',
  authorizeUrl: 'https://auth.example/authorize',
  tokenUrl,
  scopes: ['all'],
  rotatingRefreshTokens: true,
});

function seed(store: InMemoryCredentialStore, expiresAt = T0 - 1) {
  store.put('acct', {
    access_token: 'at1',
    refresh_token: 'r1',
    expires_at: expiresAt,
    token_type: 'Bearer',
  });
}

/** Lets real I/O run and moves the fake clock whenever someone is waiting on it, until all settle. */
async function drive<T>(clock: ManualClock, promises: Promise<T>[]): Promise<T[]> {
  let settled = false;
  const all = Promise.all(promises).finally(() => {
    settled = true;
  });
  all.catch(() => undefined);
  for (let i = 0; i < 10_000 && !settled; i++) {
    await new Promise((r) => setTimeout(r, 2));
    if (clock.pending > 0) clock.advance(POLL);
  }
  return all;
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 5_000; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`never happened: ${what}`);
}

describe('token refresh', () => {
  it('50 concurrent callers on an expired token → exactly one token-endpoint call', async () => {
    const { server: token, spends } = await singleUseTokenServer();
    const api = await apiServer();
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    seed(store);
    const refresher = new TokenRefresher({ store, clock, pollIntervalMs: POLL });
    // Several clients of the same account in one process (e.g. one per API request) share the refresher.
    const clients = Array.from({ length: 5 }, () =>
      createHttpClient({
        definition: makeDefinition(oauthSpec(`${token.url}/token`)),
        accountId: 'acct',
        credentials: storedCredentials(store),
        oauthClient: { clientId: 'cid', clientSecret: 'sec' },
        refresher,
        clock,
      }),
    );
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => clients[i % 5]!.get(`${api.url}/item/${i}`)),
    );
    expect(spends).toEqual(['r1']);
    expect(new Set(results.map((r) => r.data.auth))).toEqual(new Set(['Bearer at2']));
    expect(api.requests).toHaveLength(50);
    const stored = await store.load('acct');
    expect(stored).toMatchObject({
      version: 2,
      credentials: { access_token: 'at2', refresh_token: 'r2', expires_at: T0 + 3_600_000 },
    });
    expect(clock.sleeps).toEqual([]);
  });

  it('two processes race on one single-use refresh token → one spend, both get the new token', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => {
      release = r;
    });
    const { server: token, spends } = await singleUseTokenServer({ hold });
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    seed(store);
    const spec = oauthSpec(`${token.url}/token`);
    const exchange = (rt: string) =>
      refreshAccessToken(spec, rt, { client: { clientId: 'cid', clientSecret: 'sec' }, clock });
    // Two refreshers = two processes: separate in-process single-flight, shared store.
    const processA = new TokenRefresher({ store, clock, pollIntervalMs: POLL });
    const processB = new TokenRefresher({ store, clock, pollIntervalMs: POLL });

    const a = processA.getFresh('acct', exchange);
    const b = processB.getFresh('acct', exchange);
    await until(
      () => spends.length === 1 && clock.pending === 1,
      'one process calls the endpoint, the other waits on the lease',
    );
    release();
    await until(async () => (await store.load('acct'))?.version === 2, 'the lease holder commits');
    clock.advance(POLL);
    const [ra, rb] = await Promise.all([a, b]);
    expect(spends).toEqual(['r1']);
    expect(ra.credentials.access_token).toBe('at2');
    expect(rb.credentials.access_token).toBe('at2');
    expect(ra.version).toBe(2);
    expect(rb.version).toBe(2);
    expect((await store.load('acct'))?.credentials.refresh_token).toBe('r2');
  });

  it('many rounds of three racing processes never spend a refresh token twice', async () => {
    const { server: token, spends } = await singleUseTokenServer();
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    const spec = oauthSpec(`${token.url}/token`);
    const exchange = (rt: string) => refreshAccessToken(spec, rt, { client: { clientId: 'cid' }, clock });
    const procs = [0, 1, 2].map(() => new TokenRefresher({ store, clock, pollIntervalMs: POLL, skewMs: 0 }));
    store.put('acct', { access_token: 'at1', refresh_token: 'r1', expires_at: T0 });
    for (let round = 1; round <= 8; round++) {
      const order = round % 2 === 0 ? procs : [...procs].reverse();
      const results = await drive(
        clock,
        order.map((p) => p.getFresh('acct', exchange)),
      );
      expect(new Set(results.map((r) => r.credentials.access_token))).toEqual(new Set([`at${round + 1}`]));
      expect(spends).toHaveLength(round);
      // expire the token for the next round
      clock.advance(3_600_000);
    }
    expect(new Set(spends).size).toBe(spends.length);
    expect((await store.load('acct'))?.inactive).toBeUndefined();
  });

  it('takes over a lease whose holder died once it expires', async () => {
    const { server: token, spends } = await singleUseTokenServer();
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    seed(store);
    expect(await store.tryLease('acct', 1, 'crashed-process', 30_000)).toBe(true);
    const spec = oauthSpec(`${token.url}/token`);
    const refresher = new TokenRefresher({
      store,
      clock,
      pollIntervalMs: POLL,
      leaseTtlMs: 30_000,
      maxWaitMs: 60_000,
    });
    const pending = refresher.getFresh('acct', (rt) =>
      refreshAccessToken(spec, rt, { client: { clientId: 'c' }, clock }),
    );
    await until(() => clock.pending === 1, 'waiting on the foreign lease');
    expect(spends).toEqual([]);
    const [fresh] = await drive(clock, [pending]);
    expect(fresh!.credentials.access_token).toBe('at2');
    expect(spends).toEqual(['r1']);
    expect(clock.now() - T0).toBeGreaterThanOrEqual(30_000);
  });

  it('gives up with service_not_available when another process holds the lease too long', async () => {
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    seed(store);
    await store.tryLease('acct', 1, 'slow-process', 120_000);
    const refresher = new TokenRefresher({ store, clock, pollIntervalMs: POLL, maxWaitMs: 1_000 });
    let calls = 0;
    const pending = refresher.getFresh('acct', async () => {
      calls++;
      return { access_token: 'never' };
    });
    await expect(drive(clock, [pending])).rejects.toMatchObject({ code: 'service_not_available' });
    expect(calls).toBe(0);
  });

  it('invalid_grant with the same refresh token stored → inactive, service_unauthorized', async () => {
    const token = await startServer((_req, res) => json(res, 400, { error: 'invalid_grant' }));
    servers.push(token);
    const api = await apiServer();
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    seed(store);
    const http = createHttpClient({
      definition: makeDefinition(oauthSpec(`${token.url}/token`)),
      accountId: 'acct',
      credentials: storedCredentials(store),
      oauthClient: { clientId: 'cid' },
      refresher: new TokenRefresher({ store, clock }),
      clock,
    });
    const err = await rejection(http.get(api.url));
    expect(err.code).toBe('service_unauthorized');
    expect(err.upstream?.code).toBe('invalid_grant');
    const stored = await store.load('acct');
    expect(stored?.inactive?.reason).toContain('invalid_grant');
    expect(stored?.credentials.refresh_token).toBe('r1');

    const again = await rejection(http.get(api.url));
    expect(again.code).toBe('service_unauthorized');
    expect(again.message).toContain('inactive');
    expect(token.requests).toHaveLength(1);
    expect(api.requests).toHaveLength(0);
  });

  it('invalid_grant after someone else rotated the token is a lost race, not a dead grant', async () => {
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    seed(store);
    const token = await startServer((_req, res) => {
      // Another actor (e.g. a reconnect) stored new tokens while our refresh was in flight.
      store.put('acct', { access_token: 'at-other', refresh_token: 'r-other', expires_at: T0 + 3_600_000 });
      json(res, 400, { error: 'invalid_grant' });
    });
    servers.push(token);
    const refresher = new TokenRefresher({ store, clock });
    const spec = oauthSpec(`${token.url}/token`);
    const fresh = await refresher.getFresh('acct', (rt) =>
      refreshAccessToken(spec, rt, { client: { clientId: 'c' }, clock }),
    );
    expect(fresh.credentials.access_token).toBe('at-other');
    expect((await store.load('acct'))?.inactive).toBeUndefined();
  });

  it('refreshes ahead of expiry within the skew, not before', async () => {
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    const refresher = new TokenRefresher({ store, clock, skewMs: 60_000 });
    let calls = 0;
    const exchange = async () => {
      calls++;
      return { access_token: `fresh${calls}`, expires_at: T0 + 3_600_000 };
    };
    seed(store, T0 + 120_000);
    expect((await refresher.getFresh('acct', exchange)).credentials.access_token).toBe('at1');
    expect(calls).toBe(0);
    clock.advance(60_001);
    expect((await refresher.getFresh('acct', exchange)).credentials.access_token).toBe('fresh1');
    expect(calls).toBe(1);
  });

  it('a 401 refresh shared by concurrent callers happens once', async () => {
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    seed(store, T0 + 3_600_000);
    const refresher = new TokenRefresher({ store, clock });
    let calls = 0;
    const exchange = async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
      return { access_token: 'after-401', refresh_token: 'r2', expires_at: T0 + 3_600_000 };
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => refresher.getFresh('acct', exchange, { rejectedAccessToken: 'at1' })),
    );
    expect(calls).toBe(1);
    expect(new Set(results.map((r) => r.credentials.access_token))).toEqual(new Set(['after-401']));
  });
});

describe('InMemoryCredentialStore contract', () => {
  it('lease and compare-and-swap', async () => {
    const clock = new ManualClock(T0);
    const store = new InMemoryCredentialStore({ clock });
    const v1 = store.put('a', { x: 1 });
    expect(await store.tryLease('a', v1 + 1, 'o1', 1000)).toBe(false); // stale version
    expect(await store.tryLease('a', v1, 'o1', 1000)).toBe(true);
    expect(await store.tryLease('a', v1, 'o2', 1000)).toBe(false); // held
    expect(await store.commit('a', v1, 'o2', { x: 2 })).toBeNull(); // not the holder
    await store.releaseLease('a', 'o2'); // not the holder: no effect
    expect(await store.tryLease('a', v1, 'o2', 1000)).toBe(false);
    expect(await store.commit('a', v1, 'o1', { x: 2 })).toBe(v1 + 1);
    expect(await store.commit('a', v1, 'o1', { x: 3 })).toBeNull(); // version moved on
    expect((await store.load('a'))?.credentials).toEqual({ x: 2 });
    expect(await store.tryLease('a', v1 + 1, 'o2', 1000)).toBe(true); // commit cleared the lease
    clock.advance(1000);
    expect(await store.tryLease('a', v1 + 1, 'o3', 1000)).toBe(true); // expired
    expect(await store.load('missing')).toBeUndefined();
  });
});
