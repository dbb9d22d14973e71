#!/usr/bin/env node
// The `cloudmux` command. In a checkout it runs the TypeScript source (no build step) in this same
// process: tsx's loader plus a resolve hook adding the `@cloudmux/source` export condition. Installed
// from a registry (no src/), or with CLOUDMUX_USE_DIST=1, it runs dist/ directly.
import { existsSync } from 'node:fs';
import { register } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'bin.ts');

if (existsSync(source) && process.env.CLOUDMUX_USE_DIST !== '1') {
  const { register: registerTsx } = await import('tsx/esm/api');
  registerTsx();
  register('./source-condition.mjs', import.meta.url);
  await import(pathToFileURL(source).href);
} else {
  await import(pathToFileURL(join(root, 'dist', 'bin.js')).href);
}
