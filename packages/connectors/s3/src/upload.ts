/**
 * Bounded-memory uploads. A body of known size up to `SINGLE_PUT_MAX` streams straight into one
 * PutObject with its Content-Length; anything larger, or of unknown size beyond that, becomes a
 * multipart upload whose parts are read from the stream one at a time: a part is uploaded while the
 * next is read, so at most two parts are held. Parts up to `MEMORY_PART_MAX` stay in memory (a
 * Buffer: signed payload, retried by core on 5xx); larger ones are spooled to the scratch directory
 * and sent from the file (a `bodyFactory`, so retries reopen it). A failed upload is aborted, so
 * nothing appears under the final key.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { CloudmuxError, type Logger } from '@cloudmux/core';
import type { Body, CompletedPart, S3Client } from './client.js';
import { SERVICE } from './keys.js';

export const MiB = 1024 * 1024;
/** S3 multipart limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html). */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
export const MAX_PARTS = 10_000;
export const MAX_OBJECT_SIZE = MAX_PART_SIZE * MAX_PARTS;
/** Largest object CopyObject copies in one request; larger ones are copied with UploadPartCopy. */
export const COPY_MAX = 5 * 1024 * MiB;

export const DEFAULT_PART_SIZE = 8 * MiB;
export const SINGLE_PUT_MAX = 16 * MiB;
export const MEMORY_PART_MAX = 16 * MiB;

/** Upload sizes; tests lower them to reach the multipart and spooling paths with small bodies. */
export interface UploadLimits {
  /** Smallest part of a multipart upload (raised to fit 10,000 parts). */
  partSize: number;
  /** Largest body sent as one PutObject. */
  singlePutMax: number;
  /** Largest part held in memory; larger parts are spooled to the scratch directory. */
  memoryPartMax: number;
}

export const DEFAULT_UPLOAD_LIMITS: Readonly<UploadLimits> = Object.freeze({
  partSize: DEFAULT_PART_SIZE,
  singlePutMax: SINGLE_PUT_MAX,
  memoryPartMax: MEMORY_PART_MAX,
});

/** Part size for a body of known size: 8 MiB, raised (in whole MiB) so the parts fit in 10,000. */
export function partSizeForSize(size: number, base = DEFAULT_PART_SIZE): number {
  if (size > MAX_OBJECT_SIZE) {
    throw new CloudmuxError('bad_request', `S3 objects are at most ${MAX_OBJECT_SIZE} bytes.`, {
      service: SERVICE,
    });
  }
  return Math.max(base, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

/**
 * Part sizes for a stream of unknown size grow with the part number (parts need not be equal, only
 * ≥ 5 MiB except the last): 8 MiB × 1000, 64 MiB × 4000, then 512 MiB, about 2.7 TiB in all.
 */
export function partSizeForUnknown(partNumber: number, base = DEFAULT_PART_SIZE): number {
  if (partNumber <= 1000) return base;
  if (partNumber <= 5000) return Math.min(MAX_PART_SIZE, base * 8);
  return Math.min(MAX_PART_SIZE, base * 64);
}

/** Reads exact byte counts from a stream without holding more than the bytes asked for. */
export class ChunkReader {
  private readonly iterator: AsyncIterator<unknown>;
  private pending: Buffer | null = null;
  private done = false;
  bytesRead = 0;

  constructor(stream: Readable) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  private async next(): Promise<Buffer | null> {
    for (;;) {
      if (this.pending) {
        const chunk = this.pending;
        this.pending = null;
        return chunk;
      }
      if (this.done) return null;
      const result = await this.iterator.next();
      if (result.done) {
        this.done = true;
        return null;
      }
      const value = result.value;
      const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array | string);
      if (chunk.length > 0) return chunk;
    }
  }

  /** Feeds `take` bytes of the next chunks to `sink`; returns how many there were (short at EOF). */
  private async pump(limit: number, sink: (chunk: Buffer) => void | Promise<void>): Promise<number> {
    let total = 0;
    while (total < limit) {
      const chunk = await this.next();
      if (!chunk) break;
      const room = limit - total;
      if (chunk.length > room) {
        // Keep only the unused tail of this one chunk, not a view into a whole part.
        this.pending = chunk.subarray(room);
        await sink(chunk.subarray(0, room));
        total += room;
      } else {
        await sink(chunk);
        total += chunk.length;
      }
    }
    this.bytesRead += total;
    return total;
  }

  /** Up to `limit` bytes copied into one buffer (no list of chunks, no second copy). */
  async readBuffer(limit: number): Promise<Buffer> {
    let out: Buffer | null = null;
    let filled = 0;
    await this.pump(limit, (c) => {
      // Allocate on the first byte: an empty body costs nothing.
      out ??= Buffer.allocUnsafeSlow(limit);
      filled += c.copy(out, filled);
    });
    if (!out) return Buffer.alloc(0);
    return filled === limit ? out : (out as Buffer).subarray(0, filled);
  }

  async readToFile(limit: number, path: string): Promise<number> {
    const file = await open(path, 'w', 0o600);
    try {
      return await this.pump(limit, async (c) => {
        await file.write(c);
      });
    } finally {
      await file.close();
    }
  }

  /** Whether another byte follows; consumes nothing. */
  async hasMore(): Promise<boolean> {
    const chunk = await this.next();
    if (!chunk) return false;
    this.pending = chunk;
    return true;
  }

  /** Stops reading (destroys the source when it was not read to the end). */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.iterator.return?.();
    }
  }
}

