import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { TestServer } from './fixtures/http/server.js';

const run = promisify(execFile);
const probe = fileURLToPath(new URL('./fixtures/http/upload-memory.ts', import.meta.url));
const packageDir = fileURLToPath(new URL('..', import.meta.url));

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function startSink(): Promise<TestServer> {
  // Counts bytes without keeping them.
  const { createServer } = await import('node:http');
  const sink = createServer((req, res) => {
    let received = 0;
    req.on('data', (c: Buffer) => {
      received += c.length;
    });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ received }));
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const port = (sink.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests: [],
    close: () => new Promise((r) => sink.close(() => r())),
  };
}

async function measure(total: number) {
  server = await startSink();
  const { stdout } = await run(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', probe, server.url, String(total)],
    {
      cwd: packageDir,
      timeout: 120_000,
      env: { ...process.env, NODE_OPTIONS: '' },
    },
  );
  const result = JSON.parse(stdout) as {
    status: number;
    received: number;
    baselineMiB: number;
    growthMiB: number;
  };
  console.log(
    `${total / 2 ** 20} MiB streamed upload: peak RSS growth ${result.growthMiB.toFixed(1)} MiB ` +
      `(baseline ${result.baselineMiB.toFixed(1)} MiB)`,
  );
  expect(result.status).toBe(200);
  expect(result.received).toBe(total);
  return result;
}

// Measured in a child process that never loads nock (it buffers bodies); no timing is asserted.
describe('streamed upload memory', () => {
  it('a 64 MiB upload through the client stays well under a generous bound (number reported)', async () => {
    const result = await measure(64 * 1024 * 1024);
    expect(result.growthMiB).toBeLessThan(200);
  });

  it('a 256 MiB upload also stays under 200 MiB, which a buffered body could not', async () => {
    const result = await measure(256 * 1024 * 1024);
    expect(result.growthMiB).toBeLessThan(200);
  });
});
