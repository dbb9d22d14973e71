import { replies } from '../schemas.js';
import type { RouteDoc } from '../types.js';

export const opsRoutes: RouteDoc[] = [
  {
    method: 'GET',
    path: '/health',
    operationId: 'health',
    tag: 'Operations',
    summary: 'Liveness',
    description: 'Answers while the process serves HTTP, whatever the state of the store.',
    auth: 'none',
    responses: { 200: { description: 'The process is alive.', json: replies.health } },
  },
  {
    method: 'GET',
    path: '/ready',
    operationId: 'ready',
    tag: 'Operations',
    summary: 'Readiness',
    description: 'Ready when the store answers a query and every migration is applied.',
    auth: 'none',
    responses: {
      200: { description: 'Ready to serve traffic.', json: replies.ready },
      503: { description: 'The store is unreachable or migrations are pending.', json: replies.ready },
    },
  },
  {
    method: 'GET',
    path: '/metrics',
    operationId: 'metrics',
    tag: 'Operations',
    summary: 'Prometheus metrics',
    description:
      'Requests by route pattern and status, latency histograms per route, upstream calls by service and status, ' +
      'and process metrics, in the Prometheus text exposition format.',
    auth: 'none',
    responses: { 200: { description: 'Prometheus text format 0.0.4.', text: 'Prometheus exposition' } },
  },
  {
    method: 'GET',
    path: '/v1/openapi.json',
    operationId: 'openapi',
    tag: 'Operations',
    summary: 'This OpenAPI 3.1 document',
    auth: 'none',
    responses: { 200: { description: 'The OpenAPI document.', json: replies.openapi } },
  },
  {
    method: 'GET',
    path: '/docs',
    operationId: 'docs',
    tag: 'Operations',
    summary: 'API reference page',
    description:
      'A static HTML rendering of the OpenAPI document, served without external scripts or styles.',
    auth: 'none',
    responses: { 200: { description: 'The reference page.', html: 'HTML page' } },
  },
];
