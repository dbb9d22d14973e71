#!/usr/bin/env node
// The `cloudmux` command. In a checkout it runs the TypeScript source (no build step): it starts
// Node again with tsx and the `@cloudmux/source` export condition, forwarding signals and the exit
// code. Installed from a registry (no src/), or with CLOUDMUX_USE_DIST=1, it runs dist/ directly.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'bin.ts');
const args = process.argv.slice(2);

if (existsSync(source) && process.env.CLOUDMUX_USE_DIST !== '1') {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const child = spawn(process.execPath, ['--conditions=@cloudmux/source', '--import', tsx, source, ...args], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
} else {
  await import(pathToFileURL(join(root, 'dist', 'bin.js')).href);
}
