/**
 * A private pure-ftpd on a free loopback port: one virtual user (PureDB files in a temp dir, mapped
 * to uid/gid 65534 and chrooted to its data dir), passive ports in a free loopback range, and for
 * TLS a self-signed certificate made with `openssl req`. Facts: shared/reference/test-servers.md.
 */
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import {
  freePort,
  hasCommand,
  makeTempDir,
  run,
  type StartedServer,
  startServer,
  type TempDir,
} from '@cloudmux/testkit';

export const FTP_USER = 'cloudmux';
export const FTP_PASSWORD = 'pw-Secret-1';
const NOBODY = 65534;

/** Null when pure-ftpd can run here, else the reason to skip (or to fail under CI). */
export async function pureFtpdMissing(): Promise<string | null> {
  for (const command of ['pure-ftpd', 'pure-pw']) {
    if (!(await hasCommand(command))) return 'install pure-ftpd (tooling/debian-packages.txt)';
  }
  if (!(await hasCommand('openssl'))) return 'install openssl';
  // Virtual users are chrooted and switched to uid 65534, which needs root.
  if (process.getuid?.() !== 0) return 'pure-ftpd virtual users need root (chroot + setuid)';
  return null;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A run of `count` ports that are free on 127.0.0.1 right now (passive data ports). */
async function freeRange(count: number): Promise<[number, number]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await portFree(p);
    if (ok) return [base, base + count - 1];
  }
  throw new Error('no free passive port range on 127.0.0.1');
}

export interface PureFtpd {
  readonly port: number;
  readonly dir: string;
  /** The user's root on disk (the client sees it as `/`). */
  readonly dataDir: string;
  /** PEM of the self-signed certificate (TLS servers only). */
  readonly certPem: string | null;
  readonly server: StartedServer;
  credentials(extra?: Record<string, unknown>): Record<string, unknown>;
  /** SIGKILL to the whole process group (master and session processes). */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same users and files. */
  restart(): Promise<void>;
  teardown(): Promise<void>;
}

export interface PureFtpdOptions {
  tls: boolean;
  /** `-P`: the address PASV replies announce (to prove the client ignores it). */
  announce?: string;
}

export async function startPureFtpd(options: PureFtpdOptions): Promise<PureFtpd> {
  const tmp: TempDir = await makeTempDir('cloudmux-ftp-');
  const dir = tmp.path;
  const dataDir = join(dir, 'data');
  await mkdir(dataDir);
  await chown(dataDir, NOBODY, NOBODY);
  // A SHA-512 crypt line logs in at once; `pure-pw useradd` hashes with slow argon2id (test-servers.md).
  const { stdout: hash } = await run('openssl', ['passwd', '-6', FTP_PASSWORD]);
  const passwd = join(dir, 'pureftpd.passwd');
  const pdb = join(dir, 'pureftpd.pdb');
  await writeFile(passwd, `${FTP_USER}:${hash.trim()}:${NOBODY}:${NOBODY}::${dataDir}/./::::::::::::\n`, {
    mode: 0o600,
  });
  await run('pure-pw', ['mkdb', pdb, '-f', passwd]);
  let certPem: string | null = null;
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  if (options.tls) {
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    certPem = await readFile(cert, 'utf8');
  }
  const port = await freePort();
  const [low, high] = await freeRange(24);
  const args = [
    '-S',
    `127.0.0.1,${port}`,
    '-l',
    `puredb:${pdb}`,
    '-E', // no anonymous logins
    '-H', // no DNS lookups
    '-c',
    '50', // max clients (the default of 5 is below two pools of 4)
    '-C',
    '50', // max clients per IP
    '-p',
    `${low}:${high}`,
    // -Y 3: TLS required on control and data connections; -Y 0: plain only.
    ...(options.tls ? ['-Y', '3', '-2', `${cert},${key}`] : ['-Y', '0']),
    ...(options.announce ? ['-P', options.announce] : []),
  ];
  const start = () =>
    startServer({
      name: `pure-ftpd${options.tls ? ' (TLS)' : ''}`,
      command: 'pure-ftpd',
      args,
      ready: { tcp: { port } },
    });
  let server = await start();
  const handle: PureFtpd = {
    port,
    dir,
    dataDir,
    certPem,
    get server() {
      return server;
    },
    credentials: (extra = {}) => ({
      host: '127.0.0.1',
      port,
      username: FTP_USER,
      password: FTP_PASSWORD,
      tls: options.tls ? 'explicit' : 'none',
      ...(certPem ? { ca: certPem } : {}),
      ...extra,
    }),
    kill: () => server.kill(),
    restart: async () => {
      await server.stop();
      server = await start();
    },
    teardown: async () => {
      try {
        await server.stop();
      } finally {
        await tmp.remove();
      }
    },
  };
  return handle;
}
