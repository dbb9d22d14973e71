/**
 * A small SMB 2/3 client: one TCP connection, one authenticated session, one tree (share). Requests
 * are multiplexed with credits (MS-SMB2 §3.2.4.1.3), interim `STATUS_PENDING` answers are waited
 * through (§3.2.5.1.5), and every request after authentication is signed (HMAC-SHA256 for 2.x,
 * AES-CMAC/GMAC for 3.x); signed responses are verified. When the server requires encryption for
 * the session or the share, every message is sealed instead (AES-128-GCM on 3.1.1, AES-128-CCM on
 * 3.0/3.0.2, MS-SMB2 §3.1.4.3), and unsealed replies are refused.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import {
  authenticateMessage,
  negotiateMessage,
  ntlmV2Response,
  parseChallenge,
  spnegoInit,
  spnegoResponse,
  spnegoResponseToken,
} from '../ntlm.js';
import {
  Command,
  Dialect,
  FileInfoClass,
  GlobalCap,
  HeaderFlag,
  SecurityMode,
  SessionFlag,
  ShareFlag,
  Status,
  statusName,
} from './constants.js';
import {
  type CipherAlgorithm,
  decryptMessage,
  encryptMessage,
  nonceLength,
  preauthUpdate,
  type SigningAlgorithm,
  signMessage,
  smb3Kdf,
} from './crypto.js';

const HEADER = 64;
const PROTOCOL_ID = Buffer.from([0xfe, 0x53, 0x4d, 0x42]);
const TRANSFORM_ID = Buffer.from([0xfd, 0x53, 0x4d, 0x42]);
const ONE_CREDIT = 64 * 1024;
const MAX_IO = 1024 * 1024;
const OPLOCK_BREAK_ID = 0xffffffffffffffffn;

/** An SMB reply with a non-success NTSTATUS. */
export class SmbStatusError extends Error {
  override readonly name = 'SmbStatusError';
  constructor(
    readonly status: number,
    readonly command: number,
    message?: string,
  ) {
    super(message ?? `${statusName(status)} (command 0x${command.toString(16)})`);
  }
}

