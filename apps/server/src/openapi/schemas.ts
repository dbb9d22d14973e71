/**
 * Schemas of the document. Wire objects come from @cloudmux/core (the same schemas the tests
 * validate responses with); shapes only the server has (token replies, the public service list,
 * query strings) are declared here. Named schemas become `components.schemas`.
 */
import {
  accountSchema,
  errorEnvelopeSchema,
  eventListSchema,
  eventSchema,
  fileSchema,
  folderSchema,
  kloudlessIdSchema,
  linkSchema,
  objectListSchema,
  permissionListSchema,
  propertyListSchema,
  storageItemSchema,
  taskSchema,
  uploadMetadataSchema,
} from '@cloudmux/core';
import * as z from 'zod';

const bool = z
  .enum(['true', 'false', 'True', 'False', '1', '0'])
  .describe('Boolean: `true`/`false` (any case), `1`/`0`');
const pageSize = z.string().regex(/^\d+$/).describe('Objects per page, 1–1000');
const page = z
  .string()
  .describe('Page to return: the `next_page` of the previous page (or a page number); empty for the first');

export const queries = {
  paging: z.object({ page, page_size: pageSize }).partial(),
  accountList: z
    .object({
      page: z.string().regex(/^\d+$/).describe('Page number, from 1'),
      page_size: pageSize,
      active: bool.describe('Only active (or inactive) accounts'),
      admin: bool.describe('Only admin (or non-admin) accounts'),
      retrieve_full: bool.describe('Add `apis` and `properties.capabilities` to each account'),
    })
    .partial(),
  accountGet: z
    .object({
      retrieve_full: bool.describe('Add `apis` and `properties.capabilities`'),
      active: bool.describe('Only answer for active (or inactive) accounts'),
    })
    .partial(),
  importAccount: z
    .object({ validate: bool.describe('Check the credentials against the service before storing them') })
    .partial(),
  publicServices: z
    .object({
      apis: z
        .string()
        .describe('Comma-separated API names (e.g. `storage`): only connectors serving one of them'),
      retrieve_properties: bool.describe('Include `properties.capabilities` (default true)'),
      app_id: z.string().describe('Accepted for the File Picker; the list is the same for every app'),
    })
    .partial(),
  copy: z
    .object({
      overwrite: bool.describe(
        '`true` replaces an item of the same name; `false` (default) picks a new name',
      ),
      return_type: z.literal('task').describe('`task`: run as a task (as `X-Kloudless-Async: true`)'),
    })
    .partial(),
  folderDeleteAsync: z
    .object({
      recursive: bool.describe('Delete a non-empty folder with its contents'),
      permanent: bool.describe('Skip the trash where the service has one'),
      return_type: z.literal('task').describe('`task`: run a recursive delete as a task'),
    })
    .partial(),
  overwrite: z
    .object({
      overwrite: bool.describe('`true` replaces a file of the same name; `false` (default) picks a new name'),
    })
    .partial(),
  permanent: z.object({ permanent: bool.describe('Skip the trash where the service has one') }).partial(),
  createFolder: z
    .object({
      conflict_if_exists: bool.describe(
        '`true`: 409 when the folder exists; `false` (default): answer with it',
      ),
    })
    .partial(),
  links: z
    .object({ page, page_size: pageSize, active: bool.describe('Only active (or disabled) links') })
    .partial(),
  linkGet: z.object({ active: bool.describe('Accepted and ignored (rb sends it)') }).partial(),
  publicLink: z
    .object({ download: bool.describe('`1`: serve the bytes of a non-direct link instead of its page') })
    .partial(),
  search: z
    .object({
      q: z.string().min(1).max(1024).describe('Search text (required)'),
      parents: z.string().describe('Comma-separated folder ids to search within'),
      lang: z.string().describe('Accepted for compatibility; storage search has one language'),
      page,
      page_size: pageSize,
    })
    .partial({ parents: true, lang: true, page: true, page_size: true }),
  recent: z
    .object({
      after: z
        .string()
        .describe(
          'ISO-8601: only files modified after it (unparsable: an empty list, as Kloudless answered)',
        ),
      page,
      page_size: pageSize,
    })
    .partial(),
  multipartPart: z.object({
    part_number: z
      .string()
      .regex(/^\d+$/)
      .describe('1-based part number, 1–10000; parts may come in any order'),
  }),
  events: z
    .object({
      cursor: z.string().regex(/^\d+$/).describe('Integer cursor from `events/latest` or the previous page'),
      page_size: pageSize,
    })
    .partial(),
};

