/**
 * Permissions (kloudless-api.md §3.7) and properties (§3.8), delegated to the connector's optional
 * StorageApi methods; a connector without them answers `501 not_implemented`. Lists go out under
 * `permissions` / `properties`, not `objects`, as Kloudless sent them.
 */
import {
  CloudmuxError,
  type Permission,
  type Property,
  type StorageApi,
  type StorageItemType,
  toKloudlessTime,
} from '@cloudmux/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as z from 'zod';
import type { ServerDeps } from '../http/deps.js';
import { parseBody } from '../http/params.js';
import { type StorageScope, storageScope } from '../http/scope.js';
import { sendJson } from './util.js';

const grant = z.looseObject({
  type: z.string().min(1).max(64).default('user'),
  role: z.string().min(1).max(64),
  email: z.string().max(320).nullable().optional(),
  name: z.string().max(1024).nullable().optional(),
});
const grants = z.array(grant).max(1000);
/** A list of grants, `{permissions: [...]}`, or the older `{email: role}` mapping. */
const permissionsBody = z.union([
  grants,
  z.looseObject({ permissions: grants }),
  z.record(z.string().min(1).max(320), z.string().min(1).max(64)),
]);

const propertyValue = z.union([z.string().max(65_536), z.number(), z.boolean(), z.null()]);
const change = z.looseObject({ key: z.string().min(1).max(1024), value: propertyValue });
const changes = z.array(change).max(1000);
/** A list of `{key, value}` (`value: null` deletes the key), or `{properties: [...]}`. */
const propertiesBody = z.union([changes, z.looseObject({ properties: changes })]);

function renderPermission(p: Permission) {
  return {
    id: p.id,
    email: p.email ?? null,
    name: p.name ?? null,
    role: p.role,
    type: p.type,
    api: 'storage' as const,
  };
}

function renderProperty(p: Property) {
  return {
    key: p.key,
    value: p.value,
    created: toKloudlessTime(p.created ?? null),
    modified: toKloudlessTime(p.modified ?? null),
    api: 'storage' as const,
    type: 'property' as const,
  };
}

function toGrants(body: z.infer<typeof permissionsBody>): Array<Omit<Permission, 'id'>> {
  const list = Array.isArray(body)
    ? body
    : Array.isArray((body as { permissions?: unknown }).permissions)
      ? (body as { permissions: z.infer<typeof grants> }).permissions
      : Object.entries(body as Record<string, string>).map(([email, role]) => ({
          type: 'user',
          role,
          email,
        }));
  return list.map((g) => ({
    type: g.type,
    role: g.role,
    ...(g.email !== undefined ? { email: g.email } : {}),
    ...('name' in g && g.name !== undefined ? { name: g.name } : {}),
  }));
}

/** The capability first: a connector without it is 501 whatever the id. */
function requireMethod<K extends keyof StorageApi>(
  scope: StorageScope,
  method: K,
  what: string,
): NonNullable<StorageApi[K]> {
  const fn = scope.storage[method];
  if (typeof fn !== 'function')
    throw new CloudmuxError('not_implemented', `${scope.runtime.definition.name} does not support ${what}.`);
  return (fn as (...args: unknown[]) => unknown).bind(scope.storage) as NonNullable<StorageApi[K]>;
}

/** Apps that already have these routes: registering twice (search.ts and routes/index.ts) is a no-op. */
const registered = new WeakSet<FastifyInstance>();

export function registerSharingRoutes(app: FastifyInstance, deps: ServerDeps): void {
  if (registered.has(app)) return;
  registered.add(app);
  const prefix = '/v1/accounts/:account/storage';
  const idOf = (request: FastifyRequest) => (request.params as { id: string }).id;

  const sendPermissions = (reply: FastifyReply, list: Permission[]) =>
    sendJson(reply, 200, {
      permissions: list.map(renderPermission),
      api: 'storage',
      type: 'permission_list',
    });
  const sendProperties = (reply: FastifyReply, list: Property[]) =>
    sendJson(reply, 200, { properties: list.map(renderProperty), api: 'storage', type: 'property_list' });

  for (const type of ['file', 'folder'] as const satisfies readonly StorageItemType[]) {
    const path = `${prefix}/${type}s/:id/permissions`;

    app.get(path, async (request, reply) => {
      const scope = await storageScope(deps, request, reply);
      const getPermissions = requireMethod(scope, 'getPermissions', 'permissions');
      const rawId = scope.ids.decode(idOf(request), type);
      return sendPermissions(reply, await getPermissions(rawId, type));
    });

    // PUT replaces the grants (`[]` leaves only the owner); PATCH adds or changes the ones given.
    for (const [method, mode] of [
      ['put', 'replace'],
      ['patch', 'update'],
    ] as const) {
      app[method](path, async (request, reply) => {
        const scope = await storageScope(deps, request, reply);
        const setPermissions = requireMethod(scope, 'setPermissions', 'changing permissions');
        const rawId = scope.ids.decode(idOf(request), type);
        const body = parseBody(request.body, permissionsBody);
        return sendPermissions(reply, await setPermissions(rawId, type, toGrants(body), mode));
      });
    }
  }

  const propertiesPath = `${prefix}/files/:id/properties`;

  app.get(propertiesPath, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const getProperties = requireMethod(scope, 'getProperties', 'properties');
    const rawId = scope.ids.decode(idOf(request), 'file');
    return sendProperties(reply, await getProperties(rawId));
  });

  app.patch(propertiesPath, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const updateProperties = requireMethod(scope, 'updateProperties', 'changing properties');
    const rawId = scope.ids.decode(idOf(request), 'file');
    const body = parseBody(request.body, propertiesBody);
    const list = Array.isArray(body) ? body : body.properties;
    const keys = new Set(list.map((c) => c.key));
    if (keys.size !== list.length)
      throw new CloudmuxError('invalid_parameters', 'Each property key may appear only once.');
    const updated = await updateProperties(
      rawId,
      list.map((c) => ({ key: c.key, value: c.value === null ? null : String(c.value) })),
    );
    return sendProperties(reply, updated);
  });

  app.delete(propertiesPath, async (request, reply) => {
    const scope = await storageScope(deps, request, reply);
    const deleteProperties = requireMethod(scope, 'deleteProperties', 'deleting properties');
    const rawId = scope.ids.decode(idOf(request), 'file');
    await deleteProperties(rawId);
    return reply.status(204).send();
  });
}
