/**
 * The GC pacer (src/ops/gc-pacer.ts) in a process started without `--expose-gc`, as `cloudmux
 * start` is: it still gets V8's collector, runs young-generation collections only while a tracked
 * transfer is open, and leaves `globalThis.gc` unexposed. Collections are observed with
 * PerformanceObserver('gc'); the process is otherwise idle, so they are the pacer's.
 */
import { EventEmitter } from 'node:events';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createGcPacer } from '../src/ops/gc-pacer.js';

/** Counts minor collections from now until `stop()`. */
function countMinorCollections(): { readonly count: number; stop(): Promise<number> } {
  let minor = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as unknown as { detail?: { kind?: number } }).detail;
      if (detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    get count() {
      return minor;
    },
    async stop() {
      // Entries are delivered asynchronously.
      await sleep(50);
      observer.disconnect();
      return minor;
    },
  };
}

describe('GC pacer', () => {
  it('collects the young generation while a transfer is open, and stops when it closes', async () => {
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    const pacer = createGcPacer({ intervalMs: 5 });
    const transfer = new EventEmitter();
    const during = countMinorCollections();
    pacer.track(transfer);
    expect(pacer.active).toBe(1);
    // Until a dozen collections were seen (no time bound: a slow machine only takes longer).
    for (let i = 0; i < 400 && during.count < 12; i++) await sleep(25);
    expect(await during.stop()).toBeGreaterThanOrEqual(12);
    transfer.emit('close');
    expect(pacer.active).toBe(0);
    const after = countMinorCollections();
    await sleep(300);
    // Idle again: nothing scheduled (allow one that was already under way).
    expect(await after.stop()).toBeLessThanOrEqual(1);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    pacer.close();
  });

  it('does nothing when pacing is off (CLOUDMUX_GC_PACE_MS=0)', async () => {
    const pacer = createGcPacer({ intervalMs: 0 });
    const transfer = new EventEmitter();
    const during = countMinorCollections();
    pacer.track(transfer);
    await sleep(300);
    expect(pacer.active).toBe(0);
    expect(await during.stop()).toBeLessThanOrEqual(1);
    transfer.emit('close');
  });
});
