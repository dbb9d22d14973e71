/**
 * The connector contract: one `defineConnector({...})` per package. Definitions are data (auth,
 * credentials schema, pass-through allow-list, raw-id attributes, transport policies) plus one
 * `create(ctx)` that returns the implementations of the API categories the connector serves.
 */

import type { AxiosInstance } from 'axios';
import * as z from 'zod';
import type { NetworkGuard, NetworkMode } from './network-types.js';
import type { StorageApi } from './storage.js';

export const API_CATEGORIES = ['storage', 'crm', 'calendar', 'itsm', 'audit', 'team', 'events'] as const;
export type ApiCategory = (typeof API_CATEGORIES)[number];

/** Generic record API for the non-storage categories (CRM objects, calendar events, tickets, audit logs, users). */
export interface ResourceCollection<T = Record<string, unknown>> {
  list(page: {
    pageSize: number;
    cursor?: string;
    filter?: Record<string, string>;
  }): Promise<{ items: T[]; cursor?: string | null; total?: number }>;
  get(id: string): Promise<T>;
  create?(data: Record<string, unknown>): Promise<T>;
  update?(id: string, data: Record<string, unknown>): Promise<T>;
  delete?(id: string): Promise<void>;
}

export interface ResourceApi {
  /** Keyed by the Kloudless object type (`contact`, `calendar`, `event`, `ticket`, `user`, …). */
  collections: Record<string, ResourceCollection>;
}

export interface ApiImplementations {
  storage: StorageApi;
  crm: ResourceApi;
  calendar: ResourceApi;
  itsm: ResourceApi;
  audit: ResourceApi;
  team: ResourceApi;
  events: ResourceApi;
}

/** How an account authenticates to the service. Core's HTTP layer applies it; no connector signs requests itself. */
export type AuthSpec =
  | {
      type: 'oauth2';
      authorizeUrl: string;
      tokenUrl: string;
      scopes: string[];
      scopeSeparator?: string;
      pkce?: boolean;
      /** The provider issues a new refresh token on each refresh and invalidates the old one. */
      rotatingRefreshTokens?: boolean;
      tokenAuthMethod?: 'client_secret_post' | 'client_secret_basic';
      authorizeParams?: Record<string, string>;
    }
  | {
      type: 'oauth2_client_credentials';
      tokenUrl: string;
      scopes: string[];
      tokenAuthMethod?: 'client_secret_post' | 'client_secret_basic';
    }
  | { type: 'service_account_jwt'; tokenUrl: string; scopes: string[]; audience?: string }
  | { type: 'api_key'; in: 'header' | 'query'; name: string; prefix?: string; field: string }
  | { type: 'bearer'; field: string }
  | { type: 'basic'; usernameField: string; passwordField: string }
  | {
      type: 'aws_sigv4';
      signingService: string;
      regionField: string;
      accessKeyIdField: string;
      secretAccessKeyField: string;
      sessionTokenField?: string;
    }
  | { type: 'azure_shared_key'; accountNameField: string; accountKeyField: string }
  | { type: 'azure_sas'; sasTokenField: string }
  /** The connector authenticates inside its own protocol (FTP, SMB) or needs nothing (local). */
  | { type: 'protocol' }
  /**
   * Several ways to authenticate the same service (Azure: Shared Key or SAS). Per request, the first
   * strategy whose credential fields are all present in the account applies. OAuth strategies,
   * whose fields change on refresh, cannot be alternatives.
   */
  | { type: 'one_of'; strategies: StaticAuthSpec[] };

/** The strategies that read fixed credential fields. */
export type StaticAuthSpec = Exclude<AuthSpec, { type: 'oauth2' | 'one_of' | 'protocol' }>;

export type AuthType = AuthSpec['type'];

export interface RetryPolicy {
  /** Total attempts including the first; core caps this at 3. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface RateLimitPolicy {
  requestsPerSecond: number;
  burst: number;
}

export interface PaginationPolicy {
  defaultPageSize: number;
  maxPageSize: number;
}

export interface ConnectorPolicies {
  retry: RetryPolicy;
  rateLimit: RateLimitPolicy;
  pagination: PaginationPolicy;
  /** Per-request timeout for upstream calls, ms. */
  timeoutMs: number;
}

