// What `npm publish` would ship, from a clean copy of the package (no dist/, no node_modules
// of its own but a link to ours): `npm pack` must build dist/ itself (prepack), and the tarball
// must hold the LICENSE, the README and, for every export, its JavaScript and its types. Then
// publint and @arethetypeswrong/cli lint the tarball. Exits non-zero on any problem.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const bin = (pkg, file) => join(root, 'node_modules', pkg, file);
const tmp = mkdtempSync(join(tmpdir(), 'opz-sdk-pack-'));
const problems = [];
const check = (ok, what) => { if (!ok) problems.push(what); };

try {
  // 1. a clean copy: what a fresh clone has (no dist/, no tarballs)
  const pkgDir = join(tmp, 'pkg');
  cpSync(root, pkgDir, { recursive: true, filter: (src) => !['node_modules', 'dist'].includes(basename(src))
    && !src.endsWith('.tgz') });
  symlinkSync(join(root, 'node_modules'), join(pkgDir, 'node_modules'), 'dir');

  // 2. npm pack: runs prepack (the build)
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', tmp, '--loglevel=error'],
    { cwd: pkgDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const [info] = JSON.parse(out.slice(out.indexOf('[')));
  const tarball = join(tmp, info.filename);
  const files = new Set(info.files.map((f) => f.path));
  console.log(`npm pack: ${info.filename}, ${info.files.length} files, ${info.size} B`);

  // 3. contents
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  for (const f of ['package.json', 'README.md', 'LICENSE']) check(files.has(f), `tarball lacks ${f}`);
  const license = readFileSync(join(pkgDir, 'LICENSE'), 'utf8');
  const repoLicense = join(root, '..', '..', 'LICENSE');
  if (existsSync(repoLicense)) check(license === readFileSync(repoLicense, 'utf8'), 'sdk/js/LICENSE differs from the repository\'s LICENSE');
  check(/Apache License\s+Version 2\.0/.test(license) && manifest.license === 'Apache-2.0', 'LICENSE is not Apache-2.0 as package.json says');
  const rel = (p) => p.replace(/^\.\//, '');
  for (const field of ['main', 'module', 'types', 'unpkg']) {
    check(files.has(rel(manifest[field])), `${field}: ${manifest[field]} is not in the tarball`);
  }
  // every export: each target in the tarball, and types beside every JavaScript target
  const walk = (entry, target, conditions) => {
    if (typeof target === 'string') {
      check(files.has(rel(target)), `exports["${entry}"] (${conditions.join('.')}): ${target} is not in the tarball`);
      return;
    }
    const keys = Object.keys(target);
    if (keys.includes('default') && !keys.includes('types') && !target.default.endsWith('.json')) {
      problems.push(`exports["${entry}"] (${conditions.join('.') || 'root'}) has no types`);
    }
    if (keys.includes('types') && keys[0] !== 'types') problems.push(`exports["${entry}"]: types must come first`);
    for (const k of keys) walk(entry, target[k], [...conditions, k]);
  };
  for (const [entry, target] of Object.entries(manifest.exports)) {
    if (typeof target === 'string' && !target.endsWith('.json')) problems.push(`exports["${entry}"] has no types`);
    walk(entry, target, []);
  }
  for (const f of ['dist/esm/index.js', 'dist/cjs/index.js', 'dist/types/index.d.ts', 'dist/cjs/index.d.ts',
    'dist/browser/openpersonalize.min.js', 'dist/browser/openpersonalize.esm.min.js', 'dist/browser/tracker.esm.min.js']) {
    check(files.has(f), `tarball lacks ${f}`);
  }
  check(manifest.publishConfig?.access === 'public', 'publishConfig.access is not "public"');
  for (const f of ['repository', 'homepage', 'keywords', 'license']) check(manifest[f], `package.json has no ${f}`);

  // 4. the linters, on the tarball itself
  for (const [what, args] of [
    ['publint', [bin('publint', 'src/cli.js'), 'run', tarball, '--strict']],
    ['attw', [bin('@arethetypeswrong/cli', 'dist/index.js'), tarball, '--format', 'table-flipped']],
  ]) {
    console.log(`== ${what}`);
    try {
      execFileSync(process.execPath, args, { stdio: 'inherit', cwd: tmp });
    } catch {
      problems.push(`${what} failed`);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

if (problems.length) {
  console.error(`package check: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log('package check: ok (clean npm pack has dist/, types for every export, LICENSE; publint and attw clean)');
