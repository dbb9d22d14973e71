/**
 * Per-request context carried through async calls (AsyncLocalStorage): the request id, so that
 * log lines written through the root logger during a request (connectors, the runtime) carry it
 * too, and the server's metrics, so that upstream calls are counted on the right server.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ServerMetrics } from './metrics.js';

export interface RequestContext {
  reqId: string;
  metrics: ServerMetrics;
}

const storage = new AsyncLocalStorage<RequestContext>();

export function currentRequest(): RequestContext | undefined {
  return storage.getStore();
}

export function runInRequest<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}
