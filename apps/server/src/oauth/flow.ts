/**
 * Connecting accounts (kloudless-api.md §1.2–1.6): `GET /v1/oauth` validates the application's
 * request and opens a flow; the user picks a service, signs in at the provider (OAuth 2.0 code
 * grant with our own `state` and PKCE S256) or fills the credential form; the account is created
 * and the result goes back to the application:
 *
 * - `response_type=code` + registered `redirect_uri` → `302 redirect_uri?code=<ours>&state=<theirs>`;
 *   the app exchanges the code at `POST /v1/oauth/token`.
 * - `response_type=token` + `urn:ietf:wg:oauth:2.0:oob` + trusted `origin` → a page that posts
 *   `"kloudless:" + JSON({type: "authentication", id: request_id, data})` to the opener;
 *   without `origin` the token is shown to the user (OOB copy-paste).
 * - `response_type=token` + registered `redirect_uri` → the token in the fragment (RFC 6749 §4.2.2).
 *
 * Errors: before the redirect URI is validated (unknown client, unregistered redirect URI,
 * untrusted origin) an HTML error page, never a redirect. After it, `?error=&error_description=&state=`
 * (code flow) or the popup message with `data.error`. A `state` that is unknown, already used, or
 * was opened in another browser (the binding cookie) gets the error page too — there is no
 * trustworthy place to send it — while an expired state returns `invalid_request` to the app.
 */
import {
  type AnyConnectorDefinition,
  buildAuthorizeUrl,
  CloudmuxError,
  constantTimeEqual,
  createNetworkGuard,
  createPkcePair,
  createSecretBox,
  createTokenHttp,
  exchangeAuthorizationCode,
  hashToken,
  networkModeFor,
  type OAuth2Spec,
} from '@cloudmux/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerDeps } from '../http/deps.js';
import { escapeHtml, type Page } from '../pages/connect/layout.js';
import {
  type ChooserEntry,
  chooserPage,
  credentialFormPage,
  errorPage,
  oobResultPage,
  popupResultPage,
} from '../pages/connect/pages.js';
import { assertLocalRoot } from '../routes/accounts.js';
import type { AccountRow, AppRow } from '../store/store.js';
import { credentialFields, credentialsFromForm, displayValues } from './forms.js';
import {
  AuthorizationError,
  type AuthorizationErrorCode,
  CODE_TTL_MS,
  FLOW_TTL_MS,
  isAuthorizationErrorCode,
  OOB_REDIRECT_URI,
} from './protocol.js';
import { effectiveScope, resolveScope, type ServiceGrant } from './scope.js';
import { OAuthRecords, randomSecret } from './states.js';

export const BINDING_COOKIE = 'cloudmux_oauth';

/** Where and how a result goes back to the application. */
export interface ReturnTo {
  responseType: 'code' | 'token';
  /** As the application sent it (or the OOB URN). */
  redirectUri: string;
  oob: boolean;
  state?: string;
  /** A trusted origin of the app: the popup's `postMessage` target. */
  origin?: string;
  requestId?: string;
}

export interface FlowData extends ReturnTo {
  grants: Array<{ service: string; admin: boolean; apis: string[] | null }>;
  /** `extra_data` / `form_data`: pre-fills the credential form. */
  formData: Record<string, unknown>;
  /** `raw[k]=v`: extra parameters of the provider's authorize URL. */
  raw: Record<string, string>;
  customProperties?: Record<string, unknown>;
  /** SHA-256 of the browser-binding cookie the flow was opened with. */
  binding: string;
  csrf: string;
  service?: string;
  codeVerifier?: string;
}

export interface CodeData {
  accountId: number;
  redirectUri: string;
  scope: string;
  state?: string;
  /** Set once exchanged: a replayed code revokes the token it produced (RFC 6749 §4.1.2). */
  tokenHash?: string;
}

/** Provider parameters `raw[…]` may not override: they carry the flow's own security. */
const PROTECTED_RAW = new Set([
  'response_type',
  'client_id',
  'redirect_uri',
  'state',
  'code_challenge',
  'code_challenge_method',
]);

const MAX_JSON_PARAM = 16 * 1024;

