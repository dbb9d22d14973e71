/**
 * A private Samba `smbd` on a free loopback port: its own smb.conf, lock/state/cache/private dirs
 * and tdbsam passdb in a temp dir, Samba's default authentication (NTLMv2 only, SMB2/3), and a user
 * added with `smbpasswd -a` to that private passdb. File access runs as `www-data` (`force user`),
 * so Unix permissions apply even though the Samba user is root (see test-servers.md, SMB).
 */
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
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

export const SMB_USER = 'root';
export const SMB_PASSWORD = 'Pa ss;w"ord\u00e9';

export interface SambaServer {
  host: string;
  port: number;
  /** The writable share and its directory on disk. */
  share: string;
  sharePath: string;
  /** The writable share's directory again, as a share that requires SMB 3 encryption. */
  secretShare: string;
  /** A read-only share and its directory on disk. */
  readonlyShare: string;
  readonlyPath: string;
  dir: TempDir;
  server: StartedServer;
  credentials(overrides?: Record<string, unknown>): Record<string, unknown>;
  /** SIGKILLs smbd and every child serving a connection. */
  kill(): Promise<void>;
  /** Starts smbd again on the same port and directories. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Why the SMB tests cannot run here, or null when smbd and smbpasswd are installed. */
export async function sambaMissing(): Promise<string | null> {
  const ok = (await hasCommand('smbd')) && (await hasCommand('smbpasswd'));
  return ok ? null : 'install samba (tooling/debian-packages.txt)';
}

// Not `nobody`: Samba treats the guest account specially and denies it writes.
const FILE_OWNER_NAME = 'www-data';

async function fileOwner(): Promise<{ name: string; uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', FILE_OWNER_NAME])).stdout.trim());
  const gid = Number((await run('id', ['-g', FILE_OWNER_NAME])).stdout.trim());
  return { name: FILE_OWNER_NAME, uid, gid };
}

/**
 * The per-connection smbd children get the group's SIGTERM with the parent but may outlive it by a
 * moment; wait until the whole process group is gone (SIGKILL after 5 s).
 */
async function waitForGroupExit(group: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(-group, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && alive(); i++) {
    if (i === 50) process.kill(-group, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startSamba(): Promise<SambaServer> {
  const FILE_OWNER = await fileOwner();
  const dir = await makeTempDir('cloudmux-smb-');
  const d = dir.path;
  // smbd serves files as www-data: it must be able to traverse the temp dir.
  await chmod(d, 0o711);
  for (const sub of ['share', 'ro', 'private', 'log']) await mkdir(join(d, sub));
  await chown(join(d, 'share'), FILE_OWNER.uid, FILE_OWNER.gid);
  await writeFile(join(d, 'ro', 'readme.txt'), 'read only\n');
  const port = await freePort();
  const conf = join(d, 'smb.conf');
  await writeFile(
    conf,
    [
      '[global]',
      '  server role = standalone server',
      `  smb ports = ${port}`,
      '  interfaces = 127.0.0.1',
      '  bind interfaces only = yes',
      '  disable netbios = yes',
      `  lock directory = ${d}/lock`,
      `  state directory = ${d}/state`,
      `  cache directory = ${d}/cache`,
      `  pid directory = ${d}/pid`,
      `  private dir = ${d}/private`,
      `  ncalrpc dir = ${d}/ncalrpc`,
      `  log file = ${d}/log/log.%m`,
      '  log level = 1',
      `  passdb backend = tdbsam:${d}/private/passdb.tdb`,
      '  map to guest = never',
      '  load printers = no',
      '  printing = bsd',
      '  printcap name = /dev/null',
      '  disable spoolss = yes',
      '[share]',
      `  path = ${d}/share`,
      '  read only = no',
      `  force user = ${FILE_OWNER.name}`,
      `  force group = ${FILE_OWNER.name}`,
      // Same directory, but every message must be sealed (SMB 3 encryption).
      '[secret]',
      `  path = ${d}/share`,
      '  read only = no',
      `  force user = ${FILE_OWNER.name}`,
      `  force group = ${FILE_OWNER.name}`,
      '  server smb encrypt = required',
      '[readonly]',
      `  path = ${d}/ro`,
      '  read only = yes',
      `  force user = ${FILE_OWNER.name}`,
      `  force group = ${FILE_OWNER.name}`,
      '',
    ].join('\n'),
  );
  await run('smbpasswd', ['-c', conf, '-s', '-a', SMB_USER], { input: `${SMB_PASSWORD}\n${SMB_PASSWORD}\n` });

  // `--no-process-group` with testkit's detached spawn: smbd and its per-connection children share
  // one process group, so stop/kill reach all of them (test-servers.md, "process group").
  const start = () =>
    startServer({
      name: 'smbd',
      command: 'smbd',
      args: ['-F', '--no-process-group', '--debug-stdout', '-s', conf],
      ready: { tcp: { host: '127.0.0.1', port } },
      env: { ...process.env, LC_ALL: 'C' },
    });
  let server = await start();

  const stopDcerpcd = async () => {
    // RPC use would start samba-dcerpcd outside smbd's group; plain file I/O does not, but be sure.
    const pid = await readFile(join(d, 'pid', 'samba-dcerpcd.pid'), 'utf8').catch(() => null);
    if (pid && /^\d+$/.test(pid.trim())) {
      try {
        process.kill(Number(pid.trim()), 'SIGTERM');
      } catch {
        // already gone
      }
    }
  };

  const samba: SambaServer = {
    host: '127.0.0.1',
    port,
    share: 'share',
    sharePath: join(d, 'share'),
    secretShare: 'secret',
    readonlyShare: 'readonly',
    readonlyPath: join(d, 'ro'),
    dir,
    get server() {
      return server;
    },
    credentials: (overrides = {}) => ({
      host: '127.0.0.1',
      port,
      share: 'share',
      username: SMB_USER,
      password: SMB_PASSWORD,
      ...overrides,
    }),
    kill: () => server.kill(),
    restart: async () => {
      await server.stop();
      server = await start();
    },
    stop: async () => {
      const group = server.pid;
      await server.stop();
      await stopDcerpcd();
      await waitForGroupExit(group);
      await dir.remove();
    },
  };
  return samba;
}
