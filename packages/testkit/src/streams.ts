/** Deterministic large bodies and hashes, without holding whole files in memory. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

const CHUNK = 64 * 1024;

/**
 * A readable of `size` pseudo-random bytes derived from `seed` (SHA-256 in counter mode), produced
 * in 64 KiB chunks. `sha256` of the same arguments gives its digest without generating it twice.
 */
export function randomStream(size: number, seed = 'cloudmux'): Readable {
  let offset = 0;
  let counter = 0;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (offset >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(CHUNK, size - offset);
      this.push(randomChunk(seed, counter++, n));
      offset += n;
    },
  });
}

function randomChunk(seed: string, index: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let filled = 0;
  let block = 0;
  while (filled < n) {
    const digest = createHash('sha256').update(`${seed}:${index}:${block++}`).digest();
    filled += digest.copy(out, filled, 0, Math.min(digest.length, n - filled));
  }
  return out;
}

export function randomBytesSha256(size: number, seed = 'cloudmux'): string {
  const hash = createHash('sha256');
  let offset = 0;
  let counter = 0;
  while (offset < size) {
    const n = Math.min(CHUNK, size - offset);
    hash.update(randomChunk(seed, counter++, n));
    offset += n;
  }
  return hash.digest('hex');
}

/** The exact bytes `randomStream(size, seed)` yields in [start, end] (inclusive), for Range checks. */
export function randomBytesSlice(size: number, seed: string, start: number, end: number): Buffer {
  const parts: Buffer[] = [];
  const first = Math.floor(start / CHUNK);
  const last = Math.floor(Math.min(end, size - 1) / CHUNK);
  for (let i = first; i <= last; i++) {
    const n = Math.min(CHUNK, size - i * CHUNK);
    parts.push(randomChunk(seed, i, n));
  }
  const joined = Buffer.concat(parts);
  const base = first * CHUNK;
  return joined.subarray(start - base, Math.min(end, size - 1) - base + 1);
}

export async function sha256OfStream(
  stream: NodeJS.ReadableStream,
): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    bytes += buf.length;
    hash.update(buf);
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Reads a small stream fully (tests only; never for large bodies). */
export async function readAll(stream: NodeJS.ReadableStream, limit = 64 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    total += buf.length;
    if (total > limit) throw new Error(`readAll: more than ${limit} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

export function bufferStream(data: Buffer | string): Readable {
  return Readable.from([typeof data === 'string' ? Buffer.from(data) : data]);
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
