/**
 * The `cloudmux` command: `start`, `app create|list`, `key create|list|revoke`, `secret rotate`.
 * Every server setting is also a flag (`--port`, `--data-dir`, …; see config.ts).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type createKeyring, createSecretBox, generateSecretKey } from '@cloudmux/core';
import { FLAGS, type FlagValues, loadConfig, type ServerConfig } from './config.js';
import { addKeyVersion, loadKeys } from './keys.js';
import { addAppSetting, readAppSettings, removeAppSetting } from './oauth/settings.js';
import { type CloudmuxServer, createServer } from './server.js';
import { openStore } from './store/db.js';
import { Store } from './store/store.js';
import { reencryptWebhookSecrets, webhookAdmin } from './webhooks/index.js';

const HELP = `cloudmux — the Kloudless v1 API, self-hosted

Usage:
  cloudmux start                           start the server (creates a dev app and a demo account on first start)
  cloudmux app create --name NAME [--json] create an application; prints its id and API key
  cloudmux app list [--json]
  cloudmux key create [--app ID] [--json]  another API key for an application
  cloudmux key list [--app ID] [--json]
  cloudmux key revoke [--app ID] KEY|ID
  cloudmux secret rotate                   add a new secret key version and re-encrypt stored credentials
                                           (object ids do not change)
  cloudmux webhook add [--app ID] URL      register a webhook; prints its id and the app's signing key
  cloudmux webhook list|remove ID|key [--rotate] [--app ID]
  cloudmux redirect-uri add|remove|list [--app ID] [URI]   where the OAuth code flow may return
  cloudmux origin add|remove|list [--app ID] [ORIGIN]      pages that may open the connect popup

Settings (flag or environment): ${Object.values(FLAGS)
  .map((f) => `--${f.flag} (${f.env})`)
  .join(', ')}
`;

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

const defaultIo: Io = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

function parse(argv: string[]) {
  const options: Record<string, { type: 'string' | 'boolean' }> = {
    name: { type: 'string' },
    app: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean' },
    rotate: { type: 'boolean' },
  };
  for (const f of Object.values(FLAGS)) options[f.flag] = { type: 'string' };
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  const flags: FlagValues = {};
  for (const f of Object.values(FLAGS)) {
    const v = values[f.flag];
    if (typeof v === 'string') flags[f.flag] = v;
  }
  return { values, positionals, flags };
}

async function withStore<T>(config: ServerConfig, fn: (store: Store) => Promise<T>): Promise<T> {
  const keys = loadKeys(config.dataDir, config.secretKey);
  const handle = await openStore(
    config.databaseUrl
      ? {
          databaseUrl: config.databaseUrl,
          ...(config.databaseSchema ? { pgSchema: config.databaseSchema } : {}),
        }
      : { sqlitePath: join(config.dataDir, 'cloudmux.db') },
  );
  try {
    return await fn(new Store(handle.db, createSecretBox({ keys: keys.keyring, purpose: 'credentials' })));
  } finally {
    await handle.close();
  }
}

async function resolveAppId(store: Store, requested: string | undefined): Promise<string> {
  if (requested) {
    if (!(await store.getApp(requested))) throw new Error(`no application ${requested}`);
    return requested;
  }
  const apps = await store.listApps();
  if (apps.length !== 1)
    throw new Error(
      apps.length === 0
        ? 'no application exists yet (cloudmux app create --name …)'
        : 'several applications exist: pass --app ID',
    );
  return apps[0]!.id;
}

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals, flags } = parsed;
  const [command, sub, ...rest] = positionals;
  if (values.help || !command) {
    io.out(HELP);
    return command || values.help ? 0 : 2;
  }
  const config = loadConfig(flags);
  const json = values.json === true;
  try {
    switch (`${command} ${sub ?? ''}`.trim()) {
      case 'start':
        return await start(config, io);
      case 'app create': {
        const name = typeof values.name === 'string' ? values.name : undefined;
        if (!name) throw new Error('app create needs --name NAME');
        const { app, apiKey } = await withStore(config, (store) => store.createApp(name));
        io.out(
          json
            ? JSON.stringify({ app_id: app.id, api_key: apiKey })
            : `app_id:  ${app.id}\napi_key: ${apiKey}`,
        );
        return 0;
      }
      case 'app list': {
        const apps = await withStore(config, (store) => store.listApps());
        io.out(
          json
            ? JSON.stringify(apps.map((a) => ({ app_id: a.id, name: a.name, created: a.created })))
            : apps.map((a) => `${a.id}  ${a.name}`).join('\n'),
        );
        return 0;
      }
      case 'key create': {
        const result = await withStore(config, async (store) => {
          const appId = await resolveAppId(store, values.app as string | undefined);
          return { appId, ...(await store.createApiKey(appId, 'cli')) };
        });
        io.out(
          json ? JSON.stringify({ app_id: result.appId, id: result.id, api_key: result.key }) : result.key,
        );
        return 0;
      }
      case 'key list': {
        const keys = await withStore(config, async (store) =>
          store.listApiKeys(await resolveAppId(store, values.app as string | undefined)),
        );
        io.out(
          json
            ? JSON.stringify(
                keys.map((k) => ({
                  id: Number(k.id),
                  prefix: k.key_prefix,
                  label: k.label,
                  created: k.created,
                  revoked: k.revoked,
                })),
              )
            : keys
                .map((k) => `${k.id}  ${k.key_prefix}…  ${k.revoked ? `revoked ${k.revoked}` : 'active'}`)
                .join('\n'),
        );
        return 0;
      }
      case 'key revoke': {
        const target = rest[0];
        if (!target) throw new Error('key revoke needs the key or its id');
        const revoked = await withStore(config, async (store) =>
          store.revokeApiKey(await resolveAppId(store, values.app as string | undefined), target),
        );
        if (!revoked) throw new Error('no such active key');
        io.out(json ? JSON.stringify({ revoked: true }) : 'revoked');
        return 0;
      }
      case 'secret rotate':
        return await rotateSecret(config, io, json);
      case 'webhook add':
      case 'webhook list':
      case 'webhook remove':
      case 'webhook key':
        return await webhookCommand(
          config,
          io,
          json,
          sub!,
          rest,
          values.app as string | undefined,
          values.rotate === true,
        );
      case 'redirect-uri add':
      case 'redirect-uri remove':
      case 'redirect-uri list':
      case 'origin add':
      case 'origin remove':
      case 'origin list':
        return await settingsCommand(
          config,
          io,
          json,
          command === 'origin' ? 'trusted_origins' : 'redirect_uris',
          sub!,
          rest[0],
          values.app as string | undefined,
        );
      default:
        io.err(`unknown command: ${positionals.join(' ')}\n\n${HELP}`);
        return 2;
    }
  } catch (err) {
    io.err(`cloudmux: ${(err as Error).message}`);
    return 1;
  }
}

async function rotateSecret(config: ServerConfig, io: Io, json: boolean): Promise<number> {
  const material = loadKeys(config.dataDir, config.secretKey);
  if (!material.file) {
    // The keyring lives in the environment: print the new value for the operator to deploy.
    const secret = generateSecretKey();
    const version = Math.max(...material.keyring.versions) + 1;
    const keyring = material.keyring.withKey(version, secret);
    const counts = await withStoreKeys(config, keyring);
    const value = `${version}:${secret},${config.secretKey}`;
    io.out(
      json
        ? JSON.stringify({ version, secret_key: value, ...counts })
        : `Re-encrypted ${counts.changed} of ${counts.total} credentials under key version ${version}.\nSet CLOUDMUX_SECRET_KEY=${value}`,
    );
    return 0;
  }
  const { material: next, version } = addKeyVersion(material);
  const counts = await withStoreKeys(config, next.keyring);
  io.out(
    json
      ? JSON.stringify({ version, ...counts })
      : `Re-encrypted ${counts.changed} of ${counts.total} credentials under key version ${version}; object ids are unchanged.`,
  );
  return 0;
}

async function webhookCommand(
  config: ServerConfig,
  io: Io,
  json: boolean,
  sub: string,
  rest: string[],
  app: string | undefined,
  rotate: boolean,
): Promise<number> {
  const keys = loadKeys(config.dataDir, config.secretKey);
  const handle = await openStore(storeOptions(config));
  const admin = webhookAdmin(
    handle.db,
    keys.keyring,
    config.allowedNetworks ? { allowedNetworks: config.allowedNetworks } : {},
  );
  try {
    const store = new Store(handle.db, createSecretBox({ keys: keys.keyring, purpose: 'credentials' }));
    const appId = await resolveAppId(store, app);
    if (sub === 'add') {
      if (!rest[0]) throw new Error('webhook add needs the URL');
      const { webhook, signingKey } = await admin.add(appId, rest[0]);
      io.out(
        json
          ? JSON.stringify({ id: webhook.id, url: webhook.url, signing_key: signingKey })
          : `webhook ${webhook.id}: ${webhook.url}\nsigning key: ${signingKey}`,
      );
    } else if (sub === 'list') {
      const hooks = await admin.list(appId);
      io.out(
        json
          ? JSON.stringify(hooks.map((h) => ({ id: h.id, url: h.url })))
          : hooks.map((h) => `${h.id}  ${h.url}`).join('\n'),
      );
    } else if (sub === 'remove') {
      if (!rest[0] || !/^\d+$/.test(rest[0])) throw new Error('webhook remove needs the webhook id');
      if (!(await admin.remove(appId, Number(rest[0])))) throw new Error(`no webhook ${rest[0]}`);
      io.out(json ? JSON.stringify({ removed: true }) : 'removed');
    } else {
      const key = rotate ? await admin.rotateSigningKey(appId) : await admin.signingKey(appId);
      io.out(json ? JSON.stringify({ signing_key: key }) : key);
    }
    return 0;
  } finally {
    admin.close();
    await handle.close();
  }
}

async function settingsCommand(
  config: ServerConfig,
  io: Io,
  json: boolean,
  kind: 'redirect_uris' | 'trusted_origins',
  sub: string,
  value: string | undefined,
  app: string | undefined,
): Promise<number> {
  const settings = await withStore(config, async (store) => {
    const appId = await resolveAppId(store, app);
    if (sub === 'list') return readAppSettings(store, appId);
    if (!value) throw new Error(`${sub} needs a value`);
    return sub === 'add'
      ? addAppSetting(store, appId, kind, value)
      : removeAppSetting(store, appId, kind, value);
  });
  io.out(json ? JSON.stringify(settings[kind]) : settings[kind].join('\n'));
  return 0;
}

function storeOptions(config: ServerConfig) {
  return config.databaseUrl
    ? {
        databaseUrl: config.databaseUrl,
        ...(config.databaseSchema ? { pgSchema: config.databaseSchema } : {}),
      }
    : { sqlitePath: join(config.dataDir, 'cloudmux.db') };
}

async function withStoreKeys(config: ServerConfig, keyring: ReturnType<typeof createKeyring>) {
  const handle = await openStore(
    config.databaseUrl
      ? {
          databaseUrl: config.databaseUrl,
          ...(config.databaseSchema ? { pgSchema: config.databaseSchema } : {}),
        }
      : { sqlitePath: join(config.dataDir, 'cloudmux.db') },
  );
  try {
    const box = createSecretBox({ keys: keyring, purpose: 'credentials' });
    const counts = await new Store(handle.db, box).reencryptAllCredentials(box);
    // Webhook signing keys are sealed with the same box: keep them readable after old versions retire.
    await reencryptWebhookSecrets(handle.db, box);
    return counts;
  } finally {
    await handle.close();
  }
}

/** First start on an empty data dir: a dev app, a `local` demo account and a token, printed with a curl example. */
export async function bootstrap(server: CloudmuxServer): Promise<string[] | null> {
  const { store, config } = server.deps;
  if ((await store.listApps()).length > 0) return null;
  const { app, apiKey } = await store.createApp('Development app');
  const demo = join(config.dataDir, 'files', 'demo');
  mkdirSync(demo, { recursive: true });
  const readme = join(demo, 'README.txt');
  if (!existsSync(readme))
    writeFileSync(
      readme,
      'This is the Cloudmux demo account: a folder on the server, served by the local connector.\n',
    );
  const account = await store.createAccount({
    appId: app.id,
    service: 'local',
    account: 'Demo (local disk)',
    credentials: { root: demo },
  });
  const token = await store.createAccountToken(app.id, Number(account.id));
  const credentials = {
    app_id: app.id,
    api_key: apiKey,
    account_id: Number(account.id),
    bearer_token: token,
  };
  writeFileSync(join(config.dataDir, 'dev-credentials.json'), `${JSON.stringify(credentials, null, 2)}\n`, {
    mode: 0o600,
  });
  const base = config.publicUrl;
  return [
    'Created a development app and a demo account (also saved in dev-credentials.json, mode 0600):',
    `  app id:        ${app.id}`,
    `  API key:       ${apiKey}`,
    `  account id:    ${account.id}  (local connector on ${demo})`,
    `  bearer token:  ${token}`,
    '',
    'Try it:',
    `  curl -H 'Authorization: Bearer ${token}' ${base}/v1/accounts/me/storage/folders/root/contents`,
    `  curl -H 'Authorization: Bearer ${token}' -H 'X-Kloudless-Metadata: {"name": "hello.txt", "parent_id": "root"}' \\`,
    `       --data-binary 'hello world' ${base}/v1/accounts/me/storage/files`,
  ];
}

