import { connect as netConnect, type Socket } from 'node:net';
import axios, { type AxiosRequestConfig } from 'axios';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CloudmuxError } from '../src/errors.js';
import { attachPostConnectCheck } from '../src/net/guard.js';
import { createNetworkGuard, NetworkPolicyError, networkRefusalFrom } from '../src/net/index.js';
import type { ConnectEvent, NetworkGuard, NetworkPolicy } from '../src/network-types.js';
import {
  type CountingServer,
  type FakeAnswers,
  fakeLookup,
  selfSignedCert,
  startCountingServer,
} from './fixtures/net/loopback.js';

let v4: CountingServer;
let v4b: CountingServer;
let v6: CountingServer;
let tlsServer: CountingServer;
let redirector: CountingServer;
let cert: { key: string; cert: string };
const guards: NetworkGuard[] = [];
let events: ConnectEvent[] = [];

beforeAll(async () => {
  v4 = await startCountingServer('127.0.0.1');
  // Same port on a second loopback address and on ::1, so an escaped connection would be counted.
  v4b = await startCountingServer('127.0.0.2', v4.port);
  v6 = await startCountingServer('::1', v4.port);
  cert = selfSignedCert(['dav.test.example']);
  tlsServer = await startCountingServer('127.0.0.1', 0, { tls: cert });
  redirector = await startCountingServer('127.0.0.1', 0, { redirectTo: `http://127.0.0.2:${v4.port}/next` });
});

afterAll(async () => {
  await Promise.all([v4, v4b, v6, tlsServer, redirector].map((s) => s?.close()));
});

afterEach(() => {
  for (const g of guards.splice(0)) g.destroy();
  events = [];
});

function guardFor(policy: NetworkPolicy, answers: FakeAnswers = {}, agentOptions = {}) {
  const lookup = fakeLookup(answers);
  const guard = createNetworkGuard({ policy, lookup, onConnect: (e) => events.push(e), agentOptions });
  guards.push(guard);
  return { guard, lookup };
}

function get(guard: NetworkGuard, url: string, extra: AxiosRequestConfig = {}) {
  return axios.get<string>(url, {
    httpAgent: guard.httpAgent,
    httpsAgent: guard.httpsAgent,
    proxy: false,
    timeout: 10_000,
    maxRedirects: 0,
    responseType: 'text',
    validateStatus: () => true,
    ...extra,
  });
}

async function refusal(promise: Promise<unknown>): Promise<CloudmuxError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected the guard to refuse').toBeDefined();
  const refused = networkRefusalFrom(error) ?? (error instanceof CloudmuxError ? error : undefined);
  expect(refused, `not a guard refusal: ${String(error)}`).toBeInstanceOf(CloudmuxError);
  expect(refused!.code).toBe('forbidden');
  expect(refused!.status).toBe(403);
  return refused!;
}

const totalConnections = () => v4.connections + v4b.connections + v6.connections;

