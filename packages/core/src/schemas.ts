/**
 * The unified Kloudless v1 wire objects (shared/reference/kloudless-api.md §2–3), as zod schemas.
 * The server validates what it sends against them in tests and generates its OpenAPI document from
 * them. Every object carries `api` and `type`. Timestamps are ISO-8601 strings with `Z`.
 */
import * as z from 'zod';

const timestamp = z.string().describe('ISO-8601 timestamp, UTC (`Z`)');
const nullableTimestamp = timestamp.nullable();

/** `api: "<name>"` and `type: "<name>"`, literal on every object. */
const tagged = <A extends string, T extends string>(api: A, type: T) => ({
  api: z.literal(api),
  type: z.literal(type),
});

export const capabilityValueSchema = z.object({ value: z.boolean() });

/** §2.2 Account. `apis` and `properties` only with `retrieve_full=true`. */
export const accountSchema = z.object({
  id: z.number().int().positive(),
  account: z.string(),
  service: z.string(),
  service_name: z.string(),
  admin: z.boolean(),
  active: z.boolean(),
  enabled: z.boolean(),
  internal_use: z.boolean(),
  created: timestamp,
  modified: timestamp,
  token_expiry: nullableTimestamp,
  refresh_token_expiry: nullableTimestamp,
  effective_scope: z.string(),
  custom_properties: z.record(z.string(), z.unknown()),
  object_definitions: z.record(z.string(), z.unknown()),
  proxy_connection: z.null(),
  apis: z.array(z.string()).optional(),
  properties: z.object({ capabilities: z.record(z.string(), capabilityValueSchema) }).optional(),
  /** Why an account became inactive (e.g. its refresh token was revoked). */
  inactive_reason: z.string().nullable().optional(),
  href: z.string(),
  ...tagged('core', 'account'),
});
export type AccountObject = z.infer<typeof accountSchema>;

/** A reference to a folder in `parent` and `ancestors`. */
export const folderRefSchema = z.object({
  id: z.string(),
  name: z.string(),
  type: z.literal('folder'),
  id_type: z.literal('default'),
});

const storageItemBase = {
  id: z.string().max(8192),
  name: z.string(),
  size: z.number().int().nonnegative().nullable(),
  created: nullableTimestamp,
  modified: nullableTimestamp,
  path: z.string().nullable(),
  parent: folderRefSchema.nullable(),
  ancestors: z.array(folderRefSchema).nullable(),
  account: z.number().int(),
  ids: z.object({ default: z.string() }).catchall(z.string()),
  id_type: z.literal('default'),
  raw_id: z.string(),
  owner: z.object({ id: z.string(), name: z.string().optional() }).nullable().optional(),
  href: z.string(),
  raw: z.object({ object: z.unknown(), id: z.string().optional() }).optional(),
};

/** §3.3 File. */
export const fileSchema = z.object({
  ...storageItemBase,
  mime_type: z.string().nullable(),
  downloadable: z.boolean(),
  ...tagged('storage', 'file'),
});
export type FileObject = z.infer<typeof fileSchema>;

/** §3.3 Folder. */
export const folderSchema = z.object({
  ...storageItemBase,
  can_create_folders: z.boolean(),
  can_upload_files: z.boolean(),
  can_list_recursively: z.boolean(),
  ...tagged('storage', 'folder'),
});
export type FolderObject = z.infer<typeof folderSchema>;

export const storageItemSchema = z.discriminatedUnion('type', [fileSchema, folderSchema]);

/** §3.4 Link. `password` is only ever reported as set or not. */
export const linkSchema = z.object({
  id: z.string(),
  file_id: z.string(),
  url: z.string(),
  account: z.number().int(),
  active: z.boolean(),
  direct: z.boolean(),
  password: z.boolean(),
  expiration: nullableTimestamp,
  created: timestamp,
  modified: timestamp,
  href: z.string(),
  ...tagged('storage', 'link'),
});
export type LinkObject = z.infer<typeof linkSchema>;

/**
 * §3.7 Permission (listed under `permissions`, not `objects`). Kloudless used `type` for the
 * grantee kind (`user`, `group`, `domain`, `anyone`), so it is not the object-type literal here.
 */
export const permissionSchema = z.object({
  id: z.string(),
  email: z.string().nullable(),
  name: z.string().nullable(),
  role: z.string(),
  type: z.string(),
  api: z.literal('storage'),
});
export const permissionListSchema = z.object({
  permissions: z.array(permissionSchema),
  api: z.literal('storage'),
  type: z.literal('permission_list'),
});

/** §3.8 Property. */
export const propertySchema = z.object({
  key: z.string(),
  value: z.string(),
  created: nullableTimestamp,
  modified: nullableTimestamp,
  ...tagged('storage', 'property'),
});
export const propertyListSchema = z.object({
  properties: z.array(propertySchema),
  api: z.literal('storage'),
  type: z.literal('property_list'),
});

export const EVENT_ACTIONS = ['add', 'delete', 'update', 'rename', 'move', 'copy', 'restore'] as const;

/** §3.9 Event; `metadata` is the full File/Folder object (absent for deletes of unknown items). */
export const eventSchema = z.object({
  id: z.string(),
  account: z.number().int(),
  action: z.string(),
  type: z.enum(EVENT_ACTIONS),
  modified: timestamp,
  user_id: z.string().nullable(),
  ip: z.string().nullable(),
  metadata: z.union([fileSchema, folderSchema]).nullable(),
  api: z.literal('events'),
});
export type EventObject = z.infer<typeof eventSchema>;

export const eventListSchema = z.object({
  objects: z.array(eventSchema),
  cursor: z.number().int(),
  count: z.number().int(),
  remaining: z.number().int(),
  api: z.literal('events'),
  type: z.literal('object_list'),
});

/** §3.12 Task while it runs; the finished task answers with its result instead. */
export const TASK_STATUSES = ['PENDING', 'RECIEVED', 'STARTED'] as const;
export const taskSchema = z.object({
  id: z.string(),
  status: z.enum(TASK_STATUSES),
  account: z.number().int(),
  ...tagged('core', 'task'),
});
export type TaskObject = z.infer<typeof taskSchema>;

/** §2.3 The list envelope. `page` echoes what the client asked for; `next_page` is null at the end. */
export function objectListSchema<T extends z.ZodType>(item: T, api: string) {
  return z.object({
    count: z.number().int().nonnegative(),
    page: z.union([z.string(), z.number().int()]).nullable(),
    next_page: z.string().nullable(),
    objects: z.array(item),
    total: z.number().int().nonnegative().optional(),
    type: z.literal('object_list'),
    api: z.literal(api),
  });
}

export const kloudlessIdSchema = z.object({ id: z.string(), ...tagged('core', 'kloudless_id') });

export const errorEnvelopeSchema = z.object({
  error_code: z.string(),
  message: z.string(),
  status_code: z.number().int(),
  id: z.string().optional(),
  conflicting_resource_id: z.string().optional(),
});

/** `X-Kloudless-Metadata` on uploads. */
export const uploadMetadataSchema = z.object({
  name: z.string().min(1),
  parent_id: z.string().min(1),
});

/** Formats a date as Kloudless did: ISO-8601, second precision, `Z`. */
export function toKloudlessTime(date: Date): string;
export function toKloudlessTime(date: Date | null | undefined): string | null;
export function toKloudlessTime(date: Date | null | undefined): string | null {
  if (!date || Number.isNaN(date.getTime())) return null;
  return `${date.toISOString().slice(0, 19)}Z`;
}
