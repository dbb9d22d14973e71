import { bodies, named, queries } from '../schemas.js';
import type { HeaderParam, RouteDoc } from '../types.js';

const prefix = '/v1/accounts/:account/storage';
const SCOPE_HEADERS: HeaderParam[] = ['RawData', 'RawHeaders', 'AsUser'];

export const searchRoutes: RouteDoc[] = [
  {
    method: 'GET',
    path: `${prefix}/search`,
    operationId: 'search',
    tag: 'Search',
    summary: 'Search files and folders',
    description:
      'The path may name several accounts; results come account after account, each object with its own `account`.',
    auth: 'account',
    query: queries.search,
    headers: SCOPE_HEADERS,
    responses: {
      200: { description: 'A page of matches (empty when nothing matches).', json: named.StorageItemList },
    },
    errors: ['invalid_parameters', 'invalid_parent_folder', 'not_implemented'],
  },
  {
    method: 'GET',
    path: `${prefix}/recent`,
    operationId: 'recent',
    tag: 'Search',
    summary: 'Recently modified files',
    description: 'Newest first, merged across the accounts the path names; the list carries `total`.',
    auth: 'account',
    query: queries.recent,
    headers: SCOPE_HEADERS,
    responses: { 200: { description: 'A page of files.', json: named.StorageItemList } },
    errors: ['invalid_parameters', 'not_implemented'],
  },
];

const sharing = (type: 'file' | 'folder'): RouteDoc[] => {
  const path = `${prefix}/${type}s/:id/permissions`;
  const Type = type === 'file' ? 'File' : 'Folder';
  const params = { id: `${Type} id` };
  return [
    {
      method: 'GET',
      path,
      operationId: `get${Type}Permissions`,
      tag: 'Permissions and properties',
      summary: `Who may access a ${type}`,
      auth: 'account',
      params,
      headers: SCOPE_HEADERS,
      responses: { 200: { description: 'The grants, under `permissions`.', json: named.PermissionList } },
      errors: ['not_implemented'],
    },
    {
      method: 'PUT',
      path,
      operationId: `replace${Type}Permissions`,
      tag: 'Permissions and properties',
      summary: `Replace the grants of a ${type}`,
      description: '`[]` leaves only the owner.',
      auth: 'account',
      params,
      headers: SCOPE_HEADERS,
      body: { required: true, json: bodies.permissions },
      responses: { 200: { description: 'The grants now.', json: named.PermissionList } },
      errors: ['invalid_parameters', 'not_implemented'],
    },
    {
      method: 'PATCH',
      path,
      operationId: `update${Type}Permissions`,
      tag: 'Permissions and properties',
      summary: `Add or change grants of a ${type}`,
      auth: 'account',
      params,
      headers: SCOPE_HEADERS,
      body: { required: true, json: bodies.permissions },
      responses: { 200: { description: 'The grants now.', json: named.PermissionList } },
      errors: ['invalid_parameters', 'not_implemented'],
    },
  ];
};

const propertiesPath = `${prefix}/files/:id/properties`;

export const sharingRoutes: RouteDoc[] = [
  ...sharing('file'),
  ...sharing('folder'),
  {
    method: 'GET',
    path: propertiesPath,
    operationId: 'getFileProperties',
    tag: 'Permissions and properties',
    summary: 'Custom properties of a file',
    auth: 'account',
    params: { id: 'File id' },
    headers: SCOPE_HEADERS,
    responses: { 200: { description: 'The properties, under `properties`.', json: named.PropertyList } },
    errors: ['not_implemented'],
  },
  {
    method: 'PATCH',
    path: propertiesPath,
    operationId: 'updateFileProperties',
    tag: 'Permissions and properties',
    summary: 'Set or delete custom properties',
    auth: 'account',
    params: { id: 'File id' },
    headers: SCOPE_HEADERS,
    body: { required: true, json: bodies.properties },
    responses: { 200: { description: 'The properties now.', json: named.PropertyList } },
    errors: ['invalid_parameters', 'not_implemented'],
  },
  {
    method: 'DELETE',
    path: propertiesPath,
    operationId: 'deleteFileProperties',
    tag: 'Permissions and properties',
    summary: 'Delete all custom properties',
    auth: 'account',
    params: { id: 'File id' },
    headers: SCOPE_HEADERS,
    responses: { 204: { description: 'Deleted; the body is empty.' } },
    errors: ['not_implemented'],
  },
];
