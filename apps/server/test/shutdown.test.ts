/**
 * Graceful shutdown of the real CLI (`bin/cloudmux.js start` as a child process): on SIGTERM the
 * listener closes at once, in-flight requests finish, the process exits 0; past
 * `CLOUDMUX_SHUTDOWN_GRACE_SECONDS` a stuck request is cut.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, makeTempDir, type TempDir } from '@cloudmux/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { HOST, killCli, type StartedCli, startCli } from './cli-process.js';

type Cli = StartedCli & { dir: TempDir };
const started: Cli[] = [];

async function start(env: Record<string, string>): Promise<Cli> {
  const dir = await makeTempDir('cloudmux-shutdown-');
  try {
    const cli = Object.assign(await startCli(await freePort(), { CLOUDMUX_DATA_DIR: dir.path, ...env }), {
      dir,
    });
    started.push(cli);
    return cli;
  } catch (err) {
    await dir.remove();
    throw err;
  }
}

afterEach(async () => {
  for (const cli of started.splice(0)) {
    await killCli(cli);
    await cli.dir.remove();
  }
});

function devCredentials(cli: Cli): { bearer_token: string; account_id: number } {
  return JSON.parse(readFileSync(join(cli.dir.path, 'dev-credentials.json'), 'utf8')) as {
    bearer_token: string;
    account_id: number;
  };
}

/** An upload whose body the test feeds by hand. */
function slowUpload(cli: Cli, name: string, total: number) {
  const req = httpRequest({
    host: HOST,
    port: cli.port,
    method: 'POST',
    path: '/v1/accounts/me/storage/files',
    agent: false,
    headers: {
      authorization: `Bearer ${devCredentials(cli).bearer_token}`,
      'content-type': 'application/octet-stream',
      'content-length': String(total),
      'x-kloudless-metadata': JSON.stringify({ name, parent_id: 'root' }),
    },
  });
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.once('error', reject);
    });
    req.once('error', reject);
  });
  return { req, response };
}

/** The in-flight gauge as the server reports it (the scrape itself counts as one). */
async function inFlight(cli: Cli): Promise<number> {
  const text = await (await fetch(`http://${HOST}:${cli.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('cloudmux_http_requests_in_flight '));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}

async function waitForInFlight(cli: Cli, n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if ((await inFlight(cli)) >= n + 1) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the server never had ${n} request(s) in flight`);
}

/** Connects until the port refuses; the listener closes right after the SIGTERM line. */
async function connectionRefused(port: number): Promise<string> {
  for (let i = 0; i < 400; i++) {
    const outcome = await new Promise<string>((resolve) => {
      const socket = connect({ host: HOST, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    if (outcome !== 'connected') return outcome;
    await new Promise((r) => setTimeout(r, 25));
  }
  return 'still accepting';
}

// A child process compiling TypeScript on a loaded 2-core machine: a generous budget.
describe('graceful shutdown of `cloudmux start`', { timeout: 120_000 }, () => {
  it('is live and ready, then on SIGTERM refuses new connections, finishes the in-flight upload and exits 0', async () => {
    const cli = await start({ CLOUDMUX_SHUTDOWN_GRACE_SECONDS: '120' });
    const base = cli.url;
    expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${base}/ready`)).json()).toEqual({ status: 'ready', store: 'sqlite' });

    const chunk = Buffer.alloc(256 * 1024, 0x61);
    const parts = 8;
    const { req, response } = slowUpload(cli, 'slow.bin', chunk.length * parts);
    req.write(chunk);
    await waitForInFlight(cli, 1);

    cli.child.kill('SIGTERM');
    await cli.waitFor(/SIGTERM received, finishing in-flight requests/);
    expect(await connectionRefused(cli.port)).toBe('ECONNREFUSED');

    // The rest of the body still arrives on the open connection, and the upload completes.
    for (let i = 1; i < parts; i++) req.write(chunk);
    req.end();
    const result = await response;
    expect(result.status, result.body).toBe(201);
    expect(JSON.parse(result.body)).toMatchObject({
      name: 'slow.bin',
      size: chunk.length * parts,
      type: 'file',
    });
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    expect(statSync(join(cli.dir.path, 'files', 'demo', 'slow.bin')).size).toBe(chunk.length * parts);
  });

  it('cuts a stuck request once the grace period is over, and still exits 0', async () => {
    const cli = await start({ CLOUDMUX_SHUTDOWN_GRACE_SECONDS: '1' });
    const { req, response } = slowUpload(cli, 'stuck.bin', 10 * 1024 * 1024);
    req.write(Buffer.alloc(64 * 1024, 0x62));
    await waitForInFlight(cli, 1);

    cli.child.kill('SIGTERM');
    await cli.waitFor(/SIGTERM received/);
    // The client never sends the rest: the server closes the connection at the deadline.
    await expect(response).rejects.toThrow(/socket hang up|ECONNRESET|aborted/);
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(join(cli.dir.path, 'files', 'demo', 'stuck.bin'))).toBe(false);
  });
});
