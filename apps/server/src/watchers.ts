/**
 * Live change notifications from connectors that can push them (`StorageApi.watch`; the local
 * connector watches its directory). One watcher per active account while the server runs; what
 * it reports goes into the event journal, minus the echoes of changes Cloudmux made itself.
 */
import type { Logger, StorageApi } from '@cloudmux/core';
import type { EventJournal } from './journal.js';
import type { ConnectorRuntime } from './runtime.js';
import type { AccountRow, Store } from './store/store.js';

export class ChangeWatchers {
  readonly #handles = new Map<number, { close(): void; dispose: () => Promise<void> }>();
  #closed = false;

  constructor(
    private readonly store: Store,
    private readonly runtime: ConnectorRuntime,
    private readonly journal: EventJournal,
    private readonly log: Logger,
  ) {}

  /** Starts watchers for every active account whose connector can watch. */
  async startAll(): Promise<void> {
    const rows = await this.store.db.selectFrom('accounts').selectAll().where('active', '=', 1).execute();
    for (const row of rows) await this.start(row);
  }

  async start(account: AccountRow): Promise<void> {
    const id = Number(account.id);
    if (this.#closed || this.#handles.has(id) || !account.active) return;
    let transient: Awaited<ReturnType<ConnectorRuntime['transient']>>;
    try {
      // A separate instance: the request cache may dispose its own when idle.
      transient = await this.runtime.transient(account.service, this.store.decryptCredentials(account));
    } catch (err) {
      this.log.warn({ err, account: id }, 'could not start a change watcher');
      return;
    }
    const storage = transient.runtime.instance.storage as StorageApi | undefined;
    if (!storage?.watch) {
      await transient.dispose();
      return;
    }
    const handle = storage.watch(
      (change) => {
        const target = change.item ?? { rawId: change.rawId, type: 'file' };
        this.journal
          .recordExternal(id, change.action, target)
          .catch((err: unknown) => this.log.warn({ err, account: id }, 'recording a watched change failed'));
      },
      (err) => this.log.warn({ err, account: id }, 'change watcher error'),
    );
    this.#handles.set(id, { close: () => handle.close(), dispose: transient.dispose });
  }

  async stop(accountId: number): Promise<void> {
    const handle = this.#handles.get(accountId);
    if (!handle) return;
    this.#handles.delete(accountId);
    handle.close();
    await handle.dispose();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#handles.keys()].map((id) => this.stop(id)));
  }
}