describe('checkAddress per mode', () => {
  it('saas allows only public unicast', () => {
    const { guard } = guardFor({ mode: 'saas' });
    expect(guard.checkAddress('8.8.8.8')).toMatchObject({ allowed: true, class: 'public' });
    expect(guard.checkAddress('2606:4700:4700::1111')).toMatchObject({ allowed: true });
    expect(guard.checkAddress('::ffff:8.8.8.8')).toMatchObject({
      allowed: true,
      address: '8.8.8.8',
      family: 4,
    });
    for (const address of [
      '127.0.0.1',
      '10.0.0.1',
      '192.168.0.1',
      '172.16.0.1',
      '100.64.0.1',
      '169.254.1.1',
      '224.0.0.1',
      '255.255.255.255',
      '240.0.0.1',
      '192.0.2.1',
      '::1',
      'fe80::1',
      'fc00::1',
      'ff02::1',
      '::ffff:127.0.0.1',
      '64:ff9b::a00:1',
    ]) {
      const verdict = guard.checkAddress(address);
      expect(verdict.allowed, address).toBe(false);
    }
    expect(guard.checkAddress('10.0.0.1')).toMatchObject({
      reason: '10.0.0.1 is a private address, not allowed for a saas connector',
    });
    expect(guard.checkAddress('169.254.169.254')).toMatchObject({
      reason: '169.254.169.254 is a cloud metadata address',
    });
  });

  it('self_hosted allows private and loopback but never metadata or unspecified', () => {
    const { guard } = guardFor({ mode: 'self_hosted' });
    for (const address of [
      '127.0.0.1',
      '10.0.0.1',
      '192.168.1.20',
      'fd12::1',
      'fe80::1',
      '::1',
      '100.64.1.1',
      '8.8.8.8',
    ]) {
      expect(guard.checkAddress(address).allowed, address).toBe(true);
    }
    for (const address of [
      '169.254.169.254',
      '169.254.170.2',
      'fd00:ec2::254',
      '100.100.100.200',
      '::ffff:169.254.169.254',
      '64:ff9b::a9fe:a9fe',
      '0.0.0.0',
      '::',
      '0x0',
      '2852039166',
    ]) {
      expect(guard.checkAddress(address).allowed, address).toBe(false);
    }
  });

  it('none refuses everything; allowedNetworks narrows every mode', () => {
    expect(guardFor({ mode: 'none' }).guard.checkAddress('8.8.8.8')).toMatchObject({ allowed: false });
    const { guard } = guardFor({ mode: 'saas', allowedNetworks: ['8.8.8.0/24'] });
    expect(guard.checkAddress('8.8.8.8').allowed).toBe(true);
    expect(guard.checkAddress('1.1.1.1')).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('CLOUDMUX_ALLOWED_NETWORKS'),
    });
    const empty = guardFor({ mode: 'self_hosted', allowedNetworks: [] }).guard;
    expect(empty.checkAddress('127.0.0.1').allowed).toBe(false);
  });

  it('an invalid policy fails when the guard is built', () => {
    expect(() =>
      createNetworkGuard({ policy: { mode: 'self_hosted', allowedNetworks: ['10.0.0.0/33'] } }),
    ).toThrow(NetworkPolicyError);
    expect(() => createNetworkGuard({ policy: { mode: 'public' as never } })).toThrow(NetworkPolicyError);
  });
});

