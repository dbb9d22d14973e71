import type { FastifyInstance } from 'fastify';
import type { ServerDeps } from '../http/deps.js';

/** Route groups registered after accounts and files/folders. */
export const extraRoutes: Array<(app: FastifyInstance, deps: ServerDeps) => void> = [];
