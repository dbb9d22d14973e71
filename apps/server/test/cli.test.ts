/**
 * The `cloudmux` command as users run it (child processes, temp data dirs): the first-start banner
 * and its curl examples, `app create`, `key create|list|revoke`, and `secret rotate`, on SQLite and
 * (app create + start) on PostgreSQL in a throwaway schema.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, makeTempDir, type TempDir } from '@cloudmux/testkit';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dropPgSchema } from '../src/store/db.js';
import { killCli, runCli, runCliJson, type StartedCli, startCli } from './cli-process.js';
import { PG_URL } from './harness.js';

const exec = promisify(execFile);

interface Banner {
  appId: string;
  apiKey: string;
  accountId: number;
  token: string;
  curls: string[];
}

/** The credentials and curl commands the first start prints. */
function parseBanner(output: string): Banner {
  const field = (label: string) => {
    const match = new RegExp(`^ {2}${label}:\\s+(\\S+)`, 'm').exec(output);
    if (!match) throw new Error(`no "${label}" in the banner:\n${output}`);
    return match[1]!;
  };
  // A curl example is a line starting with `curl`, continued by lines ending in a backslash.
  const lines = output.split('\n');
  const curls: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s+curl /.test(lines[i]!)) continue;
    let command = lines[i]!.trim();
    while (command.endsWith('\\')) command = `${command.slice(0, -1)} ${lines[++i]!.trim()}`;
    curls.push(command);
  }
  return {
    appId: field('app id'),
    apiKey: field('API key'),
    accountId: Number(field('account id')),
    token: field('bearer token'),
    curls,
  };
}

/** Runs a printed curl command exactly as a user would paste it into a shell. */
async function runCurl(command: string): Promise<{ status: number; body: string }> {
  const { stdout } = await exec('sh', ['-c', `${command} -sS -w '\\n%{http_code}'`]);
  const at = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
}

const api = (cli: StartedCli, path: string, auth: string, init: RequestInit = {}) =>
  fetch(`${cli.url}${path}`, {
    ...init,
    headers: { authorization: auth, ...(init.headers as Record<string, string>) },
  });

async function firstStartChecks(cli: StartedCli, dataDir: string): Promise<Banner> {
  await cli.waitFor(/--data-binary 'hello world'/);
  const banner = parseBanner(cli.output());
  expect(banner.appId).toMatch(/\S{8,}/);
  expect(banner.apiKey.startsWith('cmk_')).toBe(true);
  expect(banner.token.startsWith('cmt_')).toBe(true);
  expect(banner.curls).toHaveLength(2);
  // The listing example shows the demo account's README, the upload example stores hello.txt.
  const list = await runCurl(banner.curls[0]!);
  expect(list.status, list.body).toBe(200);
  expect(
    (JSON.parse(list.body) as { objects: Array<{ name: string }> }).objects.map((o) => o.name),
  ).toContain('README.txt');
  const uploaded = await runCurl(banner.curls[1]!);
  expect(uploaded.status, uploaded.body).toBe(201);
  expect(JSON.parse(uploaded.body)).toMatchObject({ name: 'hello.txt', size: 11, account: banner.accountId });
  expect(readFileSync(join(dataDir, 'files', 'demo', 'hello.txt'), 'utf8')).toBe('hello world');
  // The printed API key works app-wide.
  const accounts = await api(cli, '/v1/accounts', `APIKey ${banner.apiKey}`);
  expect(accounts.status).toBe(200);
  expect(((await accounts.json()) as { objects: Array<{ id: number }> }).objects.map((a) => a.id)).toEqual([
    banner.accountId,
  ]);
  return banner;
}

// Each command is a fresh Node process compiling TypeScript: generous budgets on a loaded 2-core machine.
const CLI_BUDGET = { timeout: 180_000 };

