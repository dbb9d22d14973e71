import { afterEach, describe, expect, it } from 'vitest';
import * as z from 'zod';
import {
  type AuthSpec,
  CloudmuxError,
  createHttpClient,
  defineConnector,
  staticCredentials,
} from '../src/index.js';
import { makeDefinition } from './fixtures/http/definitions.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

// Azure Blob accepts Shared Key or a SAS: one definition, chosen per account by the fields present.
const azureEither: AuthSpec = {
  type: 'one_of',
  strategies: [
    { type: 'azure_shared_key', accountNameField: 'account_name', accountKeyField: 'account_key' },
    { type: 'azure_sas', sasTokenField: 'sas_token' },
  ],
};

describe('one_of auth', () => {
  it('picks the first strategy whose credential fields are present', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    servers.push(s);
    const client = (credentials: Record<string, unknown>) =>
      createHttpClient({
        definition: makeDefinition(azureEither),
        accountId: '1',
        credentials: staticCredentials(credentials),
      });
    const key = Buffer.from('k'.repeat(32)).toString('base64');
    await client({ account_name: 'acct', account_key: key, sas_token: 'sv=1&sig=x' }).get(`${s.url}/c/blob`);
    expect(s.requests[0]!.headers.authorization).toMatch(/^SharedKey acct:/);
    expect(s.requests[0]!.url).toBe('/c/blob');
    await client({ account_name: 'acct', sas_token: 'sv=2021-08-06&sig=abc' }).get(`${s.url}/c/blob`);
    expect(s.requests[1]!.headers.authorization).toBeUndefined();
    expect(s.requests[1]!.url).toBe('/c/blob?sv=2021-08-06&sig=abc');
    const err = await client({ account_name: 'acct' })
      .get(`${s.url}/c/blob`)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudmuxError);
    expect((err as CloudmuxError).code).toBe('service_unauthorized');
    expect(s.requests).toHaveLength(2);
  });

  it('refuses OAuth strategies as alternatives at load time', () => {
    expect(() =>
      defineConnector({
        service: 'bad_one_of',
        name: 'x',
        version: '1.0.0',
        category: 'storage',
        apis: ['storage'],
        network: 'none',
        credentials: z.object({}),
        auth: {
          type: 'one_of',
          strategies: [
            {
              type: 'oauth2',
              authorizeUrl: 'https://a.example/a',
              tokenUrl: 'https://a.example/t',
              scopes: [],
            } as never,
            { type: 'bearer', field: 't' },
          ],
        },
        create: () => ({ storage: {} as never }),
      }),
    ).toThrow(/\[bad_one_of\].*auth/);
  });
});
