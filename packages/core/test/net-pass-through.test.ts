import axios from 'axios';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PassThroughSpec } from '../src/connector.js';
import { CloudmuxError } from '../src/errors.js';
import {
  createNetworkGuard,
  filterForwardedHeaders,
  networkRefusalFrom,
  resolvePassThroughUrl,
} from '../src/net/index.js';
import type { ConnectEvent, NetworkGuard } from '../src/network-types.js';
import { type CountingServer, fakeLookup, startCountingServer } from './fixtures/net/loopback.js';
import {
  FAKE_DNS,
  FAKE_DNS_DEFAULT,
  SSRF_SPEC_TEMPLATE,
  SSRF_VECTORS,
  type SsrfVector,
} from './fixtures/net/ssrf-vectors.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    if (error instanceof CloudmuxError) return error.code;
    throw error;
  }
}

describe('resolvePassThroughUrl', () => {
  const gdrive: PassThroughSpec<unknown> = {
    kind: 'saas',
    baseUrl: 'https://www.googleapis.com',
    allowedHosts: ['www.googleapis.com', '*.googleusercontent.com', 'upload.example.com:8443'],
  };
  const box: PassThroughSpec<unknown> = {
    kind: 'saas',
    baseUrl: 'https://api.box.com/2.0/',
    allowedHosts: ['api.box.com'],
  };
  const webdav: PassThroughSpec<{ url: string }> = { kind: 'account_host', baseUrl: (c) => c.url };

  it('appends a path to the base URL', () => {
    expect(resolvePassThroughUrl(gdrive, '/drive/v3/files?q=name%3D%27a%27&pageSize=10', {}).href).toBe(
      'https://www.googleapis.com/drive/v3/files?q=name%3D%27a%27&pageSize=10',
    );
    expect(resolvePassThroughUrl(box, '/folders/0/items', {}).href).toBe(
      'https://api.box.com/2.0/folders/0/items',
    );
    expect(resolvePassThroughUrl(gdrive, '/drive/v3/files/a b', {}).pathname).toBe('/drive/v3/files/a%20b');
    expect(resolvePassThroughUrl(gdrive, '/@evil.com', {}).host).toBe('www.googleapis.com');
  });

  it('accepts full URLs on allow-listed hosts', () => {
    expect(resolvePassThroughUrl(gdrive, 'https://www.googleapis.com/drive/v2/about', {}).href).toBe(
      'https://www.googleapis.com/drive/v2/about',
    );
    expect(resolvePassThroughUrl(gdrive, 'HTTPS://WWW.GOOGLEAPIS.COM/x', {}).host).toBe('www.googleapis.com');
    expect(resolvePassThroughUrl(gdrive, 'https://doc-0s.a.googleusercontent.com/x', {}).host).toBe(
      'doc-0s.a.googleusercontent.com',
    );
    expect(resolvePassThroughUrl(gdrive, 'https://upload.example.com:8443/u', {}).port).toBe('8443');
    expect(resolvePassThroughUrl(gdrive, 'https://www.googleapis.com:443/x', {}).port).toBe('');
  });

  it('refuses hosts, ports and schemes outside the allow-list', () => {
    expect(codeOf(() => resolvePassThroughUrl(gdrive, 'https://googleusercontent.com/x', {}))).toBe(
      'forbidden',
    );
    expect(codeOf(() => resolvePassThroughUrl(gdrive, 'https://www.googleapis.com:8443/x', {}))).toBe(
      'forbidden',
    );
    expect(codeOf(() => resolvePassThroughUrl(gdrive, 'https://upload.example.com/u', {}))).toBe('forbidden');
    expect(codeOf(() => resolvePassThroughUrl(gdrive, 'https://8.8.8.8/x', {}))).toBe('forbidden');
    expect(codeOf(() => resolvePassThroughUrl(gdrive, 'https://[2001:4860::8888]/x', {}))).toBe('forbidden');
    expect(codeOf(() => resolvePassThroughUrl(gdrive, 'http://www.googleapis.com/x', {}))).toBe(
      'bad_request',
    );
    expect(codeOf(() => resolvePassThroughUrl(gdrive, 'ftp://www.googleapis.com/x', {}))).toBe('bad_request');
  });

  it('keeps paths under a base path', () => {
    expect(codeOf(() => resolvePassThroughUrl(box, '/../oauth2/token', {}))).toBe('forbidden');
    expect(codeOf(() => resolvePassThroughUrl(box, '/%2e%2e/oauth2/token', {}))).toBe('forbidden');
    expect(resolvePassThroughUrl(box, '/files/../folders/0', {}).pathname).toBe('/2.0/folders/0');
  });

  it("account_host: only the account's own origin, http allowed for self-hosted servers", () => {
    const creds = { url: 'http://192.168.1.20:8080/remote.php/dav/' };
    expect(resolvePassThroughUrl(webdav, '/files/alice/a.txt', creds).href).toBe(
      'http://192.168.1.20:8080/remote.php/dav/files/alice/a.txt',
    );
    expect(resolvePassThroughUrl(webdav, 'http://192.168.1.20:8080/status.php', creds).pathname).toBe(
      '/status.php',
    );
    expect(codeOf(() => resolvePassThroughUrl(webdav, 'http://192.168.1.21:8080/x', creds))).toBe(
      'forbidden',
    );
    expect(codeOf(() => resolvePassThroughUrl(webdav, 'https://192.168.1.20:8080/x', creds))).toBe(
      'forbidden',
    );
    expect(codeOf(() => resolvePassThroughUrl(webdav, 'http://192.168.1.20/x', creds))).toBe('forbidden');
    expect(codeOf(() => resolvePassThroughUrl(webdav, 'http://169.254.169.254/latest', creds))).toBe(
      'forbidden',
    );
    expect(codeOf(() => resolvePassThroughUrl(webdav, '/../../x', creds))).toBe('forbidden');
    const withUserinfo = { url: 'https://bob:pw@dav.example.org/dav' };
    expect(resolvePassThroughUrl(webdav, '/a', withUserinfo).href).toBe('https://dav.example.org/dav/a');
    expect(codeOf(() => resolvePassThroughUrl(webdav, '/a', { url: 'not a url' }))).toBe('bad_request');
    expect(codeOf(() => resolvePassThroughUrl(webdav, '/a', { url: 'file:///etc' }))).toBe('bad_request');
  });

  it('refuses empty and oversized URIs', () => {
    expect(codeOf(() => resolvePassThroughUrl(gdrive, '', {}))).toBe('bad_request');
    expect(codeOf(() => resolvePassThroughUrl(gdrive, `/${'a'.repeat(9000)}`, {}))).toBe('bad_request');
  });
});

