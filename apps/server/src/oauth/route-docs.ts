/**
 * OpenAPI entries of the routes in src/routes/oauth.ts, for `ROUTE_DOCS` in
 * src/openapi/routes/index.ts (`...oauthRouteDocs`).
 */
import * as z from 'zod';
import type { RouteDoc } from '../openapi/types.js';

const authorizeQuery = z.object({
  client_id: z.string().describe('Application id'),
  response_type: z
    .enum(['code', 'token'])
    .describe('`code`: redirect with a one-time code; `token`: the popup / out-of-band flow'),
  redirect_uri: z
    .string()
    .optional()
    .describe('A redirect URI registered for the application (exact match), or `urn:ietf:wg:oauth:2.0:oob`'),
  scope: z
    .string()
    .optional()
    .describe(
      'Kloudless scopes, space separated: `any`, `all`, `storage`, `<service>`, `<service>:normal.storage`, `all:admin`…',
    ),
  state: z.string().optional().describe('Echoed back to the application'),
  extra_data: z.string().optional().describe('URL-encoded JSON object pre-filling the credential form'),
  form_data: z.string().optional().describe('Same as extra_data (newer name)'),
  custom_properties: z.string().optional().describe('URL-encoded JSON object stored on the new account'),
  origin: z.string().optional().describe('Popup flow: the trusted origin the result is posted to'),
  request_id: z.string().optional().describe('Popup flow: echoed as the message `id`'),
  'raw[key]': z.string().optional().describe('Passed to the provider’s authorize URL as `key`'),
});

const stateQuery = z.object({ state: z.string().describe('Our state, from the chooser link') });
const callbackQuery = z.object({
  state: z.string().describe('Our state'),
  code: z.string().optional().describe('The provider’s authorization code'),
  error: z.string().optional().describe('The provider’s error (e.g. `access_denied`)'),
  error_description: z.string().optional(),
});

const tokenForm = z.object({
  grant_type: z.literal('authorization_code'),
  code: z.string().describe('The code from the redirect'),
  redirect_uri: z.string().describe('The redirect_uri of the authorize request'),
  client_id: z.string().optional().describe('Application id'),
  client_secret: z
    .string()
    .optional()
    .describe('An API key of the application (or send `Authorization: APIKey …`)'),
});

const tokenReply = z.object({
  access_token: z.string(),
  token_type: z.literal('Bearer'),
  account_id: z.number().int(),
  scope: z.string(),
  state: z.string().optional(),
});

const tokenError = z.looseObject({
  error: z.enum(['invalid_request', 'invalid_client', 'invalid_grant', 'unsupported_grant_type']),
  error_description: z.string(),
  error_code: z.string(),
  message: z.string(),
  status_code: z.number().int(),
});

const settings = z.object({
  app_id: z.string(),
  redirect_uris: z.array(z.string()),
  trusted_origins: z.array(z.string()),
  api: z.literal('core'),
  type: z.literal('application_settings'),
});

const settingsBody = z.object({
  redirect_uris: z.array(z.string()).optional().describe('Replaces the list: absolute URIs without fragment'),
  trusted_origins: z.array(z.string()).optional().describe('Replaces the list: `scheme://host[:port]`'),
});

const serviceParam = { service: 'Service id of an installed connector' };
const page = (description: string) => ({ description, html: 'HTML page' });

export const oauthRouteDocs: RouteDoc[] = [
  {
    method: 'GET',
    path: '/v1/oauth',
    operationId: 'authorize',
    tag: 'Accounts',
    summary: 'Connect an account (OAuth 2.0 authorize endpoint)',
    description:
      'Shows the service chooser, the credential form, or redirects to the provider. Errors before the redirect URI ' +
      'is validated are an HTML page; after, they go back as `?error=&error_description=&state=` or in the popup message.',
    auth: 'none',
    query: authorizeQuery,
    responses: {
      200: page('Service chooser, credential form, or the popup result'),
      302: { description: 'To the provider, or back to the redirect URI (code, or error)' },
      400: page('Unknown client, unregistered redirect URI or untrusted origin'),
    },
  },
  {
    method: 'GET',
    path: '/v1/oauth/connect/:service',
    operationId: 'authorizeService',
    tag: 'Accounts',
    summary: 'Connect the chosen service',
    auth: 'none',
    params: serviceParam,
    query: stateQuery,
    responses: {
      200: page('The credential form'),
      302: { description: 'To the provider’s authorize URL' },
      400: page('Unknown, used or foreign state'),
    },
  },
  {
    method: 'POST',
    path: '/v1/oauth/connect/:service',
    operationId: 'submitCredentials',
    tag: 'Accounts',
    summary: 'Submit the credential form',
    description:
      'Validated with the connector’s schema and against the service before the account is created.',
    auth: 'none',
    params: serviceParam,
    body: { form: z.looseObject({ _state: z.string(), _csrf: z.string() }), required: true },
    responses: {
      200: page('The popup / out-of-band result'),
      303: { description: 'Back to the redirect URI with the code' },
      400: page('The form again, with the service’s error'),
    },
  },
  {
    method: 'GET',
    path: '/v1/oauth/callback/:service',
    operationId: 'oauthCallback',
    tag: 'Accounts',
    summary: 'Provider callback',
    description: 'The redirect URI to register at the provider: `<public URL>/v1/oauth/callback/<service>`.',
    auth: 'none',
    params: serviceParam,
    query: callbackQuery,
    responses: {
      200: page('The popup / out-of-band result'),
      302: { description: 'Back to the redirect URI (code, or error)' },
      400: page('Unknown, used or foreign state'),
    },
  },
  {
    method: 'POST',
    path: '/v1/oauth/token',
    operationId: 'exchangeCode',
    tag: 'Accounts',
    summary: 'Exchange a code for a bearer token',
    description:
      'Form body; the client secret is an API key of the app, in the body or as `Authorization: APIKey`.',
    auth: 'none',
    body: { form: tokenForm, required: true },
    responses: {
      200: { description: 'The account bearer token.', json: tokenReply },
      400: { description: 'OAuth error (RFC 6749 §5.2) with the Kloudless envelope.', json: tokenError },
      401: { description: '`invalid_client`.', json: tokenError },
    },
  },
  {
    method: 'GET',
    path: '/static/iexd.html',
    operationId: 'iexd',
    tag: 'Accounts',
    summary: 'Widget relay frame',
    description:
      'Opens the popup for browsers that cannot message it directly and relays its result to the app.',
    auth: 'none',
    responses: { 200: page('The relay frame') },
  },
  {
    method: 'GET',
    path: '/v1/applications/:app_id/settings',
    operationId: 'getApplicationSettings',
    tag: 'Accounts',
    summary: 'Redirect URIs and trusted origins',
    auth: 'api_key',
    params: { app_id: 'Application id (the API key’s own)' },
    responses: { 200: { description: 'The settings.', json: settings } },
    errors: ['not_found'],
  },
  {
    method: 'PUT',
    path: '/v1/applications/:app_id/settings',
    operationId: 'putApplicationSettings',
    tag: 'Accounts',
    summary: 'Replace redirect URIs and/or trusted origins',
    auth: 'api_key',
    params: { app_id: 'Application id (the API key’s own)' },
    body: { json: settingsBody, required: true },
    responses: { 200: { description: 'The settings.', json: settings } },
    errors: ['invalid_parameters', 'not_found'],
  },
];
