/**
 * Streamed block-blob uploads with bounded memory. A body that fits in one block goes up with one
 * Put Blob; anything larger is cut into blocks (Put Block, each from a buffer so core can retry it)
 * and committed with Put Block List. At most two block buffers exist: one being sent while the next
 * fills. Nothing is visible under the name until the commit, and the commit happens only after the
 * body delivered exactly the announced size.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CloudmuxError } from '@cloudmux/core';
import type { BlobClient } from './blob-api.js';

export const MIB = 1024 * 1024;
/** Our block size range (the service takes up to 4000 MiB per block, but each block is buffered). */
export const MIN_BLOCK_SIZE = 4 * MIB;
export const MAX_BLOCK_SIZE = 100 * MIB;
/** Blocks per blob (service limit). */
export const MAX_BLOCKS = 50_000;

/** Known size: the smallest whole-MiB block ≥ 4 MiB that fits the blob in 50,000 blocks. */
export function blockSizeForSize(size: number): number {
  const needed = Math.ceil(Math.ceil(size / MAX_BLOCKS) / MIB) * MIB;
  const blockSize = Math.max(MIN_BLOCK_SIZE, needed);
  if (blockSize > MAX_BLOCK_SIZE) {
    throw new CloudmuxError(
      'bad_request',
      `A file of ${size} bytes exceeds the ${MAX_BLOCKS} × ${MAX_BLOCK_SIZE / MIB} MiB this connector uploads.`,
    );
  }
  return blockSize;
}

/**
 * Unknown size: blocks grow with the count, so small streams stay cheap and long ones still fit
 * (10,000 × 4 MiB, then 10,000 × 16 MiB, then 100 MiB: about 3.1 TiB in 50,000 blocks).
 */
export function blockSizeForIndex(index: number): number {
  if (index < 10_000) return MIN_BLOCK_SIZE;
  if (index < 20_000) return 16 * MIB;
  return MAX_BLOCK_SIZE;
}

/** Fixed-length ids (Put Block requires one length per blob): 8 random session bytes + a 32-bit index. */
export function blockId(session: Buffer, index: number): string {
  const raw = Buffer.alloc(12);
  session.copy(raw, 0, 0, 8);
  raw.writeUInt32BE(index, 8);
  return raw.toString('base64');
}

export function newSession(): Buffer {
  return randomBytes(8);
}

export interface UploadBlobOptions {
  size?: number | null | undefined;
  contentType: string;
  /** `If-None-Match: *` on the commit: fail instead of replacing an existing blob. */
  ifNoneMatch: boolean;
  signal?: AbortSignal | undefined;
}

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CloudmuxError('timed_out', 'The upload was aborted.', { service: 'azure' });
}

/** Uploads `body` to blob `name`; resolves with the byte count once committed. */
export async function uploadBlob(
  client: BlobClient,
  name: string,
  body: Readable,
  options: UploadBlobOptions,
): Promise<number> {
  const known = typeof options.size === 'number' ? options.size : null;
  const fixedBlockSize = known === null ? null : blockSizeForSize(known);
  const session = newSession();
  const whole = createHash('md5');
  const ids: string[] = [];
  let bytes = 0;
  // The first buffer grows on demand, so a small body never costs a whole block.
  let current: Buffer<ArrayBufferLike> = Buffer.allocUnsafe(
    Math.min(fixedBlockSize ?? 64 * 1024, Math.max(known ?? 64 * 1024, 1)),
  );
  let spare: Buffer<ArrayBufferLike> | null = null;
  let fill = 0;
  let inflight: Promise<void> | null = null;
  let failure: { error: unknown } | null = null;
  const targetSize = () => fixedBlockSize ?? blockSizeForIndex(ids.length);

  const settle = async () => {
    if (inflight) await inflight;
    inflight = null;
    if (failure) throw failure.error;
  };

  const stage = async (buffer: Buffer, length: number) => {
    await settle();
    if (ids.length >= MAX_BLOCKS) {
      throw new CloudmuxError('bad_request', `The upload exceeds the ${MAX_BLOCKS}-block limit of a blob.`);
    }
    const id = blockId(session, ids.length);
    ids.push(id);
    const chunk = buffer.subarray(0, length);
    const md5 = createHash('md5').update(chunk).digest('base64');
    inflight = client.putBlock(name, id, chunk, { size: length, md5, signal: options.signal }).then(
      () => undefined,
      (error: unknown) => {
        failure = { error };
      },
    );
  };

  try {
    for await (const data of body) {
      aborted(options.signal);
      const chunk = typeof data === 'string' ? Buffer.from(data) : (data as Buffer);
      bytes += chunk.length;
      if (known !== null && bytes > known) {
        throw new CloudmuxError('bad_request', `The upload sent more than the announced ${known} bytes.`);
      }
      whole.update(chunk);
      let offset = 0;
      while (offset < chunk.length) {
        const want = targetSize();
        if (fill === current.length && current.length < want) {
          // Still the first block: grow (doubling) up to the block size.
          const grown = Buffer.allocUnsafe(
            Math.min(want, Math.max(current.length * 2, fill + chunk.length - offset)),
          );
          current.copy(grown, 0, 0, fill);
          current = grown;
        }
        if (fill === current.length) {
          // Full and more data follows: send it, and fill the other buffer meanwhile.
          const full = current;
          await stage(full, fill);
          const next = targetSize();
          current = spare && spare.length === next ? spare : Buffer.allocUnsafe(next);
          spare = full;
          fill = 0;
          // `spare` is still being sent; `stage` waits for it before it is reused.
        }
        const n = Math.min(current.length - fill, chunk.length - offset);
        chunk.copy(current, fill, offset, offset + n);
        fill += n;
        offset += n;
      }
    }
    aborted(options.signal);
    if (known !== null && bytes !== known) {
      throw new CloudmuxError('bad_request', `The upload ended after ${bytes} of ${known} bytes.`);
    }
    const md5 = whole.digest('base64');
    if (ids.length === 0) {
      await client.putBlob(name, current.subarray(0, fill), {
        contentType: options.contentType,
        ifNoneMatch: options.ifNoneMatch,
        md5,
        signal: options.signal,
      });
      return bytes;
    }
    if (fill > 0) await stage(current, fill);
    await settle();
    await client.putBlockList(name, ids, {
      contentType: options.contentType,
      ifNoneMatch: options.ifNoneMatch,
      md5,
      signal: options.signal,
    });
    return bytes;
  } catch (error) {
    // Let a block in flight finish or fail before reporting; its bytes stay uncommitted (invisible).
    if (inflight) await (inflight as Promise<void>).catch(() => undefined);
    if (error instanceof CloudmuxError) throw error;
    if ((error as Error)?.name === 'AbortError') {
      throw new CloudmuxError('timed_out', 'The upload was aborted.', { service: 'azure', cause: error });
    }
    if (body.errored) {
      // The client's body failed (connection closed midway): a client-side fault, not the upstream's.
      throw new CloudmuxError('bad_request', 'The upload body ended with an error.', {
        service: 'azure',
        cause: error,
      });
    }
    throw error;
  }
}
