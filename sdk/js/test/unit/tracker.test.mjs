// Batching, identity and validation of the Tracker, on fake timers and a scripted fetch.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Tracker } from '../../dist/esm/index.js';
import { scriptedFetch, settle, UUID } from './helpers.mjs';

const T0 = 1_700_000_000_000;
const base = (fetch, extra = {}) => ({ endpoint: 'http://opz.test/', trackingId: 'tid-1', fetch, storage: null, ...extra });

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 }));
afterEach(() => mock.timers.reset());

describe('batching', () => {
  it('sends a full batch of 10 at once, in PutEvents wire format', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(base(fetch));
    const ids = [];
    for (let i = 0; i < 10; i++) {
      ids.push(t.record({ eventType: 'click', itemId: `i${i}`, eventValue: i, properties: { price: 9.5, color: 'red' } }));
    }
    await settle();
    assert.equal(fetch.calls.length, 1);
    const { url, init, body } = fetch.calls[0];
    assert.equal(url, 'http://opz.test/events');
    assert.equal(init.method, 'POST');
    assert.equal(init.headers['Content-Type'], 'application/json');
    assert.equal(body.trackingId, 'tid-1');
    assert.ok(!('userId' in body), 'anonymous: no userId');
    assert.match(body.sessionId, UUID);
    assert.deepEqual(body.eventList.map((e) => e.eventId), ids);
    ids.forEach((id) => assert.match(id, UUID));
    assert.deepEqual(body.eventList[3], {
      eventId: ids[3], eventType: 'click', sentAt: T0 / 1000, itemId: 'i3', eventValue: 3,
      properties: '{"price":9.5,"color":"red"}',
    });
    assert.equal(typeof body.eventList[0].sentAt, 'number', 'sentAt: epoch seconds as a JSON number');
    assert.deepEqual(t.stats(), { queued: 0, sent: 10, dropped: 0, failed: 0 });
  });

  it('sends a partial batch after the 5 s flush interval, not before', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(base(fetch));
    t.record({ eventType: 'view', itemId: 'a' });
    mock.timers.tick(3000);
    t.record({ eventType: 'view', itemId: 'b' });
    mock.timers.tick(1999);
    await settle();
    assert.equal(fetch.calls.length, 0);
    mock.timers.tick(1);
    await settle();
    assert.equal(fetch.calls.length, 1);
    assert.deepEqual(fetch.calls[0].body.eventList.map((e) => e.itemId), ['a', 'b']);
    assert.deepEqual(fetch.calls[0].body.eventList.map((e) => e.sentAt), [T0 / 1000, (T0 + 3000) / 1000]);
  });

  it('keeps the order over many batches and never sends more than 10 per call', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(base(fetch));
    const ids = Array.from({ length: 25 }, (_, i) => t.record({ eventType: 'click', itemId: `i${i}` }));
    await settle();
    mock.timers.tick(5000);
    await settle();
    assert.deepEqual(fetch.ids().map((b) => b.length), [10, 10, 5]);
    assert.deepEqual(fetch.ids().flat(), ids);
  });

  it('honours a smaller batchSize and clamps a bigger one to 10', async () => {
    const small = scriptedFetch();
    const t = new Tracker(base(small, { batchSize: 3 }));
    for (let i = 0; i < 3; i++) t.record({ eventType: 'click' });
    await settle();
    assert.deepEqual(small.ids().map((b) => b.length), [3]);
    const big = scriptedFetch();
    const u = new Tracker(base(big, { batchSize: 50 }));
    for (let i = 0; i < 12; i++) u.record({ eventType: 'click' });
    await settle();
    // the pass started by the full batch also takes the 2 recorded meanwhile
    assert.deepEqual(big.ids().map((b) => b.length), [10, 2]);
  });

  it('flush() sends what is queued now and resolves when done', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(base(fetch));
    t.record({ eventType: 'click', itemId: 'x' });
    await t.flush();
    assert.equal(fetch.calls.length, 1);
    assert.equal(t.stats().queued, 0);
    mock.timers.tick(10_000);
    await settle();
    assert.equal(fetch.calls.length, 1, 'nothing left for the timer');
  });
});

