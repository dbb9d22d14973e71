/**
 * Wire objects (core's schemas): accounts and storage items as Kloudless rendered them. Item ids
 * are encrypted with the id codec, bound to the account; the root folder's id is the special id
 * `root`, which is also accepted wherever an id is.
 */
import {
  type AccountObject,
  type AnyConnectorDefinition,
  type FileObject,
  type FolderObject,
  type IdCodec,
  type StorageApi,
  type StorageItem,
  type StorageItemType,
  storageCapabilities,
  toKloudlessTime,
} from '@cloudmux/core';
import type { AccountRow } from '../store/store.js';

export class AccountIds {
  constructor(
    readonly codec: IdCodec,
    readonly accountId: number,
    readonly service: string,
    readonly rootRawId: string,
    readonly trashRawId?: string,
  ) {}

  encode(type: StorageItemType | string, rawId: string): string {
    if (type === 'folder' && rawId === this.rootRawId) return 'root';
    if (type === 'folder' && this.trashRawId !== undefined && rawId === this.trashRawId) return 'trash';
    return this.codec.encode({ accountId: this.accountId, service: this.service, type, rawId });
  }

  /** A client's id back to the raw id; wrong account, wrong type, tampered → `not_found`. */
  decode(id: string, type: StorageItemType | string | readonly string[]): string {
    return this.codec.resolve(id, {
      accountId: this.accountId,
      service: this.service,
      type,
      rootRawId: this.rootRawId,
      ...(this.trashRawId !== undefined ? { trashRawId: this.trashRawId } : {}),
    });
  }
}

export interface RenderOptions {
  publicUrl: string;
  rawData: boolean;
}

export function itemHref(publicUrl: string, accountId: number, type: StorageItemType, id: string): string {
  return `${publicUrl}/v1/accounts/${accountId}/storage/${type === 'file' ? 'files' : 'folders'}/${id}`;
}

export function renderItem(
  item: StorageItem,
  ids: AccountIds,
  options: RenderOptions,
): FileObject | FolderObject {
  const id = ids.encode(item.type, item.rawId);
  const ref = (rawId: string, name: string) => ({
    id: ids.encode('folder', rawId),
    name,
    type: 'folder' as const,
    id_type: 'default' as const,
  });
  const parent = item.parentRawId === null ? null : ref(item.parentRawId, item.ancestors?.at(-1)?.name ?? '');
  const base = {
    id,
    name: item.name,
    size: item.size,
    created: toKloudlessTime(item.created),
    modified: toKloudlessTime(item.modified),
    path: item.path ?? null,
    parent,
    ancestors: item.ancestors ? item.ancestors.map((a) => ref(a.rawId, a.name)) : null,
    account: ids.accountId,
    ids: { default: id },
    id_type: 'default' as const,
    raw_id: item.rawId,
    href: itemHref(options.publicUrl, ids.accountId, item.type, id),
    ...(options.rawData ? { raw: { object: item.raw ?? null, id: item.rawId } } : {}),
  };
  if (item.type === 'file') {
    return {
      ...base,
      mime_type: item.mimeType ?? null,
      downloadable: item.downloadable ?? true,
      api: 'storage',
      type: 'file',
    };
  }
  return {
    ...base,
    can_create_folders: item.canCreateFolders ?? true,
    can_upload_files: item.canUploadFiles ?? true,
    can_list_recursively: false,
    api: 'storage',
    type: 'folder',
  };
}

/** Kloudless `properties.capabilities` (`retrieve_full=true`): `{ name: { value: bool } }`. */
export function accountCapabilities(
  definition: AnyConnectorDefinition,
  storage: StorageApi | undefined,
): Record<string, { value: boolean }> {
  const out: Record<string, { value: boolean }> = {};
  if (storage)
    for (const [name, value] of Object.entries(storageCapabilities(storage))) out[name] = { value };
  const has = (api: string) => definition.apis.includes(api);
  for (const name of [
    'can_list_users',
    'can_retrieve_user',
    'can_list_groups',
    'can_retrieve_group',
    'can_list_group_members',
  ]) {
    out[name] = { value: has('team') };
  }
  for (const kind of ['accounts', 'contacts', 'leads', 'opportunities', 'campaigns', 'tasks', 'objects']) {
    out[`can_crud_crm_${kind}`] = { value: has('crm') };
  }
  out.can_crm_batch = { value: false };
  out.can_crm_search = { value: false };
  return out;
}

export function renderAccount(
  row: AccountRow,
  definition: AnyConnectorDefinition | undefined,
  publicUrl: string,
  full?: { capabilities: Record<string, { value: boolean }> },
): AccountObject {
  return {
    id: Number(row.id),
    account: row.account,
    service: row.service,
    service_name: definition?.name ?? row.service,
    admin: row.admin === 1,
    active: row.active === 1,
    enabled: row.active === 1,
    internal_use: false,
    created: toKloudlessTime(new Date(row.created)),
    modified: toKloudlessTime(new Date(row.modified)),
    token_expiry: row.token_expiry ? toKloudlessTime(new Date(row.token_expiry)) : null,
    refresh_token_expiry: row.refresh_token_expiry
      ? toKloudlessTime(new Date(row.refresh_token_expiry))
      : null,
    effective_scope: row.effective_scope,
    custom_properties: JSON.parse(row.custom_properties) as Record<string, unknown>,
    object_definitions: {},
    proxy_connection: null,
    inactive_reason: row.inactive_reason,
    href: `${publicUrl}/v1/accounts/${row.id}`,
    ...(full ? { apis: [...(definition?.apis ?? [])], properties: { capabilities: full.capabilities } } : {}),
    api: 'core',
    type: 'account',
  };
}
