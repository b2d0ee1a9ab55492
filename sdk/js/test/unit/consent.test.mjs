// Consent: disable() / enable() and `enabled: false`. While disabled nothing is stored or sent,
// and what was queued (in memory and in storage) is dropped.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Tracker } from '../../dist/esm/index.js';
import { AsyncMemoryStorage, MemoryStorage, scriptedFetch, settle, UUID } from './helpers.mjs';

const T0 = 1_700_000_000_000;
const opts = (fetch, storage, extra = {}) => ({
  endpoint: 'http://opz.test', trackingId: 'tid', fetch, storage, random: () => 0, ...extra,
});

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 }));
afterEach(() => mock.timers.reset());

describe('consent', () => {
  it('disable() drops the queue, removes what was stored, and sends and stores nothing after', async () => {
    const storage = new MemoryStorage();
    const fetch = scriptedFetch();
    const t = new Tracker(opts(fetch, storage, { userId: 'u1' }));
    for (let i = 0; i < 3; i++) t.record({ eventType: 'click', itemId: `i${i}` });
    assert.deepEqual([...storage.map.keys()].sort(), ['opz:tid:queue', 'opz:tid:session']);
    const before = t.sessionId;
    assert.equal(t.enabled, true);

    t.disable();
    assert.equal(t.enabled, false);
    assert.equal(storage.map.size, 0, 'queue and session removed from storage');
    assert.equal(t.stats().queued, 0);
    assert.notEqual(t.sessionId, before, 'the old session is forgotten');

    assert.equal(t.record({ eventType: 'click', itemId: 'x' }), '', 'record() keeps nothing');
    assert.throws(() => t.record({ itemId: 'x' }), TypeError, 'a bad event still throws');
    t.identify('u2');
    t.reset();
    t.identify('u3');
    for (let i = 0; i < 12; i++) t.record({ eventType: 'click', itemId: `y${i}` });
    await t.flush();
    mock.timers.tick(60_000);
    await settle();
    assert.equal(fetch.calls.length, 0, 'nothing sent');
    assert.equal(storage.map.size, 0, 'nothing stored');
    assert.deepEqual(t.stats(), { queued: 0, sent: 0, dropped: 0, failed: 0 });

    t.enable();
    assert.equal(t.enabled, true);
    const id = t.record({ eventType: 'click', itemId: 'z' });
    assert.match(id, UUID);
    await t.flush();
    assert.equal(fetch.calls.length, 1);
    assert.deepEqual(fetch.ids(), [[id]], 'only what was recorded after enable()');
    assert.equal(fetch.calls[0].body.userId, 'u3', 'identity set while disabled is kept in memory');
    assert.notEqual(fetch.calls[0].body.sessionId, before);
    assert.ok(storage.getItem('opz:tid:session'), 'storing again once enabled');
  });

  it('enabled: false starts disabled and removes what an earlier page stored', async () => {
    const storage = new MemoryStorage();
    const down = scriptedFetch();
    down.always('network');
    const page1 = new Tracker(opts(down, storage));
    page1.record({ eventType: 'click', itemId: 'a' });
    await page1.flush();
    assert.ok(storage.getItem('opz:tid:queue'));

    const fetch = scriptedFetch();
    const page2 = new Tracker(opts(fetch, storage, { enabled: false }));
    await page2.ready;
    assert.equal(page2.enabled, false);
    assert.equal(storage.map.size, 0);
    assert.equal(page2.stats().queued, 0);
    page2.record({ eventType: 'click', itemId: 'b' });
    mock.timers.tick(60_000);
    await settle();
    assert.equal(fetch.calls.length, 0);
    assert.equal(storage.map.size, 0);
  });

  it('disable() aborts the request in flight; its events are neither retried nor counted', async () => {
    const fetch = scriptedFetch('hang');
    const errors = [];
    const t = new Tracker(opts(fetch, null, { onError: (e) => errors.push(e) }));
    t.record({ eventType: 'click', itemId: 'a' });
    const flushed = t.flush();
    await settle();
    assert.equal(fetch.calls.length, 1);
    t.disable();
    assert.equal(fetch.calls[0].init.signal.aborted, true);
    await flushed;
    mock.timers.tick(120_000);
    await settle();
    assert.equal(fetch.calls.length, 1, 'no retry');
    assert.deepEqual(t.stats(), { queued: 0, sent: 0, dropped: 0, failed: 0 });
    assert.deepEqual(errors, []);
  });

  it('disable() during a backoff cancels the retry', async () => {
    const fetch = scriptedFetch(503);
    const t = new Tracker(opts(fetch, null));
    t.record({ eventType: 'click', itemId: 'a' });
    await t.flush();
    t.disable();
    mock.timers.tick(120_000);
    await settle();
    assert.equal(fetch.calls.length, 1);
    t.enable();
    t.record({ eventType: 'click', itemId: 'b' });
    await t.flush();
    assert.equal(fetch.calls.length, 2, 'no backoff left over');
    assert.equal(fetch.calls[1].body.eventList.length, 1);
  });

  it('with an async store (AsyncStorage), a queue still loading when consent is withdrawn is not restored', async () => {
    const saved = [{ sessionId: 's', event: { eventId: 'old', eventType: 'click', sentAt: 1 } }];
    const storage = new AsyncMemoryStorage({ 'opz:tid:queue': JSON.stringify(saved),
      'opz:tid:session': JSON.stringify({ sessionId: 's', last: T0 }) });
    const fetch = scriptedFetch();
    const t = new Tracker(opts(fetch, storage));
    t.disable();
    await t.ready;
    await settle();
    assert.equal(t.stats().queued, 0);
    assert.equal(storage.map.size, 0);
    mock.timers.tick(60_000);
    await settle();
    assert.equal(fetch.calls.length, 0);
  });
});
