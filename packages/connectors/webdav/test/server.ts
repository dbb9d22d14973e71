/**
 * A private Apache httpd with mod_dav on a free loopback port: its own config file, lock database,
 * htpasswd file and data directory in a temp dir, running as www-data (httpd refuses root), with
 * basic auth and `LimitRequestBody 0`. `/readonly` refuses every write method (a `<Limit>` deny).
 * With `tls`, the same server listens with mod_ssl and a self-signed certificate made by openssl.
 * Facts: shared/reference/test-servers.md.
 */
import { chmod, chown, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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

export const DAV_USER = 'cloudmux';
export const DAV_PASSWORD = 'pw-Secret-1';
export const READONLY_DIR = 'readonly';
const MODULES = '/usr/lib/apache2/modules';

/** Null when Apache mod_dav can run here, else the reason to skip (or to fail under CI). */
export async function apacheMissing(): Promise<string | null> {
  if (!(await hasCommand('apache2'))) return 'install apache2 (tooling/debian-packages.txt)';
  if (!(await hasCommand('htpasswd'))) return 'install apache2-utils (tooling/debian-packages.txt)';
  if (!(await hasCommand('openssl'))) return 'install openssl';
  // httpd binds as root and switches to www-data for its workers.
  if (process.getuid?.() !== 0) return 'Apache as a private server here needs root (User www-data)';
  return null;
}

async function wwwData(): Promise<{ uid: number; gid: number }> {
  const { stdout: uid } = await run('id', ['-u', 'www-data']);
  const { stdout: gid } = await run('id', ['-g', 'www-data']);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

export interface ApacheDav {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** The served directory on disk (the WebDAV root `/`). */
  readonly dataDir: string;
  /** PEM of the self-signed certificate (TLS servers only). */
  readonly certPem: string | null;
  readonly server: StartedServer;
  credentials(extra?: Record<string, unknown>): Record<string, unknown>;
  /** SIGKILL to the whole process group (parent and workers). */
  kill(): Promise<void>;
  /**
   * Starts it again on the same port with the same files. After a kill it first removes Berkeley
   * DB's `__db.*` files next to the DAV lock database: Debian's apr-util keeps the lock DB in BDB,
   * and a region file left by a killed worker makes every later write wait on it (seen here: PUT
   * hung polling `__db.DAVLock` once a second). That is the cleanup an unclean httpd stop needs.
   */
  restart(): Promise<void>;
  teardown(): Promise<void>;
}

export interface ApacheDavOptions {
  tls?: boolean;
}

function config(dir: string, dataDir: string, port: number, tls: boolean): string {
  const lines = [
    `ServerRoot ${dir}`,
    'ServerName 127.0.0.1',
    `PidFile ${dir}/httpd.pid`,
    `Listen 127.0.0.1:${port}`,
    ...[
      'mpm_event',
      'authn_core',
      'authn_file',
      'authz_core',
      'authz_user',
      'auth_basic',
      'dav',
      'dav_fs',
      'mime',
      'dir',
      ...(tls ? ['ssl', 'socache_shmcb'] : []),
    ].map((m) => `LoadModule ${m}_module ${MODULES}/mod_${m}.so`),
    'User www-data',
    'Group www-data',
    `ErrorLog ${dir}/error.log`,
    'LogLevel warn',
    'TypesConfig /etc/mime.types',
    `DAVLockDB ${dir}/lock/DAVLock`,
    'LimitRequestBody 0',
    // Enough workers for the suite and a few parallel transfers.
    'StartServers 1',
    'ServerLimit 4',
    'ThreadsPerChild 16',
    'MaxRequestWorkers 64',
    `DocumentRoot ${dataDir}`,
    `<Directory ${dataDir}>`,
    '  Dav On',
    '  AuthType Basic',
    '  AuthName "cloudmux"',
    `  AuthUserFile ${dir}/htpasswd`,
    '  Require valid-user',
    '  Options None',
    '  AllowOverride None',
    '</Directory>',
    `<Directory ${dataDir}/${READONLY_DIR}>`,
    '  <Limit PUT POST DELETE MKCOL MOVE COPY PROPPATCH LOCK UNLOCK>',
    '    Require all denied',
    '  </Limit>',
    '</Directory>',
  ];
  if (tls) {
    lines.push(
      `SSLSessionCache shmcb:${dir}/ssl_scache(512000)`,
      'SSLEngine on',
      `SSLCertificateFile ${dir}/cert.pem`,
      `SSLCertificateKeyFile ${dir}/key.pem`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export async function startApacheDav(options: ApacheDavOptions = {}): Promise<ApacheDav> {
  const tls = options.tls ?? false;
  const tmp: TempDir = await makeTempDir('cloudmux-webdav-');
  const dir = tmp.path;
  const dataDir = join(dir, 'data');
  const owner = await wwwData();
  // www-data must reach the data dir through the temp dir (mkdtemp makes it 700).
  await chmod(dir, 0o755);
  for (const sub of [dataDir, join(dataDir, READONLY_DIR), join(dir, 'lock')]) {
    await mkdir(sub, { recursive: true });
    await chown(sub, owner.uid, owner.gid);
  }
  await writeFile(join(dataDir, READONLY_DIR, 'fixed.txt'), 'read only\n');
  await chown(join(dataDir, READONLY_DIR, 'fixed.txt'), owner.uid, owner.gid);
  await run('htpasswd', ['-cb', join(dir, 'htpasswd'), DAV_USER, DAV_PASSWORD]);
  let certPem: string | null = null;
  if (tls) {
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    certPem = await readFile(join(dir, 'cert.pem'), 'utf8');
  }
  const port = await freePort();
  const confPath = join(dir, 'httpd.conf');
  await writeFile(confPath, config(dir, dataDir, port, tls));
  const start = () =>
    startServer({
      name: `apache2 mod_dav${tls ? ' (TLS)' : ''}`,
      command: 'apache2',
      args: ['-f', confPath, '-DFOREGROUND'],
      env: { ...process.env, APACHE_RUN_DIR: dir, APACHE_LOCK_DIR: join(dir, 'lock'), APACHE_LOG_DIR: dir },
      ready: { tcp: { port } },
    });
  let server = await start();
  let unclean = false;
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}/`;
  const handle: ApacheDav = {
    port,
    url,
    dir,
    dataDir,
    certPem,
    get server() {
      return server;
    },
    credentials: (extra = {}) => ({
      url,
      username: DAV_USER,
      password: DAV_PASSWORD,
      ...(certPem ? { ca: certPem } : {}),
      ...extra,
    }),
    kill: async () => {
      unclean = true;
      await server.kill();
    },
    restart: async () => {
      await server.stop();
      if (unclean) {
        const lockDir = join(dir, 'lock');
        for (const name of await readdir(lockDir)) {
          if (name.startsWith('__db.')) await rm(join(lockDir, name), { force: true });
        }
        unclean = false;
      }
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

/** Error log of the server (for failing assertions). */
export async function apacheErrorLog(dav: ApacheDav): Promise<string> {
  return readFile(join(dav.dir, 'error.log'), 'utf8').catch(() => '');
}
