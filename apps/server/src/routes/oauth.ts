/**
 * Connecting accounts (kloudless-api.md §1.2–1.6; flow in src/oauth/flow.ts): the authorize
 * endpoint and its pages, the provider callback, the credential form, the token endpoint, the
 * `/static/iexd.html` relay of the widgets, and the per-application connect settings.
 */
import { CloudmuxError } from '@cloudmux/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as z from 'zod';
import { parseAuthorization } from '../http/auth.js';
import type { ServerDeps } from '../http/deps.js';
import { parseBody, readForm } from '../http/params.js';
import { principalOf } from '../http/scope.js';
import { ConnectFlows } from '../oauth/flow.js';
import { readAppSettings, writeAppSettings } from '../oauth/settings.js';
import { iexdPage } from '../pages/connect/iexd.js';
import type { AppRow, AppSettings } from '../store/store.js';
import { sendJson } from './util.js';

/**
 * Form bodies through `readForm`; a `text/plain` body (what `fetch` labels a bare string) arrives
 * already read as a string by Fastify's built-in text parser, so it is decoded here.
 */
async function formBody(request: FastifyRequest): Promise<Record<string, string>> {
  if (typeof request.body === 'string') return Object.fromEntries(new URLSearchParams(request.body));
  return readForm(request);
}

export interface OauthRouteOptions {
  /** Clock of the state and code records (ms since the epoch). */
  now?: () => number;
}

const settingsBody = z.strictObject({
  redirect_uris: z.array(z.string()).max(100).optional(),
  trusted_origins: z.array(z.string()).max(100).optional(),
});

function renderSettings(appId: string, settings: AppSettings) {
  return { app_id: appId, ...settings, api: 'core', type: 'application_settings' };
}

/** RFC 6749 §2.3.1 client authentication, plus the Kloudless spellings: `APIKey` header or `client_secret`. */
async function tokenClient(
  deps: ServerDeps,
  request: FastifyRequest,
  form: Record<string, string>,
): Promise<AppRow | string> {
  const auth = parseAuthorization(request.headers.authorization);
  let key: string | undefined;
  let clientId = form.client_id;
  if (auth?.scheme === 'apikey') key = auth.value;
  else if (auth?.scheme === 'basic') {
    const decoded = Buffer.from(auth.value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) {
      try {
        clientId = decodeURIComponent(decoded.slice(0, colon));
        key = decodeURIComponent(decoded.slice(colon + 1));
      } catch {
        return 'The Basic credentials are not form-encoded.';
      }
    }
  } else if (form.client_secret) key = form.client_secret;
  if (!key)
    return 'Client authentication is required: client_secret (an API key of the application) or an APIKey header.';
  const app = await deps.store.appForApiKey(key);
  if (!app) return 'The client secret is invalid or revoked.';
  if (clientId && clientId !== app.id) return 'client_id does not match the API key.';
  return app;
}

function sendTokenError(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  error: string,
  description: string,
) {
  // The OAuth fields (RFC 6749 §5.2) that SDKs read, plus the Kloudless envelope for clients that parse that.
  const envelope = new CloudmuxError(status === 401 ? 'unauthorized' : 'bad_request', description).toEnvelope(
    request.id,
  );
  if (status === 401) reply.header('www-authenticate', 'Basic realm="cloudmux"');
  return sendJson(reply.header('cache-control', 'no-store').header('pragma', 'no-cache'), status, {
    error,
    error_description: description,
    ...envelope,
  });
}

export function registerOauthRoutes(
  app: FastifyInstance,
  deps: ServerDeps,
  options: OauthRouteOptions = {},
): void {
  const flows = new ConnectFlows(deps, options);
  const serviceOf = (request: FastifyRequest) => (request.params as { service: string }).service;

  app.get('/v1/oauth', (request, reply) => flows.start(request, reply));
  app.get('/v1/oauth/connect/:service', (request, reply) => flows.choose(request, reply, serviceOf(request)));
  app.post('/v1/oauth/connect/:service', async (request, reply) =>
    flows.submitForm(request, reply, serviceOf(request), await formBody(request)),
  );
  app.get('/v1/oauth/callback/:service', (request, reply) =>
    flows.callback(request, reply, serviceOf(request)),
  );

  app.post('/v1/oauth/token', async (request, reply) => {
    const form = await formBody(request);
    const client = await tokenClient(deps, request, form);
    if (typeof client === 'string') return sendTokenError(request, reply, 401, 'invalid_client', client);
    const result = await flows.exchange(client, form);
    if (result.status !== 200) {
      return sendTokenError(
        request,
        reply,
        result.status,
        String(result.body.error),
        String(result.body.error_description),
      );
    }
    return sendJson(reply.header('cache-control', 'no-store').header('pragma', 'no-cache'), 200, result.body);
  });

  app.get('/static/iexd.html', async (_request, reply) => {
    const page = iexdPage();
    return reply.status(200).headers(page.headers).send(page.html);
  });

  const settingsApp = async (request: FastifyRequest) => {
    const principal = await principalOf(deps, request);
    if (principal.kind !== 'api_key')
      throw new CloudmuxError('forbidden', 'Application settings need the application API key.');
    // Another application's settings do not exist for this key.
    if (principal.app.id !== (request.params as { app_id: string }).app_id)
      throw new CloudmuxError('not_found', 'Application not found.');
    return principal.app.id;
  };
  app.get('/v1/applications/:app_id/settings', async (request, reply) => {
    const appId = await settingsApp(request);
    return sendJson(reply, 200, renderSettings(appId, await readAppSettings(deps.store, appId)));
  });
  app.put('/v1/applications/:app_id/settings', async (request, reply) => {
    const appId = await settingsApp(request);
    const body = parseBody(request.body, settingsBody);
    return sendJson(reply, 200, renderSettings(appId, await writeAppSettings(deps.store, appId, body)));
  });
}