describe('lookup and assertAllowed', () => {
  it('answers in every dns.lookup calling convention, with checked addresses', async () => {
    const { guard } = guardFor({ mode: 'saas' }, { 'ok.test': ['8.8.8.8', '2001:4860:4860::8888'] });
    const one = await new Promise<[string, number | undefined]>((resolve, reject) =>
      guard.lookup('ok.test', {}, (err, address, family) =>
        err ? reject(err) : resolve([address as string, family]),
      ),
    );
    expect(one).toEqual(['8.8.8.8', 4]);
    const all = await new Promise((resolve, reject) =>
      guard.lookup('ok.test', { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
    );
    expect(all).toEqual([
      { address: '8.8.8.8', family: 4 },
      { address: '2001:4860:4860::8888', family: 6 },
    ]);
    const v6only = await new Promise((resolve, reject) =>
      (guard.lookup as unknown as (h: string, f: number, cb: (e: Error | null, a: string) => void) => void)(
        'ok.test',
        6,
        (err, a) => (err ? reject(err) : resolve(a)),
      ),
    );
    expect(v6only).toBe('2001:4860:4860::8888');
  });

  it('refuses the whole answer when one address is internal', async () => {
    const { guard } = guardFor({ mode: 'saas' }, { 'mixed.test': ['8.8.8.8', '10.1.2.3'] });
    const error = await refusal(guard.assertAllowed('mixed.test'));
    expect(error.message).toBe(
      'Connection to mixed.test (10.1.2.3) refused: ' +
        '10.1.2.3 is a private address, not allowed for a saas connector.',
    );
  });

  it('refuses metadata and loopback names without asking DNS', async () => {
    const { guard, lookup } = guardFor(
      { mode: 'saas' },
      { 'metadata.google.internal': ['8.8.8.8'], localhost: ['8.8.8.8'] },
    );
    await refusal(guard.assertAllowed('metadata.google.internal'));
    await refusal(guard.assertAllowed('METADATA.GOOGLE.INTERNAL.'));
    await refusal(guard.assertAllowed('localhost'));
    await refusal(guard.assertAllowed('api.localhost'));
    await refusal(guard.assertAllowed('bad name\r\n'));
    expect(lookup.calls).toEqual([]);
    const selfHosted = guardFor({ mode: 'self_hosted' }, { 'metadata.google.internal': ['8.8.8.8'] });
    await refusal(selfHosted.guard.assertAllowed('metadata.google.internal'));
    expect(selfHosted.lookup.calls).toEqual([]);
  });

  it('normalizes literal IPs in any notation without DNS', async () => {
    const { guard, lookup } = guardFor({ mode: 'self_hosted' });
    for (const literal of [
      '2130706433',
      '0177.0.0.1',
      '0x7f.1',
      '127.1',
      '[::ffff:7f00:1]',
      '::ffff:127.0.0.1',
    ]) {
      await expect(guard.assertAllowed(literal), literal).resolves.toMatchObject({
        address: '127.0.0.1',
        family: 4,
      });
    }
    await expect(guard.assertAllowed('[::1]', 445)).resolves.toEqual({
      host: '[::1]',
      address: '::1',
      family: 6,
      addresses: [{ address: '::1', family: 6 }],
      port: 445,
    });
    await refusal(guard.assertAllowed('0251.0376.0251.0376'));
    expect(lookup.calls).toEqual([]);
    const saas = guardFor({ mode: 'saas' }).guard;
    for (const literal of ['2130706433', '0x7f.1', '127.1', '0', '[::]'])
      await refusal(saas.assertAllowed(literal));
  });

  it('returns the pinned address for subprocess clients, and rejects bad ports', async () => {
    const { guard } = guardFor({ mode: 'self_hosted' }, { 'smb.lan': ['192.168.1.20'] });
    await expect(guard.assertAllowed('smb.lan', 445)).resolves.toMatchObject({
      address: '192.168.1.20',
      port: 445,
    });
    await expect(guard.assertAllowed('smb.lan', 70000)).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('passes resolver errors through untouched', async () => {
    const { guard } = guardFor({ mode: 'saas' });
    await expect(guard.assertAllowed('missing.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('none refuses every lookup', async () => {
    const { guard, lookup } = guardFor({ mode: 'none' }, { 'ok.test': ['8.8.8.8'] });
    await refusal(guard.assertAllowed('ok.test'));
    await refusal(guard.assertAllowed('8.8.8.8'));
    expect(lookup.calls).toEqual([]);
  });
});

describe('HTTP agents (axios)', () => {
  it('self_hosted reaches a loopback server and reports the socket', async () => {
    const { guard } = guardFor({ mode: 'self_hosted' }, { 'dav.lan': ['127.0.0.1'] });
    const before = v4.connections;
    const res = await get(guard, `http://dav.lan:${v4.port}/`);
    expect(res.status).toBe(200);
    expect(res.data).toBe('ok 127.0.0.1');
    expect(v4.connections).toBe(before + 1);
    expect(events).toEqual([
      { host: 'dav.lan', address: '127.0.0.1', port: v4.port, family: 4, tls: false, allowed: true },
    ]);
  });

  it('self_hosted refuses metadata addresses, literal or resolved, without opening a socket', async () => {
    const { guard } = guardFor(
      { mode: 'self_hosted' },
      { 'evil.lan': ['169.254.169.254'], 'evil6.lan': ['fd00:ec2::254'] },
    );
    const before = totalConnections();
    await refusal(get(guard, 'http://169.254.169.254/latest/meta-data/'));
    await refusal(get(guard, 'http://[fd00:ec2::254]/latest/meta-data/'));
    await refusal(get(guard, 'http://evil.lan/latest/meta-data/'));
    await refusal(get(guard, 'http://evil6.lan/latest/meta-data/'));
    await refusal(get(guard, `http://0.0.0.0:${v4.port}/`));
    await refusal(get(guard, `http://[::]:${v4.port}/`));
    expect(events).toEqual([]);
    expect(totalConnections()).toBe(before);
  });

  it('DNS rebinding (saas): public on the first answer, loopback on the second → refused', async () => {
    const { guard } = guardFor({ mode: 'saas' }, { 'rebind.test': [['8.8.8.8'], ['127.0.0.1']] });
    await expect(guard.assertAllowed('rebind.test')).resolves.toMatchObject({ address: '8.8.8.8' });
    const before = totalConnections();
    const error = await refusal(get(guard, `http://rebind.test:${v4.port}/`));
    expect(error.message).toContain('127.0.0.1 is a loopback address');
    expect(events).toEqual([]);
    expect(totalConnections()).toBe(before);
  });

  it('DNS rebinding (self_hosted, allowedNetworks): a second answer outside it is refused', async () => {
    const { guard } = guardFor(
      { mode: 'self_hosted', allowedNetworks: ['127.0.0.1/32'] },
      { 'flip.lan': [['127.0.0.1'], ['127.0.0.2'], ['169.254.169.254']] },
    );
    const first = await get(guard, `http://flip.lan:${v4.port}/`);
    expect(first.data).toBe('ok 127.0.0.1');
    const before = v4b.connections;
    const second = await refusal(get(guard, `http://flip.lan:${v4.port}/`));
    expect(second.message).toContain('127.0.0.2 is outside the allowed networks');
    await refusal(get(guard, `http://flip.lan:${v4.port}/`));
    expect(v4b.connections).toBe(before);
    expect(events.map((e) => e.address)).toEqual(['127.0.0.1']);
  });

  it('allowedNetworks restricts literal targets: inside works, outside refused', async () => {
    const { guard } = guardFor({ mode: 'self_hosted', allowedNetworks: ['127.0.0.0/31'] });
    expect((await get(guard, `http://127.0.0.1:${v4.port}/`)).data).toBe('ok 127.0.0.1');
    const before = v4b.connections + v6.connections;
    await refusal(get(guard, `http://127.0.0.2:${v4.port}/`));
    await refusal(get(guard, `http://[::1]:${v4.port}/`));
    expect(v4b.connections + v6.connections).toBe(before);
  });

  it('an IPv4-mapped address matches an IPv4 network', async () => {
    const { guard } = guardFor(
      { mode: 'self_hosted', allowedNetworks: ['127.0.0.1/32'] },
      { 'mapped.lan': ['::ffff:127.0.0.1'] },
    );
    expect((await get(guard, `http://mapped.lan:${v4.port}/`)).status).toBe(200);
    expect(events).toMatchObject([{ address: '127.0.0.1', allowed: true }]);
  });

  it('redirects are checked too, through either agent', async () => {
    const { guard } = guardFor({ mode: 'self_hosted', allowedNetworks: ['127.0.0.1/32'] });
    const before = v4b.connections;
    await refusal(get(guard, `http://127.0.0.1:${redirector.port}/`, { maxRedirects: 3 }));
    expect(v4b.connections).toBe(before);
    expect(events.map((e) => e.port)).toEqual([redirector.port]);
  });

  it('the https agent verifies TLS and goes through the same check', async () => {
    const { guard } = guardFor(
      { mode: 'self_hosted' },
      { 'dav.test.example': ['127.0.0.1'], 'evil.test.example': ['169.254.169.254'] },
      {
        ca: cert.cert,
      },
    );
    const res = await get(guard, `https://dav.test.example:${tlsServer.port}/`);
    expect(res.data).toBe('ok 127.0.0.1');
    expect(events).toEqual([
      {
        host: 'dav.test.example',
        address: '127.0.0.1',
        port: tlsServer.port,
        family: 4,
        tls: true,
        allowed: true,
      },
    ]);
    const before = tlsServer.connections;
    await refusal(get(guard, `https://evil.test.example:${tlsServer.port}/`));
    expect(tlsServer.connections).toBe(before);
  });

  it('refuses unix sockets', async () => {
    const { guard } = guardFor({ mode: 'self_hosted' });
    const error = await refusal(get(guard, 'http://localhost/', { socketPath: '/var/run/docker.sock' }));
    expect(error.message).toContain('unix socket');
    expect(events).toEqual([]);
  });

  it('the refusal names the reason, never the credentials', async () => {
    const { guard } = guardFor({ mode: 'saas' }, { 'api.test': ['10.0.0.1'] });
    const error = await refusal(
      get(guard, 'https://alice:hunter2@api.test/v1', { headers: { Authorization: 'Bearer sekret-token' } }),
    );
    expect(error.message).toBe(
      'Connection to api.test (10.0.0.1) refused: ' +
        '10.0.0.1 is a private address, not allowed for a saas connector.',
    );
    expect(error.message).not.toMatch(/hunter2|sekret|alice/);
  });

  it('an onConnect hook that throws does not change the outcome', async () => {
    const guard = createNetworkGuard({
      policy: { mode: 'self_hosted' },
      onConnect: () => {
        throw new Error('observer bug');
      },
    });
    guards.push(guard);
    expect((await get(guard, `http://127.0.0.1:${v4.port}/`)).status).toBe(200);
  });
});

describe('connect() and connectTls() for protocol clients', () => {
  function exchange(socket: Socket): Promise<string> {
    return new Promise((resolve, reject) => {
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        data += chunk;
      });
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    });
  }

  it('a raw TCP client connects through the guard (self_hosted)', async () => {
    const { guard } = guardFor({ mode: 'self_hosted' }, { 'ftp.lan': ['127.0.0.1'] });
    const socket = await guard.connect({ host: 'ftp.lan', port: v4.port });
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(await exchange(socket)).toContain('ok 127.0.0.1');
    expect(events).toMatchObject([{ host: 'ftp.lan', address: '127.0.0.1', allowed: true, tls: false }]);
  });

  it('legacy literal notations are normalized, then checked, then connected', async () => {
    const selfHosted = guardFor({ mode: 'self_hosted' }).guard;
    for (const host of ['2130706433', '0177.0.0.1', '0x7f.1', '127.1', '0x7f000001']) {
      const socket = await selfHosted.connect({ host, port: v4.port });
      expect(socket.remoteAddress, host).toBe('127.0.0.1');
      socket.destroy();
    }
    const saas = guardFor({ mode: 'saas' }).guard;
    const before = totalConnections();
    events = [];
    for (const host of [
      '2130706433',
      '0177.0.0.1',
      '0x7f.1',
      '127.1',
      '127.0.0.1',
      '::1',
      '::ffff:7f00:1',
      'localhost',
    ]) {
      await refusal(saas.connect({ host, port: v4.port }));
    }
    await refusal(saas.connect({ port: v4.port }));
    expect(events).toEqual([]);
    expect(totalConnections()).toBe(before);
  });

  it('refuses unix sockets and the none mode', async () => {
    await refusal(guardFor({ mode: 'self_hosted' }).guard.connect({ path: '/tmp/x.sock' } as never));
    const before = totalConnections();
    await refusal(guardFor({ mode: 'none' }).guard.connect({ host: '127.0.0.1', port: v4.port }));
    expect(totalConnections()).toBe(before);
  });

  it('connectTls: checked connect, verified handshake; refused targets open nothing', async () => {
    const { guard } = guardFor(
      { mode: 'self_hosted' },
      { 'dav.test.example': ['127.0.0.1'], 'meta.test.example': ['169.254.169.254'] },
    );
    const socket = await guard.connectTls({ host: 'dav.test.example', port: tlsServer.port, ca: cert.cert });
    expect(socket.authorized).toBe(true);
    expect(await exchange(socket)).toContain('ok 127.0.0.1');
    expect(events).toMatchObject([{ host: 'dav.test.example', tls: true, allowed: true }]);
    await expect(guard.connectTls({ host: 'dav.test.example', port: tlsServer.port })).rejects.toMatchObject({
      code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    });
    const before = tlsServer.connections;
    events = [];
    await refusal(guard.connectTls({ host: 'meta.test.example', port: tlsServer.port, ca: cert.cert }));
    await refusal(guardFor({ mode: 'saas' }).guard.connectTls({ host: '127.0.0.1', port: tlsServer.port }));
    expect(tlsServer.connections).toBe(before);
    expect(events).toEqual([]);
  });

  it('connectTls upgrades a guarded socket (STARTTLS) and refuses one to a disallowed peer', async () => {
    const { guard } = guardFor({ mode: 'self_hosted' }, { 'dav.test.example': ['127.0.0.1'] });
    const plain = await guard.connect({ host: 'dav.test.example', port: tlsServer.port });
    const upgraded = await guard.connectTls({ socket: plain, host: 'dav.test.example', ca: cert.cert });
    expect(upgraded.authorized).toBe(true);
    upgraded.destroy();
    const raw = await new Promise<Socket>((resolve) => {
      const s = netConnect({ host: '127.0.0.1', port: tlsServer.port }, () => resolve(s));
    });
    await refusal(
      guardFor({ mode: 'saas' }).guard.connectTls({ socket: raw, host: 'dav.test.example', ca: cert.cert }),
    );
    raw.destroy();
  });

  it('the post-connect check destroys a socket to a refused peer before any byte is sent', async () => {
    const seen: ConnectEvent[] = [];
    const bytesBefore = v4.bytes;
    const connectionsBefore = v4.connections;
    const closedBefore = v4.closed;
    const socket = netConnect({ host: '127.0.0.1', port: v4.port });
    attachPostConnectCheck(
      { policy: { mode: 'saas' }, onConnect: (e) => seen.push(e) },
      socket,
      'sneaky.test',
    );
    socket.write('GET /secret HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n');
    const error = await new Promise<Error>((resolve) => socket.once('error', resolve));
    expect(networkRefusalFrom(error)?.message).toBe(
      'Connection to sneaky.test refused: 127.0.0.1 is a loopback address, not allowed for a saas connector.',
    );
    expect(seen).toMatchObject([{ host: 'sneaky.test', address: '127.0.0.1', allowed: false }]);
    // The server saw the TCP connection (that is the case this check exists for) but no request bytes.
    await v4.whenClosed(closedBefore + 1);
    expect(v4.connections).toBe(connectionsBefore + 1);
    expect(v4.bytes).toBe(bytesBefore);
  });
});
