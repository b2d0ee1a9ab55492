// Backoff with jitter, Retry-After, and which answers are retried (429, 5xx, network) or not (4xx).
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { PersonalizeError, Tracker } from '../../dist/esm/index.js';
import { backoffDelay, parseRetryAfter } from '../../dist/esm/backoff.js';
import { scriptedFetch, settle } from './helpers.mjs';

const T0 = 1_700_000_000_000;
const opts = (fetch, extra = {}) => ({
  endpoint: 'http://opz.test', trackingId: 'tid', fetch, storage: null, random: () => 0, ...extra,
});

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 }));
afterEach(() => mock.timers.reset());

/** Advance the fake clock in steps, letting fetches settle, and return how many calls were made. */
async function advance(ms, fetch) {
  mock.timers.tick(ms);
  await settle();
  return fetch.calls.length;
}

describe('backoff maths', () => {
  it('doubles from baseMs up to maxMs, jittered within [cap/2, cap]', () => {
    const o = { baseMs: 1000, maxMs: 60_000 };
    assert.deepEqual([1, 2, 3, 4, 7, 8, 20].map((n) => backoffDelay(n, o, () => 1)),
      [1000, 2000, 4000, 8000, 60_000, 60_000, 60_000]);
    assert.deepEqual([1, 2, 3].map((n) => backoffDelay(n, o, () => 0)), [500, 1000, 2000]);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(3, o);
      assert.ok(d >= 2000 && d <= 4000, `${d}`);
    }
  });

  it('reads Retry-After as seconds or an HTTP date, ignores garbage, caps at 10 minutes', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    assert.equal(parseRetryAfter('3', now), 3000);
    assert.equal(parseRetryAfter('0.25', now), 250);
    assert.equal(parseRetryAfter('Wed, 01 May 2024 12:00:07 GMT', now), 7000);
    assert.equal(parseRetryAfter('Wed, 01 May 2024 11:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('-5', now), 0);
    assert.equal(parseRetryAfter('86400', now), 600_000);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(parseRetryAfter('', now), undefined);
  });
});

describe('retries', () => {
  it('waits exactly Retry-After on 503, then resends the same eventIds', async () => {
    const fetch = scriptedFetch({ status: 503, headers: { 'Retry-After': '2' } }, 200);
    const t = new Tracker(opts(fetch));
    t.record({ eventType: 'click', itemId: 'a' });
    await t.flush();
    assert.equal(fetch.calls.length, 1);
    assert.equal(await advance(1999, fetch), 1, 'not before Retry-After');
    assert.equal(await advance(1, fetch), 2, 'right at Retry-After');
    assert.deepEqual(fetch.ids()[1], fetch.ids()[0], 'a retry is the same events: the server dedupes');
    assert.deepEqual(t.stats(), { queued: 0, sent: 1, dropped: 0, failed: 0 });
  });

  it('backs off exponentially on 429 without Retry-After, and a full batch does not jump the wait', async () => {
    const fetch = scriptedFetch(429, 429, 200);
    const t = new Tracker(opts(fetch));
    t.record({ eventType: 'click' });
    await t.flush();
    // random() = 0: delays are baseMs/2 * 2^(n-1) = 500, then 1000
    for (let i = 0; i < 10; i++) t.record({ eventType: 'click' });
    await t.flush();
    assert.equal(await advance(499, fetch), 1, 'still backing off although 11 events wait');
    assert.equal(await advance(1, fetch), 2);
    assert.equal(await advance(999, fetch), 2);
    assert.equal(await advance(1, fetch), 4, 'then the two batches go out');
    assert.deepEqual(fetch.ids().slice(2).map((b) => b.length), [10, 1]);
  });

  it('retries a ThrottlingException (HTTP 400, as AWS sends it) after its Retry-After', async () => {
    const fetch = scriptedFetch({
      status: 400, headers: { 'x-amzn-ErrorType': 'ThrottlingException', 'Retry-After': '1' },
      body: { __type: 'ThrottlingException', message: 'Rate exceeded' },
    }, 200);
    const t = new Tracker(opts(fetch));
    t.record({ eventType: 'click' });
    await t.flush();
    assert.equal(await advance(999, fetch), 1);
    assert.equal(await advance(1, fetch), 2);
    assert.deepEqual(fetch.ids()[1], fetch.ids()[0]);
    assert.deepEqual(t.stats(), { queued: 0, sent: 1, dropped: 0, failed: 0 });
  });

  it('retries network errors until maxAttempts, then drops the batch and reports it', async () => {
    const fetch = scriptedFetch();
    fetch.always('network');
    const errors = [];
    const t = new Tracker(opts(fetch, { maxAttempts: 3, onError: (e, events) => errors.push([e, events]) }));
    const id = t.record({ eventType: 'click' });
    await t.flush();
    await advance(500, fetch);
    assert.equal(await advance(1000, fetch), 3);
    assert.equal(errors.length, 1);
    const [err, events] = errors[0];
    assert.ok(err instanceof PersonalizeError);
    assert.equal(err.name, 'NetworkError');
    assert.equal(err.status, 0);
    assert.deepEqual(events.map((e) => e.eventId), [id]);
    assert.deepEqual(t.stats(), { queued: 0, sent: 0, dropped: 0, failed: 1 });
    assert.equal(await advance(120_000, fetch), 3, 'given up: no more calls');
  });

  for (const status of [400, 404, 413]) {
    it(`never retries a ${status}: drops those events, reports them, goes on with the next batch`, async () => {
      const fetch = scriptedFetch({
        status, headers: { 'x-amzn-ErrorType': 'InvalidInputException:http://internal.amazon.com/' },
        body: { __type: 'InvalidInputException', message: 'eventList.0.itemId: too long' },
      }, 200);
      const errors = [];
      const t = new Tracker(opts(fetch, { batchSize: 2, onError: (e, events) => errors.push([e, events]) }));
      const ids = [1, 2, 3].map(() => t.record({ eventType: 'click' }));
      await t.flush();
      await advance(600_000, fetch);
      assert.equal(fetch.calls.length, 2, 'the bad batch once, then the next one');
      assert.deepEqual(fetch.ids(), [ids.slice(0, 2), ids.slice(2)]);
      assert.equal(errors.length, 1);
      assert.equal(errors[0][0].name, 'InvalidInputException');
      assert.equal(errors[0][0].status, status);
      assert.equal(errors[0][0].message, 'eventList.0.itemId: too long');
      assert.equal(errors[0][0].retryable, false);
      assert.deepEqual(errors[0][1].map((e) => e.eventId), ids.slice(0, 2));
      assert.deepEqual(t.stats(), { queued: 0, sent: 1, dropped: 0, failed: 2 });
    });
  }

  it('a throwing onError does not stop the queue', async () => {
    const fetch = scriptedFetch(400, 200);
    const t = new Tracker(opts(fetch, { batchSize: 1, onError: () => { throw new Error('boom'); } }));
    t.record({ eventType: 'a' });
    t.record({ eventType: 'b' });
    await t.flush();
    assert.equal(fetch.calls.length, 2);
    assert.equal(t.stats().sent, 1);
  });

  it('close() makes one last try at once, ignoring the backoff, and reports what is left', async () => {
    const fetch = scriptedFetch({ status: 503, headers: { 'Retry-After': '60' } }, 503);
    const t = new Tracker(opts(fetch));
    t.record({ eventType: 'click' });
    await t.flush();
    assert.equal(await t.close(), 1);
    assert.equal(fetch.calls.length, 2);
    assert.equal(await advance(600_000, fetch), 2, 'closed: no timers');
  });
});