describe('filterForwardedHeaders', () => {
  it('drops hop-by-hop, identity, forwarding, Kloudless and CR/LF headers', () => {
    const out = filterForwardedHeaders({
      Accept: 'application/json',
      'If-Match': '"etag"',
      'X-Custom': ['a', 'b'],
      'Content-Type': 'text/plain',
      Connection: 'keep-alive, X-Secret-Hop',
      'X-Secret-Hop': '1',
      'Keep-Alive': 'timeout=5',
      'Transfer-Encoding': 'chunked',
      'Content-Length': '10',
      TE: 'trailers',
      Trailer: 'x',
      Upgrade: 'h2c',
      Host: 'evil.example',
      Authorization: 'Bearer stolen',
      Cookie: 'sid=1',
      'Proxy-Authorization': 'Basic x',
      'Proxy-Connection': 'keep-alive',
      'X-Forwarded-For': '127.0.0.1',
      'X-Forwarded-Host': 'evil.example',
      Forwarded: 'for=127.0.0.1',
      'X-Real-IP': '127.0.0.1',
      'X-Kloudless-Raw-URI': '/x',
      'x-kloudless-as-user': 'admin',
      'X-Injected': 'a\r\nHost: evil.example',
      'X-Lf': 'a\nb',
      'Bad Name': 'x',
      'X-Nul': 'a\u0000b',
      'X-Null': null,
      'X-Number': 5,
    });
    expect(out).toEqual({
      accept: 'application/json',
      'if-match': '"etag"',
      'x-custom': 'a, b',
      'content-type': 'text/plain',
      'x-number': '5',
    });
  });
});