function jsonObjectParam(name: string, value: string | null): Record<string, unknown> | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (value.length > MAX_JSON_PARAM) throw new AuthorizationError('invalid_request', `${name} is too long.`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new AuthorizationError('invalid_request', `${name} must be a URL-encoded JSON object.`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new AuthorizationError('invalid_request', `${name} must be a JSON object.`);
  }
  return parsed as Record<string, unknown>;
}

export function readCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const index = part.indexOf('=');
    if (index < 0) continue;
    if (part.slice(0, index).trim() === name) return part.slice(index + 1).trim();
  }
  return undefined;
}

function sendPage(reply: FastifyReply, status: number, page: Page): FastifyReply {
  return reply.status(status).headers(page.headers).send(page.html);
}

/** CSP `form-action` source for a redirect URI (`https://app.example`, or `com.example.app:`). */
function formTarget(redirectUri: string): string | undefined {
  try {
    const url = new URL(redirectUri);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : url.protocol;
  } catch {
    return undefined;
  }
}

type FlowCheck =
  | { ok: true; flow: FlowData; app: AppRow }
  | { ok: false; page: Page; status: number }
  | { ok: false; expired: FlowData };

export class ConnectFlows {
  readonly records: OAuthRecords;

  constructor(
    private readonly deps: ServerDeps,
    options: { now?: () => number } = {},
  ) {
    this.records = new OAuthRecords(
      deps.storeHandle.db,
      createSecretBox({ keys: deps.keys.keyring, purpose: 'oauth-states' }),
      options.now,
    );
  }

  private get publicUrl(): string {
    return this.deps.config.publicUrl;
  }

  callbackUrl(service: string): string {
    return `${this.publicUrl}/v1/oauth/callback/${encodeURIComponent(service)}`;
  }

  private get secureCookies(): boolean {
    return this.publicUrl.startsWith('https:');
  }

  // ── GET /v1/oauth ────────────────────────────────────────────────────────

