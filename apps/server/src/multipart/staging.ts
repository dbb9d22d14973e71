/**
 * On-disk staging for parts that cannot go to a native session: `<dataDir>/multipart/<session>/`,
 * one file per received part (a unique name per attempt, so a re-sent part never overwrites the
 * file a concurrent reader uses). Bodies stream through a meter that counts and hashes them.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CloudmuxError } from '@cloudmux/core';

/** Free space kept on the data dir's file system beyond the part being written. */
export const FREE_SPACE_RESERVE = 64 * 1024 * 1024;
/** Bytes past the expected size that are still read (and dropped) so the 400 reaches the client. */
const OVERFLOW_SLACK = 16 * 1024 * 1024;
const PART_FILE = /^\d{1,5}-[0-9a-f-]{36}\.part$/;

export function stagingRoot(dataDir: string): string {
  return join(dataDir, 'multipart');
}

export function sessionDir(dataDir: string, sessionId: number): string {
  return join(stagingRoot(dataDir), String(sessionId));
}

/** A stored part file name back to its path; anything that is not one of ours is refused. */
export function partPath(dir: string, file: string): string {
  if (!PART_FILE.test(file))
    throw new CloudmuxError('internal_error', 'A staged part has an unexpected file name.');
  return join(dir, file);
}

/**
 * Counts and hashes what passes. Past `limit` it stops passing bytes on (the part is invalid
 * anyway) but keeps reading, so the client still gets its 400; past the slack it fails.
 */
export class PartMeter extends Transform {
  bytes = 0;
  overflow = false;
  readonly #hash = createHash('sha256');

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      this.overflow = true;
      if (this.bytes > this.limit + OVERFLOW_SLACK) {
        callback(new CloudmuxError('bad_request', `The part is larger than ${this.limit} bytes.`));
        return;
      }
      callback();
      return;
    }
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  digest(): string {
    return this.#hash.digest('hex');
  }
}

/** Streams `body` into a new part file; the caller validates the size and commits or deletes it. */
export async function writePart(
  dir: string,
  partNumber: number,
  body: Readable,
  limit: number,
): Promise<{ file: string; path: string; bytes: number; sha256: string; overflow: boolean }> {
  await mkdir(dir, { recursive: true });
  const file = `${partNumber}-${randomUUID()}.part`;
  const path = join(dir, file);
  const meter = new PartMeter(limit);
  try {
    await pipeline(body, meter, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
  } catch (err) {
    await rm(path, { force: true });
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new CloudmuxError('insufficient_storage', 'The server ran out of disk space staging this part.');
    }
    throw err;
  }
  return { file, path, bytes: meter.bytes, sha256: meter.digest(), overflow: meter.overflow };
}

/** Reads `body` to the end without keeping it (a re-sent part compared with the native copy). */
export async function measure(
  body: Readable,
  limit: number,
): Promise<{ bytes: number; sha256: string; overflow: boolean }> {
  const meter = new PartMeter(limit);
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  await pipeline(body, meter, sink);
  return { bytes: meter.bytes, sha256: meter.digest(), overflow: meter.overflow };
}

/** The staged parts as one stream, opened one file at a time (never held in memory). */
export function concatParts(paths: string[]): Readable {
  async function* chunks() {
    for (const path of paths) {
      for await (const chunk of createReadStream(path)) yield chunk as Buffer;
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

/** The size of a staged file (a part whose file vanished is reported as missing). */
export async function fileSize(path: string): Promise<number | null> {
  const info = await stat(path).catch(() => null);
  return info?.isFile() ? info.size : null;
}

export type StatFs = (path: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }>;

/** `insufficient_storage` unless the file system holding `dir` has room for `bytes` plus a reserve. */
export async function ensureFreeSpace(dir: string, bytes: number, statFs: StatFs = statfs): Promise<void> {
  let info: Awaited<ReturnType<StatFs>>;
  try {
    info = await statFs(dir);
  } catch {
    return; // a file system that cannot say: the write itself reports ENOSPC
  }
  const free = Number(info.bavail) * Number(info.bsize);
  if (free < bytes + FREE_SPACE_RESERVE) {
    throw new CloudmuxError(
      'insufficient_storage',
      'The server does not have enough free disk space to stage this part.',
    );
  }
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Session ids that have a staging folder. */
export async function stagedSessionIds(dataDir: string): Promise<number[]> {
  const names = await readdir(stagingRoot(dataDir)).catch(() => [] as string[]);
  return names.filter((n) => /^\d{1,15}$/.test(n)).map(Number);
}
