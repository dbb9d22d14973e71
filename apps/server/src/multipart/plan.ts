/**
 * Part-size arithmetic for multipart sessions (kloudless-api.md §3.6). Kloudless allowed part
 * numbers 1..10,000; a connector's native resumable upload may be stricter (a minimum part size,
 * a maximum, fewer parts), and the session is only mapped onto it when the plan fits those limits.
 */
import type { NativeMultipart } from '@cloudmux/core';

/** Kloudless' part number limit (java1 asserts 1..10,000). */
export const MAX_PARTS = 10_000;
/**
 * 5 MiB: the chunk size the Kloudless SDKs hard-code (node `CHUNK_SIZE`, py1 `test_multipart`
 * sends 5,242,880-byte parts whatever `part_size` says) and S3's minimum part.
 */
export const DEFAULT_PART_SIZE = 5 * 1024 * 1024;
const MIB = 1024 * 1024;

export type NativeLimits = Pick<NativeMultipart, 'minPartSize' | 'maxPartSize' | 'maxParts'>;

export interface PartPlan {
  partSize: number;
  /** Number of parts implied by `size`; null when the size is unknown. */
  partCount: number | null;
  /** Highest part number a client may send. */
  maxPartNumber: number;
  /** Whether the connector's native session can take these parts. */
  native: boolean;
}

function roundUpMiB(n: number): number {
  return Math.ceil(n / MIB) * MIB;
}

function usableLimits(native: NativeLimits | undefined): NativeLimits | undefined {
  if (!native) return undefined;
  const ok = [native.minPartSize, native.maxPartSize, native.maxParts].every(
    (n) => Number.isSafeInteger(n) && n >= 1,
  );
  return ok && native.minPartSize <= native.maxPartSize ? native : undefined;
}

/**
 * Chooses `part_size`: the default (within the native bounds), large enough that `size`
 * fits in the part limit (min of 10,000 and the native `maxParts`), rounded up to whole MiB when
 * that still fits under the native maximum. Falls back to a staging-only plan when the native
 * limits cannot hold the file.
 */
export function planParts(
  size: number | null,
  nativeLimits?: NativeLimits,
  defaultPartSize = DEFAULT_PART_SIZE,
): PartPlan {
  const native = usableLimits(nativeLimits);
  if (native) {
    const maxParts = Math.min(MAX_PARTS, native.maxParts);
    // The default yields to a native maximum below it; the native minimum always wins.
    const floor = Math.max(native.minPartSize, Math.min(defaultPartSize, native.maxPartSize));
    const needed = size === null ? 0 : Math.ceil(size / maxParts);
    let partSize = Math.max(floor, roundUpMiB(needed));
    if (partSize > native.maxPartSize) partSize = Math.max(floor, needed);
    if (partSize <= native.maxPartSize) {
      const partCount = size === null ? null : Math.max(1, Math.ceil(size / partSize));
      return { partSize, partCount, maxPartNumber: partCount ?? maxParts, native: true };
    }
  }
  const needed = size === null ? 0 : Math.ceil(size / MAX_PARTS);
  const partSize = Math.max(defaultPartSize, roundUpMiB(needed));
  const partCount = size === null ? null : Math.max(1, Math.ceil(size / partSize));
  return { partSize, partCount, maxPartNumber: partCount ?? MAX_PARTS, native: false };
}

/**
 * Bytes part `n` must have: exact when the size is known (every part is `partSize` but the last,
 * which holds the rest; an empty file is one empty part); when the size is unknown, at most
 * `partSize` (`exact: false`): only the highest part may be shorter, checked against the others.
 */
export function expectedPartSize(
  size: number | null,
  partSize: number,
  n: number,
): { bytes: number; exact: boolean } {
  if (size === null) return { bytes: partSize, exact: false };
  const count = Math.max(1, Math.ceil(size / partSize));
  if (n < count) return { bytes: partSize, exact: true };
  return { bytes: size - (count - 1) * partSize, exact: true };
}

/** `[2, 3, 4, 7]` → `2-4, 7` (missing parts in an error message). */
export function formatPartList(numbers: number[]): string {
  const sorted = [...numbers].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    out.push(j > i ? `${sorted[i]}-${sorted[j]}` : String(sorted[i]));
    i = j + 1;
  }
  return out.join(', ');
}