export const DEFAULT_POLICIES: ConnectorPolicies = {
  retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2_000 },
  rateLimit: { requestsPerSecond: 10, burst: 10 },
  pagination: { defaultPageSize: 100, maxPageSize: 1000 },
  timeoutMs: 60_000,
};

/** Pass-through target: a fixed SaaS API (default base URL + allow-listed hosts) or the account's own host. */
export type PassThroughSpec<TCredentials> =
  | { kind: 'saas'; baseUrl: string; allowedHosts: string[] }
  | { kind: 'account_host'; baseUrl: (credentials: TCredentials) => string };

export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Everything a connector gets; it never builds its own HTTP client or opens sockets around the guard. */
export interface ConnectorContext<TCredentials> {
  readonly service: string;
  readonly accountId: string;
  readonly credentials: TCredentials;
  /** axios instance with auth, refresh, retry, rate limit, raw headers and error mapping applied. */
  readonly http: AxiosInstance;
  /** The one hook every non-HTTP connection goes through (operator network policy, SSRF guard). */
  readonly net: NetworkGuard;
  readonly policies: ConnectorPolicies;
  readonly log: Logger;
  /** Headers from `X-Kloudless-Raw-Headers`, already merged into `http` requests. */
  readonly rawHeaders: Record<string, string>;
  /** `X-Kloudless-As-User`, only for connectors that declare `impersonation: true`. */
  readonly asUser?: string;
  /** Directory for staging files (multipart parts, temporary downloads). */
  readonly scratchDir: string;
}

export type ConnectorInstance<TApis extends ApiCategory> = { [K in TApis]: ApiImplementations[K] } & {
  /** Checks the credentials against the service (`POST /v1/accounts?validate=true`, connect forms). */
  validate?(): Promise<void>;
  /** Closes pooled connections; called when the account is idle or deleted. Must be idempotent. */
  dispose?(): Promise<void>;
};

export interface ConnectorDefinitionInput<TCredentials extends z.ZodType, TApis extends ApiCategory> {
  /** The Kloudless service identifier exactly (`gdrive`, `google_calendar`, `local`). */
  service: string;
  /** `friendly_name` in `/v1/public/services`. */
  name: string;
  version: string;
  logoUrl?: string;
  /** Widget category: `storage`, `object_storage`, `crm`, `calendar`, `itsm`, `audit`, … */
  category: string;
  apis: readonly TApis[];
  auth: AuthSpec;
  /** The credential fields of `POST /v1/accounts` and of the connect form. */
  credentials: TCredentials;
  /**
   * `saas`: the service lives on public hosts; private, loopback, link-local and metadata
   * addresses are refused. `self_hosted`: the account points at the user's own server, which may be
   * private (never a cloud metadata address), subject to the operator's `CLOUDMUX_ALLOWED_NETWORKS`.
   * A function chooses per account (S3: AWS's public endpoints are `saas`, a custom endpoint is
   * `self_hosted`).
   */
  network: NetworkMode | ((credentials: z.output<TCredentials>) => NetworkMode);
  passThrough?: PassThroughSpec<z.output<TCredentials>>;
  /** Attributes of `POST /accounts/{id}/encode_raw_id` (defaults to `{ id }`), and how they make a raw id. */
  rawId?: { attributes: z.ZodType; toRawId(attributes: Record<string, unknown>): string };
  impersonation?: boolean;
  /**
   * TLS trust for the account's own server (a private CA, or verification off), applied by core to
   * every HTTPS connection of the account — the HTTP client, pass-through and `connectTls` alike.
   */
  tls?: (credentials: z.output<TCredentials>) => AccountTls | undefined;
  policies?: { [K in keyof ConnectorPolicies]?: Partial<ConnectorPolicies[K]> | ConnectorPolicies[K] };
  create(
    ctx: ConnectorContext<z.output<TCredentials>>,
  ): ConnectorInstance<TApis> | Promise<ConnectorInstance<TApis>>;
}

export interface ConnectorDefinition<
  TCredentials extends z.ZodType = z.ZodType,
  TApis extends ApiCategory = ApiCategory,
> extends Readonly<Omit<ConnectorDefinitionInput<TCredentials, TApis>, 'policies'>> {
  readonly policies: ConnectorPolicies;
  readonly kind: 'cloudmux.connector';
}

