/**
 * A small FTP client whose every socket comes from the connector's network guard: the control
 * connection (RFC 959), its AUTH TLS upgrade (RFC 4217), and each passive data connection (EPSV,
 * RFC 2428, with PASV as fallback) — always to the control connection's peer address, never to an
 * address a PASV reply announces (the FTP bounce / SSRF trick).
 */
import { isIP, type Socket } from 'node:net';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TLSSocket } from 'node:tls';
import { CloudmuxError, type NetworkGuard } from '@cloudmux/core';
import {
  connectionClosed,
  connectionError,
  type FtpReply,
  garbageError,
  replyError,
  SERVICE,
  timeoutError,
} from './errors.js';

export interface SessionOptions {
  net: NetworkGuard;
  host: string;
  port: number;
  username: string;
  password: string;
  tls: 'none' | 'explicit';
  rejectUnauthorized: boolean;
  ca?: string | undefined;
  /** Timeout for connecting and for each reply, and idle timeout of data connections, ms. */
  timeoutMs: number;
  /** False skips EPSV and uses PASV only (servers behind NATs that mangle EPSV). Default true. */
  epsv?: boolean;
}

/** A reply line is at most this long; a longer one is garbage (bounds memory on a hostile server). */
const MAX_LINE = 64 * 1024;
const MAX_REPLY_LINES = 10_000;

interface Waiter {
  resolve(reply: FtpReply): void;
  reject(error: CloudmuxError): void;
  timer: NodeJS.Timeout;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      reject(timeoutError(what));
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** `229 Entering Extended Passive Mode (|||6446|)` → 6446 (RFC 2428 §3: the delimiter may be any char). */
export function parseEpsv(message: string): number {
  const match = /\((.)\1\1(\d{1,5})\1\)/.exec(message);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw garbageError(`EPSV reply ${message.slice(0, 80)}`);
  return port;
}

/** `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` → the port; the announced host is deliberately dropped. */
export function parsePasv(message: string): number {
  const match = /(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})/.exec(message);
  const p1 = match ? Number(match[5]) : Number.NaN;
  const p2 = match ? Number(match[6]) : Number.NaN;
  const port = p1 * 256 + p2;
  if (!match || p1 > 255 || p2 > 255 || port < 1) throw garbageError(`PASV reply ${message.slice(0, 80)}`);
  return port;
}

export class FtpSession {
  private socket: Socket | TLSSocket;
  private pendingBytes: Buffer = Buffer.alloc(0);
  private partial: { code: number; lines: string[]; raw: string[] } | null = null;
  private readonly replies: FtpReply[] = [];
  private readonly waiters: Waiter[] = [];
  private failure: CloudmuxError | null = null;
  private tlsSession: Buffer | undefined;
  private secureData = false;
  private epsvRefused = false;
  /** The address the guard connected the control connection to: data connections go there too. */
  readonly peerAddress: string;
  features = new Set<string>();
  /** The fact list after `MLST` in FEAT, when the server has RFC 3659 listings. */
  mlst = false;
  /** Set by the pool: when the session last went idle. */
  idleSince = 0;
  /** Commands sent, for tests and logs. */
  commandCount = 0;

  private readonly onData = (chunk: Buffer) => this.receive(chunk);
  private readonly onError = (err: Error) => this.fail(connectionError(err));
  private readonly onClose = () => this.fail(connectionClosed());

  private constructor(
    socket: Socket,
    private readonly options: SessionOptions,
  ) {
    this.socket = socket;
    this.peerAddress = socket.remoteAddress ?? options.host;
    this.epsvRefused = options.epsv === false;
    this.attach(socket);
  }