describe('cloudmux CLI on SQLite', CLI_BUDGET, () => {
  const dirs: TempDir[] = [];
  let cli: StartedCli | undefined;
  afterEach(async () => {
    await killCli(cli);
    cli = undefined;
  });
  afterAll(async () => {
    for (const dir of dirs) await dir.remove();
  });
  const dataDir = async () => {
    const dir = await makeTempDir('cloudmux-cli-');
    dirs.push(dir);
    return dir.path;
  };

  it('prints working credentials and curl examples on the first start, and creates no app on the second', async () => {
    const dir = await dataDir();
    const env = { CLOUDMUX_DATA_DIR: dir };
    cli = await startCli(await freePort(), env);
    const banner = await firstStartChecks(cli, dir);
    expect(statSync(join(dir, 'dev-credentials.json')).mode & 0o777).toBe(0o600);
    expect(await cli.stop(), cli.output()).toEqual({ code: 0, signal: null });

    cli = await startCli(await freePort(), env);
    await cli.waitFor(/Development credentials are in .*dev-credentials\.json \(demo account \d+\)/);
    expect(cli.output()).not.toContain('Created a development app');
    expect(await cli.stop(), cli.output()).toEqual({ code: 0, signal: null });
    const apps = await runCliJson<Array<{ app_id: string }>>(['app', 'list'], env);
    expect(apps.map((a) => a.app_id)).toEqual([banner.appId]);
  });

  it('app create gives a working key; key create, list and revoke (a revoked key is refused)', async () => {
    const dir = await dataDir();
    const env = { CLOUDMUX_DATA_DIR: dir };
    const created = await runCliJson<{ app_id: string; api_key: string }>(
      ['app', 'create', '--name', 'Acme'],
      env,
    );
    expect(Object.keys(created).sort()).toEqual(['api_key', 'app_id']);
    cli = await startCli(await freePort(), env);
    const listed = await api(cli, '/v1/accounts', `APIKey ${created.api_key}`);
    expect(listed.status).toBe(200);
    expect(await listed.json()).toMatchObject({ count: 0, objects: [], type: 'object_list' });

    const second = await runCliJson<{ app_id: string; id: number; api_key: string }>(
      ['key', 'create', '--app', created.app_id],
      env,
    );
    expect(second.app_id).toBe(created.app_id);
    expect((await api(cli, '/v1/accounts', `APIKey ${second.api_key}`)).status).toBe(200);
    const keys = await runCliJson<Array<{ id: number; prefix: string; revoked: string | null }>>(
      ['key', 'list', '--app', created.app_id],
      env,
    );
    expect(keys).toHaveLength(2);
    expect(keys.map((k) => k.id)).toContain(second.id);
    expect(keys.every((k) => k.revoked === null)).toBe(true);
    expect(keys.some((k) => created.api_key.startsWith(k.prefix))).toBe(true);

    const revoke = await runCli(['key', 'revoke', '--app', created.app_id, String(second.id)], env);
    expect(revoke.code, revoke.stderr).toBe(0);
    const refused = await api(cli, '/v1/accounts', `APIKey ${second.api_key}`);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ error_code: 'unauthorized', status_code: 401 });
    expect((await api(cli, '/v1/accounts', `APIKey ${created.api_key}`)).status).toBe(200);
    const after = await runCliJson<Array<{ id: number; revoked: string | null }>>(
      ['key', 'list', '--app', created.app_id],
      env,
    );
    expect(after.find((k) => k.id === second.id)?.revoked).toEqual(expect.any(String));
    // Revoking by the key itself works as well; revoking twice is an error.
    expect((await runCli(['key', 'revoke', '--app', created.app_id, created.api_key], env)).code).toBe(0);
    expect((await api(cli, '/v1/accounts', `APIKey ${created.api_key}`)).status).toBe(401);
    const again = await runCli(['key', 'revoke', '--app', created.app_id, String(second.id)], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('no such active key');
    // An app existed before the first start: no development app was made.
    expect((await runCliJson<Array<{ app_id: string }>>(['app', 'list'], env)).map((a) => a.app_id)).toEqual([
      created.app_id,
    ]);
  });

  it('secret rotate re-encrypts credentials under a new key version; accounts and object ids are unchanged', async () => {
    const dir = await dataDir();
    const env = { CLOUDMUX_DATA_DIR: dir };
    const { api_key: apiKey } = await runCliJson<{ app_id: string; api_key: string }>(
      ['app', 'create', '--name', 'Rotating'],
      env,
    );
    cli = await startCli(await freePort(), env);
    const root = join(dir, 'files', 'rotating');
    mkdirSync(root, { recursive: true });
    const auth = `APIKey ${apiKey}`;
    const json = { 'content-type': 'application/json' };
    const account = (await (
      await api(cli, '/v1/accounts', auth, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ service: 'local', root }),
      })
    ).json()) as { id: number };
    const base = `/v1/accounts/${account.id}/storage`;
    const upload = (name: string) =>
      api(cli!, `${base}/files`, auth, {
        method: 'POST',
        headers: {
          'x-kloudless-metadata': JSON.stringify({ name, parent_id: 'root' }),
          'content-type': 'application/octet-stream',
        },
        body: `contents of ${name}`,
      }).then((r) => r.json() as Promise<{ id: string }>);
    const file = await upload('before.txt');
    const folder = (await (
      await api(cli, `${base}/folders`, auth, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ name: 'kept', parent_id: 'root' }),
      })
    ).json()) as { id: string };
    const listing = async () =>
      (
        (await (await api(cli!, `${base}/folders/root/contents`, auth)).json()) as {
          objects: Array<{ id: string }>;
        }
      ).objects
        .map((o) => o.id)
        .sort();
    const idsBefore = await listing();
    expect(idsBefore).toEqual([file.id, folder.id].sort());
    expect(await cli.stop(), cli.output()).toEqual({ code: 0, signal: null });

    const readCredentials = () => {
      const db = new Database(join(dir, 'cloudmux.db'), { readonly: true });
      try {
        return db.prepare('select id, credentials_enc from accounts order by id').all() as Array<{
          id: number;
          credentials_enc: string;
        }>;
      } finally {
        db.close();
      }
    };
    const encryptedBefore = readCredentials();
    const keyFile = join(dir, 'secret.key');
    const keysBefore = JSON.parse(readFileSync(keyFile, 'utf8')) as {
      keyring: string;
      'ids-version': number;
    };

    const rotated = await runCliJson<{ version: number; total: number; changed: number }>(
      ['secret', 'rotate'],
      env,
    );
    expect(rotated).toEqual({ version: 2, total: 1, changed: 1 });
    const keysAfter = JSON.parse(readFileSync(keyFile, 'utf8')) as { keyring: string; 'ids-version': number };
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(keysAfter.keyring.startsWith('2:')).toBe(true);
    expect(keysAfter.keyring.endsWith(keysBefore.keyring)).toBe(true);
    expect(keysAfter['ids-version']).toBe(keysBefore['ids-version']);
    const encryptedAfter = readCredentials();
    expect(encryptedAfter.map((r) => r.id)).toEqual(encryptedBefore.map((r) => r.id));
    expect(encryptedAfter[0]!.credentials_enc).not.toBe(encryptedBefore[0]!.credentials_enc);

    cli = await startCli(await freePort(), env);
    const got = await api(cli, `${base}/files/${file.id}`, auth);
    expect(got.status).toBe(200);
    expect(await got.json()).toMatchObject({ id: file.id, name: 'before.txt' });
    expect(await (await api(cli, `${base}/files/${file.id}/contents`, auth)).text()).toBe(
      'contents of before.txt',
    );
    expect(await listing()).toEqual(idsBefore);
    // The account still works for new writes, under the re-encrypted credentials.
    const later = await upload('after.txt');
    expect(await listing()).toEqual([...idsBefore, later.id].sort());
  });
});

