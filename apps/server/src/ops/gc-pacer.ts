/**
 * Young-generation collections paced while bodies stream. Every socket read is a fresh 64 KiB
 * buffer that is garbage once written on; V8 collects those by the growth of external memory,
 * and in a heap the size of Cloudmux's it lets 50–70 MiB of spent buffers pile up during a long
 * transfer (bench/README.md, pass-through). A minor collection every `intervalMs` while at least
 * one transfer runs frees them while they are still young (each takes well under a millisecond
 * with a young generation this small). Nothing runs while the server is idle.
 *
 * The collector is V8's `gc` function. When the process did not start with `--expose-gc`, it is
 * fetched once the way Jest's leak detector does (expose, take it from a new context, unexpose);
 * if that fails the pacer does nothing.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = (options: { type: 'minor' | 'major' }) => void;

let collector: Collect | null | undefined;

function gcFunction(): Collect | null {
  if (collector !== undefined) return collector;
  const exposed = (globalThis as { gc?: Collect }).gc;
  if (typeof exposed === 'function') {
    collector = exposed;
    return collector;
  }
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    collector = typeof fn === 'function' ? (fn as Collect) : null;
  } catch {
    collector = null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return collector;
}

export interface Pacer {
  /** Counts `stream` as a running transfer until it closes. */
  track(stream: NodeJS.EventEmitter): void;
  /** Transfers running now. */
  readonly active: number;
  close(): void;
}

/** `intervalMs` 0 (or not finite) turns pacing off. */
export function createGcPacer(options: { intervalMs?: number } = {}): Pacer {
  const intervalMs = options.intervalMs ?? 10;
  const collect = Number.isFinite(intervalMs) && intervalMs > 0 ? gcFunction() : null;
  let active = 0;
  let timer: NodeJS.Timeout | null = null;
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  return {
    track(stream) {
      if (!collect) return;
      active++;
      if (!timer) {
        timer = setInterval(() => collect({ type: 'minor' }), intervalMs);
        timer.unref();
      }
      let done = false;
      const release = () => {
        if (done) return;
        done = true;
        active--;
        if (active === 0) stop();
      };
      stream.once('close', release);
    },
    get active() {
      return active;
    },
    close: stop,
  };
}
