import { bodies, named, queries, replies } from '../schemas.js';
import type { HeaderParam, RouteDoc } from '../types.js';

const prefix = '/v1/accounts/:account/storage/multipart';
const SCOPE_HEADERS: HeaderParam[] = ['RawData', 'RawHeaders', 'AsUser'];
const sessionId = { id: 'Upload session id (integer)' };

export const multipartRoutes: RouteDoc[] = [
  {
    method: 'POST',
    path: prefix,
    operationId: 'startMultipart',
    tag: 'Multipart',
    summary: 'Start a multipart upload',
    auth: 'account',
    query: queries.overwrite,
    headers: SCOPE_HEADERS,
    body: { required: true, json: bodies.initMultipart },
    responses: {
      201: { description: 'The session, with `part_size` and `parallel_uploads`.', json: replies.multipart },
    },
    errors: ['invalid_parameters', 'invalid_parent_folder', 'insufficient_storage'],
  },
  {
    method: 'GET',
    path: `${prefix}/:id`,
    operationId: 'getMultipart',
    tag: 'Multipart',
    summary: 'Status of a multipart upload',
    auth: 'account',
    params: sessionId,
    headers: SCOPE_HEADERS,
    responses: { 200: { description: 'The session.', json: replies.multipart } },
  },
  {
    method: 'PUT',
    path: `${prefix}/:id`,
    operationId: 'uploadPart',
    tag: 'Multipart',
    summary: 'Upload one part',
    auth: 'account',
    params: sessionId,
    query: queries.multipartPart,
    headers: SCOPE_HEADERS,
    body: { required: true, binary: 'The bytes of the part (`application/octet-stream`)' },
    responses: { 200: { description: 'The session with the part received.', json: replies.multipart } },
    errors: ['invalid_parameters', 'insufficient_storage'],
  },
  {
    method: 'POST',
    path: `${prefix}/:id/complete`,
    operationId: 'completeMultipart',
    tag: 'Multipart',
    summary: 'Finish a multipart upload',
    auth: 'account',
    params: sessionId,
    headers: SCOPE_HEADERS,
    responses: { 201: { description: 'The uploaded file.', json: named.File } },
    errors: ['invalid_parameters', 'naming_conflict'],
  },
  {
    method: 'DELETE',
    path: `${prefix}/:id`,
    operationId: 'abortMultipart',
    tag: 'Multipart',
    summary: 'Abort a multipart upload',
    auth: 'account',
    params: sessionId,
    headers: SCOPE_HEADERS,
    responses: { 204: { description: 'Aborted; staged parts are removed.' } },
  },
];