export const bodies = {
  /** `POST /v1/accounts`: the account fields; the service's credential fields sit beside them. */
  importAccountBase: z.looseObject({
    service: z.string().min(1).describe('Connector service id (see `/v1/public/services`)'),
    account: z.string().min(1).max(512).optional().describe('Display name'),
    admin: z.boolean().optional(),
    custom_properties: z.record(z.string(), z.unknown()).optional(),
    token: z.string().optional().describe('OAuth access token (OAuth services)'),
    token_secret: z.string().optional(),
    refresh_token: z.string().optional(),
    token_expiry: z.string().nullable().optional().describe('ISO-8601'),
    refresh_token_expiry: z.string().nullable().optional().describe('ISO-8601'),
  }),
  patchAccount: z.looseObject({
    account: z.string().min(1).max(512).optional(),
    active: z.boolean().optional(),
    service: z.string().optional().describe('Must equal the current service'),
    custom_properties: z.record(z.string(), z.unknown()).optional(),
    token: z.string().optional().describe('New credentials need the API key'),
    token_secret: z.string().optional(),
    refresh_token: z.string().optional(),
    token_expiry: z.string().nullable().optional(),
    refresh_token_expiry: z.string().nullable().optional(),
  }),
  createToken: z.looseObject({
    expires_in: z
      .number()
      .int()
      .positive()
      .max(10 * 365 * 86400)
      .optional()
      .describe('Lifetime in seconds; none: no expiry'),
  }),
  move: z.looseObject({
    name: z.string().optional().describe('New name'),
    parent_id: z.string().optional().describe('Folder to move into'),
    account: z
      .union([z.number().int().positive(), z.string().regex(/^\d{1,15}$/)])
      .optional()
      .describe('Target account id (cross-account move)'),
  }),
  copy: z.looseObject({
    parent_id: z.string().optional().describe('Destination folder (default: the same folder)'),
    name: z.string().optional().describe('Name of the copy (default: the same name)'),
    account: z
      .union([z.number().int().positive(), z.string().regex(/^\d{1,15}$/)])
      .optional()
      .describe('Target account id (cross-account copy)'),
  }),
  createFolder: z.looseObject({
    name: z.string().describe('Folder name'),
    parent_id: z.string().describe('Parent folder id, or `root`'),
  }),
  urlUpload: z.looseObject({ url: z.string(), parent_id: z.string(), name: z.string() }),
  createLink: z.looseObject({
    file_id: z.string().min(1).max(8192).describe('The file to link'),
    direct: z
      .boolean()
      .optional()
      .describe('`true`: the URL serves the bytes; `false` (default): a small page'),
    password: z
      .string()
      .max(1024)
      .nullable()
      .optional()
      .describe('Visitors must enter it; `null` or empty: none'),
    expiration: z.string().max(64).nullable().optional().describe('ISO-8601; after it the URL answers 404'),
    active: z.boolean().optional().describe('Disabled links answer 403 (default true)'),
  }),
  patchLink: z.looseObject({
    direct: z.boolean().optional(),
    password: z.string().max(1024).nullable().optional().describe('`null` or empty removes it'),
    expiration: z.string().max(64).nullable().optional().describe('`null` or empty removes it'),
    active: z.boolean().optional(),
  }),
  linkPassword: z.object({ password: z.string().describe('The link password') }),
  initMultipart: z.looseObject({
    parent_id: z.string().min(1).max(8192).describe('Folder of the new file'),
    name: z.string().describe('Name of the new file'),
    size: z
      .number()
      .int()
      .nonnegative()
      .nullable()
      .optional()
      .describe('Total size in bytes (some services need it)'),
  }),
  permissions: z.union([
    z.array(
      z.looseObject({
        type: z.string().optional().describe('Grantee kind (default `user`)'),
        role: z.string().describe('`reader`, `writer`, …'),
        email: z.string().nullable().optional(),
        name: z.string().nullable().optional(),
      }),
    ),
    z.looseObject({
      permissions: z.array(
        z.looseObject({
          type: z.string().optional(),
          role: z.string(),
          email: z.string().nullable().optional(),
        }),
      ),
    }),
    z.record(z.string(), z.string()).describe('Older form: `{email: role}`'),
  ]),
  properties: z.union([
    z.array(
      z.looseObject({
        key: z.string().min(1),
        value: z.union([z.string(), z.number(), z.boolean(), z.null()]).describe('`null` deletes the key'),
      }),
    ),
    z.looseObject({
      properties: z.array(
        z.looseObject({
          key: z.string().min(1),
          value: z.union([z.string(), z.number(), z.boolean(), z.null()]),
        }),
      ),
    }),
  ]),
  encodeRawId: z.looseObject({
    id: z
      .string()
      .min(1)
      .max(8192)
      .describe("Upstream id (or the connector's own attributes beside it); `root` and `trash` are kept"),
    type: z.enum(['file', 'folder']).optional().describe('Asked from the service when absent'),
  }),
  convertId: z.looseObject({
    raw_id: z.string().min(1).max(8192),
    type: z.enum(['file', 'folder']).optional(),
  }),
};

