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

/** Part size for a body of known size: 8 MiB, raised (in whole MiB) so the parts fit in 10,000. */
export function partSizeForSize(size: number): number {
  if (size > MAX_OBJECT_SIZE) {
    throw new CloudmuxError('bad_request', `S3 objects are at most ${MAX_OBJECT_SIZE} bytes.`, { service: SERVICE });
  }
  return Math.max(DEFAULT_PART_SIZE, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

/**
 * Part sizes for a stream of unknown size grow with the part number (parts need not be equal, only
 * ≥ 5 MiB except the last): 8 MiB × 1000, 64 MiB × 4000, then 512 MiB, about 2.7 TiB in all.
 */
export function partSizeForUnknown(partNumber: number): number {
  if (partNumber <= 1000) return DEFAULT_PART_SIZE;
  if (partNumber <= 5000) return 64 * MiB;
  return 512 * MiB;
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

  async readBuffer(limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    const total = await this.pump(limit, (c) => {
      chunks.push(c);
    });
    return Buffer.concat(chunks, total);
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

async function stagePart(reader: ChunkReader, size: number, scratchDir: string): Promise<StagedPart> {
  if (size <= MEMORY_PART_MAX) {
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
  env: { scratchDir: string; log: Logger },
): Promise<void> {
  const fixed = options.size === null ? null : partSizeForSize(options.size);
  const signal = options.signal;
  const uploadId = await client.createMultipartUpload(key, {
    contentType: options.contentType,
    ...(signal ? { signal } : {}),
  });
  const parts: CompletedPart[] = [];
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
      const wanted = fixed ?? partSizeForUnknown(partNumber);
      const staged: StagedPart =
        partNumber === 1 && options.head
          ? { body: { kind: 'buffer', data: options.head }, length: options.head.length, cleanup: async () => {} }
          : await stagePart(reader, wanted, env.scratchDir);
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
      const short = partNumber === 1 && options.head ? !(await reader.hasMore()) : staged.length < wanted;
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
        'could not abort the failed multipart upload; its parts stay until a bucket lifecycle rule removes them',
      );
    });
    throw error;
  }
}