// Credential and API types sit in contravariant positions (`create(ctx)`), so a list holding
// definitions of every connector can only be typed with `any` here.
// biome-ignore lint/suspicious/noExplicitAny: see above
export type AnyConnectorDefinition = ConnectorDefinition<any, any>;

const urlString = z.url({ protocol: /^https?$/ });

const authSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('oauth2'),
    authorizeUrl: urlString,
    tokenUrl: urlString,
    scopes: z.array(z.string()),
    scopeSeparator: z.string().optional(),
    pkce: z.boolean().optional(),
    rotatingRefreshTokens: z.boolean().optional(),
    tokenAuthMethod: z.enum(['client_secret_post', 'client_secret_basic']).optional(),
    authorizeParams: z.record(z.string(), z.string()).optional(),
  }),
  z.object({
    type: z.literal('oauth2_client_credentials'),
    tokenUrl: urlString,
    scopes: z.array(z.string()),
    tokenAuthMethod: z.enum(['client_secret_post', 'client_secret_basic']).optional(),
  }),
  z.object({
    type: z.literal('service_account_jwt'),
    tokenUrl: urlString,
    scopes: z.array(z.string()),
    audience: z.string().optional(),
  }),
  z.object({
    type: z.literal('api_key'),
    in: z.enum(['header', 'query']),
    name: z.string().min(1),
    prefix: z.string().optional(),
    field: z.string().min(1),
  }),
  z.object({ type: z.literal('bearer'), field: z.string().min(1) }),
  z.object({ type: z.literal('basic'), usernameField: z.string().min(1), passwordField: z.string().min(1) }),
  z.object({
    type: z.literal('aws_sigv4'),
    signingService: z.string().min(1),
    regionField: z.string().min(1),
    accessKeyIdField: z.string().min(1),
    secretAccessKeyField: z.string().min(1),
    sessionTokenField: z.string().optional(),
  }),
  z.object({
    type: z.literal('azure_shared_key'),
    accountNameField: z.string().min(1),
    accountKeyField: z.string().min(1),
  }),
  z.object({ type: z.literal('azure_sas'), sasTokenField: z.string().min(1) }),
  z.object({ type: z.literal('protocol') }),
]);

const staticAuthTypes = [
  'oauth2_client_credentials',
  'service_account_jwt',
  'api_key',
  'bearer',
  'basic',
  'aws_sigv4',
  'azure_shared_key',
  'azure_sas',
];
const authSchemaWithAlternatives = z.union([
  authSchema,
  z.object({
    type: z.literal('one_of'),
    strategies: z
      .array(authSchema)
      .min(2)
      .refine(
        (list) => list.every((s) => staticAuthTypes.includes(s.type)),
        'alternatives must be strategies with fixed credential fields',
      ),
  }),
]);

const positiveInt = z.number().int().positive();

const definitionSchema = z.object({
  service: z
    .string()
    .regex(/^[a-z][a-z0-9_]*$/, 'must be a Kloudless service identifier (lowercase, digits, underscores)'),
  name: z.string().min(1),
  version: z.string().regex(/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/, 'must be a semver version'),
  logoUrl: z.string().optional(),
  category: z.string().min(1),
  apis: z.array(z.enum(API_CATEGORIES)).min(1),
  auth: authSchemaWithAlternatives,
  credentials: z.custom<z.ZodType>((v) => v instanceof z.ZodType, 'must be a zod schema'),
  network: z.union([z.enum(['saas', 'self_hosted', 'none']), z.function()]),
  passThrough: z
    .union([
      z.object({
        kind: z.literal('saas'),
        baseUrl: z.url({ protocol: /^https$/ }),
        allowedHosts: z.array(z.string().min(1)).min(1),
      }),
      z.object({ kind: z.literal('account_host'), baseUrl: z.function() }),
    ])
    .optional(),
  rawId: z
    .object({ attributes: z.custom<z.ZodType>((v) => v instanceof z.ZodType), toRawId: z.function() })
    .optional(),
  impersonation: z.boolean().optional(),
  tls: z.function().optional(),
  policies: z
    .object({
      retry: z
        .object({ maxAttempts: positiveInt.max(3), baseDelayMs: positiveInt, maxDelayMs: positiveInt })
        .partial()
        .optional(),
      rateLimit: z
        .object({ requestsPerSecond: z.number().positive(), burst: positiveInt })
        .partial()
        .optional(),
      pagination: z
        .object({ defaultPageSize: positiveInt, maxPageSize: positiveInt.max(1000) })
        .partial()
        .optional(),
      timeoutMs: positiveInt.optional(),
    })
    .optional(),
  create: z.function(),
});

