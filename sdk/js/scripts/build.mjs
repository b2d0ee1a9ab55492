// Build: ESM per module + .d.ts (tsc), a CJS bundle (esbuild) and minified browser bundles.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });

// 1. dist/esm/*.js and dist/types/*.d.ts
execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')],
  { stdio: 'inherit' });

// 2. dist/cjs: one CommonJS file, with the declarations beside it in a "type": "commonjs" scope
mkdirSync(join(dist, 'cjs'), { recursive: true });
writeFileSync(join(dist, 'cjs', 'package.json'), '{ "type": "commonjs" }\n');
for (const f of readdirSync(join(dist, 'types'))) copyFileSync(join(dist, 'types', f), join(dist, 'cjs', f));
const common = { bundle: true, logLevel: 'warning', legalComments: 'none' };
await build({ ...common, entryPoints: [join(root, 'src', 'index.ts')], outfile: join(dist, 'cjs', 'index.js'),
  format: 'cjs', platform: 'neutral', target: 'es2019' });

// 3. dist/browser: minified bundles for a <script> tag (global `OpenPersonalize`) and for import
const browser = { ...common, minify: true, target: ['es2017', 'chrome61', 'safari11', 'firefox60'], platform: 'browser' };
await build({ ...browser, entryPoints: [join(root, 'src', 'index.ts')], format: 'iife', globalName: 'OpenPersonalize',
  outfile: join(dist, 'browser', 'openpersonalize.min.js') });
await build({ ...browser, entryPoints: [join(root, 'src', 'index.ts')], format: 'esm',
  outfile: join(dist, 'browser', 'openpersonalize.esm.min.js') });
await build({ ...browser, entryPoints: [join(root, 'src', 'tracker.ts')], format: 'esm',
  outfile: join(dist, 'browser', 'tracker.esm.min.js') });
console.log('built dist/ (esm, cjs, types, browser)');
