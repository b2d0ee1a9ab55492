// Prints the gzipped size of the minified browser bundles (goal: tracker <= 5 KB).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'browser');
const GOAL = 5 * 1024;
let over = false;
for (const [file, what, goal] of [['tracker.esm.min.js', 'tracker only (ESM)', GOAL],
  ['openpersonalize.min.js', 'tracker + runtime client (<script>, IIFE)', undefined],
  ['openpersonalize.esm.min.js', 'tracker + runtime client (ESM)', undefined]]) {
  const path = join(dir, file);
  if (!existsSync(path)) {
    console.error(`missing ${path}: run npm run build first`);
    process.exit(1);
  }
  const raw = readFileSync(path);
  const gz = gzipSync(raw, { level: 9 }).length;
  const mark = goal === undefined ? '' : gz <= goal ? `  (goal <= ${goal} B: ok)` : `  (goal <= ${goal} B: OVER)`;
  over ||= goal !== undefined && gz > goal;
  console.log(`${file.padEnd(28)} ${String(raw.length).padStart(6)} B min  ${String(gz).padStart(5)} B gzip  ${what}${mark}`);
}
process.exit(over ? 1 : 0);
