/**
 * s3rver 3.7.1 (npm devDependency) as a child process on a free loopback port, with one bucket
 * configured at start. It runs under `--openssl-legacy-provider`: its continuation tokens use DES,
 * and without the legacy provider every truncated listing is a 500 (shared/reference/test-servers.md).
 * A child process (not in-process) so failure tests can SIGKILL it mid-transfer. It starts through
 * ./s3rver-flushed.cjs, which makes a PUT answer only once the object is on disk.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { freePort, makeTempDir, type StartedServer, startServer, type TempDir } from '@cloudmux/testkit';

/** s3rver accepts only its built-in account; it does not check signatures (see the fixtures). */
export const S3RVER_KEY = 'S3RVER';
export const S3RVER_SECRET = 'S3RVER';

const require = createRequire(import.meta.url);

const LAUNCHER = fileURLToPath(new URL('./s3rver-flushed.cjs', import.meta.url));

function s3rverBin(): string | null {
  try {
    return existsSync(require.resolve('s3rver/bin/s3rver.js')) ? LAUNCHER : null;
  } catch {
    return null;
  }
}

/** Null when s3rver can run here, else the reason to skip (or to fail under CI). */
export function s3rverMissing(): string | null {
  return s3rverBin()
    ? null
    : 'install s3rver (pnpm install: it is a devDependency of @cloudmux/connector-s3)';
}

export interface S3rver {
  readonly port: number;
  readonly endpoint: string;
  readonly bucket: string;
  readonly dir: string;
  readonly server: StartedServer;
  credentials(extra?: Record<string, unknown>): Record<string, unknown>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same data directory. */
  restart(): Promise<void>;
  teardown(): Promise<void>;
}

export async function startS3rver(options: { bucket?: string } = {}): Promise<S3rver> {
  const bin = s3rverBin();
  if (!bin) throw new Error(s3rverMissing()!);
  const bucket = options.bucket ?? 'cloudmux-test';
  const tmp: TempDir = await makeTempDir('cloudmux-s3-');
  const port = await freePort();
  const start = () =>
    startServer({
      name: 's3rver',
      command: process.execPath,
      args: [
        '--openssl-legacy-provider',
        bin,
        '-d',
        tmp.path,
        '-a',
        '127.0.0.1',
        '-p',
        String(port),
        '--silent',
        '--configure-bucket',
        bucket,
      ],
      ready: { log: /S3rver listening on/ },
    });
  let server = await start();
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    dir: tmp.path,
    get server() {
      return server;
    },
    credentials: (extra = {}) => ({
      access_key_id: S3RVER_KEY,
      secret_access_key: S3RVER_SECRET,
      region: 'us-east-1',
      bucket,
      endpoint: `http://127.0.0.1:${port}`,
      ...extra,
    }),
    kill: () => server.kill(),
    restart: async () => {
      await server.stop();
      server = await start();
    },
    teardown: async () => {
      try {
        await server.stop();
      } finally {
        await tmp.remove();
      }
    },
  };
}
