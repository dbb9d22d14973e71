import { describe, expect, it } from 'vitest';
import { forEachLimit } from '../src/index.js';

describe('forEachLimit', () => {
  it('never has more than `limit` calls in flight and visits every item once', async () => {
    let inFlight = 0;
    let peak = 0;
    const seen: number[] = [];
    await forEachLimit([...Array(20).keys()], 3, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setImmediate(r));
      seen.push(n);
      inFlight--;
    });
    expect(peak).toBe(3);
    expect(seen.sort((a, b) => a - b)).toEqual([...Array(20).keys()]);
  });

  it('stops starting new calls after a failure and rethrows it', async () => {
    const started: number[] = [];
    await expect(
      forEachLimit([1, 2, 3, 4, 5, 6], 2, async (n) => {
        started.push(n);
        if (n === 2) throw new Error('boom');
        await new Promise((r) => setImmediate(r));
      }),
    ).rejects.toThrow('boom');
    expect(started.length).toBeLessThan(6);
    await forEachLimit([], 4, async () => {
      throw new Error('never');
    });
  });
});
