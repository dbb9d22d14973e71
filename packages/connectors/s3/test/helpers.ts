/** Builds the connector's pieces over core's real context (guard, HTTP client, SigV4) for one endpoint. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { type ConnectorContext, createConnectorContext, ManualClock, silentLogger } from '@cloudmux/core';
import { makeTempDir, type TempDir } from '@cloudmux/testkit';
import { KeySpace, resolveSettings, S3Client, type S3Credentials, S3Storage, s3 } from '../src/index.js';
import type { UploadLimits } from '../src/upload.js';

export interface Harness {
  ctx: ConnectorContext<S3Credentials>;
  client: S3Client;
  storage: S3Storage;
  scratch: TempDir;
  clock: ManualClock;
  dispose(): Promise<void>;
}

export async function harness(
  credentials: Record<string, unknown>,
  options: { limits?: Partial<UploadLimits>; searchScanLimit?: number } = {},
): Promise<Harness> {
  const parsed = s3.credentials.parse(credentials);
  const scratch = await makeTempDir('cloudmux-s3-scratch-');
  // Backoff sleeps are skipped (and recorded); SigV4 dates still come from a real timestamp.
  const clock = new ManualClock(Date.now(), { autoAdvance: true });
  const ctx = createConnectorContext({
    definition: s3,
    accountId: '7',
    credentials: parsed,
    scratchDir: scratch.path,
    clock,
  });
  const settings = resolveSettings(parsed);
  const client = new S3Client(ctx.http, settings, silentLogger);
  const storage = new S3Storage({
    client,
    keys: new KeySpace(settings.bucket, settings.prefix),
    scratchDir: scratch.path,
    log: silentLogger,
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.searchScanLimit ? { searchScanLimit: options.searchScanLimit } : {}),
  });
  return {
    ctx,
    client,
    storage,
    scratch,
    clock,
    dispose: async () => {
      ctx.net.destroy();
      await scratch.remove();
    },
  };
}

/**
 * `size` bytes from a fixed 1 MiB pseudo-random block with the chunk index stamped in, produced
 * lazily (cheap enough for hundreds of MiB); `expectedSha256` gives the digest of the same bytes.
 */
export function patternStream(size: number, chunk = 256 * 1024): Readable {
  let offset = 0;
  return new Readable({
    highWaterMark: chunk,
    read() {
      if (offset >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(chunk, size - offset);
      this.push(patternChunk(offset, n));
      offset += n;
    },
  });
}

const BLOCK = createHash('sha512').update('cloudmux-s3').digest();

function patternChunk(offset: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += BLOCK.length) BLOCK.copy(out, i, 0, Math.min(BLOCK.length, n - i));
  if (n >= 4) out.writeUInt32BE(offset % 0xffffffff, 0);
  return out;
}

export function patternSha256(size: number, chunk = 256 * 1024): string {
  const hash = createHash('sha256');
  for (let offset = 0; offset < size; offset += chunk)
    hash.update(patternChunk(offset, Math.min(chunk, size - offset)));
  return hash.digest('hex');
}

export function patternBytes(size: number, chunk = 256 * 1024): Buffer {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < size; offset += chunk)
    parts.push(patternChunk(offset, Math.min(chunk, size - offset)));
  return Buffer.concat(parts);
}
