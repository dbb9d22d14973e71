/**
 * A small pool of logged-in control connections per account: idle sessions are reused, at most
 * `max` exist at once (callers queue), idle ones are closed after `idleMs`, and `dispose()` closes
 * everything. A session whose connection failed is never handed out again.
 */
import { CloudmuxError } from '@cloudmux/core';
import type { FtpSession } from './client.js';
import { isDroppedConnection, SERVICE } from './errors.js';

export interface PoolOptions {
  max: number;
  idleMs: number;
  /** Timer functions for the idle timeout (tests pass their own). */
  timers?: { set(fn: () => void, ms: number): unknown; clear(handle: unknown): void };
}

const nodeTimers = {
  set(fn: () => void, ms: number): unknown {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return timer;
  },
  clear(handle: unknown): void {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

export interface PoolStats {
  /** Sessions opened (logins) so far. */
  opened: number;
  /** Times an idle session was handed out again. */
  reused: number;
  idle: number;
  busy: number;
}

interface Waiter {
  resolve(session: FtpSession): void;
  reject(error: unknown): void;
}

export class SessionPool {
  private readonly idle: FtpSession[] = [];
  private readonly busy = new Set<FtpSession>();
  private readonly timers = new Map<FtpSession, unknown>();
  private readonly clock: NonNullable<PoolOptions['timers']>;
  private readonly waiters: Waiter[] = [];
  private opening = 0;
  private disposed = false;
  private readonly counters = { opened: 0, reused: 0 };

  constructor(
    private readonly open: () => Promise<FtpSession>,
    private readonly options: PoolOptions,
  ) {
    this.clock = options.timers ?? nodeTimers;
  }

  stats(): PoolStats {
    return { ...this.counters, idle: this.idle.length, busy: this.busy.size };
  }

  async acquire(): Promise<FtpSession> {
    if (this.disposed) throw disposedError();
    for (;;) {
      const session = this.idle.pop();
      if (!session) break;
      this.clearTimer(session);
      if (session.usable) {
        this.counters.reused += 1;
        this.busy.add(session);
        return session;
      }
      session.destroy();
    }
    if (this.busy.size + this.opening < this.options.max) return this.create();
    return new Promise<FtpSession>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private async create(): Promise<FtpSession> {
    this.opening += 1;
    let failed = true;
    try {
      const session = await this.open();
      failed = false;
      this.counters.opened += 1;
      if (this.disposed) {
        session.destroy();
        throw disposedError();
      }
      this.busy.add(session);
      return session;
    } finally {
      this.opening -= 1;
      // The slot this login would have taken is free again for whoever queued behind it.
      if (failed && !this.disposed) this.wakeWaiter();
    }
  }

  /** Gives a session back; an unusable one is closed and its slot goes to the next waiter. */
  release(session: FtpSession): void {
    if (!this.busy.delete(session)) return;
    if (this.disposed || !session.usable) {
      session.destroy();
      this.wakeWaiter();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      this.counters.reused += 1;
      this.busy.add(session);
      waiter.resolve(session);
      return;
    }
    session.idleSince = Date.now();
    this.idle.push(session);
    const timer = this.clock.set(() => {
      const index = this.idle.indexOf(session);
      if (index >= 0) this.idle.splice(index, 1);
      this.timers.delete(session);
      void session.close();
    }, this.options.idleMs);
    this.timers.set(session, timer);
  }

  /** A freed slot (a session was dropped): open a new session for the first waiter. */
  private wakeWaiter(): void {
    const waiter = this.waiters.shift();
    if (!waiter) return;
    this.create().then(waiter.resolve, waiter.reject);
  }

  private clearTimer(session: FtpSession): void {
    if (this.timers.has(session)) this.clock.clear(this.timers.get(session));
    this.timers.delete(session);
  }

  /** Closes every idle session (after a dropped connection the others are likely stale too). */
  dropIdle(): void {
    for (const session of this.idle.splice(0)) {
      this.clearTimer(session);
      session.destroy();
    }
  }

  /**
   * Runs `fn` on a pooled session. The session goes back to the pool afterwards unless its
   * connection failed; a dropped connection also drops the idle sessions.
   */
  async use<T>(fn: (session: FtpSession) => Promise<T>): Promise<T> {
    const session = await this.acquire();
    try {
      return await fn(session);
    } catch (err) {
      if (isDroppedConnection(err)) this.dropIdle();
      throw err;
    } finally {
      this.release(session);
    }
  }

  /** Closes everything; idempotent. Busy sessions are closed when they come back. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(disposedError());
    const idle = this.idle.splice(0);
    for (const session of idle) this.clearTimer(session);
    await Promise.all(idle.map((s) => s.close()));
  }
}

function disposedError(): CloudmuxError {
  return new CloudmuxError('service_not_available', 'This FTP account connection was closed.', {
    service: SERVICE,
  });
}
