/**
 * The operator secret: `CLOUDMUX_SECRET_KEY`, or a keyring generated into `<data dir>/secret.key`
 * (mode 0600) on first start. Every key the server uses is derived from it per purpose (core's
 * Keyring): object ids, paging tokens, credentials at rest, webhook secrets.
 *
 * Ids are minted under a pinned key version (`ids-version` in the key file, default 1) so that
 * `cloudmux secret rotate`, which adds a version and re-encrypts credentials, never changes ids.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createKeyring, generateSecretKey, type Keyring } from '@cloudmux/core';

export interface KeyMaterial {
  keyring: Keyring;
  /** Key version new object ids and paging tokens are minted under. */
  idsVersion: number;
  /** Where the keyring lives, when it is the data dir's file. */
  file?: string;
}

interface KeyFile {
  keyring: string;
  'ids-version': number;
}

export function keyFilePath(dataDir: string): string {
  return join(dataDir, 'secret.key');
}

export function loadKeys(dataDir: string, secretKey?: string): KeyMaterial {
  if (secretKey) {
    const keyring = createKeyring(secretKey);
    return { keyring, idsVersion: Math.min(...keyring.versions) };
  }
  const file = keyFilePath(dataDir);
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    const content: KeyFile = { keyring: `1:${generateSecretKey()}`, 'ids-version': 1 };
    writeFileSync(file, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as KeyFile;
  return { keyring: createKeyring(parsed.keyring), idsVersion: parsed['ids-version'], file };
}

/** Adds a new active key version to the data dir's key file and returns the new material. */
export function addKeyVersion(
  material: KeyMaterial,
  newSecret = generateSecretKey(),
): { material: KeyMaterial; keyringString: string; version: number } {
  const version = Math.max(...material.keyring.versions) + 1;
  const keyring = material.keyring.withKey(version, newSecret);
  const previous = material.file ? (JSON.parse(readFileSync(material.file, 'utf8')) as KeyFile).keyring : '';
  const keyringString = previous ? `${version}:${newSecret},${previous}` : `${version}:${newSecret}`;
  if (material.file) {
    const content: KeyFile = { keyring: keyringString, 'ids-version': material.idsVersion };
    writeFileSync(material.file, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
  }
  return { material: { ...material, keyring }, keyringString, version };
}
