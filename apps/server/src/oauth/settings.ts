/**
 * Per-application connect settings: the redirect URIs `/v1/oauth` accepts (exact string match,
 * RFC 9700 §2.1) and the origins the popup flow may post its result to. Used by the
 * `/v1/applications/:app_id/settings` routes and meant for the CLI as well.
 */
import { CloudmuxError } from '@cloudmux/core';
import type { AppSettings, Store } from '../store/store.js';
import { OOB_REDIRECT_URI } from './protocol.js';

export type AppSettingsList = keyof AppSettings;

const MAX_ENTRIES = 100;
const MAX_LENGTH = 2048;
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'file:', 'blob:', 'vbscript:', 'about:']);

/** Spaces, C0 controls (U+0000–U+0020) and DEL have no place in a URI (RFC 3986 §2). */
const hasControlOrSpace = (text: string) =>
  [...text].some((c) => c.charCodeAt(0) <= 0x20 || c.charCodeAt(0) === 0x7f);

/**
 * A redirect URI as it will be compared: absolute, no fragment (RFC 6749 §3.1.2), no userinfo;
 * `http(s)` or a private-use scheme of a native app (RFC 8252 §7.1, e.g. `com.example.app:/cb`).
 * The value is stored exactly as given — the authorize request must repeat it byte for byte.
 */
export function validateRedirectUri(uri: string): string {
  if (typeof uri !== 'string' || uri.length === 0 || uri.length > MAX_LENGTH || hasControlOrSpace(uri)) {
    throw new CloudmuxError(
      'invalid_parameters',
      'A redirect URI must be a non-empty absolute URI without spaces.',
    );
  }
  if (uri === OOB_REDIRECT_URI) {
    throw new CloudmuxError(
      'invalid_parameters',
      `${OOB_REDIRECT_URI} is always accepted and is not registered.`,
    );
  }
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new CloudmuxError('invalid_parameters', `Not an absolute URI: ${uri.slice(0, 200)}`);
  }
  if (FORBIDDEN_SCHEMES.has(url.protocol))
    throw new CloudmuxError('invalid_parameters', `The scheme ${url.protocol} cannot be a redirect URI.`);
  if (
    url.protocol !== 'http:' &&
    url.protocol !== 'https:' &&
    !/^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+:$/i.test(url.protocol)
  ) {
    throw new CloudmuxError(
      'invalid_parameters',
      'A redirect URI is http(s) or a reverse-domain private-use scheme (RFC 8252 §7.1).',
    );
  }
  if (uri.includes('#'))
    throw new CloudmuxError('invalid_parameters', 'A redirect URI cannot have a fragment (RFC 6749 §3.1.2).');
  if (url.username || url.password)
    throw new CloudmuxError('invalid_parameters', 'A redirect URI cannot carry user information.');
  return uri;
}

/** A trusted origin: `scheme://host[:port]` exactly, as browsers report `message.origin`. */
export function validateOrigin(origin: string): string {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new CloudmuxError('invalid_parameters', `Not an origin: ${String(origin).slice(0, 200)}`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin === 'null') {
    throw new CloudmuxError('invalid_parameters', 'A trusted origin is an http or https origin.');
  }
  if (origin.replace(/\/$/, '') !== url.origin) {
    throw new CloudmuxError(
      'invalid_parameters',
      `A trusted origin has no path, query or credentials; did you mean ${url.origin}?`,
    );
  }
  return url.origin;
}

function validateList(kind: AppSettingsList, values: unknown): string[] {
  if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) {
    throw new CloudmuxError('invalid_parameters', `${kind} must be an array of strings.`);
  }
  if (values.length > MAX_ENTRIES)
    throw new CloudmuxError('invalid_parameters', `${kind} holds at most ${MAX_ENTRIES} entries.`);
  const normalized = (values as string[]).map(
    kind === 'redirect_uris' ? validateRedirectUri : validateOrigin,
  );
  return [...new Set(normalized)];
}

async function appOrThrow(store: Store, appId: string) {
  const app = await store.getApp(appId);
  if (!app) throw new CloudmuxError('not_found', `No application ${appId}.`);
  return app;
}

/** The settings of an application (`not_found` if there is none). */
export async function readAppSettings(store: Store, appId: string): Promise<AppSettings> {
  return store.appSettings(await appOrThrow(store, appId));
}

/** Replaces the lists given in `patch` (validated, duplicates dropped); the others stay. */
export async function writeAppSettings(
  store: Store,
  appId: string,
  patch: Partial<Record<AppSettingsList, unknown>>,
): Promise<AppSettings> {
  const current = store.appSettings(await appOrThrow(store, appId));
  const next: AppSettings = {
    redirect_uris:
      patch.redirect_uris === undefined
        ? current.redirect_uris
        : validateList('redirect_uris', patch.redirect_uris),
    trusted_origins:
      patch.trusted_origins === undefined
        ? current.trusted_origins
        : validateList('trusted_origins', patch.trusted_origins),
  };
  await store.updateAppSettings(appId, next);
  return next;
}

/** Adds one redirect URI or trusted origin (no-op if present). */
export async function addAppSetting(
  store: Store,
  appId: string,
  kind: AppSettingsList,
  value: string,
): Promise<AppSettings> {
  const current = await readAppSettings(store, appId);
  return writeAppSettings(store, appId, { [kind]: [...current[kind], value] });
}

/** Removes one redirect URI or trusted origin; `not_found` if it was not registered. */
export async function removeAppSetting(
  store: Store,
  appId: string,
  kind: AppSettingsList,
  value: string,
): Promise<AppSettings> {
  const current = await readAppSettings(store, appId);
  const wanted = kind === 'trusted_origins' ? value.replace(/\/$/, '') : value;
  if (!current[kind].includes(wanted)) throw new CloudmuxError('not_found', `${wanted} is not in ${kind}.`);
  return writeAppSettings(store, appId, { [kind]: current[kind].filter((v) => v !== wanted) });
}
