#!/usr/bin/env node
// Entry point for `clusterdns` and `node bin/clusterdns.js`.
// - An installed image ships only dist/: run the compiled build.
// - A checkout runs dist/ only when `npm run build` is newer than every source file
//   (compiled code is faster than tsx's transform), else the TypeScript sources
//   through tsx, so no build step is needed and a stale dist/ never shadows src/.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const built = join(root, 'dist', 'main.js');

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

const useDist = existsSync(built) && (!existsSync(src) || statSync(built).mtimeMs >= newest(src));
if (useDist) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(src, 'main.ts')).href);
}