/** The connection is unusable: closed, reset, timed out, or the server sent something we cannot trust. */
export class SmbConnectionError extends Error {
  override readonly name = 'SmbConnectionError';
  constructor(
    readonly kind: 'closed' | 'timeout' | 'protocol',
    message: string,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface SmbResponse {
  status: number;
  command: number;
  flags: number;
  sessionId: bigint;
  treeId: number;
  body: Buffer;
  /** The whole SMB2 message (header + body), for preauth hashing and signature checks. */
  message: Buffer;
}

export interface FileTimes {
  created: Date | null;
  accessed: Date | null;
  modified: Date | null;
  changed: Date | null;
}

export interface OpenFile extends FileTimes {
  fileId: Buffer;
  size: number;
  attributes: number;
  createAction: number;
}

export interface DirectoryEntry extends FileTimes {
  name: string;
  size: number;
  attributes: number;
}

export interface SmbClientOptions {
  host: string;
  share: string;
  username: string;
  password: string;
  domain: string;
  /** Per-request timeout; a request that outlives it breaks the connection. */
  timeoutMs: number;
  /** Dialects to offer, lowest first. Default: 2.0.2 up to 3.1.1. */
  dialects?: number[];
}

interface PendingRequest {
  resolve(response: SmbResponse): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  command: number;
  signed: boolean;
  sealed: boolean;
}

/** 100 ns ticks since 1601 → Date; zero means "not set". */
export function fileTimeToDate(buf: Buffer, offset: number): Date | null {
  const ticks = buf.readBigUInt64LE(offset);
  if (ticks === 0n) return null;
  return new Date(Number(ticks / 10_000n - 11_644_473_600_000n));
}

function readTimes(buf: Buffer, offset: number): FileTimes {
  return {
    created: fileTimeToDate(buf, offset),
    accessed: fileTimeToDate(buf, offset + 8),
    modified: fileTimeToDate(buf, offset + 16),
    changed: fileTimeToDate(buf, offset + 24),
  };
}

function safeSize(value: bigint): number {
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}

export class SmbClient {
  private readonly pending = new Map<bigint, PendingRequest>();
  private readonly creditWaiters: Array<{ charge: number; go: () => void }> = [];
  private readonly closeListeners = new Set<(error: Error) => void>();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private credits = 1;
  private nextMessageId = 0n;
  private sessionId = 0n;
  private treeId = 0;
  private signingKey: Buffer | null = null;
  private signingAlgorithm: SigningAlgorithm = 'hmac-sha256';
  private cipher: CipherAlgorithm | null = null;
  private encryptionKey: Buffer | null = null;
  private decryptionKey: Buffer | null = null;
  /** Seal every request from here on (the session or the share demands it). */
  private sealing = false;
  private readonly noncePrefix = randomBytes(4);
  private nonceCounter = 0n;
  private closedWith: Error | null = null;
  dialect = 0;
  largeMtu = false;
  maxRead = ONE_CREDIT;
  maxWrite = ONE_CREDIT;
  maxTransact = ONE_CREDIT;
  shareFlags = 0;
  maximalAccess = 0;

  private constructor(
    private readonly socket: Socket,
    private readonly options: SmbClientOptions,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(
        new SmbConnectionError('closed', `SMB connection error: ${err.message}`, err.code, { cause: err }),
      ),
    );
    socket.on('close', () =>
      this.fail(new SmbConnectionError('closed', 'The SMB server closed the connection.', 'ECONNRESET')),
    );
  }

  /** Negotiates, authenticates with NTLMv2 and connects the share over an already connected socket. */
  static async open(socket: Socket, options: SmbClientOptions): Promise<SmbClient> {
    const client = new SmbClient(socket, options);
    try {
      const preauth = await client.negotiate();
      await client.sessionSetup(preauth);
      await client.treeConnect();
      return client;
    } catch (err) {
      client.destroy();
      throw err;
    }
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  onClose(listener: (error: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Transport: MS-SMB2 §2.1 Direct TCP framing (4-byte length prefix).

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : Buffer.concat(this.chunks);
      if (head[0] !== 0) {
        this.fail(new SmbConnectionError('protocol', 'The server sent a frame that is not SMB Direct TCP.'));
        return;
      }
      const length = head.readUInt32BE(0) & 0xffffff;
      if (this.buffered < 4 + length) return;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const frame = all.subarray(4, 4 + length);
      const rest = all.subarray(4 + length);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      try {
        this.onFrame(frame);
      } catch (err) {
        this.fail(
          new SmbConnectionError('protocol', `Malformed SMB reply: ${(err as Error).message}`, undefined, {
            cause: err,
          }),
        );
        return;
      }
    }
  }

  private onFrame(sealedOrPlain: Buffer): void {
    const sealed = sealedOrPlain.subarray(0, 4).equals(TRANSFORM_ID);
    const frame = sealed ? this.unseal(sealedOrPlain) : sealedOrPlain;
    let offset = 0;
    for (;;) {
      // MS-SMB2 §3.2.5.1: a frame may hold compounded replies chained by NextCommand.
      const next = frame.readUInt32LE(offset + 20);
      const message = next === 0 ? frame.subarray(offset) : frame.subarray(offset, offset + next);
      this.onMessage(message, sealed);
      if (next === 0) return;
      offset += next;
    }
  }

  /** MS-SMB2 §3.2.5.1.1: opens an SMB2 TRANSFORM_HEADER frame. */
  private unseal(frame: Buffer): Buffer {
    if (!this.cipher || !this.decryptionKey || frame.length < 52)
      throw new Error('unexpected encrypted reply');
    if (frame.readUInt16LE(42) !== 0x0001 || frame.readBigUInt64LE(44) !== this.sessionId) {
      throw new Error('encrypted reply for another session');
    }
    const size = frame.readUInt32LE(36);
    if (52 + size !== frame.length) throw new Error('encrypted reply of the wrong size');
    const nonce = frame.subarray(20, 20 + nonceLength(this.cipher));
    const aad = frame.subarray(20, 52);
    try {
      return decryptMessage(
        this.cipher,
        this.decryptionKey,
        nonce,
        aad,
        frame.subarray(52),
        frame.subarray(4, 20),
      );
    } catch {
      throw new Error('an encrypted reply failed authentication');
    }
  }

  private onMessage(message: Buffer, sealed: boolean): void {
    if (message.length < HEADER || !message.subarray(0, 4).equals(PROTOCOL_ID))
      throw new Error('bad SMB2 header');
    const status = message.readUInt32LE(8);
    const command = message.readUInt16LE(12);
    const granted = message.readUInt16LE(14);
    const flags = message.readUInt32LE(16);
    const messageId = message.readBigUInt64LE(24);
    this.credits += granted;
    this.wakeCreditWaiters();
    if (messageId === OPLOCK_BREAK_ID) return; // no oplocks or leases are ever requested
    const pending = this.pending.get(messageId);
    if (!pending) return;
    if (status === Status.PENDING && flags & HeaderFlag.ASYNC_COMMAND) {
      // Interim reply: the final one follows with the same MessageId; the wait starts again.
      pending.timer.refresh();
      return;
    }
    if (pending.sealed && !sealed && status === Status.SUCCESS) {
      throw new Error(`unencrypted reply to encrypted command 0x${command.toString(16)}`);
    }
    if (pending.signed && this.signingKey) {
      if (flags & HeaderFlag.SIGNED) {
        if (!this.verify(message))
          throw new Error(`bad signature on the reply to command 0x${command.toString(16)}`);
      } else if (status === Status.SUCCESS) {
        throw new Error(`unsigned reply to signed command 0x${command.toString(16)}`);
      }
    }
    this.pending.delete(messageId);
    clearTimeout(pending.timer);
    const async = (flags & HeaderFlag.ASYNC_COMMAND) !== 0;
    pending.resolve({
      status,
      command,
      flags,
      sessionId: message.readBigUInt64LE(40),
      treeId: async ? 0 : message.readUInt32LE(36),
      body: message.subarray(HEADER),
      message,
    });
  }

  private verify(message: Buffer): boolean {
    // The signature is computed over the message with its signature field zeroed, in place.
    const signature = Buffer.from(message.subarray(48, 64));
    message.fill(0, 48, 64);
    const ok = timingSafeEqual(signMessage(this.signingAlgorithm, this.signingKey!, message), signature);
    signature.copy(message, 48);
    return ok;
  }

  private fail(error: Error): void {
    if (this.closedWith) return;
    this.closedWith = error;
    for (const [, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
    for (const waiter of this.creditWaiters.splice(0)) waiter.go();
    this.socket.destroy();
    for (const listener of this.closeListeners) listener(error);
  }

  destroy(): void {
    this.fail(new SmbConnectionError('closed', 'The SMB connection was closed by the client.', 'ECONNRESET'));
  }

  /** Logs off and closes the socket; never throws. */
  async close(): Promise<void> {
    if (this.closedWith) return;
    if (this.sessionId !== 0n) {
      // MS-SMB2 §2.2.7 LOGOFF; the answer is not awaited for long.
      const logoff = Buffer.alloc(4);
      logoff.writeUInt16LE(4, 0);
      await Promise.race([
        this.send(Command.LOGOFF, logoff).catch(() => undefined),
        new Promise((r) => setTimeout(r, 1_000).unref()),
      ]);
    }
    this.socket.end();
    this.destroy();
  }

  private wakeCreditWaiters(): void {
    while (this.creditWaiters.length > 0 && this.creditWaiters[0]!.charge <= this.credits) {
      this.creditWaiters.shift()!.go();
    }
  }

  private async takeCredits(charge: number): Promise<void> {
    if (this.creditWaiters.length === 0 && charge <= this.credits) {
      this.credits -= charge;
      return;
    }
    if (this.pending.size === 0) {
      // Nothing in flight can grant more: waiting would hang forever.
      const error = new SmbConnectionError(
        'protocol',
        `The server granted too few credits (${this.credits} of ${charge}).`,
      );
      this.fail(error);
      throw error;
    }
    await new Promise<void>((go) => this.creditWaiters.push({ charge, go }));
    if (this.closedWith) throw this.closedWith;
    this.credits -= charge;
  }

  /** Sends one request and resolves with its final reply, whatever its status. */
  async send(
    command: number,
    body: Buffer | Buffer[],
    options: { payload?: number; sign?: boolean; onRequest?: (message: Buffer) => void } = {},
  ): Promise<SmbResponse> {
    if (this.closedWith) throw this.closedWith;
    // MS-SMB2 §3.2.4.1.5: one credit per 64 KiB of payload with LARGE_MTU; 2.0.2 charges nothing.
    const charge = this.largeMtu ? Math.max(1, Math.ceil((options.payload ?? 0) / ONE_CREDIT)) : 1;
    await this.takeCredits(charge);
    if (this.closedWith) throw this.closedWith;
    const messageId = this.nextMessageId;
    this.nextMessageId += BigInt(charge);
    const seal = this.sealing;
    // MS-SMB2 §3.2.4.1.1: a sealed message is not signed; the AEAD tag authenticates it.
    const sign = !seal && (options.sign ?? true) && this.signingKey !== null;
    const parts = Array.isArray(body) ? body : [body];
    const bodyLength = parts.reduce((n, part) => n + part.length, 0);
    // One buffer for the Direct TCP length prefix, header and body: the payload is copied once.
    const frame = Buffer.allocUnsafe(4 + HEADER + bodyLength);
    frame.fill(0, 0, 4 + HEADER);
    frame.writeUInt32BE(HEADER + bodyLength, 0);
    const message = frame.subarray(4);
    PROTOCOL_ID.copy(message, 0);
    message.writeUInt16LE(HEADER, 4);
    message.writeUInt16LE(this.dialect === Dialect.SMB2_0_2 || this.dialect === 0 ? 0 : charge, 6);
    message.writeUInt16LE(command, 12);
    message.writeUInt16LE(Math.min(charge + 64, 512), 14);
    message.writeUInt32LE(sign ? HeaderFlag.SIGNED : 0, 16);
    message.writeBigUInt64LE(messageId, 24);
    message.writeUInt32LE(
      command === Command.NEGOTIATE || command === Command.SESSION_SETUP ? 0 : this.treeId,
      36,
    );
    message.writeBigUInt64LE(this.sessionId, 40);
    let at = HEADER;
    for (const part of parts) at += part.copy(message, at);
    if (sign) signMessage(this.signingAlgorithm, this.signingKey!, message).copy(message, 48);
    options.onRequest?.(message);
    return new Promise<SmbResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(messageId);
        const error = new SmbConnectionError(
          'timeout',
          `The SMB server did not answer within ${this.options.timeoutMs} ms.`,
          'ETIMEDOUT',
        );
        reject(error);
        // Credits and message ids are now uncertain: the connection cannot be trusted any more.
        this.fail(error);
      }, this.options.timeoutMs);
      this.pending.set(messageId, { resolve, reject, timer, command, signed: sign, sealed: seal });
      this.socket.write(seal ? this.seal(message) : frame);
    });
  }