describe('SSRF corpus: resolvePassThroughUrl + a real axios request through the guard', () => {
  let v4: CountingServer;
  let v6: CountingServer;
  let spec: PassThroughSpec<unknown> & { kind: 'saas' };
  const events: ConnectEvent[] = [];
  let guard: NetworkGuard;
  const fill = (text: string) => text.replaceAll('{port}', String(v4.port));

  beforeAll(async () => {
    v4 = await startCountingServer('127.0.0.1');
    v6 = await startCountingServer('::1', v4.port);
    spec = {
      ...SSRF_SPEC_TEMPLATE,
      baseUrl: fill(SSRF_SPEC_TEMPLATE.baseUrl),
      allowedHosts: SSRF_SPEC_TEMPLATE.allowedHosts.map(fill),
    };
    guard = createNetworkGuard({
      policy: { mode: 'saas' },
      lookup: fakeLookup(FAKE_DNS, FAKE_DNS_DEFAULT),
      onConnect: (e) => events.push(e),
      agentOptions: { keepAlive: false },
    });
  });

  afterAll(async () => {
    guard.destroy();
    await Promise.all([v4.close(), v6.close()]);
  });

  it('has at least 40 vectors with unique ids and both outcomes', () => {
    expect(SSRF_VECTORS.length).toBeGreaterThanOrEqual(40);
    expect(new Set(SSRF_VECTORS.map((v) => v.id)).size).toBe(SSRF_VECTORS.length);
    expect(new Set(SSRF_VECTORS.map((v) => v.expected))).toEqual(new Set(['bad_request', 'forbidden']));
  });

  /** Where an HTTP client would go with this URI: the resolved URL, else a lenient parse against the base. */
  function clientTarget(vector: SsrfVector, resolved: URL | undefined): string | undefined {
    if (resolved) return resolved.href;
    try {
      const url = new URL(fill(vector.uri), spec.baseUrl);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : undefined;
    } catch {
      return undefined;
    }
  }

  it.each(SSRF_VECTORS.map((v) => [v.id, v] as const))('%s', async (_id, vector) => {
    const uri = fill(vector.uri);
    let resolved: URL | undefined;
    let code: string | undefined;
    try {
      resolved = resolvePassThroughUrl(spec, uri, {});
    } catch (error) {
      expect(error).toBeInstanceOf(CloudmuxError);
      code = (error as CloudmuxError).code;
      expect((error as CloudmuxError).message).not.toMatch(/\r|\n/);
    }
    if (vector.stage === 'url')
      expect(code, `resolvePassThroughUrl(${JSON.stringify(uri)})`).toBe(vector.expected);
    else expect(code, `resolvePassThroughUrl(${JSON.stringify(uri)}) should accept it`).toBeUndefined();

    // Defence in depth: whatever an HTTP client makes of the URI, the guard's agents refuse it.
    const target = clientTarget(vector, resolved);
    if (target === undefined) return; // not an http(s) URL at all: no HTTP client would connect
    const eventsBefore = events.length;
    const error = await axios
      .get(target, {
        httpAgent: guard.httpAgent,
        httpsAgent: guard.httpsAgent,
        proxy: false,
        maxRedirects: 0,
        timeout: 10_000,
        validateStatus: () => true,
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    const refused = networkRefusalFrom(error);
    expect(refused, `${target}: ${String(error)}`).toBeInstanceOf(CloudmuxError);
    expect(refused!.code).toBe('forbidden');
    if (vector.stage === 'connect') expect(refused!.code).toBe(vector.expected);
    expect(events.length, `${target} opened a socket`).toBe(eventsBefore);
  });

  it('no vector reached the loopback servers, which do accept connections', async () => {
    // Runs after the corpus: the accept queue is ordered, so any escaped connection is already counted.
    expect(events).toEqual([]);
    expect(v4.connections + v6.connections).toBe(0);
    const control = createNetworkGuard({
      policy: { mode: 'self_hosted' },
      lookup: fakeLookup(FAKE_DNS, FAKE_DNS_DEFAULT),
    });
    try {
      const res = await axios.get(`${spec.baseUrl.replace('https:', 'http:')}/`, {
        httpAgent: control.httpAgent,
        proxy: false,
        responseType: 'text',
      });
      expect(res.data).toBe('ok 127.0.0.1');
      expect(v4.connections).toBe(1);
    } finally {
      control.destroy();
    }
  });

  it('without the guard, the literal vectors do reach the servers (the corpus is live)', async () => {
    const literal = SSRF_VECTORS.filter((v) =>
      /^https:\/\/(?:\[[0-9a-f:.]+\]|[0-9a-fx.]+):\{port\}\/$/i.test(v.uri),
    );
    expect(literal.length).toBeGreaterThanOrEqual(12);
    for (const vector of literal) {
      const before = v4.connections + v6.connections;
      const url = fill(vector.uri).replace('https:', 'http:');
      const res = await axios.get(url, { proxy: false, responseType: 'text', validateStatus: () => true });
      expect(res.status, url).toBe(200);
      expect(v4.connections + v6.connections, url).toBe(before + 1);
    }
  });
});
