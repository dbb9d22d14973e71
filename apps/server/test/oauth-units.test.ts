/**
 * The pieces of the connect flow that need no server: the Kloudless scope grammar against a
 * registry, the credential forms generated from the real connectors' zod schemas, and the
 * redirect URI / origin rules of the per-app settings.
 */
import { azure } from '@cloudmux/connector-azure';
import { ftp } from '@cloudmux/connector-ftp';
import { local } from '@cloudmux/connector-local';
import { s3 } from '@cloudmux/connector-s3';
import { smb } from '@cloudmux/connector-smb';
import { describe, expect, it } from 'vitest';
import { ConnectorRegistry } from '../src/connectors.js';
import { credentialFields, credentialsFromForm, displayValues } from '../src/oauth/forms.js';
import { AuthorizationError } from '../src/oauth/protocol.js';
import { effectiveScope, parseScopeTokens, resolveScope } from '../src/oauth/scope.js';
import { validateOrigin, validateRedirectUri } from '../src/oauth/settings.js';
import { mockOauthConnector } from './browser/fixtures.js';

const oauth = mockOauthConnector({ url: 'http://127.0.0.1:1' } as never, '/tmp/cloudmux-oauth-units');
const registry = new ConnectorRegistry([local, ftp, smb, s3, azure, oauth]);
const services = (scope?: string) => resolveScope(registry, scope).map((g) => g.service);
const scopeError = (scope: string) => {
  try {
    resolveScope(registry, scope);
  } catch (err) {
    expect(err).toBeInstanceOf(AuthorizationError);
    return (err as AuthorizationError).error;
  }
  throw new Error(`"${scope}" was accepted`);
};

describe('scope grammar', () => {
  it('resolves keywords, categories and services to installed connectors', () => {
    const all = ['local', 'ftp', 'smb', 's3', 'azure', 'mockoauth'];
    expect(services(undefined)).toEqual(all);
    expect(services('')).toEqual(all);
    expect(services('any')).toEqual(all);
    expect(services('all')).toEqual(all);
    expect(services('any.storage')).toEqual(all);
    expect(services('storage')).toEqual(all);
    expect(services('object_storage')).toEqual(['s3', 'azure']);
    expect(services('smb ftp')).toEqual(['ftp', 'smb']);
    expect(services('mockoauth:normal.storage mockoauth:normal.basic')).toEqual(['mockoauth']);
  });

  it('carries the admin mode and the APIs into the grant and the effective scope', () => {
    const [grant] = resolveScope(registry, 'mockoauth:admin.storage');
    expect(grant).toMatchObject({ service: 'mockoauth', admin: true });
    expect(effectiveScope(oauth, grant!)).toBe('mockoauth:admin.storage');
    expect(resolveScope(registry, 'all:admin').every((g) => g.admin)).toBe(true);
    expect(resolveScope(registry, 'local s3:admin').map((g) => g.admin)).toEqual([false, true]);
    expect(effectiveScope(local, resolveScope(registry, 'local')[0]!)).toBe('local:normal.storage');
  });

  it('parses quoted raw permissions with spaces', () => {
    const [token] = parseScopeTokens('mockoauth.storage."https://a.example/x https://a.example/y":raw');
    expect(token).toEqual({
      target: 'mockoauth',
      mode: 'normal',
      api: 'storage',
      permission: '"https://a.example/x https://a.example/y"',
      kind: 'raw',
    });
    expect(services('mockoauth.storage."https://a.example/x https://a.example/y":raw local')).toEqual([
      'local',
      'mockoauth',
    ]);
  });

  it('refuses what names nothing installed', () => {
    expect(scopeError('dropbox')).toBe('invalid_scope');
    expect(scopeError('any.crm')).toBe('invalid_scope');
    expect(scopeError('crm')).toBe('invalid_scope');
    expect(scopeError('local.bogus')).toBe('invalid_scope');
    expect(scopeError('local:normal.calendar')).toBe('invalid_scope');
    expect(scopeError('local:root')).toBe('invalid_scope');
    expect(scopeError('mockoauth.storage."unterminated')).toBe('invalid_scope');
    expect(scopeError('<script>')).toBe('invalid_scope');
  });
});

