import { oauthRouteDocs } from '../../oauth/route-docs.js';
import type { RouteDoc } from '../types.js';
import { accountRoutes } from './accounts.js';
import { eventRoutes } from './events.js';
import { linkRoutes } from './links.js';
import { multipartRoutes } from './multipart.js';
import { opsRoutes } from './ops.js';
import { rawRoutes } from './raw.js';
import { searchRoutes, sharingRoutes } from './search.js';
import { storageRoutes } from './storage.js';
import { taskRoutes } from './tasks.js';
import { webhookRoutes } from './webhooks.js';

/**
 * Every route the server serves, grouped as the reference page lists them. One file per route
 * module (src/routes/*): a route added there needs its entry here, or test/openapi.test.ts fails.
 */
export const ROUTE_DOCS: readonly RouteDoc[] = [
  ...accountRoutes,
  ...oauthRouteDocs,
  ...storageRoutes,
  ...linkRoutes,
  ...searchRoutes,
  ...multipartRoutes,
  ...sharingRoutes,
  ...eventRoutes,
  ...taskRoutes,
  ...rawRoutes,
  ...webhookRoutes,
  ...opsRoutes,
];

/** Tags in reference order, with their descriptions. */
export const TAGS: ReadonlyArray<{ name: string; description: string }> = [
  {
    name: 'Accounts',
    description:
      'Connected accounts, their bearer tokens, and the installed connectors (Kloudless core API).',
  },
  { name: 'Files', description: 'Storage API: files.' },
  { name: 'Folders', description: 'Storage API: folders.' },
  { name: 'Links', description: 'Storage API: links hosted by Cloudmux, and the public link URL.' },
  { name: 'Search', description: 'Storage API: search and recent files, across several accounts.' },
  { name: 'Multipart', description: 'Storage API: multipart (chunked) uploads; parts in any order.' },
  {
    name: 'Permissions and properties',
    description: 'Storage API: sharing grants and custom key/value metadata, where the connector has them.',
  },
  { name: 'Events', description: 'The event stream of an account.' },
  { name: 'Tasks', description: 'Asynchronous requests (`X-Kloudless-Async`) and their results.' },
  {
    name: 'Pass-through',
    description: 'Raw requests to the service with the account’s credentials, and raw id conversion.',
  },
  { name: 'Webhooks', description: 'Event notifications to the application (old Kloudless Management API).' },
  { name: 'Operations', description: 'Health, readiness, metrics and this reference.' },
];
