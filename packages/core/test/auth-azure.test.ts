import { createHmac } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  azureSharedKeyStringToSign,
  createHttpClient,
  ManualClock,
  type PreparedRequest,
  signAzureSharedKey,
  staticCredentials,
} from '../src/index.js';
import { makeDefinition } from './fixtures/http/definitions.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

// Azurite's published development key (not a secret).
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const DATE = new Date('2015-08-30T12:36:00Z');
const hmac = (s: string) =>
  createHmac('sha256', Buffer.from(KEY, 'base64')).update(s, 'utf8').digest('base64');

/*
 * Expected strings derived by hand from "Authorize with Shared Key" (Blob service, version
 * 2015-02-21+): VERB, Content-Encoding, Content-Language, Content-Length (empty when 0), Content-MD5,
 * Content-Type, Date (empty when x-ms-date is sent), If-Modified-Since, If-Match, If-None-Match,
 * If-Unmodified-Since, Range — each followed by \n — then the x-ms-* headers (lowercase, sorted,
 * "name:value\n"), then "/account/path" and "\nname:value" per query parameter (lowercase, sorted).
 */
describe('Azure Shared Key string-to-sign', () => {
  it('Put Block with metadata, query parameters and a Content-Length', () => {
    const req: PreparedRequest = {
      method: 'PUT',
      url: new URL(
        'https://myaccount.blob.core.windows.net/mycontainer/my%20blob.txt?comp=block&blockid=QUJD%3D%3D',
      ),
      headers: {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': '11',
        'x-ms-blob-type': 'BlockBlob',
        'x-ms-meta-name': ' Value ',
        'if-match': '"0x8D"',
      },
      body: Buffer.from('hello world'),
    };
    signAzureSharedKey(req, { accountName: 'myaccount', accountKey: KEY, date: DATE });
    const expected = [
      'PUT',
      '', // Content-Encoding
      '', // Content-Language
      '11',
      '', // Content-MD5
      'text/plain; charset=utf-8',
      '', // Date (x-ms-date is set)
      '', // If-Modified-Since
      '"0x8D"',
      '', // If-None-Match
      '', // If-Unmodified-Since
      '', // Range
      'x-ms-blob-type:BlockBlob',
      'x-ms-date:Sun, 30 Aug 2015 12:36:00 GMT',
      'x-ms-meta-name:Value',
      'x-ms-version:2021-08-06',
      '/myaccount/mycontainer/my%20blob.txt',
      'blockid:QUJD==',
      'comp:block',
    ].join('\n');
    expect(azureSharedKeyStringToSign(req, 'myaccount')).toBe(expected);
    expect(req.headers.authorization).toBe(`SharedKey myaccount:${hmac(expected)}`);
    expect(req.headers['x-ms-date']).toBe('Sun, 30 Aug 2015 12:36:00 GMT');
  });

  it('service request: empty path is "/", a zero Content-Length is signed empty, values sorted', () => {
    const req: PreparedRequest = {
      method: 'get',
      url: new URL(
        'https://myaccount.blob.core.windows.net?restype=service&comp=properties&Include=b&include=a',
      ),
      headers: { 'content-length': '0', 'x-ms-version': '2023-11-03', range: 'bytes=0-9' },
      body: undefined,
    };
    signAzureSharedKey(req, { accountName: 'myaccount', accountKey: KEY, date: DATE });
    const expected = [
      'GET',
      '',
      '',
      '', // Content-Length 0 → empty
      '',
      '',
      '',
      '',
      '',
      '',
      '',
      'bytes=0-9',
      'x-ms-date:Sun, 30 Aug 2015 12:36:00 GMT',
      'x-ms-version:2023-11-03',
      '/myaccount/',
      'comp:properties',
      'include:a,b',
      'restype:service',
    ].join('\n');
    expect(azureSharedKeyStringToSign(req, 'myaccount')).toBe(expected);
    expect(req.headers.authorization).toBe(`SharedKey myaccount:${hmac(expected)}`);
  });
});

describe('Azure auth through the HTTP client (loopback, path-style like Azurite)', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('signs a Put Blob the way the documented rules say', async () => {
    server = await startServer((_req, res) => json(res, 201, {}));
    const http = createHttpClient({
      definition: makeDefinition({
        type: 'azure_shared_key',
        accountNameField: 'account',
        accountKeyField: 'key',
      }),
      accountId: '3',
      credentials: staticCredentials({ account: 'devstoreaccount1', key: KEY }),
      clock: new ManualClock(DATE.getTime()),
      rawHeaders: { 'x-ms-date': 'Mon, 01 Jan 2001 00:00:00 GMT', 'x-ms-meta-from-client': 'yes' },
    });
    await http.put(`${server.url}/devstoreaccount1/photos/a.jpg`, Buffer.from('0123456789'), {
      headers: { 'Content-Type': 'image/jpeg', 'x-ms-blob-type': 'BlockBlob' },
    });
    const seen = server.requests[0]!;
    const expected = [
      'PUT',
      '',
      '',
      '10',
      '',
      'image/jpeg',
      '',
      '',
      '',
      '',
      '',
      '',
      'x-ms-blob-type:BlockBlob',
      'x-ms-date:Sun, 30 Aug 2015 12:36:00 GMT',
      'x-ms-meta-from-client:yes',
      'x-ms-version:2021-08-06',
      '/devstoreaccount1/devstoreaccount1/photos/a.jpg',
    ].join('\n');
    expect(seen.headers['x-ms-date']).toBe('Sun, 30 Aug 2015 12:36:00 GMT');
    expect(seen.headers['content-length']).toBe('10');
    expect(seen.headers.authorization).toBe(`SharedKey devstoreaccount1:${hmac(expected)}`);
  });

  it('appends the SAS token to the query and sends no Authorization', async () => {
    server = await startServer((_req, res) => json(res, 200, {}));
    const sas = '?sv=2021-08-06&ss=b&srt=co&sp=rl&se=2030-01-01T00:00:00Z&sig=abc%2Bdef%3D';
    const http = createHttpClient({
      definition: makeDefinition({ type: 'azure_sas', sasTokenField: 'sas' }),
      accountId: '3',
      credentials: staticCredentials({ sas }),
    });
    await http.get(`${server.url}/c?restype=container&comp=list`);
    const seen = server.requests[0]!;
    expect(seen.url).toBe(`/c?restype=container&comp=list&${sas.slice(1)}`);
    expect(seen.headers.authorization).toBeUndefined();
  });
});
