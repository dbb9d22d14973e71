/**
 * Protocol details without Apache: multistatus parsing across prefix styles, href handling (other
 * hosts, outside the account, malformed encodings), redirects never followed, servers that ignore
 * Range, hostile XML, partial DELETE failures, and the credential schema. A loopback fake stands in
 * for the server where mod_dav cannot be made to misbehave.
 */
import {
  type ConnectEvent,
  createConnectorContext,
  instantiateConnector,
  type StorageApi,
  storageCapabilities,
} from '@cloudmux/core';
import { expectCloudmuxError, readAll } from '@cloudmux/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DavLocation,
  encodeSegment,
  parseMultistatus,
  type WebDavStorage,
  webdav,
  webdavCredentials,
} from '../src/index.js';
import { davResponse, type FakeDav, type Handler, multistatus, send207, startFakeDav } from './fake-dav.js';

const fakes: FakeDav[] = [];
afterEach(async () => {
  while (fakes.length > 0) await fakes.pop()!.close();
});

async function fake(handler: Handler, host?: string): Promise<FakeDav> {
  const f = await startFakeDav(handler, host);
  fakes.push(f);
  return f;
}

async function open(url: string) {
  const events: ConnectEvent[] = [];
  const ctx = createConnectorContext({
    definition: webdav,
    accountId: 'fake',
    credentials: webdavCredentials.parse({ url, username: 'u', password: 'p' }),
    onConnect: (event) => events.push(event),
  });
  const instance = await instantiateConnector(webdav, ctx);
  return { storage: instance.storage as WebDavStorage, events, instance };
}

describe('multistatus parsing', () => {
  const styles: Array<[string, string]> = [
    [
      'D: prefix with Apache live-property prefixes',
      '<D:multistatus xmlns:D="DAV:"><D:response xmlns:lp1="DAV:"><D:href>/a/</D:href><D:propstat><D:prop>' +
        '<lp1:resourcetype><D:collection/></lp1:resourcetype>' +
        '<lp1:getlastmodified>Fri, 04 Dec 2026 04:21:36 GMT' +
        '</lp1:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status>' +
        '</D:propstat></D:response></D:multistatus>',
    ],
    [
      'default namespace',
      '<multistatus xmlns="DAV:"><response><href>/a/</href>' +
        '<propstat><prop><resourcetype><collection/></resourcetype>' +
        '<getlastmodified>Fri, 04 Dec 2026 04:21:36 GMT</getlastmodified>' +
        '</prop><status>HTTP/1.1 200 OK</status>' +
        '</propstat></response></multistatus>',
    ],
    [
      'lowercase d: (sabre/Nextcloud) with foreign properties',
      '<d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">' +
        '<d:response><d:href>/a/</d:href><d:propstat>' +
        '<d:prop><d:resourcetype><d:collection/></d:resourcetype>' +
        '<oc:id>0001</oc:id><d:getlastmodified>Fri, 04 Dec 2026' +
        ' 04:21:36 GMT</d:getlastmodified></d:prop>' +
        '<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>' +
        '</d:multistatus>',
    ],
    [
      'prefix redeclared on the element (SharePoint style)',
      '<?xml version="1.0" encoding="utf-8"?><a:multistatus xmlns:a="DAV:" xmlns:b="urn:uuid:c2f41010/">' +
        '<a:response><a:href>/a/</a:href><a:propstat><a:status>HTTP/1.1 200 OK</a:status><a:prop>' +
        '<x:resourcetype xmlns:x="DAV:"><x:collection/>' +
        '</x:resourcetype><a:getlastmodified b:dt="dateTime.rfc1123">' +
        'Fri, 04 Dec 2026 04:21:36 GMT</a:getlastmodified>' +
        '</a:prop></a:propstat></a:response></a:multistatus>',
    ],
  ];
  for (const [title, xml] of styles) {
    it(`reads resourcetype and dates: ${title}`, () => {
      const [response] = parseMultistatus(xml);
      expect(response?.href).toBe('/a/');
      expect(response?.props.has('DAV:resourcetype')).toBe(true);
      expect(response?.props.get('DAV:getlastmodified')?.text.trim()).toBe('Fri, 04 Dec 2026 04:21:36 GMT');
    });
  }

  it('does not take elements from another namespace for DAV ones, and skips non-2xx propstats', () => {
    const [response] = parseMultistatus(
      '<D:multistatus xmlns:D="DAV:" xmlns:X="urn:x"><D:response><D:href>/f.txt</D:href>' +
        '<D:propstat><D:prop><X:getcontentlength>999</X:getcontentlength>' +
        '</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>' +
        '<D:propstat><D:prop><D:getcontentlength>5</D:getcontentlength><D:getcontenttype/></D:prop>' +
        '<D:status>HTTP/1.1 200 OK</D:status></D:propstat>' +
        '<D:propstat><D:prop><D:creationdate/></D:prop>' +
        '<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>' +
        '</D:response></D:multistatus>',
    );
    expect(response?.props.get('DAV:getcontentlength')?.text).toBe('5');
    expect(response?.props.get('urn:xgetcontentlength')?.text).toBe('999');
    expect(response?.props.has('DAV:creationdate')).toBe(false);
  });

  it('decodes XML entities in hrefs and keeps a response-level status', () => {
    const responses = parseMultistatus(
      '<D:multistatus xmlns:D="DAV:"><D:response>' +
        '<D:href>/a&amp;b/x.txt</D:href><D:status>HTTP/1.1 423 Locked</D:status>' +
        '</D:response></D:multistatus>',
    );
    expect(responses).toEqual([expect.objectContaining({ href: '/a&b/x.txt', status: 423 })]);
  });

  it('refuses a DOCTYPE, malformed XML, an undeclared prefix and a non-multistatus root', async () => {
    const bad = [
      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' +
        '<D:multistatus xmlns:D="DAV:">&a;</D:multistatus>',
      '<D:multistatus xmlns:D="DAV:"><D:response></D:multistatus>',
      '<Q:multistatus><Q:response/></Q:multistatus>',
      '<D:error xmlns:D="DAV:"/>',
      '<html><body>It works!</body></html>',
    ];
    for (const xml of bad) {
      await expectCloudmuxError(
        Promise.resolve().then(() => parseMultistatus(xml)),
        'bad_gateway',
      );
    }
  });
});

