/**
 * Prometheus metrics, one registry per server instance (tests run several servers in one process,
 * and prom-client's global registry would mix their counts), plus the process metrics.
 *
 * Requests are labelled by route pattern (`/v1/accounts/:account/storage/files/:id`), never by raw
 * URL: ids and tokens in paths would explode the series count and leak into dashboards.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ServerDeps } from '../http/deps.js';
import { currentRequest } from './context.js';

/** Seconds; covers quick JSON replies up to long streamed transfers. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** Requests that matched no route share one label value. */
export const UNMATCHED_ROUTE = 'unmatched';

export interface ServerMetrics {
  readonly registry: Registry;
  /** One finished HTTP request; `route` is the pattern Fastify matched. */
  recordRequest(method: string, route: string, status: number, seconds: number): void;
  /**
   * One call to an upstream service (an HTTP attempt, or a protocol operation for FTP/SMB).
   * `status` is the HTTP status, or a short word (`error`, `timeout`) when no response came.
   */
  recordUpstreamCall(service: string, status: number | string, seconds: number): void;
  requestStarted(): void;
  requestFinished(): void;
  /** The exposition text and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

// Process metrics (CPU, memory, event loop, GC) describe the process, not a server, and their
// collectors keep samplers running: one set per process, shown by every server's /metrics.
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export function createMetrics(): ServerMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: 'cloudmux_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'cloudmux_http_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response, by method and route pattern.',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: 'cloudmux_http_requests_in_flight',
    help: 'HTTP requests being handled right now.',
    registers: [registry],
  });
  const upstream = new Counter({
    name: 'cloudmux_upstream_requests_total',
    help: 'Calls to upstream services, by connector service id and status.',
    labelNames: ['service', 'status'] as const,
    registers: [registry],
  });
  const upstreamLatency = new Histogram({
    name: 'cloudmux_upstream_request_duration_seconds',
    help: 'Duration of calls to upstream services, by connector service id.',
    labelNames: ['service'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  return {
    registry,
    recordRequest(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) });
      latency.observe({ method, route }, Math.max(0, seconds));
    },
    recordUpstreamCall(service, status, seconds) {
      upstream.inc({ service, status: String(status) });
      upstreamLatency.observe({ service }, Math.max(0, seconds));
    },
    requestStarted: () => inFlight.inc(),
    requestFinished: () => inFlight.dec(),
    render: async () => {
      const all = Registry.merge([processMetrics(), registry]);
      return { contentType: registry.contentType, body: await all.metrics() };
    },
  };
}

// Keyed by the server's deps so that code holding `deps` (the connector runtime, route modules)
// reaches its own server's metrics without a global registry.
const byServer = new WeakMap<ServerDeps, ServerMetrics>();
/** Servers of this process that are open (production has one; tests several). */
const live = new Set<ServerMetrics>();

/** The metrics of the server these deps belong to (created on first use). */
export function metricsOf(deps: ServerDeps): ServerMetrics {
  let metrics = byServer.get(deps);
  if (!metrics) {
    metrics = createMetrics();
    byServer.set(deps, metrics);
  }
  return metrics;
}

export function markLive(metrics: ServerMetrics, open: boolean): void {
  if (open) live.add(metrics);
  else live.delete(metrics);
}

/**
 * Counts one upstream call on the server handling the current request (found through the request
 * context), or on the only open server of the process for work outside a request. This is the
 * function to hand to core's HTTP client and the protocol helpers as their per-attempt callback.
 */
export function recordUpstreamCall(service: string, status: number | string, seconds: number): void {
  const metrics = currentRequest()?.metrics ?? (live.size === 1 ? [...live][0] : undefined);
  metrics?.recordUpstreamCall(service, status, seconds);
}
