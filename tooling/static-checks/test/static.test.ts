/**
 * What the tests themselves cannot see: type errors (vitest strips types), lint and format drift, a
 * broken build, and a server that only works from source. The build goes to dist/, which nothing in the test loop reads.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, makeTempDir, run, startServer } from '@cloudmux/testkit';
import { describe, expect, it } from 'vitest';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const biome = join(root, 'node_modules', '@biomejs', 'biome', 'bin', 'biome');

function workspacePackages(): string[] {
  const dirs: string[] = [];
  for (const parent of ['packages', 'packages/connectors', 'apps']) {
    for (const entry of readdirSync(join(root, parent), { withFileTypes: true })) {
      const dir = join(parent, entry.name);
      if (entry.isDirectory() && existsSync(join(root, dir, 'tsconfig.test.json'))) dirs.push(dir);
    }
  }
  return dirs;
}

describe('the workspace', () => {
  it('every package typechecks, tests included (tsc -p tsconfig.test.json)', async () => {
    const failures: string[] = [];
    for (const dir of workspacePackages()) {
      await run(process.execPath, [tsc, '-p', 'tsconfig.test.json', '--noEmit'], {
        cwd: join(root, dir),
        timeoutMs: 300_000,
      }).catch((err: Error) => failures.push(`${dir}:\n${err.message.slice(0, 3000)}`));
    }
    expect(failures).toEqual([]);
  });

  it('lint and format are clean (biome check over the repository)', async () => {
    // Rejects with biome's report when it finds anything (warnings included: they are fixable).
    await run(process.execPath, [biome, 'check', '--error-on-warnings', '.'], {
      cwd: root,
      timeoutMs: 120_000,
    });
  });

  it('builds every package to dist with the project references (tsc -b)', async () => {
    await run(process.execPath, [tsc, '-b', 'tsconfig.json'], { cwd: root, timeoutMs: 600_000 });
    const references = (
      JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8')) as { references: Array<{ path: string }> }
    ).references;
    for (const dir of workspacePackages()) {
      expect(
        references.map((r) => r.path),
        `${dir} is missing from the root tsconfig references`,
      ).toContain(dir);
      expect(
        existsSync(join(root, dir, 'dist', dir === 'apps/server' ? 'bin.js' : 'index.js')),
        `${dir}/dist`,
      ).toBe(true);
    }
  });

  it('the built server runs on plain Node and serves the demo account', async () => {
    const data = await makeTempDir('cloudmux-dist-');
    const port = await freePort();
    const server = await startServer({
      name: 'cloudmux (dist)',
      command: process.execPath,
      args: [join(root, 'apps/server/dist/bin.js'), 'start'],
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        CLOUDMUX_DATA_DIR: data.path,
        LOG_LEVEL: 'warn',
      },
      ready: { http: { url: `http://127.0.0.1:${port}/ready`, ok: (s) => s === 200 } },
      timeoutMs: 60_000,
    });
    try {
      const { bearer_token: token } = JSON.parse(
        readFileSync(join(data.path, 'dev-credentials.json'), 'utf8'),
      ) as { bearer_token: string };
      const base = `http://127.0.0.1:${port}/v1/accounts/me/storage`;
      const upload = await fetch(`${base}/files`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'x-kloudless-metadata': '{"name": "dist.txt", "parent_id": "root"}',
          'content-type': 'application/octet-stream',
        },
        body: 'built',
      });
      expect(upload.status).toBe(201);
      const file = (await upload.json()) as { id: string };
      expect(
        await (
          await fetch(`${base}/files/${file.id}/contents`, { headers: { authorization: `Bearer ${token}` } })
        ).text(),
      ).toBe('built');
      // Plain Node must not have loaded TypeScript: the process resolved the packages' dist entries.
      expect(server.logs()).not.toMatch(/\.ts:\d+/);
    } finally {
      await server.stop();
      await data.remove();
    }
    expect(server.child.exitCode).toBe(0);
  });
});