describe('paths and hrefs', () => {
  const location = new DavLocation('https://dav.example.com/remote.php/dav/files/al%40ice/', '/Docs');

  it('percent-encodes every reserved character of a segment', () => {
    expect(encodeSegment("a b#c?d%e&f+g;h'i(j)*k!l")).toBe(
      'a%20b%23c%3Fd%25e%26f%2Bg%3Bh%27i%28j%29%2Ak%21l',
    );
    expect(location.url('/x y/é.txt', false)).toBe(
      'https://dav.example.com/remote.php/dav/files/al%40ice/Docs/x%20y/%C3%A9.txt',
    );
    expect(location.url('/', true)).toBe('https://dav.example.com/remote.php/dav/files/al%40ice/Docs/');
  });

  it('maps hrefs (any encoding, relative or absolute) to raw ids; other hosts, outside paths: null', () => {
    const request = 'https://dav.example.com/remote.php/dav/files/al%40ice/Docs/';
    const cases: Array<[string, string | null]> = [
      ['/remote.php/dav/files/al%40ice/Docs/x%20y/', '/x y'],
      ['/remote.php/dav/files/al@ice/Docs/%c3%a9.txt', '/é.txt'],
      ['https://dav.example.com/remote.php/dav/files/al%40ice/Docs/a.txt', '/a.txt'],
      ['http://DAV.example.com/remote.php/dav/files/al%40ice/Docs/a.txt', '/a.txt'],
      ['sub/', '/sub'],
      ['https://evil.example/remote.php/dav/files/al%40ice/Docs/a.txt', null],
      ['//evil.example/remote.php/dav/files/al%40ice/Docs/a.txt', null],
      ['https://dav.example.com:8443/remote.php/dav/files/al%40ice/Docs/a.txt', null],
      ['/remote.php/dav/files/bob/Docs/a.txt', null],
      ['/remote.php/dav/files/al%40ice/Docs/bad%ZZ.txt', null],
      ['/remote.php/dav/files/al%40ice/Docs/a%2Fb.txt', null],
      ['/remote.php/dav/files/al%40ice/Docs/nul%00.txt', null],
      ['ftp://dav.example.com/remote.php/dav/files/al%40ice/Docs/a.txt', null],
      ['/remote.php/dav/files/al%40ice/Docs/../../bob/Docs/a.txt', null],
    ];
    for (const [href, expected] of cases)
      expect([href, location.rawIdOfHref(href, request)]).toEqual([href, expected]);
  });

  it('refuses raw ids with dot segments, backslashes, controls or the upload prefix', () => {
    for (const bad of ['', 'a', '/../etc', '/a/../b', '/a\\b', '/a\u0000', '/.cloudmux-upload-1']) {
      expect(() => location.url(bad, false)).toThrow(/No such file/);
    }
  });
});

