/**
 * Per-account SMB sessions. A session (TCP + NTLM authentication + tree connect) costs several
 * round trips, so sessions are reused: an idle one first, a new one while under `maxSessions`, and
 * beyond that the least busy one (SMB2 multiplexes requests on a connection with credits, so sharing
 * never blocks). Idle sessions close after `idleMs`; `dispose()` closes all of them.
 */
import type { SmbClient } from './smb2/client.js';

export interface Scheduler {
  /** Calls `fn` after `ms`; the handle cancels it. Injectable so tests need no real clock. */
  schedule(fn: () => void, ms: number): { cancel(): void };
}

export const realScheduler: Scheduler = {
  schedule(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

export interface PoolOptions {
  connect: () => Promise<SmbClient>;
  maxSessions: number;
  idleMs: number;
  scheduler?: Scheduler;
}

interface Entry {
  client: SmbClient;
  active: number;
  idleTimer: { cancel(): void } | null;
}

export interface Lease {
  readonly client: SmbClient;
  /** True when the session had served an earlier operation. */
  readonly reused: boolean;
  release(): void;
}

export class SessionPool {
  private readonly entries = new Set<Entry>();
  private readonly opening = new Set<Promise<Entry>>();
  private readonly scheduler: Scheduler;
  /** Sessions opened so far, for observability and tests. */
  opened = 0;

  constructor(private readonly options: PoolOptions) {
    this.scheduler = options.scheduler ?? realScheduler;
  }

  get size(): number {
    return this.entries.size;
  }

  async acquire(): Promise<Lease> {
    for (;;) {
      for (const entry of this.entries) if (entry.client.closed) this.remove(entry);
      const idle = [...this.entries].find((e) => e.active === 0);
      if (idle) return this.lease(idle, true);
      if (this.entries.size + this.opening.size < this.options.maxSessions) {
        return this.lease(await this.open(), false);
      }
      if (this.entries.size > 0) {
        const least = [...this.entries].reduce((a, b) => (b.active < a.active ? b : a));
        return this.lease(least, true);
      }
      // Every slot is still connecting: wait for one, then choose again.
      await Promise.race([...this.opening]).catch(() => undefined);
    }
  }

  private async open(): Promise<Entry> {
    const promise = this.options.connect().then((client) => {
      const entry: Entry = { client, active: 0, idleTimer: null };
      this.entries.add(entry);
      this.opened += 1;
      client.onClose(() => this.remove(entry));
      return entry;
    });
    this.opening.add(promise);
    try {
      return await promise;
    } finally {
      this.opening.delete(promise);
    }
  }

  private lease(entry: Entry, reused: boolean): Lease {
    entry.active += 1;
    entry.idleTimer?.cancel();
    entry.idleTimer = null;
    let released = false;
    return {
      client: entry.client,
      reused,
      release: () => {
        if (released) return;
        released = true;
        entry.active -= 1;
        if (entry.active === 0 && this.entries.has(entry)) {
          entry.idleTimer = this.scheduler.schedule(() => {
            if (entry.active === 0) {
              this.remove(entry);
              void entry.client.close();
            }
          }, this.options.idleMs);
        }
      },
    };
  }

  private remove(entry: Entry): void {
    entry.idleTimer?.cancel();
    entry.idleTimer = null;
    this.entries.delete(entry);
  }

  /** Closes every session (leases still running fail with a closed connection). Idempotent. */
  async closeAll(): Promise<void> {
    await Promise.allSettled([...this.opening]);
    const entries = [...this.entries];
    for (const entry of entries) this.remove(entry);
    await Promise.allSettled(entries.map((e) => e.client.close()));
  }
}
