/**
 * Real servers for connector tests: a free loopback port, a process started in its own process
 * group, a readiness wait, teardown by PID, and the server's own log attached to every failure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A port that was free a moment ago on 127.0.0.1 (bind to 0, read it, close). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once a TCP connect to host:port succeeds; rejects after `timeoutMs`. */
export async function waitForTcp(host: string, port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface TempDir {
  path: string;
  remove(): Promise<void>;
}

export async function makeTempDir(prefix = 'cloudmux-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export type Readiness =
  | { tcp: { host?: string; port: number } }
  | { http: { url: string; ok?: (status: number) => boolean } }
  | { log: RegExp };

export interface StartServerOptions {
  /** Shown in errors and logs. */
  name: string;
  command: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  ready: Readiness;
  timeoutMs?: number;
  /** Signal for `stop()`; SIGKILL follows after `killAfterMs`. */
  stopSignal?: NodeJS.Signals;
  killAfterMs?: number;
}

export interface StartedServer {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far (last 64 KiB). */
  logs(): string;
  /** Stops the whole process group and waits for the exit. Idempotent. */
  stop(): Promise<void>;
  /** Abrupt stop (SIGKILL) for failure tests. */
  kill(): Promise<void>;
}

const LOG_LIMIT = 64 * 1024;
const running = new Set<StartedServer>();

// Never leave servers behind when a test process exits without running its teardown.
process.once('exit', () => {
  for (const server of running) {
    try {
      process.kill(-server.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export async function startServer(options: StartServerOptions): Promise<StartedServer> {
  const child = spawn(options.command, options.args ?? [], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  const state: { exited: { code: number | null; signal: NodeJS.Signals | null } | null } = { exited: null };
  const append = (chunk: Buffer) => {
    log += chunk.toString('utf8');
    if (log.length > LOG_LIMIT) log = log.slice(-LOG_LIMIT);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      state.exited = { code, signal };
      resolve();
    });
  });
  const spawnError = new Promise<never>((_, reject) => child.once('error', (err) => reject(err)));

  const signalGroup = (signal: NodeJS.Signals) => {
    if (state.exited || child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // the group may already be gone
    }
  };
  let stopping: Promise<void> | null = null;
  const server: StartedServer = {
    name: options.name,
    get pid() {
      return child.pid ?? -1;
    },
    child,
    logs: () => log,
    stop: () => {
      stopping ??= (async () => {
        signalGroup(options.stopSignal ?? 'SIGTERM');
        const timer = setTimeout(() => signalGroup('SIGKILL'), options.killAfterMs ?? 5_000);
        await exitPromise;
        clearTimeout(timer);
        running.delete(server);
      })();
      return stopping;
    },
    kill: async () => {
      signalGroup('SIGKILL');
      await exitPromise;
      running.delete(server);
    },
  };
  running.add(server);

  const timeoutMs = options.timeoutMs ?? 30_000;
  try {
    await Promise.race([
      waitReady(
        options.ready,
        timeoutMs,
        () => log,
        () => state.exited,
      ),
      spawnError,
    ]);
  } catch (err) {
    await server.stop();
    const detail = state.exited ? ` (exited: code ${state.exited.code}, signal ${state.exited.signal})` : '';
    throw new Error(
      `${options.name} did not become ready${detail}: ${(err as Error).message}\n--- ${options.name} log ---\n${log.slice(-4096)}`,
    );
  }
  return server;
}

async function waitReady(
  ready: Readiness,
  timeoutMs: number,
  log: () => string,
  exited: () => unknown,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited()) throw new Error('the process exited before it was ready');
    if ('tcp' in ready) {
      const ok = await waitForTcp(ready.tcp.host ?? '127.0.0.1', ready.tcp.port, 200).then(
        () => true,
        () => false,
      );
      if (ok) return;
    } else if ('http' in ready) {
      try {
        const res = await fetch(ready.http.url, { signal: AbortSignal.timeout(1_000) });
        await res.body?.cancel();
        if ((ready.http.ok ?? ((s: number) => s < 500))(res.status)) return;
      } catch {
        // not up yet
      }
    } else if (ready.log.test(log())) {
      return;
    }
    if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs a command to completion (for setup steps such as `htpasswd`, `smbpasswd`), failing with its output. */
export async function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}\n${stdout}\n${stderr}`));
    });
    // A command that exits without reading its input must not crash the caller with EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Whether an executable is on PATH (or an absolute path that exists), for a clear skip reason. */
export async function hasCommand(command: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${JSON.stringify(command)}`]).then(
    () => true,
    () => false,
  );
}