  /** MS-SMB2 §2.2.41 SMB2 TRANSFORM_HEADER around one message, with a never-repeated nonce. */
  private seal(message: Buffer): Buffer {
    const cipher = this.cipher!;
    const frame = Buffer.alloc(4 + 52 + message.length);
    frame.writeUInt32BE(52 + message.length, 0);
    const header = frame.subarray(4, 56);
    TRANSFORM_ID.copy(header, 0);
    const nonce = header.subarray(20, 20 + nonceLength(cipher));
    this.noncePrefix.copy(nonce, 0, 0, nonce.length - 8);
    nonce.writeBigUInt64LE(this.nonceCounter++, nonce.length - 8);
    header.writeUInt32LE(message.length, 36);
    header.writeUInt16LE(0x0001, 42); // Flags: Encrypted
    header.writeBigUInt64LE(this.sessionId, 44);
    const aad = header.subarray(20, 52);
    const { ciphertext, tag } = encryptMessage(cipher, this.encryptionKey!, nonce, aad, message);
    tag.copy(header, 4);
    ciphertext.copy(frame, 56);
    return frame;
  }

  private async request(
    command: number,
    body: Buffer | Buffer[],
    payload = 0,
    ok: number[] = [Status.SUCCESS],
  ): Promise<SmbResponse> {
    const response = await this.send(command, body, { payload });
    if (!ok.includes(response.status)) throw new SmbStatusError(response.status, command);
    return response;
  }