async function start(config: ServerConfig, io: Io): Promise<number> {
  const server = await createServer(config);
  // Handlers first: a SIGTERM during start-up must still shut down cleanly.
  let stopping = false;
  let finished!: () => void;
  const done = new Promise<void>((resolve) => {
    finished = resolve;
  });
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    io.out(
      `cloudmux: ${signal} received, finishing in-flight requests (up to ${config.shutdownGraceSeconds}s)`,
    );
    const deadline = setTimeout(() => {
      server.app.server.closeAllConnections();
    }, config.shutdownGraceSeconds * 1000);
    deadline.unref();
    void server.close().finally(() => {
      clearTimeout(deadline);
      finished();
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const banner = await bootstrap(server);
  if (stopping) {
    await done;
    return 0;
  }
  const address = await server.listen();
  io.out(
    `cloudmux listening on ${address} (public URL ${config.publicUrl}, store: ${server.deps.storeHandle.dialect})`,
  );
  if (banner) io.out(banner.join('\n'));
  else if (existsSync(join(config.dataDir, 'dev-credentials.json'))) {
    const saved = JSON.parse(readFileSync(join(config.dataDir, 'dev-credentials.json'), 'utf8')) as {
      account_id: number;
    };
    io.out(
      `Development credentials are in ${join(config.dataDir, 'dev-credentials.json')} (demo account ${saved.account_id}).`,
    );
  }
  await done;
  return 0;
}