export interface AccountTls {
  /** PEM certificate(s) to trust instead of the system store. */
  ca?: string | string[];
  /** `false` accepts any certificate (an operator's explicit choice for a self-signed server). */
  rejectUnauthorized?: boolean;
}

/** The network mode for one account of `definition` (a definition may decide per account). */
export function networkModeFor(
  definition: Pick<AnyConnectorDefinition, 'network' | 'service'>,
  credentials: unknown,
): NetworkMode {
  if (typeof definition.network !== 'function') return definition.network;
  const mode = definition.network(credentials ?? {});
  if (mode !== 'saas' && mode !== 'self_hosted' && mode !== 'none') {
    throw new ConnectorDefinitionError(
      `[cloudmux] [${definition.service}] network() returned ${String(mode)}`,
    );
  }
  return mode;
}

export class ConnectorDefinitionError extends Error {
  override readonly name = 'ConnectorDefinitionError';
}

/**
 * Validates a connector definition at load time, fills in default policies, infers the credential
 * and API types for `create`, and freezes the result. A wrong definition throws, naming the connector.
 */
export function defineConnector<TCredentials extends z.ZodType, const TApis extends ApiCategory>(
  input: ConnectorDefinitionInput<TCredentials, TApis>,
): ConnectorDefinition<TCredentials, TApis> {
  const label = typeof input?.service === 'string' && input.service ? input.service : '<unnamed>';
  const parsed = definitionSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(definition)'}: ${i.message}`)
      .join('; ');
    throw new ConnectorDefinitionError(`[cloudmux] [${label}] invalid connector definition: ${issues}`);
  }
  if (new Set(input.apis).size !== input.apis.length) {
    throw new ConnectorDefinitionError(
      `[cloudmux] [${label}] invalid connector definition: apis lists a category twice`,
    );
  }
  if (input.network === 'saas' && input.passThrough?.kind === 'account_host') {
    throw new ConnectorDefinitionError(
      `[cloudmux] [${label}] invalid connector definition: a saas connector's pass-through must name its allowed hosts`,
    );
  }
  const p = input.policies ?? {};
  const policies: ConnectorPolicies = Object.freeze({
    retry: Object.freeze({ ...DEFAULT_POLICIES.retry, ...p.retry }),
    rateLimit: Object.freeze({ ...DEFAULT_POLICIES.rateLimit, ...p.rateLimit }),
    pagination: Object.freeze({ ...DEFAULT_POLICIES.pagination, ...p.pagination }),
    timeoutMs: (p.timeoutMs as number | undefined) ?? DEFAULT_POLICIES.timeoutMs,
  });
  if (policies.pagination.defaultPageSize > policies.pagination.maxPageSize) {
    throw new ConnectorDefinitionError(
      `[cloudmux] [${label}] invalid connector definition: policies.pagination.defaultPageSize exceeds maxPageSize`,
    );
  }
  return Object.freeze({
    ...input,
    apis: Object.freeze([...input.apis]) as readonly TApis[],
    policies,
    kind: 'cloudmux.connector' as const,
  });
}

/** Checks at runtime that `create` returned an implementation for every declared API category. */
export async function instantiateConnector<TCredentials extends z.ZodType, TApis extends ApiCategory>(
  definition: ConnectorDefinition<TCredentials, TApis>,
  ctx: ConnectorContext<z.output<TCredentials>>,
): Promise<ConnectorInstance<TApis>> {
  const instance = await definition.create(ctx);
  for (const api of definition.apis) {
    if (instance == null || (instance as Record<string, unknown>)[api] == null) {
      throw new ConnectorDefinitionError(
        `[cloudmux] [${definition.service}] create() returned no '${api}' implementation`,
      );
    }
  }
  return instance;
}
