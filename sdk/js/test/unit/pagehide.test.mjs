// Page hide: queued batches are handed to navigator.sendBeacon (or fetch with keepalive).
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Tracker } from '../../dist/esm/index.js';
import { MemoryStorage, scriptedFetch, settle } from './helpers.mjs';

let beacons;
let accept;
const doc = new EventTarget();

function hide(type = 'visibilitychange') {
  doc.visibilityState = 'hidden';
  (type === 'pagehide' ? globalThis : doc).dispatchEvent(new Event(type));
}

beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_700_000_000_000 });
  beacons = [];
  accept = true;
  doc.visibilityState = 'visible';
  globalThis.document = doc;
  globalThis.addEventListener = EventTarget.prototype.addEventListener.bind(globalThis.__win ??= new EventTarget());
  globalThis.removeEventListener = EventTarget.prototype.removeEventListener.bind(globalThis.__win);
  globalThis.dispatchEvent = EventTarget.prototype.dispatchEvent.bind(globalThis.__win);
  Object.defineProperty(globalThis, 'navigator', { configurable: true, value: {
    sendBeacon: (url, body) => { beacons.push({ url, body: JSON.parse(body), type: typeof body }); return accept; },
  } });
});

afterEach(() => {
  mock.timers.reset();
  delete globalThis.document;
  delete globalThis.addEventListener;
  delete globalThis.removeEventListener;
  delete globalThis.dispatchEvent;
  delete globalThis.navigator;
});

const opts = (fetch, extra = {}) => ({ endpoint: 'http://opz.test', trackingId: 'tid', fetch, storage: null, ...extra });

describe('flush on page hide', () => {
  it('beacons every queued batch when the page is hidden', async () => {
    const storage = new MemoryStorage();
    const fetch = scriptedFetch();
    const t = new Tracker(opts(fetch, { storage, batchSize: 2 }));
    const ids = ['a', 'b', 'c'].map((itemId) => t.record({ eventType: 'click', itemId }));
    doc.visibilityState = 'visible';
    doc.dispatchEvent(new Event('visibilitychange'));
    assert.equal(beacons.length, 0, 'visible again: nothing to do');
    hide();
    assert.deepEqual(beacons.map((b) => b.url), ['http://opz.test/events', 'http://opz.test/events']);
    assert.equal(beacons[0].type, 'string', 'a string body: sent as text/plain, no CORS preflight');
    assert.deepEqual(beacons.flatMap((b) => b.body.eventList.map((e) => e.eventId)), ids);
    assert.equal(beacons[0].body.trackingId, 'tid');
    assert.deepEqual(t.stats(), { queued: 0, sent: 3, dropped: 0, failed: 0 });
    assert.equal(storage.getItem('opz:tid:queue'), null);
    mock.timers.tick(10_000);
    await settle();
    assert.equal(fetch.calls.length, 0, 'nothing sent twice');
  });

  it('pagehide does it too', () => {
    const t = new Tracker(opts(scriptedFetch()));
    t.record({ eventType: 'click' });
    hide('pagehide');
    assert.equal(beacons.length, 1);
  });

  it('falls back to fetch with keepalive when the beacon is refused, keeping failures queued', async () => {
    accept = false;
    const fetch = scriptedFetch('network', 200);
    const t = new Tracker(opts(fetch));
    t.record({ eventType: 'click' });
    hide();
    await settle();
    assert.equal(fetch.calls.length, 1);
    assert.equal(fetch.calls[0].init.keepalive, true);
    assert.equal(t.stats().queued, 1, 'the keepalive request failed: still queued');
    mock.timers.tick(5000);
    await settle();
    assert.equal(fetch.calls.length, 2);
    assert.equal(t.stats().queued, 0);
  });

  it('useBeacon: false always uses fetch with keepalive', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(opts(fetch, { useBeacon: false }));
    t.record({ eventType: 'click' });
    hide();
    await settle();
    assert.equal(beacons.length, 0);
    assert.equal(fetch.calls[0].init.keepalive, true);
    assert.equal(t.stats().sent, 1);
  });

  it('leaves batches already in flight to their request', async () => {
    let release;
    const fetch = scriptedFetch();
    const slow = (url, init) => { fetch.calls.push({ init }); return new Promise((r) => { release = () => r(new Response(null)); }); };
    const t = new Tracker(opts(slow));
    for (let i = 0; i < 10; i++) t.record({ eventType: 'click' });
    await settle();
    t.record({ eventType: 'late' });
    hide();
    assert.deepEqual(beacons.map((b) => b.body.eventList.map((e) => e.eventType)), [['late']]);
    release();
    await settle();
    assert.deepEqual(t.stats(), { queued: 0, sent: 11, dropped: 0, failed: 0 });
  });

  it('flushOnHide: false and close() stop listening', () => {
    const a = new Tracker(opts(scriptedFetch(), { flushOnHide: false }));
    a.record({ eventType: 'click' });
    const b = new Tracker(opts(scriptedFetch(), { trackingId: 'tid-b' }));
    void b.close();
    b.record({ eventType: 'click' });
    hide();
    assert.equal(beacons.length, 0);
  });
});
