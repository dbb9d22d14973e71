import { bodies, named, queries } from '../schemas.js';
import type { RouteDoc } from '../types.js';

const prefix = '/v1/accounts/:account/storage/links';
const linkId = { id: 'Link id' };

export const linkRoutes: RouteDoc[] = [
  {
    method: 'GET',
    path: prefix,
    operationId: 'listLinks',
    tag: 'Links',
    summary: 'List links',
    description: 'The path may name several accounts (`/accounts/1,2/storage/links`).',
    auth: 'account',
    query: queries.links,
    responses: { 200: { description: 'A page of links (with `total`).', json: named.LinkList } },
    errors: ['invalid_parameters'],
  },
  {
    method: 'POST',
    path: prefix,
    operationId: 'createLink',
    tag: 'Links',
    summary: 'Create a link to a file',
    auth: 'account',
    headers: ['RawHeaders', 'AsUser'],
    body: { required: true, json: bodies.createLink },
    responses: { 201: { description: 'The link; `url` is the public URL.', json: named.Link } },
    errors: ['invalid_parameters'],
  },
  {
    method: 'GET',
    path: `${prefix}/:id`,
    operationId: 'getLink',
    tag: 'Links',
    summary: 'Get a link',
    auth: 'account',
    params: linkId,
    query: queries.linkGet,
    responses: { 200: { description: 'The link.', json: named.Link } },
  },
  {
    method: 'PATCH',
    path: `${prefix}/:id`,
    operationId: 'updateLink',
    tag: 'Links',
    summary: 'Update a link',
    auth: 'account',
    params: linkId,
    body: { json: bodies.patchLink },
    responses: { 200: { description: 'The updated link.', json: named.Link } },
    errors: ['invalid_parameters'],
  },
  {
    method: 'DELETE',
    path: `${prefix}/:id`,
    operationId: 'deleteLink',
    tag: 'Links',
    summary: 'Delete a link',
    auth: 'account',
    params: linkId,
    responses: { 204: { description: 'Deleted; the body is empty.' } },
  },
  {
    method: 'GET',
    path: '/l/:id',
    operationId: 'openLink',
    tag: 'Links',
    summary: 'The public link URL',
    description:
      'A direct link serves the bytes; any other a small page with a download button. A password-protected ' +
      'link answers with a password form until the password was entered in this browser. Disabled links are ' +
      '403, unknown and expired ones 404 — an HTML page for browsers (`Accept: text/html`), else the error envelope.',
    auth: 'none',
    params: { id: 'Link id (the unguessable part of the link URL)' },
    query: queries.publicLink,
    headers: ['Range'],
    responses: {
      200: {
        description: 'The file (direct links, `download=1`), the link page, or the password form.',
        binary: 'The file contents',
        html: 'Link page or password form',
        headers: ['ContentDisposition', 'AcceptRanges'],
      },
      206: {
        description: 'The requested range of the file.',
        binary: 'The requested bytes',
        headers: ['ContentRange'],
      },
    },
    errors: ['not_found', 'forbidden'],
  },
  {
    method: 'POST',
    path: '/l/:id',
    operationId: 'unlockLink',
    tag: 'Links',
    summary: 'Enter a link password',
    description:
      'The password form posts here; the right password sets a short-lived cookie and redirects (303) to the link.',
    auth: 'none',
    params: { id: 'Link id' },
    body: { required: true, form: bodies.linkPassword },
    responses: {
      303: { description: 'Unlocked (or no password needed): go to the link URL.' },
      401: { description: 'Wrong password: the form again, with a message.', html: 'Password form' },
    },
    errors: ['not_found', 'forbidden', 'too_many_requests'],
  },
];