describe('cloudmux CLI on PostgreSQL', CLI_BUDGET, () => {
  const schema = `cm_cli_${process.pid}_${randomBytes(4).toString('hex')}`;
  let dir: TempDir;
  let env: Record<string, string>;
  let cli: StartedCli | undefined;
  beforeAll(async () => {
    dir = await makeTempDir('cloudmux-cli-pg-');
    env = { CLOUDMUX_DATA_DIR: dir.path, DATABASE_URL: PG_URL, CLOUDMUX_DATABASE_SCHEMA: schema };
  });
  afterEach(async () => {
    await killCli(cli);
    cli = undefined;
  });
  afterAll(async () => {
    await dropPgSchema(PG_URL, schema);
    await dir?.remove();
  });

  it('bootstraps on the first start, app create works against the running server, a second start adds no app', async () => {
    cli = await startCli(await freePort(), env);
    expect(cli.output()).toContain('store: postgres');
    const banner = await firstStartChecks(cli, dir.path);

    const created = await runCliJson<{ app_id: string; api_key: string }>(
      ['app', 'create', '--name', 'On Postgres'],
      env,
    );
    const res = await api(cli, '/v1/accounts', `APIKey ${created.api_key}`);
    expect(res.status).toBe(200);
    // Apps are isolated: the new app sees none of the development app's accounts.
    expect(await res.json()).toMatchObject({ count: 0, objects: [] });
    expect(await cli.stop(), cli.output()).toEqual({ code: 0, signal: null });

    cli = await startCli(await freePort(), env);
    await cli.waitFor(/Development credentials are in/);
    expect(cli.output()).not.toContain('Created a development app');
    expect((await api(cli, '/v1/accounts', `APIKey ${banner.apiKey}`)).status).toBe(200);
    expect(await cli.stop(), cli.output()).toEqual({ code: 0, signal: null });
    const apps = await runCliJson<Array<{ app_id: string }>>(['app', 'list'], env);
    expect(apps.map((a) => a.app_id).sort()).toEqual([banner.appId, created.app_id].sort());
  });
});