describe('credentials', () => {
  it('accepts url or the Kloudless domain field, normalizes, and re-parses its own output', () => {
    const fromDomain = webdavCredentials.parse({
      domain: 'https://dav.example.com/dav',
      username: 'u',
      password: 'p',
    });
    expect(fromDomain).toEqual({
      url: 'https://dav.example.com/dav/',
      username: 'u',
      password: 'p',
      base_path: '/',
      insecure: false,
    });
    expect(webdavCredentials.parse(fromDomain)).toEqual(fromDomain);
    const full = webdavCredentials.parse({
      url: 'http://10.0.0.5:8080/',
      username: 'u',
      password: 'p',
      base_path: '/team//docs/',
      ca: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    });
    expect(full.base_path).toBe('/team/docs');
    expect(webdav.passThrough?.kind).toBe('account_host');
    expect(webdav.passThrough?.kind === 'account_host' && webdav.passThrough.baseUrl(full)).toBe(
      'http://10.0.0.5:8080/',
    );
    expect(webdav.auth).toEqual({ type: 'basic', usernameField: 'username', passwordField: 'password' });
    expect(webdav.network).toBe('self_hosted');
  });

  it('refuses missing or unusable URLs, credentials in the URL, bad base paths and bad PEM', () => {
    const base = { username: 'u', password: 'p' };
    const bad: Record<string, unknown>[] = [
      base,
      { ...base, url: 'ftp://dav.example.com/' },
      { ...base, url: 'dav.example.com' },
      { ...base, url: 'https://u:p@dav.example.com/' },
      { ...base, url: 'https://dav.example.com/?x=1' },
      { ...base, url: 'https://dav.example.com/', domain: 'https://other.example.com/' },
      { ...base, url: 'https://dav.example.com/', base_path: 'relative' },
      { ...base, url: 'https://dav.example.com/', base_path: '/a/../b' },
      { ...base, url: 'https://dav.example.com/', ca: 'not a pem' },
      { url: 'https://dav.example.com/', username: '', password: 'p' },
      { url: 'https://dav.example.com/', username: 'a:b', password: 'p' },
    ];
    for (const input of bad)
      expect([input, webdavCredentials.safeParse(input).success]).toEqual([input, false]);
  });

  it('declares search and copy; no native multipart, permissions or properties', async () => {
    const f = await fake((_req, res) => res.end());
    const { storage } = await open(f.url);
    const caps = storageCapabilities(storage);
    expect(caps.can_search_file_name).toBe(true);
    expect(typeof storage.copy).toBe('function');
    expect((storage as StorageApi).multipart).toBeUndefined();
    expect(caps.permissions_supported_for_files).toBe(false);
    expect(caps.properties_supported_for_files).toBe(false);
  });
});

