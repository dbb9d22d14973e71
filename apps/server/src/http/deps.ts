import type { IdCodec, Logger, PageTokens, RateLimiter } from '@cloudmux/core';
import type { ServerConfig } from '../config.js';
import type { ConnectorRegistry } from '../connectors.js';
import type { EventJournal } from '../journal.js';
import type { KeyMaterial } from '../keys.js';
import type { ConnectorRuntime } from '../runtime.js';
import type { StoreHandle } from '../store/db.js';
import type { Store } from '../store/store.js';
import type { TaskRunner } from '../tasks.js';
import type { ChangeWatchers } from '../watchers.js';

/** Everything routes need, built once by `createServer`. */
export interface ServerDeps {
  config: ServerConfig;
  storeHandle: StoreHandle;
  store: Store;
  registry: ConnectorRegistry;
  runtime: ConnectorRuntime;
  ids: IdCodec;
  pages: PageTokens;
  limiter: RateLimiter;
  keys: KeyMaterial;
  journal: EventJournal;
  tasks: TaskRunner;
  watchers: ChangeWatchers;
  log: Logger;
}