interface StagedPart {
  body: Body;
  length: number;
  cleanup(): Promise<void>;
}

async function stagePart(
  reader: ChunkReader,
  size: number,
  scratchDir: string,
  memoryMax: number,
): Promise<StagedPart> {
  if (size <= memoryMax) {
    const data = await reader.readBuffer(size);
    return { body: { kind: 'buffer', data }, length: data.length, cleanup: async () => {} };
  }
  const path = join(scratchDir, `cloudmux-s3-${randomUUID()}.part`);
  const cleanup = () => rm(path, { force: true });
  try {
    const length = await reader.readToFile(size, path);
    return { body: { kind: 'factory', open: () => createReadStream(path), length }, length, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

function sizeMismatch(expected: number, got: number, more: boolean): CloudmuxError {
  return new CloudmuxError(
    'bad_request',
    more
      ? `The upload body is longer than the declared size of ${expected} bytes.`
      : `The upload body ended after ${got} of ${expected} bytes.`,
    { service: SERVICE },
  );
}

/**
 * Passes exactly `size` bytes of `source` (the Content-Length a single PutObject declares) and
 * fails otherwise, keeping the failure so the caller reports it rather than the aborted request.
 */
export function exactLength(source: Readable, size: number): { stream: Readable; failure(): unknown } {
  let seen = 0;
  let failure: unknown = null;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > size) {
        failure ??= sizeMismatch(size, seen, true);
        done(failure as Error);
        return;
      }
      done(null, chunk);
    },
    flush(done) {
      if (seen < size) {
        failure ??= sizeMismatch(size, seen, false);
        done(failure as Error);
        return;
      }
      done();
    },
  });
  source.once('error', (error) => {
    failure ??= error;
    counter.destroy(error);
  });
  source.pipe(counter);
  return { stream: counter, failure: () => failure };
}

export interface MultipartOptions {
  /** Known total size, or null for a stream of unknown length. */
  size: number | null;
  contentType: string;
  ifNoneMatch: boolean;
  /** Bytes already read from the stream (the probe of an unknown-size body): part 1. */
  head?: Buffer;
  signal?: AbortSignal;
}

type Outcome = { part: CompletedPart } | { error: unknown };

/** Streams `reader` into a multipart upload at `key`; aborts the upload on any failure. */
export async function uploadMultipart(
  client: S3Client,
  key: string,
  reader: ChunkReader,
  options: MultipartOptions,
  env: { scratchDir: string; log: Logger; limits: UploadLimits },
): Promise<void> {
  const { limits } = env;
  const fixed = options.size === null ? null : partSizeForSize(options.size, limits.partSize);
  const signal = options.signal;
  const uploadId = await client.createMultipartUpload(key, {
    contentType: options.contentType,
    ...(signal ? { signal } : {}),
  });
  const parts: CompletedPart[] = [];
  // Dropped once sent (here and in the caller's options), so the probe is not held for the whole upload.
  let head = options.head;
  options.head = undefined;
  let inflight: Promise<Outcome> | null = null;
  let total = 0;
  const settle = async () => {
    if (!inflight) return;
    const outcome = await inflight;
    inflight = null;
    if ('error' in outcome) throw outcome.error;
    parts.push(outcome.part);
  };
  try {
    for (let partNumber = 1; ; partNumber++) {
      if (partNumber > MAX_PARTS) {
        throw new CloudmuxError('bad_request', 'The upload is larger than an S3 multipart upload can hold.', {
          service: SERVICE,
        });
      }
      const wanted = fixed ?? partSizeForUnknown(partNumber, limits.partSize);
      const fromHead = partNumber === 1 && head !== undefined;
      const staged: StagedPart = fromHead
        ? { body: { kind: 'buffer', data: head! }, length: head!.length, cleanup: async () => {} }
        : await stagePart(reader, wanted, env.scratchDir, limits.memoryPartMax);
      head = undefined;
      try {
        // The previous part must be done before this one starts: at most two parts are held.
        await settle();
      } catch (error) {
        await staged.cleanup();
        throw error;
      }
      if (staged.length === 0) {
        await staged.cleanup();
        break;
      }
      total += staged.length;
      const number = partNumber;
      inflight = client
        .uploadPart(key, uploadId, number, staged.body, signal)
        .then(
          (etag): Outcome => ({ part: { partNumber: number, etag } }),
          (error: unknown): Outcome => ({ error }),
        )
        .finally(() => staged.cleanup());
      const short = fromHead ? !(await reader.hasMore()) : staged.length < wanted;
      if (short) break;
    }
    await settle();
    if (options.size !== null) {
      const more = await reader.hasMore();
      if (total !== options.size || more) throw sizeMismatch(options.size, total, more);
    }
    await client.completeMultipartUpload(key, uploadId, parts, {
      ifNoneMatch: options.ifNoneMatch,
      ...(signal ? { signal } : {}),
    });
  } catch (error) {
    if (inflight) await (inflight as Promise<Outcome>).catch(() => undefined);
    await reader.close().catch(() => undefined);
    await client.abortMultipartUpload(key, uploadId).catch((abortError: unknown) => {
      env.log.warn(
        { service: SERVICE, uploadId, error: (abortError as Error).message },
        'could not abort a failed multipart upload; its parts stay until a lifecycle rule removes them',
      );
    });
    throw error;
  }
}