describe('credential forms from connector schemas', () => {
  const byName = (fields: ReturnType<typeof credentialFields>) =>
    Object.fromEntries(fields.map((f) => [f.name, f]));

  it('labels fields with their descriptions and marks secrets, booleans, enums and numbers', () => {
    const f = byName(credentialFields(ftp.credentials));
    expect(f.host).toMatchObject({
      kind: 'text',
      required: false,
      label: 'FTP server host name or IP address',
    });
    expect(f.username).toMatchObject({ kind: 'text', required: true, secret: false });
    expect(f.password).toMatchObject({ kind: 'password', required: true, secret: true, label: 'Password' });
    expect(f.tls).toMatchObject({ kind: 'select', options: ['none', 'explicit'], required: false });
    expect(f.reject_unauthorized).toMatchObject({ kind: 'checkbox', defaultValue: true });
    expect(f.port).toMatchObject({ kind: 'number', required: false });
    expect(f.base_path).toMatchObject({ kind: 'text', defaultValue: '/', required: false });

    const s = byName(credentialFields(s3.credentials));
    expect(s.access_key_id).toMatchObject({ kind: 'text', secret: false });
    expect(s.secret_access_key).toMatchObject({ kind: 'password', secret: true, label: 'Secret access key' });
    expect(s.session_token).toMatchObject({ kind: 'password', required: false });

    const a = byName(credentialFields(azure.credentials));
    expect(a.account_key).toMatchObject({ kind: 'password', required: false });
    expect(a.account_key!.label).toBe('Storage account access key, base64; give this or a SAS token');
    expect(a.sas_token).toMatchObject({ kind: 'password' });
    expect(byName(credentialFields(smb.credentials)).port).toMatchObject({
      kind: 'number',
      defaultValue: 445,
    });
    expect(credentialFields(local.credentials)).toEqual([
      {
        name: 'root',
        label: 'Absolute directory on the server that holds this account',
        kind: 'text',
        required: true,
        secret: false,
      },
    ]);
  });

  it('turns a submitted form into what the schema parses, and never shows a secret again', () => {
    const fields = credentialFields(ftp.credentials);
    const credentials = credentialsFromForm(fields, {
      domain: 'ftps://ftp.example.com:21',
      username: 'u',
      password: 'p',
      port: '2121',
      tls: '',
      base_path: '',
    });
    expect(credentials).toEqual({
      domain: 'ftps://ftp.example.com:21',
      username: 'u',
      password: 'p',
      port: 2121,
      reject_unauthorized: false,
    });
    expect(ftp.credentials.safeParse(credentials).success).toBe(true);
    const shown = displayValues(
      fields,
      { domain: 'ftps://pre.example', password: 'pre-secret' },
      credentials,
    );
    expect(shown).toMatchObject({
      domain: 'ftps://ftp.example.com:21',
      username: 'u',
      port: '2121',
      reject_unauthorized: false,
      base_path: '/',
    });
    expect(shown.password).toBeUndefined();
  });
});

describe('redirect URIs and origins', () => {
  it('keeps valid values exactly and refuses the dangerous ones', () => {
    for (const ok of [
      'https://app.example/cb',
      'http://127.0.0.1:3000/cb?x=1',
      'com.example.app:/oauth2redirect',
    ]) {
      expect(validateRedirectUri(ok)).toBe(ok);
    }
    for (const bad of [
      'javascript:alert(1)',
      'data:text/html,x',
      'https://app.example/cb#f',
      'https://u:p@app.example/',
      'relative/cb',
      'https://app.example/ cb',
      'urn:ietf:wg:oauth:2.0:oob',
      'custom:/cb',
    ]) {
      expect(() => validateRedirectUri(bad), bad).toThrow();
    }
    expect(validateOrigin('https://app.example')).toBe('https://app.example');
    expect(validateOrigin('http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080');
    for (const bad of ['https://app.example/path', 'app.example', 'file:///x', 'https://app.example?x']) {
      expect(() => validateOrigin(bad), bad).toThrow();
    }
  });
});
