// The queue survives reloads (localStorage, AsyncStorage), is capped, and counts what it drops.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Tracker } from '../../dist/esm/index.js';
import { EventQueue } from '../../dist/esm/queue.js';
import { AsyncMemoryStorage, MemoryStorage, scriptedFetch, settle } from './helpers.mjs';

const T0 = 1_700_000_000_000;
const KEY = 'opz:tid:queue';
const opts = (fetch, storage, extra = {}) => ({
  endpoint: 'http://opz.test', trackingId: 'tid', fetch, storage, random: () => 0, ...extra,
});

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 }));
afterEach(() => mock.timers.reset());

describe('persistence', () => {
  it('a reload sends what the last page could not, first, with the same eventIds', async () => {
    const storage = new MemoryStorage();
    const down = scriptedFetch();
    down.always('network');
    const page1 = new Tracker(opts(down, storage));
    const old = ['a', 'b', 'c'].map((itemId) => page1.record({ eventType: 'click', itemId }));
    await page1.flush();
    assert.deepEqual(storage.json(KEY).map((q) => q.event.eventId), old, 'written through on every change');
    // the page goes away without delivering; a new page starts on the same storage
    const up = scriptedFetch();
    const page2 = new Tracker(opts(up, storage));
    assert.equal(page2.stats().queued, 3, 'localStorage is read at once');
    const fresh = page2.record({ eventType: 'click', itemId: 'd' });
    await page2.flush();
    assert.deepEqual(up.ids().flat(), [...old, fresh]);
    assert.equal(up.calls[0].body.sessionId, down.calls[0].body.sessionId, 'same session after a reload');
    assert.equal(storage.getItem(KEY), null, 'an empty queue leaves nothing behind');
  });

  it('keeps at most maxQueueSize events: the oldest are dropped, counted and reported', async () => {
    const storage = new MemoryStorage();
    const fetch = scriptedFetch();
    fetch.always(503);
    const errors = [];
    const t = new Tracker(opts(fetch, storage, { maxQueueSize: 5, batchSize: 10,
      onError: (e, events) => errors.push([e.name, events.map((x) => x.itemId)]) }));
    for (let i = 0; i < 8; i++) t.record({ eventType: 'click', itemId: `i${i}` });
    assert.deepEqual(t.stats(), { queued: 5, sent: 0, dropped: 3, failed: 0 });
    assert.deepEqual(errors, [['QueueOverflow', ['i0']], ['QueueOverflow', ['i1']], ['QueueOverflow', ['i2']]]);
    assert.deepEqual(storage.json(KEY).map((q) => q.event.itemId), ['i3', 'i4', 'i5', 'i6', 'i7']);
  });

  it('when storage is full it gives up the oldest half rather than the new event', () => {
    const storage = new MemoryStorage(1500); // room for a handful of events
    const t = new Tracker(opts(scriptedFetch(), storage, { flushIntervalMs: 60_000 }));
    for (let i = 0; i < 12; i++) t.record({ eventType: 'click', itemId: `item-${i}` });
    const kept = storage.json(KEY).map((q) => q.event.itemId);
    assert.ok(kept.length < 12 && kept.length > 0);
    assert.equal(kept.at(-1), 'item-11', 'the newest event is kept');
    assert.equal(t.stats().dropped, 12 - t.stats().queued);
    assert.ok(t.stats().dropped > 0);
  });

  it('loads an async store (React Native AsyncStorage) and sends its events first', async () => {
    const saved = [{ sessionId: 's-old', userId: 'u9', event: { eventId: 'e-old', eventType: 'click', sentAt: 1 } }];
    const storage = new AsyncMemoryStorage({ [KEY]: JSON.stringify(saved) });
    const fetch = scriptedFetch();
    const t = new Tracker(opts(fetch, storage));
    const id = t.record({ eventType: 'view' }); // before the store answered
    await t.ready;
    await t.flush();
    assert.deepEqual(fetch.calls.map((c) => [c.body.userId, c.body.sessionId, c.body.eventList.map((e) => e.eventId)]),
      [['u9', 's-old', ['e-old']], [undefined, t.sessionId, [id]]]);
    await settle();
    assert.equal(storage.map.get(KEY), undefined, 'emptied in the store as well');
  });

  it('ignores a corrupt saved queue', () => {
    const storage = new MemoryStorage();
    storage.setItem(KEY, '{not json');
    const t = new Tracker(opts(scriptedFetch(), storage));
    assert.equal(t.stats().queued, 0);
  });

  it('storage: null keeps everything in memory', () => {
    globalThis.localStorage = new MemoryStorage();
    try {
      const t = new Tracker(opts(scriptedFetch(), null));
      t.record({ eventType: 'click' });
      assert.equal(globalThis.localStorage.map.size, 0);
      const u = new Tracker(opts(scriptedFetch(), undefined, { trackingId: 'tid2' }));
      u.record({ eventType: 'click' });
      assert.ok(globalThis.localStorage.getItem('opz:tid2:queue'), 'default: localStorage when there is one');
    } finally {
      delete globalThis.localStorage;
    }
  });
});

describe('EventQueue.batch', () => {
  const q = (id, sessionId, userId) => ({ sessionId, ...(userId ? { userId } : {}), event: { eventId: id, eventType: 'x', sentAt: 0 } });

  it('takes the oldest run of one identity, skipping events already in flight', () => {
    const queue = new EventQueue(100);
    [q('1', 's'), q('2', 's'), q('3', 's', 'u'), q('4', 's', 'u'), q('5', 's')].forEach((x) => queue.push(x));
    const ids = (b) => b.map((x) => x.event.eventId);
    assert.deepEqual(ids(queue.batch(10, new Set())), ['1', '2']);
    assert.deepEqual(ids(queue.batch(10, new Set(['1', '2']))), ['3', '4']);
    assert.deepEqual(ids(queue.batch(1, new Set(['1']))), ['2']);
    assert.deepEqual(ids(queue.batch(10, new Set(['1', '2', '3', '4']))), ['5']);
  });
});
