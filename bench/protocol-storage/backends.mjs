// The real backends of the protocol-storage benchmark, started with each connector package's own
// test helper (imported by path, never copied), and how the baseline tool reaches the same server:
// rclone configured only through `RCLONE_CONFIG_<REMOTE>_*` variables (rclone docs, "Config file":
// "Environment variables"), so no rclone.conf is read or written.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const connectors = new URL('../../packages/connectors/', import.meta.url);
const helper = (service) => import(new URL(`${service}/test/server.ts`, connectors).href);

const execFileP = promisify(execFile);

/** `rclone obscure`: rclone's config wants passwords in its reversible obscured form. */
async function obscure(password) {
  const { stdout } = await execFileP('rclone', ['obscure', password]);
  return stdout.trim();
}

/** An rclone remote named BENCH given as env vars; `path(name)` is the remote path of a file. */
function remote(options, prefix = '') {
  const env = {};
  for (const [key, value] of Object.entries(options)) env[`RCLONE_CONFIG_BENCH_${key.toUpperCase()}`] = value;
  return { env, path: (name) => `bench:${prefix}${name}` };
}

/**
 * Each entry: `start()` → `{ credentials, baseline, rclone: { env, path }, stop() }`, where
 * `credentials` are the connector's fields for `POST /v1/accounts` and `baseline` names the tool.
 */
export const backends = {
  // Apache httpd mod_dav (packages/connectors/webdav/test/server.ts).
  webdav: async () => {
    const { startApacheDav, DAV_USER, DAV_PASSWORD } = await helper('webdav');
    const dav = await startApacheDav();
    try {
      const rclone = remote({
        type: 'webdav',
        url: dav.url,
        vendor: 'other',
        user: DAV_USER,
        pass: await obscure(DAV_PASSWORD),
      });
      return {
        credentials: dav.credentials(),
        baseline: 'rclone webdav',
        rclone,
        stop: () => dav.teardown(),
      };
    } catch (err) {
      await dav.teardown();
      throw err;
    }
  },

  // pure-ftpd, plain FTP (packages/connectors/ftp/test/server.ts).
  ftp: async () => {
    const { startPureFtpd, FTP_USER, FTP_PASSWORD } = await helper('ftp');
    const ftpd = await startPureFtpd({ tls: false });
    try {
      const rclone = remote({
        type: 'ftp',
        host: '127.0.0.1',
        port: String(ftpd.port),
        user: FTP_USER,
        pass: await obscure(FTP_PASSWORD),
      });
      return { credentials: ftpd.credentials(), baseline: 'rclone ftp', rclone, stop: () => ftpd.teardown() };
    } catch (err) {
      await ftpd.teardown();
      throw err;
    }
  },

  // Samba smbd, default NTLMv2-only auth (packages/connectors/smb/test/server.ts).
  smb: async () => {
    const { startSamba, SMB_USER, SMB_PASSWORD } = await helper('smb');
    const samba = await startSamba();
    try {
      const rclone = remote(
        {
          type: 'smb',
          host: '127.0.0.1',
          port: String(samba.port),
          user: SMB_USER,
          pass: await obscure(SMB_PASSWORD),
        },
        `${samba.share}/`,
      );
      return { credentials: samba.credentials(), baseline: 'rclone smb', rclone, stop: () => samba.stop() };
    } catch (err) {
      await samba.stop();
      throw err;
    }
  },

  // s3rver (packages/connectors/s3/test/server.ts).
  s3: async () => {
    const { startS3rver, S3RVER_KEY, S3RVER_SECRET } = await helper('s3');
    const s3 = await startS3rver({ bucket: 'bench' });
    const rclone = remote(
      {
        type: 's3',
        provider: 'Other',
        endpoint: s3.endpoint,
        region: 'us-east-1',
        access_key_id: S3RVER_KEY,
        secret_access_key: S3RVER_SECRET,
        force_path_style: 'true',
        // The bucket exists (created by the helper); rclone would otherwise try to create it.
        no_check_bucket: 'true',
      },
      `${s3.bucket}/`,
    );
    return {
      credentials: s3.credentials(),
      baseline: 'rclone s3 (provider Other)',
      rclone,
      stop: () => s3.teardown(),
    };
  },

  // Azurite blob service (packages/connectors/azure/test/server.ts).
  azure: async () => {
    const { startAzurite } = await helper('azure');
    const azurite = await startAzurite();
    try {
      await azurite.createContainer('bench');
      // rclone 1.60's account/key mode builds https://<account>.<endpoint> and never reached
      // Azurite's path-style loopback URL (it timed out); a container SAS URL is taken as given.
      const sas = azurite.sas('bench', {
        permissions: 'racwdl',
        expiresOn: new Date(Date.now() + 6 * 3600_000),
      });
      const rclone = remote({ type: 'azureblob', sas_url: `${azurite.endpoint}/bench?${sas}` }, 'bench/');
      return {
        credentials: azurite.credentials('bench'),
        baseline: 'rclone azureblob (container SAS URL)',
        rclone,
        stop: () => azurite.teardown(),
      };
    } catch (err) {
      await azurite.teardown();
      throw err;
    }
  },
};
