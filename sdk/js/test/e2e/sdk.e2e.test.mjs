// The SDK against a real `personalize serve` (embedded): what the tracker sends is what the
// server stores, in order; retries and refusals behave; recommendations come back typed.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { PersonalizeError, recordShown, RuntimeClient, Tracker } from '../../dist/esm/index.js';
import { arn, popularityCampaign, startServer } from './server.mjs';

let server;
before(async () => { server = await startServer({ env: { OPZ_MIN_TRAINING_INTERACTIONS: '100' } }); });
after(async () => { await server?.stop(); });

/** fetch, counting the PutEvents calls and their sizes. */
function countingFetch() {
  const sizes = [];
  const f = (url, init) => {
    if (url.endsWith('/events')) sizes.push(JSON.parse(init.body).eventList.length);
    return fetch(url, init);
  };
  return Object.assign(f, { sizes });
}

describe('tracker -> PutEvents -> the event log', () => {
  it('stores every event once, in order, anonymous then identified in the same session', async () => {
    const { trackingId } = await server.tracker('web');
    const f = countingFetch();
    const t = new Tracker({ endpoint: server.url, trackingId, fetch: f, storage: null });
    const t0 = Date.now() / 1000;
    const anon = Array.from({ length: 13 }, (_, i) => t.record({ eventType: 'click', itemId: `item-${i}`,
      eventValue: i / 2, properties: { numberOfRatings: i, source: 'home' },
      ...(i === 0 ? { impression: ['item-0', 'item-1', 'item-2'], recommendationId: 'RID-home-1' } : {}) }));
    t.identify('user-42');
    const known = ['a', 'b', 'c', 'd'].map((itemId) => t.record({ eventType: 'purchase', itemId }));
    await t.flush();
    assert.deepEqual(t.stats(), { queued: 0, sent: 17, dropped: 0, failed: 0 });
    assert.deepEqual(f.sizes, [10, 3, 4], 'at most 10 per call; the identity change starts a new call');

    const stored = await server.events('web', 17);
    assert.deepEqual(stored.map((e) => e.event_id), [...anon, ...known]);
    assert.deepEqual(new Set(stored.map((e) => e.session_id)), new Set([t.sessionId]), 'one session: stitched');
    assert.deepEqual(stored.map((e) => e.user_id ?? null), [...anon.map(() => null), ...known.map(() => 'user-42')]);
    assert.equal(stored[0].tracking_id, trackingId);
    assert.deepEqual(stored[0].impression, ['item-0', 'item-1', 'item-2']);
    assert.equal(stored[0].recommendation_id, 'RID-home-1');
    assert.deepEqual(stored[5].properties, { numberOfRatings: 5, source: 'home' });
    assert.equal(stored[5].event_value, 2.5);
    assert.equal(stored[13].event_type, 'purchase');
    for (const e of stored) assert.ok(Math.abs(e.sent_at - t0) < 30, `sent_at in epoch seconds: ${e.sent_at}`);
  });

  it('a refused batch (unknown trackingId: 404) is reported once and never retried', async () => {
    const f = countingFetch();
    const errors = [];
    const t = new Tracker({ endpoint: server.url, trackingId: 'no-such-tracker', fetch: f, storage: null,
      backoff: { baseMs: 10 }, onError: (e, events) => errors.push([e, events.length]) });
    t.record({ eventType: 'click', itemId: 'x' });
    await t.flush();
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(f.sizes, [1]);
    assert.equal(errors.length, 1);
    const [e, n] = errors[0];
    assert.ok(e instanceof PersonalizeError);
    assert.equal(e.name, 'ResourceNotFoundException');
    assert.equal(e.status, 404);
    assert.match(e.message, /no-such-tracker/);
    assert.equal(n, 1);
    assert.deepEqual(t.stats(), { queued: 0, sent: 0, dropped: 0, failed: 1 });
  });

  it('waits out a 503 with Retry-After, then the server stores the batch once', async () => {
    const { trackingId } = await server.tracker('busy');
    const seen = [];
    const proxy = createServer(async (req, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      seen.push({ at: Date.now(), body });
      if (seen.length === 1) {
        res.writeHead(503, { 'Content-Type': 'application/x-amz-json-1.1', 'Retry-After': '0.3',
          'x-amzn-ErrorType': 'ServiceUnavailableException' });
        res.end(JSON.stringify({ __type: 'ServiceUnavailableException', message: 'Kafka did not acknowledge' }));
        return;
      }
      const upstream = await fetch(server.url + req.url, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
      res.writeHead(upstream.status);
      res.end(await upstream.text());
    });
    await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const t = new Tracker({ endpoint: `http://127.0.0.1:${proxy.address().port}`, trackingId, storage: null });
      const ids = [1, 2, 3].map((i) => t.record({ eventType: 'click', itemId: `i${i}` }));
      await t.flush();
      assert.equal(seen.length, 1);
      assert.equal(t.stats().queued, 3, 'kept for the retry');
      const deadline = Date.now() + 5000;
      while (t.stats().queued && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(seen.length, 2);
      assert.ok(seen[1].at - seen[0].at >= 290, `retried after ${seen[1].at - seen[0].at} ms, Retry-After was 300`);
      assert.equal(seen[1].body, seen[0].body, 'the same request again: same eventIds');
      assert.deepEqual((await server.events('busy', 3)).map((e) => e.event_id), ids);
    } finally {
      proxy.close();
    }
  });
});

describe('a hung server does not stall the queue', () => {
  it('the first PutEvents never gets an answer: it times out, is retried, and all 25 events are stored once, in order', async () => {
    const { trackingId } = await server.tracker('hung');
    const seen = [];
    // accepts every connection; never answers the first request, forwards the others
    const proxy = createServer(async (req, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      seen.push(JSON.parse(body).eventList.map((e) => e.eventId));
      if (seen.length === 1) return;
      const upstream = await fetch(server.url + req.url, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
      res.writeHead(upstream.status);
      res.end(await upstream.text());
    });
    await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const t = new Tracker({ endpoint: `http://127.0.0.1:${proxy.address().port}`, trackingId, storage: null,
        timeoutMs: 500, backoff: { baseMs: 100, maxMs: 100 } });
      const ids = Array.from({ length: 25 }, (_, i) => t.record({ eventType: 'click', itemId: `i${i}` }));
      const start = Date.now();
      await t.flush();
      assert.ok(Date.now() - start < 3000, `flush() returned after ${Date.now() - start} ms`);
      const deadline = Date.now() + 10_000;
      while (t.stats().queued && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(t.stats(), { queued: 0, sent: 25, dropped: 0, failed: 0 });
      assert.deepEqual(seen, [ids.slice(0, 10), ids.slice(0, 10), ids.slice(10, 20), ids.slice(20)]);
      assert.deepEqual((await server.events('hung', 25)).map((e) => e.event_id), ids);
    } finally {
      proxy.closeAllConnections();
      proxy.close();
    }
  });
});

describe('runtime client', () => {
  let shop;
  before(async () => { shop = await popularityCampaign(server, 'shop'); });

  it('gets recommendations, records what was shown and the click, and the click changes the next answer', async () => {
    const client = new RuntimeClient({ endpoint: server.url });
    const tracker = new Tracker({ endpoint: server.url, trackingId: shop.trackingId, storage: null, userId: 'fresh-user' });
    const first = await client.getRecommendations({ campaignArn: shop.campaignArn, userId: 'fresh-user', numResults: 5 });
    assert.deepEqual(first.itemList.map((i) => i.itemId), ['item-0', 'item-1', 'item-2', 'item-3', 'item-4']);
    assert.ok(first.itemList.every((i) => typeof i.score === 'number' && i.score > 0));
    assert.match(first.recommendationId, /^RID-/);
    const shown = recordShown(tracker, first);
    const click = tracker.record({ eventType: 'click', itemId: 'item-0', recommendationId: first.recommendationId });
    await tracker.flush();

    const stored = await server.events('shop', 2);
    assert.deepEqual(stored.map((e) => e.event_id), [shown, click]);
    assert.deepEqual(stored[0].impression, ['item-0', 'item-1', 'item-2', 'item-3', 'item-4']);
    assert.equal(stored[0].recommendation_id, first.recommendationId);
    assert.equal(stored[1].recommendation_id, first.recommendationId);

    // as on Personalize, a filter on the user's clicks is what leaves the clicked item out
    const { filterArn } = await server.control('CreateFilter', { name: 'unclicked', datasetGroupArn: shop.datasetGroupArn,
      filterExpression: 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")' });
    const deadline = Date.now() + 5000;
    let next;
    do {
      next = await client.getRecommendations({ campaignArn: shop.campaignArn, userId: 'fresh-user', numResults: 5, filterArn });
    } while (next.itemList[0].itemId === 'item-0' && Date.now() < deadline);
    assert.deepEqual(next.itemList.map((i) => i.itemId), ['item-1', 'item-2', 'item-3', 'item-4', 'item-5'],
      'the filter leaves out what the user just clicked');
  });

  it('ranks a list, unknown items last', async () => {
    const client = new RuntimeClient({ endpoint: server.url });
    const r = await client.getPersonalizedRanking({ campaignArn: shop.campaignArn, userId: 'u-rank',
      inputList: ['brand-new', 'item-9', 'item-2', 'item-20'] });
    assert.deepEqual(r.personalizedRanking.map((i) => i.itemId), ['item-2', 'item-9', 'item-20', 'brand-new']);
    assert.match(r.recommendationId, /^RID-/);
  });

  it('rejects with the server\'s error names', async () => {
    const client = new RuntimeClient({ endpoint: server.url });
    await assert.rejects(client.getRecommendations({ campaignArn: arn('campaign', 'nope'), userId: 'u' }),
      (e) => e instanceof PersonalizeError && e.name === 'ResourceNotFoundException' && e.status === 404);
    await assert.rejects(client.getRecommendations({ campaignArn: shop.campaignArn, userId: 'u', numResults: 0 }),
      (e) => e.name === 'InvalidInputException' && e.status === 400 && /numResults/.test(e.message));
  });
});
