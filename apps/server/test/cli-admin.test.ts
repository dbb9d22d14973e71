/** The admin subcommands, run in-process through `main(argv, io)` on a temp data dir. */
import { makeTempDir, type TempDir } from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { newAppId } from '../src/store/store.js';

let dir: TempDir;
const run = async (...argv: string[]) => {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...argv, '--data-dir', dir.path], {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
};

beforeAll(async () => {
  dir = await makeTempDir('cloudmux-cli-admin-');
});
afterAll(async () => dir?.remove());

describe('cloudmux admin commands', () => {
  it('registers webhooks and shows the signing key', async () => {
    const app = JSON.parse((await run('app', 'create', '--name', 'hooks', '--json')).out) as {
      app_id: string;
    };
    const added = await run('webhook', 'add', 'https://receiver.example/hook', '--json');
    expect(added.code).toBe(0);
    const hook = JSON.parse(added.out) as { id: number; url: string; signing_key: string };
    expect(hook.url).toBe('https://receiver.example/hook');
    expect(hook.signing_key.length).toBeGreaterThan(20);
    expect(JSON.parse((await run('webhook', 'list', '--json')).out)).toEqual([
      { id: hook.id, url: hook.url },
    ]);
    expect(JSON.parse((await run('webhook', 'key', '--json')).out)).toEqual({
      signing_key: hook.signing_key,
    });
    const rotated = JSON.parse((await run('webhook', 'key', '--rotate', '--json')).out) as {
      signing_key: string;
    };
    expect(rotated.signing_key).not.toBe(hook.signing_key);
    expect((await run('webhook', 'add', 'http://169.254.169.254/latest', '--app', app.app_id)).code).toBe(1);
    expect((await run('webhook', 'remove', String(hook.id))).code).toBe(0);
    expect(JSON.parse((await run('webhook', 'list', '--json')).out)).toEqual([]);
  });

  it('app ids are letters and digits, so `--app <id>` never reads as an option', async () => {
    const ids = Array.from({ length: 500 }, newAppId);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9]{16}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('manages redirect URIs and trusted origins', async () => {
    expect((await run('redirect-uri', 'add', 'https://app.example/callback')).code).toBe(0);
    expect((await run('origin', 'add', 'https://app.example')).code).toBe(0);
    expect(JSON.parse((await run('redirect-uri', 'list', '--json')).out)).toEqual([
      'https://app.example/callback',
    ]);
    expect(JSON.parse((await run('origin', 'list', '--json')).out)).toEqual(['https://app.example']);
    const bad = await run('origin', 'add', 'not a url');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/cloudmux:/);
    expect((await run('redirect-uri', 'remove', 'https://app.example/callback')).code).toBe(0);
    expect(JSON.parse((await run('redirect-uri', 'list', '--json')).out)).toEqual([]);
  });

  it('secret rotate keeps webhook signing keys readable', async () => {
    const before = JSON.parse(
      (await run('webhook', 'add', 'https://receiver.example/two', '--json')).out,
    ) as { signing_key: string };
    expect((await run('secret', 'rotate')).code).toBe(0);
    expect(JSON.parse((await run('webhook', 'key', '--json')).out)).toEqual({
      signing_key: before.signing_key,
    });
  });
});
