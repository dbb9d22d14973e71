import { describe, expect, it } from 'vitest';
import {
  randomBytesSha256,
  randomBytesSlice,
  randomStream,
  readAll,
  sha256,
  sha256OfStream,
} from '../src/index.js';

describe('deterministic random bodies', () => {
  it('the stream, its digest and its slices agree', async () => {
    const size = 200_001;
    const whole = await readAll(randomStream(size, 's'));
    expect(whole.length).toBe(size);
    expect(sha256(whole)).toBe(randomBytesSha256(size, 's'));
    expect((await sha256OfStream(randomStream(size, 's'))).sha256).toBe(sha256(whole));
    for (const [a, b] of [
      [0, 0],
      [65_535, 65_536],
      [size - 10, size - 1],
      [1000, 150_000],
    ] as const) {
      expect(randomBytesSlice(size, 's', a, b).equals(whole.subarray(a, b + 1))).toBe(true);
    }
    expect(sha256(await readAll(randomStream(size, 't')))).not.toBe(sha256(whole));
  });
});
