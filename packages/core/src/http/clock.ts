/**
 * Time as a dependency: everything in core that waits (retry backoff, refresh-lease polling, rate
 * limits) asks a `Clock`, so tests drive time by hand and never sleep.
 */
import { setTimeout as delay } from 'node:timers/promises';

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms, signal) => {
    await delay(Math.max(0, ms), undefined, signal ? { signal } : undefined);
  },
};

interface Sleeper {
  until: number;
  resolve: () => void;
  reject: (reason: unknown) => void;
  cleanup: () => void;
}

/**
 * A clock for tests. Every `sleep` is recorded in `sleeps`. With `autoAdvance` a sleep moves time
 * forward and resolves at once; otherwise it waits until `advance()` passes its deadline.
 */
export class ManualClock implements Clock {
  readonly sleeps: number[] = [];
  private time: number;
  private readonly autoAdvance: boolean;
  private sleepers: Sleeper[] = [];

  constructor(startMs = 0, options: { autoAdvance?: boolean } = {}) {
    this.time = startMs;
    this.autoAdvance = options.autoAdvance ?? false;
  }

  now(): number {
    return this.time;
  }

  /** Sleeps that have not resolved yet. */
  get pending(): number {
    return this.sleepers.length;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.autoAdvance) {
      this.advance(Math.max(0, ms));
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        reject(signal?.reason);
      };
      const sleeper: Sleeper = {
        until: this.time + Math.max(0, ms),
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.push(sleeper);
    });
  }

  /** Moves time forward and wakes, in deadline order, every sleeper that is due. */
  advance(ms: number): void {
    this.time += ms;
    const due = this.sleepers.filter((s) => s.until <= this.time).sort((a, b) => a.until - b.until);
    this.sleepers = this.sleepers.filter((s) => s.until > this.time);
    for (const s of due) {
      s.cleanup();
      s.resolve();
    }
  }
}