  /** Connects, upgrades to TLS when asked, logs in and reads FEAT. */
  static async open(options: SessionOptions): Promise<FtpSession> {
    let raw: Socket;
    try {
      let late = false;
      const connecting = options.net.connect({ host: options.host, port: options.port });
      connecting.then(
        (s) => late && s.destroy(),
        () => {},
      );
      raw = await withTimeout(connecting, options.timeoutMs, 'connect', () => {
        late = true;
      });
    } catch (err) {
      throw connectionError(err);
    }
    const session = new FtpSession(raw, options);
    try {
      await session.handshake();
      return session;
    } catch (err) {
      session.destroy();
      throw err;
    }
  }

  get usable(): boolean {
    return this.failure === null && !this.socket.destroyed;
  }

  get secure(): boolean {
    return this.secureData;
  }

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
  }

  private async handshake(): Promise<void> {
    // RFC 959 §5.4: 120 (ready in n minutes) may precede 220.
    let greeting = await this.readReply('greeting');
    if (greeting.code === 120) greeting = await this.readReply('greeting');
    if (greeting.code !== 220) throw replyError(greeting, 'CONNECT');
    if (this.options.tls === 'explicit') await this.upgradeControl();
    await this.login();
    // RFC 959 §4.1.2 TYPE I: bytes pass unchanged.
    await this.expect('TYPE I', 200);
    // RFC 2389 FEAT
    const feat = await this.command('FEAT');
    if (feat.code === 211) {
      for (const line of feat.lines.slice(1, -1)) {
        const trimmed = line.trim();
        if (!trimmed) continue;
        this.features.add(trimmed.split(' ', 1)[0]!.toUpperCase());
      }
    }
    this.mlst = this.features.has('MLST');
    // RFC 2640 §3.1: paths are UTF-8; some servers want it switched on, others (pure-ftpd) answer 504.
    if (this.features.has('UTF8')) await this.command('OPTS UTF8 ON');
  }

  private async upgradeControl(): Promise<void> {
    // RFC 4217 §4 AUTH TLS
    const auth = await this.command('AUTH TLS');
    if (auth.code !== 234 && auth.code !== 334) {
      throw new CloudmuxError(
        'bad_gateway',
        `The FTP server refused AUTH TLS (${auth.code}); connect with tls "none" or fix the server.`,
        {
          service: SERVICE,
          upstream: { service: SERVICE, code: `FTP ${auth.code}` },
        },
      );
    }
    const raw = this.socket;
    this.detach(raw);
    let secured: TLSSocket;
    try {
      secured = await withTimeout(this.connectTls(raw), this.options.timeoutMs, 'TLS handshake', () =>
        raw.destroy(),
      );
    } catch (err) {
      raw.destroy();
      throw connectionError(err);
    }
    secured.on('session', (session: Buffer) => {
      this.tlsSession = session;
    });
    this.socket = secured;
    this.attach(secured);
    // RFC 4217 §9 PBSZ 0 then PROT P: data connections are encrypted too.
    await this.expect('PBSZ 0', 200);
    await this.expect('PROT P', 200);
    this.secureData = true;
  }

  private connectTls(socket: Socket, session?: Buffer): Promise<TLSSocket> {
    const host = this.options.host;
    return this.options.net.connectTls({
      socket,
      host,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      rejectUnauthorized: this.options.rejectUnauthorized,
      ...(this.options.ca ? { ca: this.options.ca } : {}),
      ...(session ? { session } : {}),
    });
  }

  private async login(): Promise<void> {
    // RFC 959 §4.1.1 USER / PASS
    const user = await this.command(`USER ${this.options.username}`);
    if (user.code === 230) return;
    if (user.code !== 331 && user.code !== 332) throw loginError(user);
    const pass = await this.command(`PASS ${this.options.password}`, 'PASS');
    if (pass.code === 230 || pass.code === 202) return;
    throw loginError(pass);
  }

  private receive(chunk: Buffer): void {
    let data = this.pendingBytes.length ? Buffer.concat([this.pendingBytes, chunk]) : chunk;
    for (;;) {
      const nl = data.indexOf(0x0a);
      if (nl < 0) break;
      const line = data.subarray(0, nl).toString('utf8').replace(/\r$/, '');
      data = data.subarray(nl + 1);
      this.line(line);
      if (this.failure) return;
    }
    if (data.length > MAX_LINE) {
      this.fail(garbageError('reply line too long'));
      return;
    }
    this.pendingBytes = Buffer.from(data);
  }

  /** RFC 959 §4.2: `ddd-` opens a multi-line reply, `ddd ` with the same code closes it. */
  private line(line: string): void {
    if (this.partial) {
      const { code } = this.partial;
      this.partial.raw.push(line);
      if (line.length >= 3 && line.startsWith(String(code)) && (line.length === 3 || line[3] === ' ')) {
        this.partial.lines.push(line.slice(4));
        const done = this.partial;
        this.partial = null;
        this.deliver({ code, message: done.raw.join('\n'), lines: done.lines });
      } else {
        this.partial.lines.push(line);
        if (this.partial.lines.length > MAX_REPLY_LINES) this.fail(garbageError('reply too long'));
      }
      return;
    }
    const match = /^([1-5]\d\d)([ -]?)(.*)$/.exec(line);
    if (!match) {
      this.fail(garbageError(line.slice(0, 80)));
      return;
    }
    const code = Number(match[1]);
    if (match[2] === '-') {
      this.partial = { code, lines: [match[3]!], raw: [line] };
      return;
    }
    this.deliver({ code, message: line, lines: [match[3]!] });
  }

  private deliver(reply: FtpReply): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(reply);
    } else {
      this.replies.push(reply);
    }
  }

  private fail(error: CloudmuxError): void {
    if (this.failure) return;
    this.failure = error;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.socket.destroy();
  }

  /** The next reply; rejects when the connection fails or nothing arrives within the timeout. */
  readReply(what = 'reply', timeoutMs = this.options.timeoutMs): Promise<FtpReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<FtpReply>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const index = this.waiters.indexOf(waiter);
          if (index >= 0) this.waiters.splice(index, 1);
          const error = timeoutError(what);
          this.fail(error);
          reject(error);
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Writes one command line; CR, LF and NUL can never reach the wire (no command injection). */
  send(line: string): void {
    if (/[\r\n\0]/.test(line))
      throw new CloudmuxError('invalid_parameters', 'FTP commands cannot contain line breaks.');
    if (this.failure) throw this.failure;
    this.commandCount += 1;
    this.socket.write(`${line}\r\n`, 'utf8');
  }

  /** Sends a command and returns its reply, whatever the code. `label` replaces the line in timeouts. */
  async command(line: string, label?: string): Promise<FtpReply> {
    this.send(line);
    return this.readReply(label ?? line.split(' ', 1)[0]);
  }

  /** Sends a command and requires one of `codes`, else throws the mapped error. */
  async expect(line: string, ...codes: number[]): Promise<FtpReply> {
    const reply = await this.command(line);
    if (!codes.includes(reply.code)) throw replyError(reply, line);
    return reply;
  }

  /** EPSV first, PASV when the server refuses it; connects to the control peer either way. */
  private async openData(): Promise<Socket> {
    let port: number | undefined;
    if (!this.epsvRefused) {
      // RFC 2428 §3 EPSV
      const reply = await this.command('EPSV');
      if (reply.code === 229) port = parseEpsv(reply.message);
      else if (reply.code >= 500) this.epsvRefused = true;
      else throw replyError(reply, 'EPSV');
    }
    if (port === undefined) {
      // RFC 959 §4.1.2 PASV
      const reply = await this.expect('PASV', 227);
      port = parsePasv(reply.message);
    }
    let late = false;
    const connecting = this.options.net.connect({ host: this.peerAddress, port });
    connecting.then(
      (s) => late && s.destroy(),
      () => {},
    );
    try {
      return await withTimeout(connecting, this.options.timeoutMs, 'data connection', () => {
        late = true;
      });
    } catch (err) {
      throw connectionError(err);
    }
  }

  /**
   * Opens a data connection and sends `command` (RETR, STOR, MLSD, LIST). Resolves with the data
   * socket once the server sent its 125/150; a negative reply rejects with the mapped error.
   */
  async transfer(command: string): Promise<Socket> {
    const raw = await this.openData();
    raw.on('error', () => {});
    // Some servers start the data TLS handshake only after the transfer command: run both at once.
    let tlsError: unknown;
    const tls = this.secureData
      ? withTimeout(this.connectTls(raw, this.tlsSession), this.options.timeoutMs, 'data TLS handshake', () =>
          raw.destroy(),
        )
      : null;
    tls?.catch((err: unknown) => {
      tlsError = err;
    });
    let reply: FtpReply;
    try {
      this.send(command);
      reply = await this.readReply(command.split(' ', 1)[0]);
    } catch (err) {
      raw.destroy();
      throw err;
    }
    if (reply.code !== 150 && reply.code !== 125) {
      raw.destroy();
      throw replyError(reply, command);
    }
    if (!tls) return raw;
    try {
      const secured = await tls;
      secured.on('session', (session: Buffer) => {
        this.tlsSession = session;
      });
      return secured;
    } catch {
      raw.destroy();
      const error = connectionError(tlsError);
      this.fail(error);
      throw error;
    }
  }

  /** Reads a whole data transfer (listings only; bounded) and its completion reply. */
  async readListing(command: string, limit = 64 * 1024 * 1024): Promise<string> {
    const socket = await this.transfer(command);
    const chunks: Buffer[] = [];
    let total = 0;
    await new Promise<void>((resolve, reject) => {
      socket.setTimeout(this.options.timeoutMs, () => socket.destroy(timeoutError('listing')));
      socket.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > limit) socket.destroy(garbageError('listing too large'));
        else chunks.push(chunk);
      });
      socket.once('end', () => resolve());
      socket.once('error', (err) => reject(connectionError(err)));
      socket.once('close', () => resolve());
      if (socket.readableEnded) resolve();
    }).catch((err: unknown) => {
      this.fail(connectionError(err));
      throw err;
    });
    socket.destroy();
    await this.completion(command);
    return Buffer.concat(chunks).toString('utf8');
  }

  /** The final reply of a transfer: 226/250, else the mapped error. */
  async completion(command: string): Promise<FtpReply> {
    const reply = await this.readReply(`${command.split(' ', 1)[0]} completion`);
    if (reply.code !== 226 && reply.code !== 250) throw replyError(reply, command);
    return reply;
  }

  /**
   * A Readable over a RETR data connection that stops after `limit` bytes (Range end): it closes
   * the data connection and reads the server's one reply to the cut-short RETR (426 or 226), so the
   * session stays usable. `done(reusable)` runs exactly once when the session is free again.
   */
  retrieveStream(
    socket: Socket,
    command: string,
    limit: number | null,
    done: (reusable: boolean) => void,
  ): Readable {
    let received = 0;
    let state: 'streaming' | 'draining' | 'finished' = 'streaming';
    const finish = (reusable: boolean) => {
      if (state === 'finished') return;
      state = 'finished';
      socket.off('data', onData);
      if (!reusable) this.fail(connectionClosed('data'));
      done(reusable && this.usable);
    };
    // RFC 959 §4.1.3: a RETR whose data connection the client closed is answered 426 (or 226 when
    // the server had already sent everything): exactly one reply, after which the session is reusable.
    const drain = () => {
      if (state !== 'streaming') return;
      state = 'draining';
      socket.destroy();
      this.readReply('RETR after close', Math.min(this.options.timeoutMs, 10_000)).then(
        () => finish(true),
        () => finish(false),
      );
    };
    const out = new Readable({
      highWaterMark: 64 * 1024,
      read() {
        socket.resume();
      },
      destroy: (err, callback) => {
        // The consumer went away early (or the stream ended): cut the data connection if still open.
        drain();
        callback(err);
      },
    });
    const onData = (chunk: Buffer) => {
      if (state !== 'streaming') return;
      if (limit !== null && received + chunk.length >= limit) {
        const rest = chunk.subarray(0, limit - received);
        received = limit;
        if (rest.length) out.push(rest);
        out.push(null);
        drain();
        return;
      }
      received += chunk.length;
      if (!out.push(chunk)) socket.pause();
    };
    socket.setTimeout(this.options.timeoutMs, () => socket.destroy(timeoutError('download')));
    socket.on('data', onData);
    socket.once('error', (err) => {
      if (state !== 'streaming') return;
      finish(false);
      out.destroy(connectionError(err));
    });
    const onEnd = () => {
      if (state !== 'streaming') return;
      state = 'draining';
      this.completion(command).then(
        () => {
          finish(true);
          if (limit !== null && received < limit) {
            out.destroy(
              new CloudmuxError(
                'bad_gateway',
                `The FTP download ended after ${received} of ${limit} bytes.`,
                { service: SERVICE },
              ),
            );
            return;
          }
          out.push(null);
        },
        (err: unknown) => {
          finish(this.usable);
          out.destroy(err as Error);
        },
      );
    };
    socket.once('end', onEnd);
    // An empty file's data connection can end before anyone listened (net reads eagerly).
    if (socket.readableEnded) onEnd();
    if (limit === 0) {
      out.push(null);
      drain();
    }
    return out;
  }

  /** Pipes `body` into a STOR data connection and waits for the completion reply; returns the byte count. */
  async store(command: string, body: Readable, signal?: AbortSignal): Promise<number> {
    const socket = await this.transfer(command);
    let bytes = 0;
    let socketError: unknown;
    let bodyError: unknown;
    socket.once('error', (err) => {
      socketError = err;
    });
    body.once('error', (err) => {
      bodyError = err;
    });
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        callback(null, chunk);
      },
    });
    socket.setTimeout(this.options.timeoutMs, () => socket.destroy(timeoutError('upload')));
    try {
      await pipeline(body, counter, socket, signal ? { signal } : {});
    } catch (err) {
      socket.destroy();
      // Whatever the server answers to the broken STOR, this session's state is unknown now.
      const error = signal?.aborted
        ? new CloudmuxError('timed_out', 'The upload was aborted.', { service: SERVICE, cause: err })
        : bodyError !== undefined && socketError === undefined
          ? bodyError instanceof CloudmuxError
            ? bodyError
            : new CloudmuxError('bad_request', 'The upload body could not be read.', {
                service: SERVICE,
                cause: bodyError,
              })
          : connectionError(socketError ?? err);
      this.fail(connectionClosed('data'));
      throw error;
    }
    try {
      await this.completion(command);
    } finally {
      socket.destroy();
    }
    return bytes;
  }

  /** Polite close (QUIT) with a short wait, then the socket is destroyed. */
  async close(): Promise<void> {
    if (this.usable) {
      try {
        // RFC 959 §4.1.1 QUIT
        this.send('QUIT');
        await this.readReply('QUIT', Math.min(this.options.timeoutMs, 2_000));
      } catch {
        // closing anyway
      }
    }
    this.destroy();
  }

  destroy(): void {
    if (!this.failure) this.failure = connectionClosed();
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(this.failure);
    }
    this.socket.destroy();
  }
}

function loginError(reply: FtpReply): CloudmuxError {
  if (reply.code === 421) return replyError(reply, 'USER');
  if (reply.code >= 500 || reply.code === 430 || reply.code === 332) {
    return new CloudmuxError('service_unauthorized', 'The FTP server rejected the username or password.', {
      service: SERVICE,
      upstream: { service: SERVICE, code: `FTP ${reply.code}` },
    });
  }
  return replyError(reply, 'USER');
}
