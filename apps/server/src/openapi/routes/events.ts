import { named, queries, replies } from '../schemas.js';
import type { RouteDoc } from '../types.js';

export const eventRoutes: RouteDoc[] = [
  {
    method: 'GET',
    path: '/v1/accounts/:account/events/latest',
    operationId: 'latestEventCursor',
    tag: 'Events',
    summary: 'The latest event cursor',
    auth: 'account',
    responses: {
      200: { description: 'An integer cursor to start reading events from.', json: replies.eventsLatest },
    },
    errors: ['invalid_parameters'],
  },
  {
    method: 'GET',
    path: '/v1/accounts/:account/events',
    operationId: 'listEvents',
    tag: 'Events',
    summary: 'Events after a cursor',
    description:
      'Changes made through Cloudmux (and, for `local`, on disk); read while `remaining` is above 0.',
    auth: 'account',
    query: queries.events,
    headers: ['RawData'],
    responses: { 200: { description: 'A page of events.', json: named.EventList } },
    errors: ['invalid_parameters'],
  },
];