export const replies = {
  health: z.object({ status: z.literal('ok') }),
  ready: z.object({ status: z.enum(['ready', 'unavailable']), store: z.enum(['sqlite', 'postgres']) }),
  accountToken: z.object({
    access_token: z.string(),
    token_type: z.literal('Bearer'),
    account_id: z.number().int(),
    expires_in: z.number().int().optional(),
  }),
  tokenInfo: z.object({
    client_id: z.string(),
    account_id: z.number().int(),
    scope: z.string(),
    token_type: z.literal('Bearer'),
  }),
  eventsLatest: z.object({ cursor: z.number().int() }),
  multipart: z.looseObject({
    id: z.number().int().describe('Session id'),
    account: z.number().int(),
    parent_id: z.string(),
    name: z.string(),
    size: z.number().int().nullable(),
    part_size: z.number().int().describe('Bytes per part (the last may be smaller)'),
    part_count: z.number().int().nullable(),
    parallel_uploads: z.boolean().describe('Whether parts may be sent concurrently'),
    overwrite: z.boolean(),
    status: z.string(),
    failure: z.string().optional(),
    parts_received: z.array(z.number().int()),
    bytes_received: z.number().int(),
    created: z.string(),
    modified: z.string(),
    expires: z.string().describe('When an idle session is dropped'),
    api: z.literal('storage'),
    type: z.literal('multipart'),
  }),
  convertedId: z.looseObject({
    id: z.string(),
    type: z.enum(['file', 'folder']).optional(),
    api: z.literal('core'),
  }),
  openapi: z.looseObject({ openapi: z.string(), info: z.looseObject({}), paths: z.looseObject({}) }),
};

const capabilityResult = z.array(z.object({ admin: z.boolean(), result: z.boolean() }));
export const publicServiceSchema = z.object({
  name: z.string(),
  friendly_name: z.string(),
  logo_url: z.string().nullable(),
  category: z.string(),
  apis: z.array(z.string()),
  auth: z.enum(['oauth2', 'credentials']),
  properties: z.object({ capabilities: z.record(z.string(), capabilityResult) }).optional(),
});

/** The schemas that get a name in `components.schemas` (routes use these instances, which become `$ref`s). */
export const named = {
  Error: errorEnvelopeSchema,
  Account: accountSchema,
  AccountList: objectListSchema(accountSchema, 'core'),
  PublicService: publicServiceSchema,
  PublicServiceList: objectListSchema(publicServiceSchema, 'core'),
  File: fileSchema,
  Folder: folderSchema,
  StorageItem: storageItemSchema,
  StorageItemList: objectListSchema(storageItemSchema, 'storage'),
  Link: linkSchema,
  LinkList: objectListSchema(linkSchema, 'storage'),
  PermissionList: permissionListSchema,
  PropertyList: propertyListSchema,
  Event: eventSchema,
  EventList: eventListSchema,
  Task: taskSchema,
  KloudlessId: kloudlessIdSchema,
  UploadMetadata: uploadMetadataSchema,
} satisfies Record<string, z.ZodType>;
