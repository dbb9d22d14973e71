/**
 * The connect form / `POST /v1/accounts` fields. Kloudless pre-fills FTP forms through
 * `extra_data` as `{"domain": "ftps://ftp.example.com:21"}`, so `domain` is accepted beside `host`.
 */
import { normalizeBasePath } from '@cloudmux/core';
import * as z from 'zod';

const noLineBreaks = (v: string) => !/[\r\n\0]/.test(v);

export const ftpCredentials = z
  .object({
    host: z
      .string()
      .trim()
      .min(1)
      .refine((v) => !/[\s/\\@]/.test(v), 'host must be a host name or IP address')
      .optional()
      .describe('FTP server host name or IP address'),
    domain: z
      .string()
      .trim()
      .min(1)
      .optional()
      .describe(
        'Server as a URL, e.g. ftp://ftp.example.com:21 or ftps://ftp.example.com:21 (instead of host)',
      ),
    port: z.coerce.number().int().min(1).max(65535).optional().describe('Port (default 21)'),
    username: z
      .string()
      .min(1)
      .refine(noLineBreaks, 'username cannot contain line breaks')
      .describe('Username'),
    password: z
      .string()
      .refine(noLineBreaks, 'password cannot contain line breaks')
      .describe('Password (secret)'),
    tls: z
      .enum(['none', 'explicit'])
      .optional()
      .describe(
        'TLS: "explicit" = AUTH TLS (FTPES), "none" = plain FTP (default: explicit for ftps:// domains)',
      ),
    reject_unauthorized: z
      .boolean()
      .default(true)
      .describe(
        'Refuse TLS certificates that do not verify (self-signed, wrong name); turn off only for testing',
      ),
    ca: z
      .string()
      .optional()
      .refine(
        (v) => v === undefined || v.includes('-----BEGIN CERTIFICATE-----'),
        'ca must be PEM certificates',
      )
      .describe('PEM certificate(s) of a private CA or a self-signed server certificate to trust'),
    base_path: z
      .string()
      .default('/')
      .refine((v) => {
        try {
          normalizeBasePath(v);
          return true;
        } catch {
          return false;
        }
      }, 'base_path must be an absolute path without "." or ".." segments')
      .describe('Folder on the server that is the root of this account (default /)'),
  })
  .superRefine((value, ctx) => {
    if (!value.host && !value.domain)
      ctx.addIssue({ code: 'custom', path: ['host'], message: 'host or domain is required' });
    if (value.domain) {
      try {
        parseDomain(value.domain);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['domain'], message: (err as Error).message });
      }
    }
  });

export type FtpCredentialsInput = z.input<typeof ftpCredentials>;
export type FtpCredentials = z.output<typeof ftpCredentials>;

export interface ResolvedCredentials {
  host: string;
  port: number;
  username: string;
  password: string;
  tls: 'none' | 'explicit';
  rejectUnauthorized: boolean;
  ca?: string;
  basePath: string;
}

/** `ftp://host:port`, `ftps://host:port[/path]`, `host` or `host:port`. */
export function parseDomain(domain: string): {
  host: string;
  port?: number;
  secure?: boolean;
  path?: string;
} {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(domain) ? domain : `ftp://${domain}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error('domain must look like ftp://host:port or ftps://host:port');
  }
  const scheme = url.protocol.replace(/:$/, '').toLowerCase();
  if (scheme !== 'ftp' && scheme !== 'ftps' && scheme !== 'ftpes')
    throw new Error('domain must use ftp:// or ftps://');
  if (url.username || url.password || url.search || url.hash)
    throw new Error('domain cannot carry credentials, a query or a fragment');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new Error('domain has no host');
  const path = decodeURIComponent(url.pathname);
  return {
    host,
    ...(url.port ? { port: Number(url.port) } : {}),
    ...(scheme !== 'ftp' ? { secure: true } : {}),
    ...(path && path !== '/' ? { path } : {}),
  };
}

/** One set of connection settings from the form fields (explicit fields win over `domain`). */
export function resolveCredentials(credentials: FtpCredentials): ResolvedCredentials {
  const fromDomain = credentials.domain ? parseDomain(credentials.domain) : undefined;
  const host = credentials.host ?? fromDomain?.host;
  if (!host) throw new Error('host or domain is required');
  const basePath =
    credentials.base_path !== '/' || !fromDomain?.path ? credentials.base_path : fromDomain.path;
  return {
    host,
    port: credentials.port ?? fromDomain?.port ?? 21,
    username: credentials.username,
    password: credentials.password,
    tls: credentials.tls ?? (fromDomain?.secure ? 'explicit' : 'none'),
    rejectUnauthorized: credentials.reject_unauthorized,
    ...(credentials.ca ? { ca: credentials.ca } : {}),
    basePath: normalizeBasePath(basePath),
  };
}
