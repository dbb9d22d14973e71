import type { FastifyInstance } from 'fastify';
import type { ServerDeps } from '../http/deps.js';
import { registerEventsRoutes } from './events.js';
import { registerLinksRoutes } from './links.js';
import { registerMultipartRoutes } from './multipart.js';
import { registerOauthRoutes } from './oauth.js';
import { registerOpenapiRoutes } from './openapi.js';
import { registerOpsRoutes } from './ops.js';
import { registerRawRoutes } from './raw.js';
import { registerSearchRoutes } from './search.js';
import { registerSharingRoutes } from './sharing.js';
import { registerTasksRoutes } from './tasks.js';
import { registerWebhooksRoutes } from './webhooks.js';

/** Route groups registered after accounts and files/folders; each module owns one group. */
export const extraRoutes: Array<(app: FastifyInstance, deps: ServerDeps) => void> = [
  registerLinksRoutes,
  registerSearchRoutes,
  registerSharingRoutes,
  registerEventsRoutes,
  registerMultipartRoutes,
  registerRawRoutes,
  registerTasksRoutes,
  registerWebhooksRoutes,
  registerOauthRoutes,
  registerOpsRoutes,
  registerOpenapiRoutes,
];
