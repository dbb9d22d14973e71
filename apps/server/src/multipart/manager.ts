/**
 * Multipart upload sessions (kloudless-api.md §3.6), owned by the server.
 *
 * While parts arrive in order (part N when N is the next expected part, with a Content-Length),
 * each one streams straight into the connector's native resumable upload (`StorageApi.multipart`)
 * and nothing touches our disk. The first part that does not fit — out of order, sent without a
 * length, sent while another is in flight — switches the session to staging for good: from then
 * on parts are written under `<dataDir>/multipart/<session>/`, bounded per session. On complete:
 * - nothing went native: the staged parts are uploaded once, as one concatenated stream,
 *   honouring `overwrite` (false → the server's renaming rule);
 * - a native prefix exists: the staged rest is fed to the native session in order, then it is
 *   completed (the name was fixed, renaming rule included, when the native session began).
 * A part already sent natively cannot be taken back: re-sending the same bytes is accepted (a
 * retry), different bytes are refused.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline, type Readable } from 'node:stream';
import {
  CloudmuxError,
  type NativeMultipart,
  type StorageApi,
  type StorageItem,
  validateItemName,
} from '@cloudmux/core';
import type { ServerDeps } from '../http/deps.js';
import { uploadWithMode, withFreeName } from '../storage-ops.js';
import { expectedPartSize, formatPartList, MAX_PARTS, planParts } from './plan.js';
import { type PartRow, type SessionRow, SessionStore } from './sessions.js';
import {
  concatParts,
  ensureFreeSpace,
  fileSize,
  measure,
  PartMeter,
  partPath,
  removeDir,
  type StatFs,
  sessionDir,
  stagedSessionIds,
  writePart,
} from './staging.js';

/** Sessions untouched this long expire (their staged files and native session go with them). */
export const SESSION_TTL_MS = 24 * 60 * 60 * 1000;
export const SWEEP_INTERVAL_MS = 10 * 60 * 1000;
/** Lease on a session while a request drives its native upload; renewed while it runs. */
const LEASE_MS = 2 * 60 * 1000;
const RENEW_MS = 30 * 1000;

export interface ManagerOptions {
  now?: () => number;
  statFs?: StatFs;
}

/** Who is asking: sessions belong to an app and one of its accounts. */
export interface SessionContext {
  appId: string;
  accountId: number;
  service: string;
  storage: StorageApi;
}

export interface SessionView {
  row: SessionRow;
  parts: PartRow[];
  /** Whether parts may go to the connector's native session (so order matters). */
  nativeOpen: boolean;
}

const notFound = () => new CloudmuxError('not_found', 'Upload session not found.');

function asParentError(err: unknown): never {
  if (err instanceof CloudmuxError && err.code === 'not_found') {
    throw new CloudmuxError(
      'invalid_parent_folder',
      'The parent folder of the upload session does not exist.',
    );
  }
  throw err;
}

