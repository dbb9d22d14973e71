import * as z from 'zod';
import { bodies, named, queries, replies } from '../schemas.js';
import type { DocContext, RouteDoc } from '../types.js';

/** Import bodies per installed connector: the account fields plus that connector's credential fields. */
function importBody(context: DocContext): z.ZodType {
  const variants = context.connectors.map((definition) => {
    const credentials = definition.credentials as unknown;
    const fields = credentials instanceof z.ZodObject ? (credentials.shape as z.ZodRawShape) : {};
    return bodies.importAccountBase
      .extend(fields)
      .extend({ service: z.literal(definition.service).describe(`${definition.name}`) })
      .describe(`${definition.name} (\`${definition.service}\`)`);
  });
  if (variants.length === 0) return bodies.importAccountBase;
  if (variants.length === 1) return variants[0]!;
  return z.union(variants as unknown as [z.ZodType, z.ZodType, ...z.ZodType[]]);
}

const accountOrList = z.union([named.Account, named.AccountList]);

export const accountRoutes: RouteDoc[] = [
  {
    method: 'POST',
    path: '/v1/accounts',
    operationId: 'importAccount',
    tag: 'Accounts',
    summary: 'Import an account',
    description:
      'Stores an account with its credentials, given at the top level of the body as Kloudless took them. ' +
      'Credentials are checked against the service only with `validate=true`. `local` roots must lie inside ' +
      'the directories the operator allows (`CLOUDMUX_LOCAL_ROOTS`).',
    auth: 'api_key',
    query: queries.importAccount,
    body: { required: true, json: importBody },
    responses: { 201: { description: 'The imported account.', json: named.Account } },
    errors: ['invalid_parameters', 'forbidden', 'service_unauthorized', 'not_implemented'],
  },
  {
    method: 'GET',
    path: '/v1/accounts',
    operationId: 'listAccounts',
    tag: 'Accounts',
    summary: 'List accounts',
    description:
      'With the API key: the application’s accounts. With bearer tokens: the tokens’ own accounts.',
    auth: 'account',
    query: queries.accountList,
    responses: { 200: { description: 'A page of accounts (with `total`).', json: named.AccountList } },
    errors: ['invalid_parameters', 'not_found'],
  },
  {
    method: 'GET',
    path: '/v1/accounts/:account',
    operationId: 'getAccount',
    tag: 'Accounts',
    summary: 'Get an account',
    description: 'One account, or a list when the path names several comma-separated ids.',
    auth: 'account',
    query: queries.accountGet,
    responses: { 200: { description: 'The account (or a list of them).', json: accountOrList } },
    errors: ['invalid_parameters'],
  },
  {
    method: 'PATCH',
    path: '/v1/accounts/:account',
    operationId: 'updateAccount',
    tag: 'Accounts',
    summary: 'Update an account',
    auth: 'account',
    body: { json: bodies.patchAccount },
    responses: { 200: { description: 'The updated account.', json: named.Account } },
    errors: ['invalid_parameters', 'forbidden', 'not_implemented'],
  },
  {
    method: 'DELETE',
    path: '/v1/accounts/:account',
    operationId: 'deleteAccount',
    tag: 'Accounts',
    summary: 'Disconnect an account',
    description: 'Deletes the account and revokes its bearer tokens.',
    auth: 'account',
    responses: { 204: { description: 'Deleted; the body is empty.' } },
  },
  {
    method: 'POST',
    path: '/v1/accounts/:account/tokens',
    operationId: 'createAccountToken',
    tag: 'Accounts',
    summary: 'Mint a bearer token for an account',
    auth: 'api_key',
    body: { json: bodies.createToken },
    responses: {
      201: { description: 'The new token (shown once; stored hashed).', json: replies.accountToken },
    },
    errors: ['invalid_parameters', 'forbidden'],
  },
  {
    method: 'DELETE',
    path: '/v1/accounts/:account/tokens/:token',
    operationId: 'revokeAccountToken',
    tag: 'Accounts',
    summary: 'Revoke a bearer token',
    auth: 'account',
    responses: { 204: { description: 'Revoked; the body is empty.' } },
    errors: ['invalid_parameters'],
  },
  {
    method: 'GET',
    path: '/v1/oauth/token',
    operationId: 'verifyToken',
    tag: 'Accounts',
    summary: 'Verify a bearer token',
    description: 'The SDKs read an invalid token from the 400 answer, not a 401.',
    auth: 'bearer',
    responses: { 200: { description: 'Who the token belongs to.', json: replies.tokenInfo } },
    errors: ['bad_request'],
  },
  {
    method: 'GET',
    path: '/v1/public/services',
    operationId: 'listPublicServices',
    tag: 'Accounts',
    summary: 'Installed connectors',
    description: 'What the Kloudless widgets read to list services, with their capabilities.',
    auth: 'none',
    query: queries.publicServices,
    responses: { 200: { description: 'The connectors of this server.', json: named.PublicServiceList } },
    errors: ['invalid_parameters'],
  },
];
