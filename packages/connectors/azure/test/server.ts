/**
 * Azurite's blob service (npm `azurite`, a dev dependency) on a free loopback port, its data in a
 * temp folder so a killed server restarts with what was committed. `@azure/storage-blob` is the
 * independent client that creates containers, mints SAS tokens and checks what the connector wrote.
 * Facts: shared/reference/test-servers.md (Azure Blob).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  BlobServiceClient,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { freePort, makeTempDir, type StartedServer, startServer, type TempDir } from '@cloudmux/testkit';

/** Azurite's well-known development account. */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const require = createRequire(import.meta.url);

function azuriteMain(): string | null {
  try {
    return join(dirname(require.resolve('azurite/package.json')), 'dist/src/blob/main.js');
  } catch {
    return null;
  }
}

/** Null when Azurite can run, else the reason to skip (or to fail under CI). */
export function azuriteMissing(): string | null {
  return azuriteMain() ? null : 'install azurite (npm dev dependency of this package: pnpm install)';
}

export interface Azurite {
  readonly port: number;
  /** Path-style endpoint with the account, as the connector's `endpoint` field takes it. */
  readonly endpoint: string;
  readonly server: StartedServer;
  readonly service: BlobServiceClient;
  createContainer(name: string): Promise<void>;
  credentials(container: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** A container SAS (query string) signed with the dev key. */
  sas(container: string, options: { permissions: string; expiresOn: Date; startsOn?: Date }): string;
  kill(): Promise<void>;
  /** Starts it again on the same port and data folder. */
  restart(): Promise<void>;
  teardown(): Promise<void>;
}

export async function startAzurite(): Promise<Azurite> {
  const main = azuriteMain();
  if (!main) throw new Error('azurite is not installed');
  const tmp: TempDir = await makeTempDir('cloudmux-azurite-');
  const port = await freePort();
  const start = () =>
    startServer({
      name: 'azurite-blob',
      command: process.execPath,
      args: [
        main,
        '--blobHost',
        '127.0.0.1',
        '--blobPort',
        String(port),
        '--location',
        tmp.path,
        '--silent',
        // The SDK asks for API versions newer than Azurite knows; the connector's 2021-08-06 is fine.
        '--skipApiVersionCheck',
        '--disableTelemetry',
        '--loose',
      ],
      ready: { log: /successfully listens on/ },
    });
  let server = await start();
  const endpoint = `http://127.0.0.1:${port}/${DEV_ACCOUNT}`;
  const key = new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY);
  const service = new BlobServiceClient(endpoint, key);
  return {
    port,
    endpoint,
    get server() {
      return server;
    },
    service,
    createContainer: async (name) => {
      await service.getContainerClient(name).createIfNotExists();
    },
    credentials: (container, extra = {}) => ({
      account_name: DEV_ACCOUNT,
      account_key: DEV_KEY,
      container,
      endpoint,
      ...extra,
    }),
    sas: (container, options) =>
      generateBlobSASQueryParameters(
        {
          containerName: container,
          permissions: ContainerSASPermissions.parse(options.permissions),
          expiresOn: options.expiresOn,
          ...(options.startsOn ? { startsOn: options.startsOn } : {}),
          // Azurite validates the signed version against what it knows.
          version: '2021-08-06',
        },
        key,
      ).toString(),
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
}