export class MultipartManager {
  readonly sessions: SessionStore;
  readonly #now: () => number;
  readonly #statFs: StatFs | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: ServerDeps,
    options: ManagerOptions = {},
  ) {
    this.sessions = new SessionStore(deps.storeHandle.db);
    this.#now = options.now ?? Date.now;
    this.#statFs = options.statFs;
  }

  // ── lifecycle ──────────────────────────────────────────────────────────

  /** Sweeps once (startup) and then periodically. */
  async start(): Promise<void> {
    await this.runSweep();
    this.#timer = setInterval(() => void this.runSweep(), SWEEP_INTERVAL_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sweeping;
  }

  private runSweep(): Promise<unknown> {
    this.#sweeping = this.#sweeping
      .then(() => this.sweep())
      .catch((err: unknown) => this.deps.log.warn({ err }, 'multipart sweep failed'));
    return this.#sweeping;
  }

  /**
   * Removes sessions untouched for `SESSION_TTL_MS` before `now` (aborting their native session,
   * deleting their staged files), and staging folders whose session no longer exists.
   */
  async sweep(now = this.#now()): Promise<{ expired: number; orphans: number }> {
    const cutoff = new Date(now - SESSION_TTL_MS).toISOString();
    const seen = new Set<number>();
    let expired = 0;
    for (;;) {
      const rows = (await this.sessions.stale(cutoff, 100)).filter((r) => !seen.has(Number(r.id)));
      if (rows.length === 0) break;
      for (const row of rows) {
        seen.add(Number(row.id));
        await this.dispose(row);
        expired++;
      }
    }
    const dirs = await stagedSessionIds(this.deps.config.dataDir);
    const live = await this.sessions.existing(dirs);
    let orphans = 0;
    for (const id of dirs) {
      if (live.has(id)) continue;
      await removeDir(sessionDir(this.deps.config.dataDir, id));
      orphans++;
    }
    return { expired, orphans };
  }

  private async dispose(row: SessionRow): Promise<void> {
    if (row.native_state !== null) {
      try {
        const account = await this.deps.store.getAccountById(Number(row.account_id));
        const runtime = account ? await this.deps.runtime.forAccount(account) : undefined;
        const storage = runtime?.instance.storage as StorageApi | undefined;
        await storage?.multipart?.abort(row.native_state);
      } catch (err) {
        this.deps.log.warn(
          { err, session: Number(row.id) },
          'aborting an expired native upload session failed',
        );
      }
    }
    await this.sessions.delete(Number(row.id));
    await removeDir(sessionDir(this.deps.config.dataDir, Number(row.id)));
  }

  // ── requests ───────────────────────────────────────────────────────────

  async create(
    ctx: SessionContext,
    input: { parentRawId: string; name: string; size: number | null; overwrite: boolean },
  ): Promise<SessionView> {
    validateItemName(input.name);
    const parent = await ctx.storage.get(input.parentRawId, 'folder').catch(asParentError);
    if (parent.type !== 'folder')
      throw new CloudmuxError('invalid_parent_folder', 'The parent_id does not name a folder.');
    const native = ctx.storage.multipart;
    const plan = planParts(input.size, native);
    const max = this.deps.config.multipartMaxBytes;
    if (!plan.native && input.size !== null && input.size > max) {
      throw new CloudmuxError(
        'bad_request',
        `The file is larger than the ${max} bytes this server stages per upload session, ` +
          `and ${ctx.service} has no native resumable upload that takes it.`,
      );
    }
    const row = await this.sessions.create({
      appId: ctx.appId,
      accountId: ctx.accountId,
      parentRawId: input.parentRawId,
      name: input.name,
      size: input.size,
      partSize: plan.partSize,
      overwrite: input.overwrite,
      staged: !plan.native,
    });
    return this.view(ctx, row);
  }

  async status(ctx: SessionContext, id: number): Promise<SessionView> {
    return this.view(ctx, await this.load(ctx, id));
  }

  async putPart(
    ctx: SessionContext,
    id: number,
    partNumber: number,
    body: Readable,
    contentLength: number | null,
  ): Promise<SessionView> {
    let row = await this.load(ctx, id);
    assertOpen(row);
    const native = ctx.storage.multipart;
    const limit = maxPartNumber(row, native);
    if (partNumber > limit) {
      throw new CloudmuxError(
        'invalid_parameters',
        row.size !== null
          ? `part_number ${partNumber} is beyond the ${limit} parts of a ${row.size}-byte file ` +
              `with part_size ${row.part_size}.`
          : `part_number must be between 1 and ${limit}.`,
      );
    }
    const expected = expectedPartSize(row.size, row.part_size, partNumber);
    if (contentLength !== null) {
      if (expected.exact && contentLength !== expected.bytes)
        throw wrongSize(partNumber, expected.bytes, contentLength);
      if (!expected.exact && contentLength > expected.bytes) throw tooLarge(partNumber, expected.bytes);
    }
    const parts = await this.sessions.parts(Number(row.id));
    if (!expected.exact)
      assertLastIsShortest(parts, partNumber, contentLength ?? row.part_size, row.part_size);

    const sentNatively = parts.find((p) => p.part_number === partNumber && p.native === 1);
    if (sentNatively) {
      await compareResend(sentNatively, body, contentLength, ctx.service);
      return this.view(ctx, row);
    }
    if (native && row.staged === 0 && partNumber === row.next_part && contentLength !== null) {
      const owner = randomUUID();
      if (
        await this.sessions.tryLease(Number(row.id), owner, this.#now(), LEASE_MS, {
          nextPart: partNumber,
          staged: 0,
        })
      ) {
        try {
          await this.forwardNative(ctx, row, owner, native, partNumber, body, contentLength);
        } finally {
          await this.sessions.releaseLease(Number(row.id), owner);
        }
        return this.view(ctx, await this.load(ctx, id));
      }
      row = await this.load(ctx, id);
      assertOpen(row);
      if (row.busy_owner !== null && row.staged === 0 && row.next_part === partNumber) {
        throw new CloudmuxError(
          'bad_request',
          `Part ${partNumber} is being uploaded by another request; retry once that one has finished.`,
        );
      }
      const now = (await this.sessions.parts(Number(row.id))).find(
        (p) => p.part_number === partNumber && p.native === 1,
      );
      if (now) {
        await compareResend(now, body, contentLength, ctx.service);
        return this.view(ctx, row);
      }
    }
    await this.stagePart(row, partNumber, body, expected);
    return this.view(ctx, await this.load(ctx, id));
  }

  async complete(ctx: SessionContext, id: number, meta: { ip?: string }): Promise<StorageItem> {
    const loaded = await this.load(ctx, id);
    assertNotFailed(loaded);
    const sessionId = Number(loaded.id);
    const owner = randomUUID();
    if (!(await this.sessions.tryLease(sessionId, owner, this.#now(), LEASE_MS, { setPhase: 'closing' }))) {
      const fresh = await this.load(ctx, id);
      if (fresh.phase === 'closing')
        throw new CloudmuxError('bad_request', 'The upload session is already being completed or aborted.');
      throw new CloudmuxError(
        'bad_request',
        'A part is still being uploaded; complete the session once every part upload has finished.',
      );
    }
    const renew = this.renewWhileBusy(sessionId, owner);
    let done = false;
    try {
      // Read again under the lease: a part forwarded since the first read changed the native state.
      const row = (await this.sessions.byId(sessionId)) ?? loaded;
      const parts = await this.sessions.parts(sessionId);
      const dir = sessionDir(this.deps.config.dataDir, sessionId);
      await assertComplete(row, parts, dir);
      const mode = row.overwrite === 1 ? 'replace' : 'rename';
      let item: StorageItem;
      if (row.native_state !== null) {
        const native = ctx.storage.multipart;
        if (!native)
          throw new CloudmuxError(
            'internal_error',
            'The connector no longer offers the native upload this session began.',
          );
        let state = row.native_state;
        // The staged rest goes to the native session in order; each part is recorded as it goes,
        // so a failed complete can be retried without sending anything twice.
        for (const part of parts.filter((p) => p.native === 0)) {
          const path = partPath(dir, part.path);
          const meter = new PartMeter(part.size);
          const input = pipeline(createReadStream(path), meter, () => {});
          state = (await native.uploadPart(state, part.part_number, input, part.size)).sessionState;
          await this.sessions.commitNativePart(
            sessionId,
            owner,
            { partNumber: part.part_number, size: part.size, sha256: meter.digest() },
            state,
          );
          await removeDir(path);
        }
        if (mode === 'rename' && row.target_name !== null) {
          // The name was chosen free when the native session began; refuse rather than let the
          // service replace something created since.
          const existing = await ctx.storage.lookup(row.parent_raw_id, row.target_name);
          if (existing) {
            throw new CloudmuxError(
              'naming_conflict',
              `An item named ${row.target_name} was created in the folder during the upload.`,
              {
                conflictingRawId: existing.rawId,
              },
            );
          }
        }
        item = await native.complete(state).catch(asParentError);
      } else {
        const total = parts.reduce((n, p) => n + p.size, 0);
        const body = concatParts(parts.map((p) => partPath(dir, p.path)));
        item = await uploadWithMode(ctx.storage, row.parent_raw_id, row.name, body, mode, {
          size: total,
        }).catch(asParentError);
      }
      done = true;
      await this.sessions
        .delete(sessionId)
        .catch((err: unknown) =>
          this.deps.log.warn({ err, session: sessionId }, 'deleting a completed upload session failed'),
        );
      await removeDir(dir).catch((err: unknown) =>
        this.deps.log.warn({ err, session: sessionId }, 'removing staged parts failed'),
      );
      await this.deps.journal.record(ctx.accountId, 'add', item, { ip: meta.ip ?? null });
      return item;
    } catch (err) {
      // Parts stay; the client may upload what is missing and complete again, or abort.
      if (!done) await this.sessions.releaseLease(sessionId, owner, { phase: 'open' });
      throw err;
    } finally {
      clearInterval(renew);
    }
  }

  async abort(ctx: SessionContext, id: number): Promise<void> {
    const loaded = await this.load(ctx, id);
    const sessionId = Number(loaded.id);
    const owner = randomUUID();
    const phase = loaded.phase === 'failed' ? 'failed' : 'open';
    if (
      !(await this.sessions.tryLease(sessionId, owner, this.#now(), LEASE_MS, { phase, setPhase: 'closing' }))
    ) {
      throw new CloudmuxError(
        'bad_request',
        'The upload session is busy (a part upload or complete is running); retry once it has finished.',
      );
    }
    const row = (await this.sessions.byId(sessionId)) ?? loaded;
    if (row.native_state !== null && ctx.storage.multipart) {
      await ctx.storage.multipart.abort(row.native_state).catch((err: unknown) => {
        this.deps.log.warn({ err, session: sessionId }, 'aborting the native upload session failed');
      });
    }
    await this.sessions.delete(sessionId);
    await removeDir(sessionDir(this.deps.config.dataDir, sessionId));
  }

  // ── internals ──────────────────────────────────────────────────────────

  /** The caller's session, unexpired; a lease left by a vanished holder marks it failed. */
  private async load(ctx: SessionContext, id: number): Promise<SessionRow> {
    let row = await this.sessions.get(ctx.appId, ctx.accountId, id);
    const now = this.#now();
    if (!row || Date.parse(row.modified) + SESSION_TTL_MS < now) throw notFound();
    if (row.busy_owner !== null && row.busy_until !== null && row.busy_until < now) {
      await this.sessions.markFailed(
        Number(row.id),
        row.busy_owner,
        'The server handling this session stopped in the middle of an upload step.',
      );
      row = await this.sessions.get(ctx.appId, ctx.accountId, id);
      if (!row) throw notFound();
    }
    return row;
  }

  private async view(ctx: SessionContext, row: SessionRow): Promise<SessionView> {
    const parts = await this.sessions.parts(Number(row.id));
    return {
      row,
      parts,
      nativeOpen: ctx.storage.multipart !== undefined && row.staged === 0 && row.phase === 'open',
    };
  }

  private renewWhileBusy(sessionId: number, owner: string): NodeJS.Timeout {
    const timer = setInterval(() => {
      this.sessions.renewLease(sessionId, owner, this.#now() + LEASE_MS).catch((err: unknown) => {
        this.deps.log.warn({ err, session: sessionId }, 'renewing an upload session lease failed');
      });
    }, RENEW_MS);
    timer.unref();
    return timer;
  }

  /** Begins the native session on the first part (renaming rule applied here), then streams the part in. */
  private async forwardNative(
    ctx: SessionContext,
    row: SessionRow,
    owner: string,
    native: NativeMultipart,
    partNumber: number,
    body: Readable,
    size: number,
  ): Promise<void> {
    const sessionId = Number(row.id);
    const renew = this.renewWhileBusy(sessionId, owner);
    try {
      // Under the lease: the state may have been begun since the caller's read.
      let state = (await this.sessions.byId(sessionId))?.native_state ?? null;
      if (state === null) {
        const begun = await beginNative(ctx.storage, native, row).catch(asParentError);
        state = begun.state;
        await this.sessions.update(sessionId, owner, { native_state: state, target_name: begun.name });
      }
      const meter = new PartMeter(size);
      const input = pipeline(body, meter, () => {});
      const result = await native.uploadPart(state, partNumber, input, size);
      if (meter.bytes !== size || meter.overflow) {
        // The service took a part of the wrong length: its session can no longer be trusted.
        await this.sessions.update(sessionId, owner, {
          phase: 'failed',
          failure: `Part ${partNumber} reached the service with ${meter.bytes} of ${size} bytes.`,
        });
        throw wrongSize(partNumber, size, meter.bytes);
      }
      const replaced = await this.sessions.commitNativePart(
        sessionId,
        owner,
        { partNumber, size, sha256: meter.digest() },
        result.sessionState,
      );
      if (replaced) await removeDir(partPath(sessionDir(this.deps.config.dataDir, sessionId), replaced));
    } finally {
      clearInterval(renew);
    }
  }

  private async stagePart(
    row: SessionRow,
    partNumber: number,
    body: Readable,
    expected: { bytes: number; exact: boolean },
  ): Promise<void> {
    const sessionId = Number(row.id);
    const max = this.deps.config.multipartMaxBytes;
    const stagedOthers = (parts: PartRow[]) =>
      parts.reduce((n, p) => (p.native === 0 && p.part_number !== partNumber ? n + p.size : n), 0);
    const overLimit = () =>
      new CloudmuxError(
        'bad_request',
        `Staging part ${partNumber} would exceed the ${max} bytes this server stages per upload session.`,
      );
    if (stagedOthers(await this.sessions.parts(sessionId)) + expected.bytes > max) throw overLimit();
    await ensureFreeSpace(this.deps.config.dataDir, expected.bytes, this.#statFs);
    const dir = sessionDir(this.deps.config.dataDir, sessionId);
    const written = await writePart(dir, partNumber, body, expected.bytes);
    let keep = false;
    try {
      if (written.overflow) throw tooLarge(partNumber, expected.bytes);
      if (expected.exact && written.bytes !== expected.bytes)
        throw wrongSize(partNumber, expected.bytes, written.bytes);
      let duplicate = false;
      const result = await this.sessions.commitStagedPart(
        sessionId,
        { partNumber, size: written.bytes, path: written.file, sha256: written.sha256 },
        (parts) => {
          if (stagedOthers(parts) + written.bytes > max) throw overLimit();
          if (!expected.exact) assertLastIsShortest(parts, partNumber, written.bytes, row.part_size);
          const nativeCopy = parts.find((p) => p.part_number === partNumber && p.native === 1);
          if (nativeCopy) {
            if (nativeCopy.size !== written.bytes || nativeCopy.sha256 !== written.sha256)
              throw cannotReplace(partNumber, 'the service');
            duplicate = true;
            return false;
          }
          return true;
        },
      );
      if (!result.accepted) {
        const fresh = await this.sessions.byId(sessionId);
        if (!fresh) throw notFound();
        throw new CloudmuxError('bad_request', 'The upload session is being completed or aborted.');
      }
      keep = !duplicate;
      if (result.replaced) await removeDir(partPath(dir, result.replaced));
    } finally {
      if (!keep) await removeDir(written.path);
    }
  }
}

function assertNotFailed(row: SessionRow): void {
  if (row.phase === 'failed') {
    throw new CloudmuxError(
      'bad_request',
      `${row.failure ?? 'The upload session failed.'} Abort it (DELETE) and start a new one.`,
    );
  }
}

function assertOpen(row: SessionRow): void {
  assertNotFailed(row);
  if (row.phase !== 'open')
    throw new CloudmuxError('bad_request', 'The upload session is being completed or aborted.');
}

/** Highest part number the session takes. */
function maxPartNumber(row: SessionRow, native: NativeMultipart | undefined): number {
  if (row.size !== null) return Math.max(1, Math.ceil(row.size / row.part_size));
  const nativeBound = native && (row.staged === 0 || row.native_state !== null) ? native.maxParts : MAX_PARTS;
  return Math.min(MAX_PARTS, nativeBound);
}

/** Unknown size: only the highest part may be shorter than `part_size`. */
function assertLastIsShortest(parts: PartRow[], partNumber: number, bytes: number, partSize: number): void {
  const shortBelow = parts.find((p) => p.part_number < partNumber && p.size < partSize);
  if (shortBelow) {
    throw new CloudmuxError(
      'invalid_parameters',
      `Part ${shortBelow.part_number} has ${shortBelow.size} bytes, less than part_size ${partSize}, ` +
        `so it must be the last part; part ${partNumber} cannot follow it.`,
    );
  }
  const above = parts.find((p) => p.part_number > partNumber);
  if (bytes < partSize && above) {
    throw new CloudmuxError(
      'invalid_parameters',
      `Only the last part may be shorter than part_size ${partSize}; ` +
        `part ${above.part_number} exists after part ${partNumber}.`,
    );
  }
}

/** Every part present, contiguous, each of the size it must have, staged bytes still on disk. */
async function assertComplete(row: SessionRow, parts: PartRow[], dir: string): Promise<void> {
  const byNumber = new Map(parts.map((p) => [p.part_number, p]));
  const highest = parts.at(-1)?.part_number ?? 0;
  const count = row.size !== null ? Math.max(1, Math.ceil(row.size / row.part_size)) : highest;
  if (count === 0) throw new CloudmuxError('invalid_parameters', 'No parts were uploaded.');
  const missing: number[] = [];
  for (let n = 1; n <= count; n++) if (!byNumber.has(n)) missing.push(n);
  if (missing.length > 0) {
    throw new CloudmuxError(
      'invalid_parameters',
      `Missing parts: ${formatPartList(missing)} (of ${count}). Upload them, then complete again.`,
    );
  }
  for (const part of parts) {
    const expected = expectedPartSize(row.size, row.part_size, part.part_number);
    const ok = expected.exact
      ? part.size === expected.bytes
      : part.part_number === count
        ? part.size <= row.part_size
        : part.size === row.part_size;
    if (!ok)
      throw new CloudmuxError(
        'invalid_parameters',
        `Part ${part.part_number} has ${part.size} bytes, which does not fit part_size ${row.part_size}.`,
      );
    if (part.native === 0 && (await fileSize(partPath(dir, part.path))) !== part.size) {
      throw new CloudmuxError(
        'invalid_parameters',
        `The staged bytes of part ${part.part_number} are gone; upload it again, then complete.`,
      );
    }
  }
}

async function beginNative(
  storage: StorageApi,
  native: NativeMultipart,
  row: SessionRow,
): Promise<{ state: string; name: string }> {
  const size = row.size;
  if (row.overwrite === 1) {
    const begun = await native.begin(row.parent_raw_id, row.name, { ifExists: 'replace', size });
    return { state: begun.sessionState, name: row.name };
  }
  return withFreeName(storage, row.parent_raw_id, row.name, async (candidate) => {
    const begun = await native.begin(row.parent_raw_id, candidate, { ifExists: 'fail', size });
    return { state: begun.sessionState, name: candidate };
  });
}

/** A re-sent part that already went to the native session: the same bytes are a no-op, others are refused. */
async function compareResend(
  part: PartRow,
  body: Readable,
  contentLength: number | null,
  service: string,
): Promise<void> {
  if (contentLength !== null && contentLength !== part.size) throw cannotReplace(part.part_number, service);
  const got = await measure(body, part.size);
  if (got.overflow || got.bytes !== part.size || got.sha256 !== part.sha256)
    throw cannotReplace(part.part_number, service);
}

function cannotReplace(partNumber: number, service: string): CloudmuxError {
  return new CloudmuxError(
    'bad_request',
    `Part ${partNumber} was already passed on to ${service}'s resumable upload and cannot be replaced ` +
      'with different bytes; abort the session (DELETE) to start over.',
  );
}

function wrongSize(partNumber: number, expected: number, got: number): CloudmuxError {
  return new CloudmuxError(
    'invalid_parameters',
    `Part ${partNumber} must have ${expected} bytes; it has ${got}.`,
  );
}

function tooLarge(partNumber: number, limit: number): CloudmuxError {
  return new CloudmuxError(
    'invalid_parameters',
    `Part ${partNumber} is larger than part_size (${limit} bytes).`,
  );
}
