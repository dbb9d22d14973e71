import type { FastifyInstance } from 'fastify';
import type { ServerDeps } from '../http/deps.js';

export function registerLinksRoutes(_app: FastifyInstance, _deps: ServerDeps): void {}
