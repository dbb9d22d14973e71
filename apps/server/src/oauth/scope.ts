/**
 * The Kloudless scope grammar (kloudless-api.md §1.3), inferred from the published examples:
 *
 *   scope  = token *( SP token )
 *   token  = target [ ":" mode ] [ "." api [ "." permission [ ":" kind ] ] ]
 *   target = "any" / "all" / <api category> / <service id>
 *   mode   = "normal" / "admin"
 *
 * e.g. `any`, `all`, `storage`, `gdrive box`, `box:normal.storage`, `any.storage`, `all:admin`,
 * `salesforce.crm`, `gdrive.storage."https://… https://…":raw` (a quoted permission may hold spaces).
 * A scope resolves to the installed services the user may connect, each with its admin flag and the
 * account's effective scope. Anything that names nothing installed is an `invalid_scope` error.
 */
import type { AnyConnectorDefinition } from '@cloudmux/core';
import type { ConnectorRegistry } from '../connectors.js';
import { AuthorizationError } from './protocol.js';

/** API names the Kloudless scopes use. `basic`, `sharing` and `events` are parts of a storage grant. */
const KLOUDLESS_APIS = new Set([
  'storage',
  'calendar',
  'crm',
  'email',
  'messaging',
  'itsm',
  'helpdesk',
  'team',
  'audit',
  'events',
  'sharing',
  'basic',
  'all',
]);
/** Names that never narrow the services: every connector has them, or they mean "everything". */
const UNFILTERED_APIS = new Set(['all', 'basic', 'sharing', 'events']);

export interface ServiceGrant {
  service: string;
  admin: boolean;
  /** APIs the scope asks for; `null` = every API of the connector. */
  apis: Set<string> | null;
}

export interface ScopeToken {
  target: string;
  mode: 'normal' | 'admin';
  api?: string;
  permission?: string;
  kind?: string;
}

const TOKEN = /^([a-z0-9_]+)(?::(normal|admin))?(?:\.([a-z_]+)(?:\.("[^"]*"|[^\s:"]+)(?::([a-z_]+))?)?)?$/;

/** Splits on whitespace outside double quotes. */
function tokenize(scope: string): string[] {
  const tokens: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of scope) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && /\s/.test(ch)) {
      if (current) tokens.push(current);
      current = '';
      continue;
    }
    current += ch;
  }
  if (quoted)
    throw new AuthorizationError('invalid_scope', 'The scope has an unterminated quoted permission.');
  if (current) tokens.push(current);
  return tokens;
}

export function parseScopeTokens(scope: string): ScopeToken[] {
  const tokens = tokenize(scope);
  if (tokens.length > 100) throw new AuthorizationError('invalid_scope', 'The scope lists too many entries.');
  return tokens.map((text) => {
    const match = TOKEN.exec(text);
    if (!match)
      throw new AuthorizationError('invalid_scope', `"${text.slice(0, 100)}" is not a valid scope.`);
    const [, target, mode, api, permission, kind] = match;
    if (api !== undefined && !KLOUDLESS_APIS.has(api)) {
      throw new AuthorizationError('invalid_scope', `"${text.slice(0, 100)}" names an unknown API "${api}".`);
    }
    return {
      target: target!,
      mode: mode === 'admin' ? 'admin' : 'normal',
      ...(api !== undefined ? { api } : {}),
      ...(permission !== undefined ? { permission } : {}),
      ...(kind !== undefined ? { kind } : {}),
    };
  });
}

function serves(definition: AnyConnectorDefinition, api: string | undefined): boolean {
  if (api === undefined || UNFILTERED_APIS.has(api)) return true;
  return (definition.apis as readonly string[]).includes(api);
}

/** True when `target` names an API category or a connector category (`storage`, `object_storage`, `crm`…). */
function isCategory(registry: ConnectorRegistry, target: string): boolean {
  if (KLOUDLESS_APIS.has(target) && !UNFILTERED_APIS.has(target)) return true;
  return registry.all().some((d) => d.category === target);
}

/**
 * Resolves a scope (absent or empty = `any`, the Kloudless server default) to the grants per
 * installed service, in registry order. Throws `invalid_scope` for anything unknown.
 */
export function resolveScope(registry: ConnectorRegistry, scope: string | undefined): ServiceGrant[] {
  const tokens = parseScopeTokens(scope?.trim() ? scope : 'any');
  const grants = new Map<string, ServiceGrant>();
  const add = (definition: AnyConnectorDefinition, token: ScopeToken) => {
    const grant = grants.get(definition.service) ?? {
      service: definition.service,
      admin: false,
      apis: new Set<string>(),
    };
    if (token.mode === 'admin') grant.admin = true;
    if (token.api === undefined || token.api === 'all') grant.apis = null;
    else if (grant.apis) grant.apis.add(token.api);
    grants.set(definition.service, grant);
  };
  for (const token of tokens) {
    const definition = registry.get(token.target);
    let matched: AnyConnectorDefinition[];
    if (definition) {
      matched = serves(definition, token.api) ? [definition] : [];
      if (matched.length === 0) {
        throw new AuthorizationError(
          'invalid_scope',
          `The service ${token.target} does not provide the ${token.api} API.`,
        );
      }
    } else if (token.target === 'any' || token.target === 'all') {
      matched = registry.all().filter((d) => serves(d, token.api));
    } else if (isCategory(registry, token.target)) {
      matched = registry
        .all()
        .filter(
          (d) =>
            ((d.apis as readonly string[]).includes(token.target) || d.category === token.target) &&
            serves(d, token.api),
        );
    } else {
      throw new AuthorizationError(
        'invalid_scope',
        `The scope names "${token.target}", which is not a service installed on this server.`,
      );
    }
    for (const d of matched) add(d, token);
  }
  if (grants.size === 0)
    throw new AuthorizationError('invalid_scope', 'No installed service matches the scope.');
  // Registry order, so the chooser lists services the same way every time.
  return registry.all().flatMap((d) => (grants.has(d.service) ? [grants.get(d.service)!] : []));
}

/** The account's `effective_scope`: one `<service>:<mode>.<api>` per API of the connector the grant covers. */
export function effectiveScope(definition: AnyConnectorDefinition, grant: ServiceGrant): string {
  const mode = grant.admin ? 'admin' : 'normal';
  const apis = (definition.apis as readonly string[]).filter(
    (api) =>
      grant.apis === null ||
      grant.apis.size === 0 ||
      grant.apis.has(api) ||
      [...grant.apis].every((a) => UNFILTERED_APIS.has(a)),
  );
  return (apis.length ? apis : [...definition.apis])
    .map((api) => `${definition.service}:${mode}.${api}`)
    .join(' ');
}