describe('identity', () => {
  it('identify() keeps the sessionId (stitching) and splits batches by identity', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(base(fetch));
    t.record({ eventType: 'view', itemId: 'a' });
    t.record({ eventType: 'view', itemId: 'b' });
    t.identify('user-7');
    t.record({ eventType: 'purchase', itemId: 'b' });
    await t.flush();
    assert.equal(fetch.calls.length, 2);
    const [anon, known] = fetch.calls.map((c) => c.body);
    assert.ok(!('userId' in anon));
    assert.equal(known.userId, 'user-7');
    assert.equal(anon.sessionId, known.sessionId);
    assert.deepEqual(anon.eventList.map((e) => e.itemId), ['a', 'b']);
    assert.deepEqual(known.eventList.map((e) => e.eventType), ['purchase']);
  });

  it('reset() makes events anonymous in a new session; another user gets a new session too', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(base(fetch, { userId: 'u1' }));
    const s1 = t.sessionId;
    t.record({ eventType: 'click' });
    t.reset();
    assert.equal(t.userId, undefined);
    assert.notEqual(t.sessionId, s1);
    t.record({ eventType: 'click' });
    const s2 = t.sessionId;
    t.identify('u2');
    assert.equal(t.sessionId, s2, 'anonymous -> u2 keeps the session');
    t.identify('u3');
    assert.notEqual(t.sessionId, s2, 'u2 -> u3 is someone else');
    await t.flush();
    assert.deepEqual(fetch.calls.map((c) => [c.body.userId, c.body.sessionId]), [['u1', s1], [undefined, s2]]);
  });
});

describe('validation', () => {
  const bad = [
    [{}, /eventType/],
    [{ eventType: '' }, /eventType/],
    [{ eventType: 'x'.repeat(257) }, /eventType/],
    [{ eventType: 'click', properties: { userId: 'me' } }, /reserved keys userId/],
    [{ eventType: 'click', properties: '[1]' }, /JSON object/],
    [{ eventType: 'click', properties: { note: 'x'.repeat(1100) } }, /1024/],
    [{ eventType: 'click', impression: Array.from({ length: 26 }, (_, i) => `i${i}`) }, /1 to 25/],
    [{ eventType: 'click', impression: [] }, /1 to 25/],
    [{ eventType: 'click', recommendationId: 'r'.repeat(41) }, /recommendationId/],
    [{ eventType: 'click', eventValue: Number.NaN }, /eventValue/],
    [{ eventType: 'click', timestamp: 'yesterday' }, /timestamp/],
  ];
  for (const [input, message] of bad) {
    it(`refuses ${JSON.stringify(input).slice(0, 60)}`, () => {
      const t = new Tracker(base(scriptedFetch()));
      assert.throws(() => t.record(input), (e) => e instanceof TypeError && message.test(e.message));
      assert.equal(t.stats().queued, 0);
    });
  }

  it('takes timestamp, impression and recommendationId as they are', async () => {
    const fetch = scriptedFetch();
    const t = new Tracker(base(fetch));
    t.record({ eventType: 'click', itemId: 'b', impression: ['a', 'b'], recommendationId: 'RID-1',
      timestamp: new Date(1_600_000_000_500) });
    await t.flush();
    const e = fetch.calls[0].body.eventList[0];
    assert.equal(e.sentAt, 1_600_000_000.5);
    assert.deepEqual(e.impression, ['a', 'b']);
    assert.equal(e.recommendationId, 'RID-1');
  });

  it('needs an endpoint and a trackingId', () => {
    assert.throws(() => new Tracker({ trackingId: 't' }), /endpoint/);
    assert.throws(() => new Tracker({ endpoint: 'http://x' }), /trackingId/);
  });
});
