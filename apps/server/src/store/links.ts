/**
 * Hosted links (kloudless-api.md §3.4): rows of the `links` table, always scoped by `app_id` and
 * the accounts the request may see. Link ids are 128-bit random base64url strings; the id is
 * also the secret part of the public URL (`/l/<id>`), so it is only ever shown to the owning app.
 * Passwords are stored as scrypt hashes with a random salt (`scrypt$N$r$p$salt$hash`).
 */
import { randomBytes, type ScryptOptions, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import type { Kysely, Selectable, Updateable } from 'kysely';
import { nowIso } from './db.js';
import type { Database, LinksTable } from './schema.js';

export type LinkRow = Selectable<LinksTable>;

/** What a link id looks like; anything else is not looked up at all. */
export const LINK_ID_RE = /^[A-Za-z0-9_-]{22}$/;

export function newLinkId(): string {
  return randomBytes(16).toString('base64url');
}

export interface LinkInput {
  appId: string;
  accountId: number;
  rawId: string;
  direct: boolean;
  passwordHash: string | null;
  expiration: string | null;
  active: boolean;
}

export interface LinkPatch {
  active?: boolean;
  direct?: boolean;
  passwordHash?: string | null;
  expiration?: string | null;
}

export class LinkStore {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: LinkInput): Promise<LinkRow> {
    const now = nowIso();
    const row: LinkRow = {
      id: newLinkId(),
      app_id: input.appId,
      account_id: input.accountId,
      raw_id: input.rawId,
      direct: input.direct ? 1 : 0,
      password_hash: input.passwordHash,
      expiration: input.expiration,
      active: input.active ? 1 : 0,
      created: now,
      modified: now,
    };
    await this.db.insertInto('links').values(row).execute();
    return row;
  }

  /** A link of `appId` on one of `accountIds`. */
  get(appId: string, accountIds: readonly number[], id: string): Promise<LinkRow | undefined> {
    if (!LINK_ID_RE.test(id) || accountIds.length === 0) return Promise.resolve(undefined);
    return this.db
      .selectFrom('links')
      .selectAll()
      .where('id', '=', id)
      .where('app_id', '=', appId)
      .where('account_id', 'in', [...accountIds])
      .executeTakeFirst();
  }

  /** Internal: the public link URL carries no credentials, only the link id. */
  getPublic(id: string): Promise<LinkRow | undefined> {
    if (!LINK_ID_RE.test(id)) return Promise.resolve(undefined);
    return this.db.selectFrom('links').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async list(
    appId: string,
    accountIds: readonly number[],
    filter: { active?: boolean },
    offset: number,
    limit: number,
  ): Promise<{ rows: LinkRow[]; total: number }> {
    let base = this.db
      .selectFrom('links')
      .where('app_id', '=', appId)
      .where('account_id', 'in', accountIds.length ? [...accountIds] : [-1]);
    if (filter.active !== undefined) base = base.where('active', '=', filter.active ? 1 : 0);
    const [rows, count] = await Promise.all([
      base.selectAll().orderBy('created').orderBy('id').offset(offset).limit(limit).execute(),
      base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { rows, total: Number(count.n) };
  }

  async update(
    appId: string,
    accountIds: readonly number[],
    id: string,
    patch: LinkPatch,
  ): Promise<LinkRow | undefined> {
    const existing = await this.get(appId, accountIds, id);
    if (!existing) return undefined;
    const set: Updateable<LinksTable> = { modified: nowIso() };
    if (patch.active !== undefined) set.active = patch.active ? 1 : 0;
    if (patch.direct !== undefined) set.direct = patch.direct ? 1 : 0;
    if (patch.passwordHash !== undefined) set.password_hash = patch.passwordHash;
    if (patch.expiration !== undefined) set.expiration = patch.expiration;
    await this.db.updateTable('links').set(set).where('id', '=', id).where('app_id', '=', appId).execute();
    return this.get(appId, accountIds, id);
  }

  /**
   * Keeps the account's links on an item moved or renamed through Cloudmux. Path-addressed
   * connectors (local, ftp, smb, webdav, s3, azure) give the item — and for a folder, everything
   * below it — a new raw id; connectors whose ids survive a move leave nothing to do. Moves made
   * outside Cloudmux are not seen, and those links end as `not_found`.
   */
  async followMove(accountId: number, type: 'file' | 'folder', from: string, to: string): Promise<number> {
    if (from === to) return 0;
    const below = (id: string) => (id.endsWith('/') ? id : `${id}/`);
    const [fromPrefix, toPrefix] = [below(from), below(to)];
    const rows = await this.db
      .selectFrom('links')
      .select(['id', 'raw_id'])
      .where('account_id', '=', accountId)
      .execute();
    let moved = 0;
    for (const row of rows) {
      const next =
        row.raw_id === from
          ? to
          : type === 'folder' && row.raw_id.startsWith(fromPrefix)
            ? toPrefix + row.raw_id.slice(fromPrefix.length)
            : undefined;
      if (next === undefined) continue;
      // Compare-and-swap: a concurrent move of the same link wins, this one does not overwrite it.
      await this.db
        .updateTable('links')
        .set({ raw_id: next })
        .where('id', '=', row.id)
        .where('raw_id', '=', row.raw_id)
        .execute();
      moved++;
    }
    return moved;
  }

  async delete(appId: string, accountIds: readonly number[], id: string): Promise<boolean> {
    if (!LINK_ID_RE.test(id) || accountIds.length === 0) return false;
    const result = await this.db
      .deleteFrom('links')
      .where('id', '=', id)
      .where('app_id', '=', appId)
      .where('account_id', 'in', [...accountIds])
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}

// ── link passwords ─────────────────────────────────────────────────────────

// OWASP Password Storage Cheat Sheet: scrypt N=2^15, r=8, p=3 is one of its equivalent minimums.
const SCRYPT = { N: 2 ** 15, r: 8, p: 3 } as const;
const KEY_BYTES = 32;
const MAX_PARAMS = { N: 2 ** 20, r: 16, p: 16 };

function scrypt(
  password: string,
  salt: Buffer,
  params: { N: number; r: number; p: number },
): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCb(password.normalize('NFC'), salt, KEY_BYTES, options, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export async function hashLinkPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT);
  const params = `${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}`;
  return `scrypt$${params}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** Constant-time check of a password against a stored `hashLinkPassword` value. */
export async function verifyLinkPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![N, r, p].every(Number.isSafeInteger) || N > MAX_PARAMS.N || r > MAX_PARAMS.r || p > MAX_PARAMS.p)
    return false;
  const salt = Buffer.from(parts[4]!, 'base64url');
  const expected = Buffer.from(parts[5]!, 'base64url');
  if (expected.length !== KEY_BYTES) return false;
  const actual = await scrypt(password, salt, { N, r, p });
  return timingSafeEqual(actual, expected);
}