  async start(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const q = new URL(request.url, 'http://localhost').searchParams;
    const clientId = q.get('client_id') ?? '';
    const app = clientId ? await this.deps.store.getApp(clientId) : undefined;
    if (!app)
      return sendPage(
        reply,
        400,
        errorPage('Unknown application', 'The client_id does not name an application of this server.'),
      );
    const settings = this.deps.store.appSettings(app);

    const responseTypeParam = q.get('response_type') ?? '';
    const redirectParam = q.get('redirect_uri');
    let redirectUri: string;
    if (redirectParam === null || redirectParam === '') {
      // java2's documented manual OOB link has no redirect_uri: the token is shown.
      if (responseTypeParam !== 'token') {
        return sendPage(reply, 400, errorPage('Missing redirect URI', 'The request has no redirect_uri.'));
      }
      redirectUri = OOB_REDIRECT_URI;
    } else if (redirectParam === OOB_REDIRECT_URI || settings.redirect_uris.includes(redirectParam)) {
      redirectUri = redirectParam;
    } else {
      return sendPage(
        reply,
        400,
        errorPage(
          'Redirect URI not registered',
          `The redirect_uri is not registered for ${app.name}; the application's operator must add it exactly.`,
        ),
      );
    }
    const oob = redirectUri === OOB_REDIRECT_URI;
    const originParam = q.get('origin') ?? undefined;
    let origin: string | undefined;
    if (oob && originParam) {
      if (!settings.trusted_origins.includes(originParam.replace(/\/$/, ''))) {
        return sendPage(
          reply,
          400,
          errorPage(
            'Origin not trusted',
            `${originParam.slice(0, 200)} is not a trusted origin of ${app.name}.`,
          ),
        );
      }
      origin = originParam.replace(/\/$/, '');
    }
    const state = q.get('state') ?? undefined;
    const requestId = q.get('request_id') ?? undefined;
    const ret: ReturnTo = {
      responseType: responseTypeParam === 'token' ? 'token' : 'code',
      redirectUri,
      oob,
      ...(state !== undefined ? { state } : {}),
      ...(origin ? { origin } : {}),
      ...(requestId !== undefined ? { requestId } : {}),
    };

    // From here on the redirect URI is trusted: errors go back to the application.
    try {
      if (responseTypeParam !== 'code' && responseTypeParam !== 'token') {
        throw new AuthorizationError('unsupported_response_type', 'response_type must be code or token.');
      }
      const grants = resolveScope(this.deps.registry, q.get('scope') ?? undefined);
      const formData = {
        ...jsonObjectParam('extra_data', q.get('extra_data')),
        ...jsonObjectParam('form_data', q.get('form_data')),
      };
      const customProperties = jsonObjectParam('custom_properties', q.get('custom_properties'));
      const raw: Record<string, string> = {};
      for (const [key, value] of q) {
        const match = /^raw\[([^\]]+)\]$/.exec(key);
        if (match && !PROTECTED_RAW.has(match[1]!)) raw[match[1]!] = value;
      }
      let cookie = readCookie(request, BINDING_COOKIE);
      if (!cookie || !/^[A-Za-z0-9_-]{43}$/.test(cookie)) cookie = randomSecret();
      reply.header(
        'set-cookie',
        `${BINDING_COOKIE}=${cookie}; Path=/v1/oauth; Max-Age=${FLOW_TTL_MS / 1000}; HttpOnly; SameSite=Lax${this.secureCookies ? '; Secure' : ''}`,
      );
      const flow: FlowData = {
        ...ret,
        grants: grants.map((g) => ({
          service: g.service,
          admin: g.admin,
          apis: g.apis ? [...g.apis] : null,
        })),
        formData,
        raw,
        ...(customProperties ? { customProperties } : {}),
        binding: hashToken(cookie),
        csrf: randomSecret(),
      };
      const flowState = await this.records.issue('flow', app.id, flow, FLOW_TTL_MS);
      if (grants.length === 1) return this.beginService(reply, app, flowState, flow, grants[0]!.service);
      const entries: ChooserEntry[] = grants.map((g) => ({
        service: g.service,
        name: this.deps.registry.get(g.service)!.name,
        href: `/v1/oauth/connect/${encodeURIComponent(g.service)}?state=${encodeURIComponent(flowState)}`,
      }));
      return sendPage(reply, 200, chooserPage(app.name, entries));
    } catch (err) {
      if (err instanceof AuthorizationError) return this.deliverError(reply, ret, err.error, err.description);
      throw err;
    }
  }

  // ── shared checks ────────────────────────────────────────────────────────

  /** Loads a flow for this browser; `service` must be one the flow allows (and the chosen one, for callbacks). */
  private async checkFlow(
    request: FastifyRequest,
    state: string | undefined,
    service: string,
    chosen: boolean,
  ): Promise<FlowCheck> {
    const record = await this.records.load<FlowData>('flow', state);
    if (!record) {
      return {
        ok: false,
        status: 400,
        page: errorPage('Unknown request', 'This connection request is unknown or has been removed.'),
      };
    }
    const flow = record.data;
    if (record.used) {
      return {
        ok: false,
        status: 400,
        page: errorPage(
          'Request already used',
          'This connection request has already been completed or cancelled.',
        ),
      };
    }
    const cookie = readCookie(request, BINDING_COOKIE);
    if (!cookie || !constantTimeEqual(hashToken(cookie), flow.binding)) {
      return {
        ok: false,
        status: 400,
        page: errorPage(
          'Wrong browser',
          'This connection request was started in another browser or its cookie was lost.',
        ),
      };
    }
    if (!flow.grants.some((g) => g.service === service) || (chosen && flow.service !== service)) {
      return {
        ok: false,
        status: 400,
        page: errorPage('Service not allowed', `This request does not connect ${service.slice(0, 100)}.`),
      };
    }
    if (record.expired) return { ok: false, expired: flow };
    const app = await this.deps.store.getApp(record.appId);
    if (!app)
      return {
        ok: false,
        status: 400,
        page: errorPage('Unknown application', 'The application no longer exists.'),
      };
    return { ok: true, flow, app };
  }

  private async failedCheck(
    reply: FastifyReply,
    check: Exclude<FlowCheck, { ok: true }>,
    state: string,
  ): Promise<FastifyReply> {
    if ('expired' in check) {
      await this.records.retire('flow', state);
      return this.deliverError(
        reply,
        check.expired,
        'invalid_request',
        'The connection request expired; start again.',
      );
    }
    return sendPage(reply, check.status, check.page);
  }

  // ── service chosen ───────────────────────────────────────────────────────

  /** `GET /v1/oauth/connect/:service?state=` (from the chooser). */
  async choose(request: FastifyRequest, reply: FastifyReply, service: string): Promise<FastifyReply> {
    const state = (request.query as Record<string, unknown>).state;
    const token = typeof state === 'string' ? state : undefined;
    const check = await this.checkFlow(request, token, service, false);
    if (!check.ok) return this.failedCheck(reply, check, token!);
    return this.beginService(reply, check.app, token!, check.flow, service);
  }

  private async beginService(
    reply: FastifyReply,
    app: AppRow,
    state: string,
    flow: FlowData,
    service: string,
  ): Promise<FastifyReply> {
    const definition = this.deps.registry.get(service)!;
    if (definition.auth.type === 'oauth2') {
      const spec = definition.auth as OAuth2Spec;
      const client = this.deps.config.oauthClients[service];
      if (!client) {
        await this.records.retire('flow', state);
        return this.deliverError(
          reply,
          flow,
          'server_error',
          `This server has no OAuth client configured for ${definition.name}.`,
        );
      }
      const pkce = spec.pkce ? createPkcePair() : undefined;
      const next: FlowData = { ...flow, service, ...(pkce ? { codeVerifier: pkce.codeVerifier } : {}) };
      if (!pkce) delete next.codeVerifier;
      await this.records.update('flow', state, next);
      const url = buildAuthorizeUrl(spec, {
        clientId: client.clientId,
        redirectUri: this.callbackUrl(service),
        state,
        ...(pkce ? { codeChallenge: pkce.codeChallenge } : {}),
        params: flow.raw,
      });
      return reply
        .status(302)
        .header('cache-control', 'no-store')
        .header('referrer-policy', 'no-referrer')
        .redirect(url);
    }
    await this.records.update('flow', state, { ...flow, service });
    return this.renderForm(
      reply,
      200,
      app,
      state,
      flow,
      definition,
      displayValues(credentialFields(definition.credentials), flow.formData),
    );
  }

  private renderForm(
    reply: FastifyReply,
    status: number,
    app: AppRow,
    state: string,
    flow: FlowData,
    definition: AnyConnectorDefinition,
    values: Record<string, string | boolean>,
    error?: string,
  ): FastifyReply {
    const target = flow.oob ? undefined : formTarget(flow.redirectUri);
    return sendPage(
      reply,
      status,
      credentialFormPage({
        appName: app.name,
        serviceName: definition.name,
        action: `/v1/oauth/connect/${encodeURIComponent(definition.service)}`,
        state,
        csrf: flow.csrf,
        fields: credentialFields(definition.credentials),
        values,
        ...(error ? { error } : {}),
        ...(target ? { formTargets: [target] } : {}),
      }),
    );
  }

  // ── OAuth callback ───────────────────────────────────────────────────────

  /** `GET /v1/oauth/callback/:service?code=&state=` (or `?error=`), the redirect URI registered at the provider. */
  async callback(request: FastifyRequest, reply: FastifyReply, service: string): Promise<FastifyReply> {
    const query = request.query as Record<string, unknown>;
    const str = (v: unknown) =>
      typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? (v[0] as string) : undefined;
    const state = str(query.state);
    const definition = this.deps.registry.get(service);
    if (definition?.auth.type !== 'oauth2') {
      return sendPage(
        reply,
        404,
        errorPage('Unknown service', 'This server has no OAuth service by that name.'),
      );
    }
    const check = await this.checkFlow(request, state, service, true);
    if (!check.ok) return this.failedCheck(reply, check, state!);
    const consumed = await this.records.consume<FlowData>('flow', state);
    if (!consumed.ok) {
      return sendPage(
        reply,
        400,
        errorPage('Request already used', 'This connection request has already been completed or cancelled.'),
      );
    }
    const { flow, app } = check;
    const providerError = str(query.error);
    if (providerError) {
      // RFC 6749 §4.1.2.1: the provider's own code when it is a standard one.
      const code: AuthorizationErrorCode = isAuthorizationErrorCode(providerError)
        ? providerError
        : 'access_denied';
      const description =
        str(query.error_description) ??
        (code === 'access_denied' ? 'The user denied access.' : `The service answered ${providerError}.`);
      return this.deliverError(reply, flow, code, `${definition.name}: ${description.slice(0, 500)}`);
    }
    const code = str(query.code);
    if (!code)
      return this.deliverError(
        reply,
        flow,
        'server_error',
        `${definition.name} returned neither a code nor an error.`,
      );
    const client = this.deps.config.oauthClients[service];
    if (!client)
      return this.deliverError(
        reply,
        flow,
        'server_error',
        `This server has no OAuth client configured for ${definition.name}.`,
      );
    const policy = {
      // OAuth services decide before an account exists: the mode for empty credentials.
      mode: networkModeFor(definition, {}),
      ...(this.deps.config.allowedNetworks ? { allowedNetworks: this.deps.config.allowedNetworks } : {}),
    };
    const guard = createNetworkGuard({ policy });
    let fields: Record<string, unknown>;
    try {
      fields = await exchangeAuthorizationCode(definition.auth as OAuth2Spec, {
        code,
        redirectUri: this.callbackUrl(service),
        client,
        ...(flow.codeVerifier ? { codeVerifier: flow.codeVerifier } : {}),
        http: createTokenHttp({ httpAgent: guard.httpAgent, httpsAgent: guard.httpsAgent }),
        service,
      });
    } catch (err) {
      this.deps.log.warn({ err, service }, 'authorization code exchange failed');
      const message = err instanceof CloudmuxError ? err.message : 'The token request failed.';
      return this.deliverError(reply, flow, 'server_error', `${definition.name}: ${message}`);
    } finally {
      guard.destroy();
    }
    const parsed = definition.credentials.safeParse(fields);
    if (!parsed.success) {
      return this.deliverError(
        reply,
        flow,
        'server_error',
        `${definition.name} returned tokens this connector cannot use.`,
      );
    }
    const expiresAt =
      typeof fields.expires_at === 'number' ? new Date(fields.expires_at).toISOString() : null;
    const account = await this.createAccount(app, flow, definition, fields, expiresAt);
    return this.deliverSuccess(reply, 302, app, flow, definition, account);
  }

  // ── credential form ──────────────────────────────────────────────────────

  /** `POST /v1/oauth/connect/:service` with the form fields, `_state` and `_csrf`. */
  async submitForm(
    request: FastifyRequest,
    reply: FastifyReply,
    service: string,
    form: Record<string, string>,
  ): Promise<FastifyReply> {
    const state = form._state;
    const definition = this.deps.registry.get(service);
    if (!definition || definition.auth.type === 'oauth2') {
      return sendPage(
        reply,
        404,
        errorPage('Unknown service', 'This server has no credential service by that name.'),
      );
    }
    const check = await this.checkFlow(request, state, service, true);
    if (!check.ok) return this.failedCheck(reply, check, state!);
    const { flow, app } = check;
    if (typeof form._csrf !== 'string' || !constantTimeEqual(form._csrf, flow.csrf)) {
      return sendPage(
        reply,
        400,
        errorPage('Form expired', 'The form was not sent from the page this server showed; reload it.'),
      );
    }
    const fields = credentialFields(definition.credentials);
    const submitted = credentialsFromForm(fields, form);
    const retry = (status: number, message: string) =>
      this.renderForm(
        reply,
        status,
        app,
        state!,
        flow,
        definition,
        displayValues(fields, flow.formData, submitted),
        message,
      );
    const parsed = definition.credentials.safeParse(submitted);
    if (!parsed.success) {
      const labels = new Map(fields.map((f) => [f.name, f.label]));
      const issues = parsed.error.issues.map((i: { path: PropertyKey[]; message: string }) => {
        const key = String(i.path[0] ?? '');
        return `${labels.get(key) ?? key ?? 'Form'}: ${i.message}`;
      });
      return retry(400, issues.join('\n'));
    }
    const credentials = parsed.data as Record<string, unknown>;
    try {
      if (definition.service === 'local') assertLocalRoot(this.deps, credentials);
      const { runtime, dispose } = await this.deps.runtime.transient(definition.service, credentials);
      try {
        await runtime.instance.validate?.();
      } finally {
        await dispose();
      }
    } catch (err) {
      const message =
        err instanceof CloudmuxError ? err.message : 'The service could not be reached with these settings.';
      if (!(err instanceof CloudmuxError))
        this.deps.log.warn({ err, service }, 'credential validation failed');
      return retry(400, `${definition.name} refused the connection: ${message}`);
    }
    const consumed = await this.records.consume<FlowData>('flow', state);
    if (!consumed.ok) {
      return sendPage(
        reply,
        400,
        errorPage('Request already used', 'This connection request has already been completed or cancelled.'),
      );
    }
    const account = await this.createAccount(app, flow, definition, credentials, null);
    return this.deliverSuccess(reply, 303, app, flow, definition, account);
  }

  // ── results ──────────────────────────────────────────────────────────────

  private grantFor(flow: FlowData, service: string): ServiceGrant {
    const grant = flow.grants.find((g) => g.service === service)!;
    return { service, admin: grant.admin, apis: grant.apis ? new Set(grant.apis) : null };
  }

  private async createAccount(
    app: AppRow,
    flow: FlowData,
    definition: AnyConnectorDefinition,
    credentials: Record<string, unknown>,
    tokenExpiry: string | null,
  ): Promise<AccountRow> {
    const grant = this.grantFor(flow, definition.service);
    return this.deps.store.createAccount({
      appId: app.id,
      service: definition.service,
      account: accountName(definition, credentials),
      credentials,
      admin: grant.admin,
      effectiveScope: effectiveScope(definition, grant),
      tokenExpiry,
      ...(flow.customProperties ? { customProperties: flow.customProperties } : {}),
    });
  }

  private async deliverSuccess(
    reply: FastifyReply,
    status: 302 | 303,
    app: AppRow,
    flow: FlowData,
    definition: AnyConnectorDefinition,
    account: AccountRow,
  ): Promise<FastifyReply> {
    const accountId = Number(account.id);
    const scope = account.effective_scope;
    if (flow.responseType === 'code') {
      const data: CodeData = {
        accountId,
        redirectUri: flow.redirectUri,
        scope,
        ...(flow.state !== undefined ? { state: flow.state } : {}),
      };
      const code = await this.records.issue('code', app.id, data, CODE_TTL_MS);
      if (flow.oob) {
        return sendPage(
          reply,
          200,
          oobResultPage('Account connected', `Copy this code into ${app.name}:`, code),
        );
      }
      const url = new URL(flow.redirectUri);
      url.searchParams.set('code', code);
      if (flow.state !== undefined) url.searchParams.set('state', flow.state);
      return reply
        .status(status)
        .header('cache-control', 'no-store')
        .header('referrer-policy', 'no-referrer')
        .redirect(url.toString());
    }
    const token = await this.deps.store.createAccountToken(app.id, accountId);
    const result = {
      access_token: token,
      token_type: 'Bearer',
      scope,
      ...(flow.state !== undefined ? { state: flow.state } : {}),
      account_id: accountId,
    };
    if (!flow.oob) {
      // RFC 6749 §4.2.2: the implicit grant's result travels in the fragment, never in a query.
      const url = new URL(flow.redirectUri);
      url.hash = new URLSearchParams(
        Object.entries(result).map(([k, v]): [string, string] => [k, String(v)]),
      ).toString();
      return reply
        .status(status)
        .header('cache-control', 'no-store')
        .header('referrer-policy', 'no-referrer')
        .redirect(url.toString());
    }
    const shown = oobResultPage(
      'Account connected',
      `Copy this access token for your ${definition.name} account into ${app.name}:`,
      token,
    );
    if (!flow.origin) return sendPage(reply, 200, shown);
    const message = `kloudless:${JSON.stringify({ type: 'authentication', ...(flow.requestId !== undefined ? { id: flow.requestId } : {}), data: result })}`;
    return sendPage(
      reply,
      200,
      popupResultPage({
        message,
        origin: flow.origin,
        ok: true,
        fallbackHtml: `<p>Copy this access token into ${escapeHtml(app.name)}:</p><code class="token" id="oob-token">${escapeHtml(token)}</code>`,
      }),
    );
  }

  /** Sends an OAuth error back through the flow's channel (its redirect URI has been validated). */
  deliverError(
    reply: FastifyReply,
    ret: ReturnTo,
    error: AuthorizationErrorCode,
    description: string,
  ): FastifyReply {
    const params: Record<string, string> = {
      error,
      error_description: description,
      ...(ret.state !== undefined ? { state: ret.state } : {}),
    };
    if (!ret.oob) {
      const url = new URL(ret.redirectUri);
      if (ret.responseType === 'token') url.hash = new URLSearchParams(params).toString();
      else for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
      return reply
        .status(302)
        .header('cache-control', 'no-store')
        .header('referrer-policy', 'no-referrer')
        .redirect(url.toString());
    }
    if (ret.origin) {
      const message = `kloudless:${JSON.stringify({ type: 'authentication', ...(ret.requestId !== undefined ? { id: ret.requestId } : {}), data: params })}`;
      return sendPage(
        reply,
        200,
        popupResultPage({
          message,
          origin: ret.origin,
          ok: false,
          fallbackHtml: `<p class="error" id="connect-error">${escapeHtml(`${error}: ${description}`)}</p>`,
        }),
      );
    }
    return sendPage(reply, 400, errorPage('Connection failed', `${error}: ${description}`));
  }

  // ── POST /v1/oauth/token ─────────────────────────────────────────────────

  /** Exchanges one of our codes; returns the token response or an OAuth error (RFC 6749 §5.1, §5.2). */
  async exchange(
    app: AppRow,
    form: Record<string, string>,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const fail = (status: number, error: string, description: string) => ({
      status,
      body: { error, error_description: description },
    });
    if (form.grant_type !== 'authorization_code') {
      return fail(400, 'unsupported_grant_type', 'grant_type must be authorization_code.');
    }
    if (!form.code) return fail(400, 'invalid_request', 'code is required.');
    const record = await this.records.load<CodeData>('code', form.code);
    if (!record || record.appId !== app.id) return fail(400, 'invalid_grant', 'The code is invalid.');
    if (record.used) {
      // A replayed code: the token it produced may have leaked with it (RFC 6749 §4.1.2).
      if (record.data.tokenHash) {
        await this.deps.store.db
          .deleteFrom('account_tokens')
          .where('token_hash', '=', record.data.tokenHash)
          .execute();
      }
      return fail(400, 'invalid_grant', 'The code has already been used.');
    }
    if (record.expired) return fail(400, 'invalid_grant', 'The code has expired.');
    if ((form.redirect_uri ?? '') !== record.data.redirectUri) {
      return fail(400, 'invalid_grant', 'redirect_uri does not match the one of the authorization request.');
    }
    const consumed = await this.records.consume<CodeData>('code', form.code);
    if (!consumed.ok) return fail(400, 'invalid_grant', 'The code has already been used.');
    const account = await this.deps.store.getAccount(app.id, record.data.accountId);
    if (!account) return fail(400, 'invalid_grant', 'The account of this code no longer exists.');
    const token = await this.deps.store.createAccountToken(app.id, record.data.accountId);
    await this.records.rewrite('code', form.code, { ...record.data, tokenHash: hashToken(token) });
    return {
      status: 200,
      body: {
        access_token: token,
        token_type: 'Bearer',
        account_id: record.data.accountId,
        scope: record.data.scope,
        ...(record.data.state !== undefined ? { state: record.data.state } : {}),
      },
    };
  }
}

/** A readable account name from the credentials (`user@host`, a bucket, a folder), else the service's. */
function accountName(definition: AnyConnectorDefinition, credentials: Record<string, unknown>): string {
  const s = (k: string) =>
    typeof credentials[k] === 'string' && credentials[k] ? (credentials[k] as string) : undefined;
  const user = s('username') ?? s('user') ?? s('account_name');
  let host = s('host') ?? s('bucket');
  for (const key of ['url', 'domain', 'endpoint']) {
    if (host) break;
    try {
      host = new URL(s(key) ?? '').host || undefined;
    } catch {
      host = s(key);
    }
  }
  if (user && host) return `${user}@${host}`.slice(0, 512);
  if (definition.service === 'local' && s('root')) return s('root')!.slice(0, 512);
  return (user ?? host ?? `${definition.name} account`).slice(0, 512);
}
