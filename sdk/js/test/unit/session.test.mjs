// Session ids: stable while active, rotated after 30 idle minutes, kept across reloads.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Tracker } from '../../dist/esm/index.js';
import { MemoryStorage, scriptedFetch, UUID } from './helpers.mjs';

const T0 = 1_700_000_000_000;
const MIN = 60_000;
const opts = (storage, extra = {}) => ({
  endpoint: 'http://opz.test', trackingId: 'tid', fetch: scriptedFetch(), storage, flushIntervalMs: 1e9, ...extra,
});

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 }));
afterEach(() => mock.timers.reset());

describe('session', () => {
  it('stays while events keep coming and rotates after 30 minutes idle', () => {
    const t = new Tracker(opts(null));
    const s1 = t.sessionId;
    assert.match(s1, UUID);
    for (let i = 0; i < 5; i++) {
      mock.timers.tick(29 * MIN);
      t.record({ eventType: 'click' });
      assert.equal(t.sessionId, s1, 'activity every 29 minutes keeps the session');
    }
    mock.timers.tick(30 * MIN + 1);
    t.record({ eventType: 'click' });
    assert.notEqual(t.sessionId, s1);
    assert.match(t.sessionId, UUID);
  });

  it('honours sessionTimeoutMs', () => {
    const t = new Tracker(opts(null, { sessionTimeoutMs: 1000 }));
    t.record({ eventType: 'click' });
    const s1 = t.sessionId;
    mock.timers.tick(1001);
    t.record({ eventType: 'click' });
    assert.notEqual(t.sessionId, s1);
  });

  it('survives a reload with its user, and expires across one too', () => {
    const storage = new MemoryStorage();
    const page1 = new Tracker(opts(storage));
    page1.identify('u1');
    page1.record({ eventType: 'click' });
    mock.timers.tick(10 * MIN);
    const page2 = new Tracker(opts(storage));
    assert.equal(page2.sessionId, page1.sessionId);
    assert.equal(page2.userId, 'u1');
    mock.timers.tick(31 * MIN);
    const page3 = new Tracker(opts(storage));
    assert.notEqual(page3.sessionId, page1.sessionId, 'idle too long: new session');
    assert.equal(page3.userId, 'u1', 'still signed in');
  });

  it('a page started for another user does not adopt the saved session', () => {
    const storage = new MemoryStorage();
    const page1 = new Tracker(opts(storage, { userId: 'alice' }));
    page1.record({ eventType: 'click' });
    const page2 = new Tracker(opts(storage, { userId: 'bob' }));
    assert.notEqual(page2.sessionId, page1.sessionId);
    assert.equal(page2.userId, 'bob');
  });

  it('reset() after a reload stays reset', () => {
    const storage = new MemoryStorage();
    const page1 = new Tracker(opts(storage, { userId: 'alice' }));
    page1.reset();
    const page2 = new Tracker(opts(storage));
    assert.equal(page2.userId, undefined);
    assert.equal(page2.sessionId, page1.sessionId);
  });
});
