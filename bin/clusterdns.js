#!/usr/bin/env node
// Entry point for `clusterdns` and `node bin/clusterdns.js`. In a checkout (src/ present)
// it runs the TypeScript sources through tsx, so no build step is needed after `npm ci`
// and a stale dist/ can never shadow the code under test; an installed image ships
// only dist/ and runs the compiled build.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'main.ts');
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
} else {
  await import(pathToFileURL(join(root, 'dist', 'main.js')).href);
}
