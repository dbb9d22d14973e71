import { bodies, named, replies } from '../schemas.js';
import type { RouteDoc } from '../types.js';

export const rawRoutes: RouteDoc[] = [
  {
    method: 'POST',
    path: '/v1/accounts/:account/raw',
    operationId: 'passThrough',
    tag: 'Pass-through',
    summary: 'Send a request to the service as the account',
    description:
      'Streams the body to `X-Kloudless-Raw-URI` (a path on the service’s API, or a URL on its allowed hosts) with ' +
      'the method in `X-Kloudless-Raw-Method` (default GET) and the account’s credentials applied; the upstream ' +
      'status, headers and body come back as they are. Private and loopback addresses are refused.',
    auth: 'account',
    headers: ['RawUri', 'RawMethod', 'RawHeaders', 'AsUser'],
    body: { binary: 'Forwarded as is', description: 'Any body, any content type' },
    responses: { 200: { description: 'The upstream response (any status).', binary: 'The upstream body' } },
    errors: ['bad_request', 'forbidden', 'not_implemented', 'bad_gateway', 'gateway_timeout'],
  },
  {
    method: 'POST',
    path: '/v1/accounts/:account/encode_raw_id',
    operationId: 'encodeRawId',
    tag: 'Pass-through',
    summary: 'Turn an upstream id into a Cloudmux id',
    auth: 'account',
    headers: ['RawHeaders', 'AsUser'],
    body: { required: true, json: bodies.encodeRawId },
    responses: { 200: { description: 'The id.', json: named.KloudlessId } },
    errors: ['invalid_parameters'],
  },
  {
    method: 'POST',
    path: '/v1/accounts/:account/storage/convert_id',
    operationId: 'convertId',
    tag: 'Pass-through',
    summary: 'Turn an upstream id into a Cloudmux id (older form)',
    auth: 'account',
    headers: ['RawHeaders', 'AsUser'],
    body: { required: true, json: bodies.convertId },
    responses: { 200: { description: 'The id.', json: replies.convertedId } },
    errors: ['invalid_parameters'],
  },
];
