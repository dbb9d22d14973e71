/**
 * The real `cloudmux` command as a child process (bin/cloudmux.js runs the TypeScript source), for
 * the CLI and shutdown tests: one-shot commands, and `start` with its output watched.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../bin/cloudmux.js', import.meta.url));
export const HOST = '127.0.0.1';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `cloudmux <args>` to completion. */
export function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command and parses its JSON output, failing with the output when it did not succeed. */
export async function runCliJson<T>(args: string[], env: Record<string, string>): Promise<T> {
  const result = await runCli([...args, '--json'], env);
  if (result.code !== 0)
    throw new Error(`cloudmux ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as T;
}

export interface StartedCli {
  child: ChildProcess;
  port: number;
  url: string;
  output(): string;
  /** Resolves once the output matches (the child's own words, no sleeping on guesses). */
  waitFor(pattern: RegExp): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then the exit status. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `cloudmux start` on `port`; resolves once it listens. */
export async function startCli(port: number, env: Record<string, string>): Promise<StartedCli> {
  const child = spawn(process.execPath, [BIN, 'start'], {
    env: { ...process.env, PORT: String(port), HOST, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    for (const w of [...waiters]) {
      if (w.pattern.test(output)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const cli: StartedCli = {
    child,
    port,
    url: `http://${HOST}:${port}`,
    output: () => output,
    waitFor: (pattern) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(output)) return resolve();
        waiters.push({ pattern, resolve });
        void exited.then(() => reject(new Error(`cloudmux exited before printing ${pattern}:\n${output}`)));
      }),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  await cli.waitFor(/cloudmux listening on/);
  // `start` installs its SIGTERM handler right after printing that line, in the same synchronous
  // step; a request it answers was handled after that step, so a signal from here on is handled.
  const health = await fetch(`${cli.url}/health`);
  if (health.status !== 200) throw new Error(`/health answered ${health.status}:\n${output}`);
  return cli;
}

/** Ends a started CLI whatever state a failed test left it in. */
export async function killCli(cli: StartedCli | undefined): Promise<void> {
  if (!cli) return;
  if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
  await cli.exited;
}
