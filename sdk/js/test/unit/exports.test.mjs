// Only the public API is exported, the same from every build: ESM, CommonJS, the browser bundles.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import vm from 'node:vm';

const PUBLIC = ['PersonalizeError', 'RuntimeClient', 'Tracker', 'init', 'recordShown'];
const dist = new URL('../../dist/', import.meta.url);
const names = (m) => Object.keys(m).filter((k) => k !== 'default' && k !== '__esModule').sort();

describe('public API', () => {
  it('ESM, CommonJS and both browser bundles export exactly the public names', async () => {
    assert.deepEqual(names(await import(new URL('esm/index.js', dist))), PUBLIC);
    assert.deepEqual(names(createRequire(import.meta.url)('../../dist/cjs/index.js')), PUBLIC);
    assert.deepEqual(names(await import(new URL('browser/openpersonalize.esm.min.js', dist))), PUBLIC);
    const ctx = vm.createContext({});
    vm.runInContext(readFileSync(new URL('browser/openpersonalize.min.js', dist), 'utf8'), ctx);
    assert.deepEqual(names(ctx.OpenPersonalize), PUBLIC);
  });

  it('internals (EventQueue, Session, backoffDelay, parseRetryAfter) are not exported', async () => {
    const m = await import(new URL('esm/index.js', dist));
    for (const internal of ['EventQueue', 'Session', 'backoffDelay', 'parseRetryAfter']) assert.ok(!(internal in m), internal);
  });

  it('the package self-resolves to the same API (exports map), "./browser" included', async () => {
    assert.deepEqual(names(await import('@openpersonalize/sdk')), PUBLIC);
    assert.deepEqual(names(await import('@openpersonalize/sdk/browser')), PUBLIC);
    assert.deepEqual(names(createRequire(import.meta.url)('@openpersonalize/sdk')), PUBLIC);
  });
});