describe('against a loopback fake server', () => {
  it('ignores hrefs that name another host or lie outside the folder, and never contacts them', async () => {
    let port = 0;
    const f = await fake((req, res) => {
      if (req.method !== 'PROPFIND') return res.writeHead(405).end();
      send207(
        res,
        multistatus(
          davResponse('/dav/', { collection: true }),
          davResponse(`http://127.0.0.1:${port}/dav/a%20b.txt`, { size: 3 }),
          davResponse('/dav/sub/', { collection: true }),
          davResponse('http://evil.example/dav/secret.txt', { size: 1 }),
          davResponse('//evil.example/dav/other.txt', { size: 1 }),
          davResponse('http://127.0.0.2:1/dav/loopback-other.txt', { size: 1 }),
          davResponse('/elsewhere/outside.txt', { size: 1 }),
          davResponse('/dav/sub/grandchild.txt', { size: 1 }),
          davResponse('/dav/bad%ZZ.txt', { size: 1 }),
          davResponse('/dav/.cloudmux-upload-0123', { size: 1 }),
          davResponse('/dav/gone.txt', { size: 1, status: 'HTTP/1.1 404 Not Found' }),
        ),
      );
    });
    port = f.port;
    const { storage, events } = await open(f.url);
    const page = await storage.list('/', { pageSize: 50 });
    expect(page.items.map((i) => [i.name, i.type, i.rawId])).toEqual([
      ['a b.txt', 'file', '/a b.txt'],
      ['sub', 'folder', '/sub'],
    ]);
    expect(page.items[0]?.size).toBe(3);
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.address === '127.0.0.1' && e.port === f.port)).toBe(true);
    expect(f.requests.every((r) => r.host === `127.0.0.1:${f.port}`)).toBe(true);
    expect(f.requests.map((r) => [r.method, r.url, r.headers.depth])).toEqual([['PROPFIND', '/dav/', '1']]);
  });

  it('does not follow a redirect to another server, and takes only a same-path slash redirect', async () => {
    const other = await fake((_req, res) => res.writeHead(500).end(), '127.0.0.1');
    const f = await fake((req, res) => {
      if (req.url === '/dav/elsewhere') {
        return res.writeHead(302, { Location: `http://127.0.0.1:${other.port}/dav/elsewhere` }).end();
      }
      if (req.url === '/dav/folder')
        return res.writeHead(301, { Location: `http://127.0.0.1:${f.port}/dav/folder/` }).end();
      if (req.url === '/dav/folder/')
        return send207(res, multistatus(davResponse('/dav/folder/', { collection: true })));
      return res.writeHead(404).end();
    });
    const { storage } = await open(f.url);
    await expectCloudmuxError(storage.get('/elsewhere', 'file'), 'bad_gateway');
    await expectCloudmuxError(storage.download('/elsewhere'), 'bad_gateway');
    expect(other.connections).toBe(0);
    const folder = await storage.get('/folder', 'folder');
    expect(folder).toMatchObject({ type: 'folder', name: 'folder', rawId: '/folder' });
    await expectCloudmuxError(storage.download('/folder'), 'not_found');
  });

  it('answers a Range read correctly when the server ignores Range and sends the whole file', async () => {
    const content = Buffer.from('0123456789abcdefghij');
    const f = await fake((_req, res) => {
      res.writeHead(200, { 'Content-Length': content.length, 'Content-Type': 'text/plain' });
      res.end(content);
    });
    const { storage } = await open(f.url);
    const mid = await storage.download('/f.txt', { range: { start: 5, end: 9 } });
    expect((await readAll(mid.stream)).toString()).toBe('56789');
    expect(mid.range).toEqual({ start: 5, end: 9, total: 20 });
    const tail = await storage.download('/f.txt', { range: { start: 15 } });
    expect((await readAll(tail.stream)).toString()).toBe('fghij');
    expect(tail.range).toEqual({ start: 15, end: 19, total: 20 });
    await expectCloudmuxError(storage.download('/f.txt', { range: { start: 20 } }), 'invalid_parameters');
    expect(f.requests.at(-1)?.headers.range).toBe('bytes=20-');
  });

  it('reports a reply cut short mid-download as a gateway error on the stream', async () => {
    const f = await fake((_req, res) => {
      res.writeHead(200, { 'Content-Length': 1_000_000 });
      res.write(Buffer.alloc(1000));
      setImmediate(() => res.socket?.destroy());
    });
    const { storage } = await open(f.url);
    const result = await storage.download('/f.bin');
    await expectCloudmuxError(readAll(result.stream), 'service_not_available', 'bad_gateway');
  });

  it('turns garbage and DOCTYPE replies into bad_gateway, 401 into service_unauthorized', async () => {
    const f = await fake((req, res) => {
      if (req.url === '/dav/html')
        return res.writeHead(207, { 'Content-Type': 'text/html' }).end('<html><p>hi</html>');
      if (req.url === '/dav/doctype') {
        return send207(
          res,
          '<!DOCTYPE m [<!ENTITY x "xxxxxxxxxx">]><D:multistatus xmlns:D="DAV:">&x;</D:multistatus>',
        );
      }
      if (req.url === '/dav/noentry')
        return send207(res, multistatus(davResponse('/dav/other.txt', { size: 1 })));
      return res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="x"' }).end();
    });
    const { storage } = await open(f.url);
    await expectCloudmuxError(storage.get('/html', 'file'), 'bad_gateway');
    await expectCloudmuxError(storage.get('/doctype', 'file'), 'bad_gateway');
    await expectCloudmuxError(storage.get('/noentry', 'file'), 'bad_gateway');
    await expectCloudmuxError(storage.list('/', { pageSize: 10 }), 'service_unauthorized');
    expect(f.requests[0]?.headers.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
  });

  it('reports a DELETE answered 207 with a failed member as that member’s error', async () => {
    const f = await fake((req, res) => {
      if (req.method === 'PROPFIND')
        return send207(res, multistatus(davResponse('/dav/dir/', { collection: true })));
      if (req.method === 'DELETE') {
        return send207(
          res,
          '<D:multistatus xmlns:D="DAV:"><D:response><D:href>/dav/dir/locked.txt</D:href>' +
            '<D:status>HTTP/1.1 423 Locked</D:status></D:response></D:multistatus>',
        );
      }
      return res.writeHead(500).end();
    });
    const { storage } = await open(f.url);
    await expectCloudmuxError(
      storage.delete('/dir', 'folder', { recursive: true, permanent: true }),
      'permission_denied',
    );
    expect(f.requests.map((r) => [r.method, r.url])).toEqual([
      ['PROPFIND', '/dav/dir/'],
      ['DELETE', '/dav/dir/'],
    ]);
  });

  it('sends MOVE/COPY with our own percent-encoded same-server Destination and Overwrite F', async () => {
    const f = await fake((req, res) => {
      const path = decodeURIComponent((req.url ?? '').replace(/\/$/, ''));
      if (req.method === 'PROPFIND') {
        if (
          path === '/dav/src file.txt' ||
          path === '/dav/dest folder/copy #1.txt' ||
          path === '/dav/dest folder/moved?.txt'
        ) {
          return send207(res, multistatus(davResponse(req.url ?? '', { size: 1 })));
        }
        if (path === '/dav/dest folder')
          return send207(res, multistatus(davResponse(req.url ?? '', { collection: true })));
        return res.writeHead(404).end();
      }
      res.writeHead(201).end();
    });
    const { storage } = await open(f.url);
    await storage.copy!('/src file.txt', 'file', { parentRawId: '/dest folder', name: 'copy #1.txt' });
    await storage.move('/src file.txt', 'file', { parentRawId: '/dest folder', name: 'moved?.txt' });
    const writes = f.requests.filter((r) => r.method === 'COPY' || r.method === 'MOVE');
    expect(writes.map((r) => [r.method, r.url, r.headers.destination, r.headers.overwrite])).toEqual([
      ['COPY', '/dav/src%20file.txt', `http://127.0.0.1:${f.port}/dav/dest%20folder/copy%20%231.txt`, 'F'],
      ['MOVE', '/dav/src%20file.txt', `http://127.0.0.1:${f.port}/dav/dest%20folder/moved%3F.txt`, 'F'],
    ]);
  });
});
