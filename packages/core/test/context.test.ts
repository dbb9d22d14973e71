import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { createConnectorContext, defineConnector, networkModeFor } from '../src/index.js';

const perAccount = defineConnector({
  service: 'per_account_net',
  name: 'Per-account network',
  version: '1.0.0',
  category: 'object_storage',
  apis: ['storage'],
  auth: { type: 'bearer', field: 'token' },
  network: (c) => (c.endpoint ? 'self_hosted' : 'saas'),
  credentials: z.object({ token: z.string(), endpoint: z.string().optional() }),
  create: () => ({ storage: {} as never }),
});

describe('connector context', () => {
  it('resolves a per-account network mode into the guard policy', async () => {
    expect(networkModeFor(perAccount, { token: 't' })).toBe('saas');
    expect(networkModeFor(perAccount, { token: 't', endpoint: 'http://10.0.0.5:9000' })).toBe('self_hosted');
    const saas = createConnectorContext({
      definition: perAccount,
      accountId: '1',
      credentials: { token: 't' },
    });
    expect(saas.net.policy.mode).toBe('saas');
    await expect(saas.net.assertAllowed('127.0.0.1', 80)).rejects.toMatchObject({ code: 'forbidden' });
    const own = createConnectorContext({
      definition: perAccount,
      accountId: '1',
      credentials: { token: 't', endpoint: 'http://127.0.0.1' },
    });
    expect(own.net.policy.mode).toBe('self_hosted');
    await expect(own.net.assertAllowed('127.0.0.1', 80)).resolves.toMatchObject({ address: '127.0.0.1' });
    await expect(own.net.assertAllowed('169.254.169.254', 80)).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('a fixed mode stays fixed', () => {
    const fixed = { ...perAccount, network: 'none' as const };
    expect(networkModeFor(fixed, {})).toBe('none');
  });
});