  // -------------------------------------------------------------------------------------------
  // Connection setup.

  /** MS-SMB2 §2.2.3 NEGOTIATE; returns the preauth hash after it for 3.1.1. */
  private async negotiate(): Promise<Buffer | null> {
    const dialects = this.options.dialects ?? [
      Dialect.SMB2_0_2,
      Dialect.SMB2_1,
      Dialect.SMB3_0,
      Dialect.SMB3_0_2,
      Dialect.SMB3_1_1,
    ];
    const offer311 = dialects.includes(Dialect.SMB3_1_1);
    const fixed = 36;
    const dialectBytes = dialects.length * 2;
    const contextsAt = offer311
      ? Math.ceil((HEADER + fixed + dialectBytes) / 8) * 8 - HEADER
      : fixed + dialectBytes;
    // MS-SMB2 §2.2.3.1.1 SMB2_PREAUTH_INTEGRITY_CAPABILITIES: SHA-512 with a 32-byte salt.
    const preauthContext = Buffer.alloc(8 + 38);
    preauthContext.writeUInt16LE(0x0001, 0);
    preauthContext.writeUInt16LE(38, 2);
    preauthContext.writeUInt16LE(1, 8);
    preauthContext.writeUInt16LE(32, 10);
    preauthContext.writeUInt16LE(0x0001, 12);
    randomBytes(32).copy(preauthContext, 14);
    // MS-SMB2 §2.2.3.1.7 SMB2_SIGNING_CAPABILITIES: AES-GMAC preferred (far cheaper), AES-CMAC as fallback.
    const signingContext = Buffer.alloc(8 + 6);
    signingContext.writeUInt16LE(0x0008, 0);
    signingContext.writeUInt16LE(6, 2);
    signingContext.writeUInt16LE(2, 8);
    signingContext.writeUInt16LE(0x0002, 10);
    signingContext.writeUInt16LE(0x0001, 12);
    // MS-SMB2 §2.2.3.1.2 SMB2_ENCRYPTION_CAPABILITIES: AES-128-GCM, then AES-128-CCM.
    const encryptionContext = Buffer.alloc(8 + 6);
    encryptionContext.writeUInt16LE(0x0002, 0);
    encryptionContext.writeUInt16LE(6, 2);
    encryptionContext.writeUInt16LE(2, 8);
    encryptionContext.writeUInt16LE(0x0002, 10);
    encryptionContext.writeUInt16LE(0x0001, 12);
    const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc(Math.ceil(b.length / 8) * 8 - b.length)]);
    const contexts = Buffer.concat([pad(preauthContext), pad(signingContext), encryptionContext]);
    const body = Buffer.alloc(offer311 ? contextsAt + contexts.length : contextsAt);
    body.writeUInt16LE(36, 0);
    body.writeUInt16LE(dialects.length, 2);
    body.writeUInt16LE(SecurityMode.SIGNING_ENABLED, 4);
    body.writeUInt32LE(GlobalCap.LARGE_MTU | GlobalCap.ENCRYPTION, 8);
    randomBytes(16).copy(body, 12);
    if (offer311) {
      body.writeUInt32LE(HEADER + contextsAt, 28);
      body.writeUInt16LE(3, 32);
      contexts.copy(body, contextsAt);
    }
    for (const [i, d] of dialects.entries()) body.writeUInt16LE(d, fixed + i * 2);
    let requestMessage: Buffer | null = null;
    const response = await this.send(Command.NEGOTIATE, body, { onRequest: (m) => (requestMessage = m) });
    if (response.status !== Status.SUCCESS) throw new SmbStatusError(response.status, Command.NEGOTIATE);
    const r = response.body;
    this.dialect = r.readUInt16LE(4);
    if (!dialects.includes(this.dialect)) {
      throw new SmbConnectionError(
        'protocol',
        `The server chose dialect 0x${this.dialect.toString(16)}, which was not offered.`,
      );
    }
    const capabilities = r.readUInt32LE(24);
    this.largeMtu = this.dialect !== Dialect.SMB2_0_2 && (capabilities & GlobalCap.LARGE_MTU) !== 0;
    const limit = this.largeMtu ? MAX_IO : ONE_CREDIT;
    this.maxTransact = Math.min(r.readUInt32LE(28), limit);
    this.maxRead = Math.min(r.readUInt32LE(32), limit);
    this.maxWrite = Math.min(r.readUInt32LE(36), limit);
    this.signingAlgorithm = this.dialect >= Dialect.SMB3_0 ? 'aes-cmac' : 'hmac-sha256';
    if (this.dialect === Dialect.SMB3_0 || this.dialect === Dialect.SMB3_0_2) {
      if (capabilities & GlobalCap.ENCRYPTION) this.cipher = 'aes-128-ccm';
    }
    if (this.dialect !== Dialect.SMB3_1_1) return null;
    // MS-SMB2 §2.2.4.1: the reply's negotiate contexts, 8-byte aligned from the header start.
    let at = r.readUInt32LE(60) - HEADER;
    for (let i = 0; i < r.readUInt16LE(6) && at + 8 <= r.length; i++) {
      const type = r.readUInt16LE(at);
      const length = r.readUInt16LE(at + 2);
      if (type === 0x0008 && length >= 4 && r.readUInt16LE(at + 8) >= 1) {
        const algorithm = r.readUInt16LE(at + 10);
        if (algorithm === 0x0002) this.signingAlgorithm = 'aes-gmac';
        else if (algorithm === 0x0000) this.signingAlgorithm = 'hmac-sha256';
      }
      if (type === 0x0002 && length >= 4 && r.readUInt16LE(at + 8) >= 1) {
        const cipher = r.readUInt16LE(at + 10);
        if (cipher === 0x0002) this.cipher = 'aes-128-gcm';
        else if (cipher === 0x0001) this.cipher = 'aes-128-ccm';
      }
      at += Math.ceil((8 + length) / 8) * 8;
    }
    return preauthUpdate(preauthUpdate(Buffer.alloc(64), requestMessage!), response.message);
  }

  /** MS-SMB2 §2.2.5 SESSION_SETUP with SPNEGO/NTLMv2 in two round trips. */
  private async sessionSetup(connectionPreauth: Buffer | null): Promise<void> {
    let preauth = connectionPreauth;
    const setupBody = (token: Buffer) => {
      const body = Buffer.alloc(24 + token.length);
      body.writeUInt16LE(25, 0);
      body.writeUInt8(SecurityMode.SIGNING_ENABLED, 3);
      body.writeUInt16LE(HEADER + 24, 12);
      body.writeUInt16LE(token.length, 14);
      token.copy(body, 24);
      return body;
    };
    const hash = (m: Buffer) => {
      if (preauth) preauth = preauthUpdate(preauth, m);
    };
    const first = await this.send(Command.SESSION_SETUP, setupBody(spnegoInit(negotiateMessage())), {
      onRequest: hash,
    });
    if (first.status !== Status.MORE_PROCESSING_REQUIRED)
      throw new SmbStatusError(first.status, Command.SESSION_SETUP);
    hash(first.message);
    this.sessionId = first.sessionId;
    const blob = securityBuffer(first.body);
    const { token } = spnegoResponseToken(blob);
    if (!token) throw new SmbConnectionError('protocol', 'The server did not send an NTLM challenge.');
    const challenge = parseChallenge(token);
    const credentials = {
      user: this.options.username,
      password: this.options.password,
      domain: this.options.domain,
    };
    const responses = ntlmV2Response(challenge, credentials);
    const auth = authenticateMessage(challenge, credentials, responses);
    const second = await this.send(Command.SESSION_SETUP, setupBody(spnegoResponse(auth)), {
      onRequest: hash,
    });
    if (second.status !== Status.SUCCESS) throw new SmbStatusError(second.status, Command.SESSION_SETUP);
    const sessionFlags = second.body.readUInt16LE(2);
    if (sessionFlags & (SessionFlag.IS_GUEST | SessionFlag.IS_NULL)) {
      throw new SmbStatusError(
        Status.LOGON_FAILURE,
        Command.SESSION_SETUP,
        'The server accepted the login only as guest.',
      );
    }
    const sessionKey = responses.sessionKey;
    if (this.dialect === Dialect.SMB3_1_1) {
      // MS-SMB2 §3.2.5.3.1: 3.1.1 keys take the preauth hash as KDF context.
      this.signingKey = smb3Kdf(sessionKey, 'SMBSigningKey\0', preauth!);
      this.encryptionKey = smb3Kdf(sessionKey, 'SMBC2SCipherKey\0', preauth!);
      this.decryptionKey = smb3Kdf(sessionKey, 'SMBS2CCipherKey\0', preauth!);
    } else if (this.dialect >= Dialect.SMB3_0) {
      this.signingKey = smb3Kdf(sessionKey, 'SMB2AESCMAC\0', Buffer.from('SmbSign\0', 'latin1'));
      this.encryptionKey = smb3Kdf(sessionKey, 'SMB2AESCCM\0', Buffer.from('ServerIn \0', 'latin1'));
      this.decryptionKey = smb3Kdf(sessionKey, 'SMB2AESCCM\0', Buffer.from('ServerOut\0', 'latin1'));
    } else {
      this.signingKey = sessionKey;
    }
    if (sessionFlags & SessionFlag.ENCRYPT_DATA) this.requireSealing(Command.SESSION_SETUP);
    // MS-SMB2 §3.2.5.3.1: a signed final SESSION_SETUP reply proves the server knows the key.
    if (second.flags & HeaderFlag.SIGNED && !this.verify(second.message)) {
      throw new SmbConnectionError('protocol', 'The SESSION_SETUP reply has a bad signature.');
    }
  }

  /** MS-SMB2 §2.2.9 TREE_CONNECT to `\\host\share`. */
  private async treeConnect(): Promise<void> {
    const path = Buffer.from(`\\\\${this.options.host}\\${this.options.share}`, 'utf16le');
    const body = Buffer.alloc(8 + path.length);
    body.writeUInt16LE(9, 0);
    body.writeUInt16LE(HEADER + 8, 4);
    body.writeUInt16LE(path.length, 6);
    path.copy(body, 8);
    const response = await this.request(Command.TREE_CONNECT, body);
    this.treeId = response.treeId;
    this.shareFlags = response.body.readUInt32LE(4);
    this.maximalAccess = response.body.readUInt32LE(12);
    if (this.shareFlags & ShareFlag.ENCRYPT_DATA) this.requireSealing(Command.TREE_CONNECT);
  }

  /** The server demands encryption: seal from now on, or fail when no cipher was negotiated. */
  private requireSealing(command: number): void {
    if (!this.cipher || !this.encryptionKey) {
      throw new SmbStatusError(
        Status.ACCESS_DENIED,
        command,
        'The server requires SMB 3 encryption, but no cipher was negotiated (SMB 2.x dialect).',
      );
    }
    this.sealing = true;
  }

  /** The cipher sealing this connection's messages, or null when they are only signed. */
  get encryption(): CipherAlgorithm | null {
    return this.sealing ? this.cipher : null;
  }

  // -------------------------------------------------------------------------------------------
  // File operations. Paths are share-relative with `\` separators and no leading `\`.

  /** MS-SMB2 §2.2.13 CREATE. */
  async create(
    path: string,
    options: {
      access: number;
      disposition: number;
      createOptions?: number;
      attributes?: number;
      shareAccess?: number;
    },
  ): Promise<OpenFile> {
    const name = Buffer.from(path, 'utf16le');
    const body = Buffer.alloc(56 + Math.max(name.length, 8));
    body.writeUInt16LE(57, 0);
    body.writeUInt32LE(2, 4); // ImpersonationLevel: Impersonation
    body.writeUInt32LE(options.access, 24);
    body.writeUInt32LE(options.attributes ?? 0, 28);
    body.writeUInt32LE(options.shareAccess ?? 0x7, 32);
    body.writeUInt32LE(options.disposition, 36);
    body.writeUInt32LE(options.createOptions ?? 0, 40);
    body.writeUInt16LE(HEADER + 56, 44);
    body.writeUInt16LE(name.length, 46);
    name.copy(body, 56);
    const r = (await this.request(Command.CREATE, body)).body;
    return {
      createAction: r.readUInt32LE(4),
      ...readTimes(r, 8),
      size: safeSize(r.readBigUInt64LE(48)),
      attributes: r.readUInt32LE(56),
      fileId: Buffer.from(r.subarray(64, 80)),
    };
  }

  /** MS-SMB2 §2.2.15 CLOSE; with `query`, the reply carries the file's final attributes (§2.2.16). */
  async closeFile(
    fileId: Buffer,
    query = false,
  ): Promise<(FileTimes & { size: number; attributes: number }) | null> {
    const body = Buffer.alloc(24);
    body.writeUInt16LE(24, 0);
    body.writeUInt16LE(query ? 0x0001 : 0, 2); // SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB
    fileId.copy(body, 8);
    const response = await this.request(Command.CLOSE, body, 0, [
      Status.SUCCESS,
      Status.FILE_CLOSED,
      Status.INVALID_HANDLE,
    ]);
    const r = response.body;
    if (!query || response.status !== Status.SUCCESS || r.length < 60 || (r.readUInt16LE(2) & 0x0001) === 0)
      return null;
    return { ...readTimes(r, 8), size: safeSize(r.readBigUInt64LE(48)), attributes: r.readUInt32LE(56) };
  }

  /** MS-SMB2 §2.2.19 READ; an empty buffer at end of file. */
  async read(fileId: Buffer, offset: number, length: number): Promise<Buffer> {
    const body = Buffer.alloc(49);
    body.writeUInt16LE(49, 0);
    body.writeUInt8(0x50, 2);
    body.writeUInt32LE(length, 4);
    body.writeBigUInt64LE(BigInt(offset), 8);
    fileId.copy(body, 16);
    const response = await this.request(Command.READ, body, length, [Status.SUCCESS, Status.END_OF_FILE]);
    if (response.status === Status.END_OF_FILE) return Buffer.alloc(0);
    const dataOffset = response.body.readUInt8(2) - HEADER;
    const dataLength = response.body.readUInt32LE(4);
    if (dataOffset < 0 || dataOffset + dataLength > response.body.length) {
      throw new SmbConnectionError('protocol', 'A READ reply points outside its message.');
    }
    return response.body.subarray(dataOffset, dataOffset + dataLength);
  }

  /** MS-SMB2 §2.2.21 WRITE; returns the byte count written. */
  async write(fileId: Buffer, offset: number, data: Buffer | readonly Buffer[]): Promise<number> {
    // The pieces are copied once, into the frame (no concatenation first).
    const pieces = Buffer.isBuffer(data) ? [data] : data;
    const length = pieces.reduce((n, piece) => n + piece.length, 0);
    const body = Buffer.alloc(48);
    body.writeUInt16LE(49, 0);
    body.writeUInt16LE(HEADER + 48, 2);
    body.writeUInt32LE(length, 4);
    body.writeBigUInt64LE(BigInt(offset), 8);
    fileId.copy(body, 16);
    const response = await this.request(Command.WRITE, [body, ...pieces], length);
    return response.body.readUInt32LE(4);
  }

  /**
   * MS-SMB2 §2.2.33 QUERY_DIRECTORY with FileDirectoryInformation (MS-FSCC §2.4.10); `null` once
   * the enumeration is exhausted.
   */
  async queryDirectory(fileId: Buffer, pattern: string, restart: boolean): Promise<DirectoryEntry[] | null> {
    const name = Buffer.from(pattern, 'utf16le');
    const outputLength = Math.min(this.maxTransact, 256 * 1024);
    const body = Buffer.alloc(32 + name.length);
    body.writeUInt16LE(33, 0);
    body.writeUInt8(FileInfoClass.FileDirectoryInformation, 2);
    body.writeUInt8(restart ? 0x01 : 0, 3);
    fileId.copy(body, 8);
    body.writeUInt16LE(HEADER + 32, 24);
    body.writeUInt16LE(name.length, 26);
    body.writeUInt32LE(outputLength, 28);
    name.copy(body, 32);
    const response = await this.request(Command.QUERY_DIRECTORY, body, outputLength, [
      Status.SUCCESS,
      Status.NO_MORE_FILES,
      Status.NO_SUCH_FILE,
    ]);
    if (response.status !== Status.SUCCESS) return null;
    const start = response.body.readUInt16LE(2) - HEADER;
    const length = response.body.readUInt32LE(4);
    const out = response.body.subarray(start, start + length);
    const entries: DirectoryEntry[] = [];
    for (let p = 0; p + 64 <= out.length; ) {
      const next = out.readUInt32LE(p);
      const nameLength = out.readUInt32LE(p + 60);
      entries.push({
        ...readTimes(out, p + 8),
        size: safeSize(out.readBigUInt64LE(p + 40)),
        attributes: out.readUInt32LE(p + 56),
        name: out.subarray(p + 64, p + 64 + nameLength).toString('utf16le'),
      });
      if (next === 0) break;
      p += next;
    }
    return entries;
  }

  /** MS-SMB2 §2.2.39 SET_INFO for a file information class. */
  async setInfo(fileId: Buffer, infoClass: number, info: Buffer): Promise<void> {
    const body = Buffer.alloc(32 + info.length);
    body.writeUInt16LE(33, 0);
    body.writeUInt8(1, 2); // SMB2_0_INFO_FILE
    body.writeUInt8(infoClass, 3);
    body.writeUInt32LE(info.length, 4);
    body.writeUInt16LE(HEADER + 32, 8);
    fileId.copy(body, 16);
    info.copy(body, 32);
    await this.request(Command.SET_INFO, body, info.length);
  }

  /** MS-FSCC §2.4.37.2 FileRenameInformation for SMB2; `target` is share-relative. */
  async rename(fileId: Buffer, target: string, replace: boolean): Promise<void> {
    const name = Buffer.from(target, 'utf16le');
    const info = Buffer.alloc(Math.max(20 + name.length, 24));
    info.writeUInt8(replace ? 1 : 0, 0);
    info.writeUInt32LE(name.length, 16);
    name.copy(info, 20);
    await this.setInfo(fileId, FileInfoClass.FileRenameInformation, info);
  }

  /** MS-FSCC §2.4.11 FileDispositionInformation. */
  async setDeletePending(fileId: Buffer, pending: boolean): Promise<void> {
    await this.setInfo(fileId, FileInfoClass.FileDispositionInformation, Buffer.from([pending ? 1 : 0]));
  }

  /** MS-SMB2 §2.2.31 IOCTL (FSCTL); returns the output buffer, and on error the status with it. */
  async ioctl(
    fileId: Buffer,
    ctlCode: number,
    input: Buffer,
    maxOutput: number,
  ): Promise<{ status: number; output: Buffer }> {
    const body = Buffer.alloc(56 + Math.max(input.length, 8));
    body.writeUInt16LE(57, 0);
    body.writeUInt32LE(ctlCode, 4);
    fileId.copy(body, 8);
    body.writeUInt32LE(HEADER + 56, 24);
    body.writeUInt32LE(input.length, 28);
    body.writeUInt32LE(maxOutput, 44);
    body.writeUInt32LE(1, 48); // SMB2_0_IOCTL_IS_FSCTL
    input.copy(body, 56);
    const response = await this.send(Command.IOCTL, body, { payload: Math.max(input.length, maxOutput) });
    const r = response.body;
    if (r.length < 48) return { status: response.status, output: Buffer.alloc(0) };
    const outOffset = r.readUInt32LE(32) - HEADER;
    const outCount = r.readUInt32LE(36);
    const output =
      outCount > 0 && outOffset >= 0 ? r.subarray(outOffset, outOffset + outCount) : Buffer.alloc(0);
    return { status: response.status, output };
  }
}

function securityBuffer(body: Buffer): Buffer {
  const offset = body.readUInt16LE(4) - HEADER;
  const length = body.readUInt16LE(6);
  if (offset < 0 || offset + length > body.length)
    throw new SmbConnectionError('protocol', 'Bad security buffer in SESSION_SETUP reply.');
  return body.subarray(offset, offset + length);
}
