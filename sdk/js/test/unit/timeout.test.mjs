// Timeouts and AbortSignal, against a real local HTTP server that accepts the connection and
// never answers (real sockets, real fetch, real timers), and the default timeout on fake timers.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, afterEach, before, beforeEach, describe, it, mock } from 'node:test';
import { PersonalizeError, RuntimeClient, Tracker } from '../../dist/esm/index.js';
import { scriptedFetch, settle } from './helpers.mjs';

/** A server on 127.0.0.1 that reads each request and hands it to `answer(n, body, res)`: by
 * default it never answers. Records each request's eventIds and whether the client hung up. */
function hangingServer(answer = () => {}) {
  const requests = [];
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    const r = { url: req.url, body: body ? JSON.parse(body) : undefined, closedByClient: false };
    requests.push(r);
    res.on('close', () => { if (!res.writableEnded) r.closedByClient = true; });
    answer(requests.length, r, res);
  });
  return {
    requests,
    ids: () => requests.map((r) => r.body.eventList.map((e) => e.eventId)),
    start: () => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`))),
    stop: () => { server.closeAllConnections(); return new Promise((resolve) => server.close(resolve)); },
  };
}

async function waitFor(what, cond, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ok = (res) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end(''); };

describe('a server that accepts the connection and never answers', () => {
  let srv;
  let endpoint;
  before(async () => { srv = hangingServer(); endpoint = await srv.start(); });
  after(() => srv.stop());
  beforeEach(() => { srv.requests.length = 0; });

  it('tracker: each try times out, counts as a failure, and the queue moves on', async () => {
    const errors = [];
    const t = new Tracker({ endpoint, trackingId: 'tid', storage: null, timeoutMs: 150, maxAttempts: 2,
      backoff: { baseMs: 40, maxMs: 40 }, onError: (e, events) => errors.push([e, events.length]) });
    const ids = Array.from({ length: 25 }, (_, i) => t.record({ eventType: 'click', itemId: `i${i}` }));
    const start = Date.now();
    await t.flush();
    assert.ok(Date.now() - start < 2000, `flush() returned after ${Date.now() - start} ms`);
    assert.deepEqual(t.stats(), { queued: 25, sent: 0, dropped: 0, failed: 0 }, 'first try timed out: backing off');
    await waitFor('every batch given up', () => t.stats().failed === 25);
    assert.deepEqual(t.stats(), { queued: 0, sent: 0, dropped: 0, failed: 25 });
    // 3 batches (10, 10, 5), 2 tries each, in order: a hung batch no longer blocks the others
    assert.deepEqual(srv.ids(), [ids.slice(0, 10), ids.slice(0, 10), ids.slice(10, 20), ids.slice(10, 20),
      ids.slice(20), ids.slice(20)]);
    assert.deepEqual(errors.map(([e, n]) => [e.name, e.status, e.retryable, n]),
      [['TimeoutError', 0, true, 10], ['TimeoutError', 0, true, 10], ['TimeoutError', 0, true, 5]]);
    assert.ok(errors[0][0] instanceof PersonalizeError);
    await waitFor('the sockets closed', () => srv.requests.every((r) => r.closedByClient));
    assert.equal(await t.close(), 0);
  });

  it('tracker: flush({ signal }) aborts the request in flight; its events stay queued, no try counted', async () => {
    const t = new Tracker({ endpoint, trackingId: 'tid', storage: null, timeoutMs: 0, flushIntervalMs: 60_000 });
    for (let i = 0; i < 3; i++) t.record({ eventType: 'click', itemId: `i${i}` });
    const start = Date.now();
    await t.flush({ signal: AbortSignal.timeout(150) });
    assert.ok(Date.now() - start < 2000);
    assert.deepEqual(t.stats(), { queued: 3, sent: 0, dropped: 0, failed: 0 });
    await waitFor('the socket closed', () => srv.requests.length === 1 && srv.requests[0].closedByClient);
    const closing = new AbortController();
    setTimeout(() => closing.abort(), 100);
    assert.equal(await t.close({ signal: closing.signal }), 3, 'close() gives up waiting too');
  });

  it('runtime client: rejects with a TimeoutError after timeoutMs, and hangs up', async () => {
    const client = new RuntimeClient({ endpoint, timeoutMs: 150 });
    const start = Date.now();
    await assert.rejects(client.getRecommendations({ campaignArn: 'arn:c', userId: 'u' }),
      (e) => e instanceof PersonalizeError && e.name === 'TimeoutError' && e.status === 0);
    const took = Date.now() - start;
    assert.ok(took >= 140 && took < 2000, `${took} ms`);
    await waitFor('the socket closed', () => srv.requests[0]?.closedByClient);
    // a per-call timeout replaces the client's
    await assert.rejects(client.getPersonalizedRanking({ campaignArn: 'c', userId: 'u', inputList: ['a'] },
      { timeoutMs: 50 }), { name: 'TimeoutError' });
  });

  it('runtime client: an AbortSignal aborts the call (AbortError); an aborted one sends nothing', async () => {
    const client = new RuntimeClient({ endpoint, timeoutMs: 0 });
    const ctl = new AbortController();
    const call = client.getRecommendations({ campaignArn: 'arn:c', userId: 'u' }, { signal: ctl.signal });
    await waitFor('the request', () => srv.requests.length === 1);
    ctl.abort();
    await assert.rejects(call, (e) => e instanceof PersonalizeError && e.name === 'AbortError' && e.status === 0);
    await waitFor('the socket closed', () => srv.requests[0].closedByClient);
    await assert.rejects(client.getRecommendations({ campaignArn: 'arn:c', userId: 'u' }, { signal: ctl.signal }),
      { name: 'AbortError' });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(srv.requests.length, 1);
  });
});

describe('a server that hangs once, then answers', () => {
  it('the timed-out batch is retried with the same eventIds and everything is delivered', async () => {
    const srv = hangingServer((n, r, res) => { if (n > 1) ok(res); });
    const endpoint = await srv.start();
    try {
      const t = new Tracker({ endpoint, trackingId: 'tid', storage: null, timeoutMs: 150,
        backoff: { baseMs: 40, maxMs: 40 } });
      const ids = Array.from({ length: 25 }, (_, i) => t.record({ eventType: 'click', itemId: `i${i}` }));
      await t.flush();
      await waitFor('all sent', () => t.stats().sent === 25);
      assert.deepEqual(t.stats(), { queued: 0, sent: 25, dropped: 0, failed: 0 });
      assert.deepEqual(srv.ids(), [ids.slice(0, 10), ids.slice(0, 10), ids.slice(10, 20), ids.slice(20)]);
      await t.close();
    } finally {
      await srv.stop();
    }
  });

  it('a body that never ends times out too', async () => {
    const srv = hangingServer((n, r, res) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.write('{"itemList": ['); });
    const endpoint = await srv.start();
    try {
      await assert.rejects(new RuntimeClient({ endpoint, timeoutMs: 150 }).getRecommendations({ userId: 'u' }),
        { name: 'TimeoutError' });
    } finally {
      await srv.stop();
    }
  });
});

describe('default timeout (fake timers)', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_700_000_000_000 }));
  afterEach(() => mock.timers.reset());

  it('is 10 s, and holds even for a custom fetch that ignores the signal', async () => {
    const fetch = scriptedFetch('hang', 200);
    const t = new Tracker({ endpoint: 'http://opz.test', trackingId: 'tid', fetch, storage: null, random: () => 1 });
    t.record({ eventType: 'click', itemId: 'a' });
    let done = false;
    const flushed = t.flush().then(() => { done = true; });
    await settle();
    assert.ok(fetch.calls[0].init.signal, 'the request carries a signal');
    mock.timers.tick(9_999);
    await settle();
    assert.equal(done, false);
    mock.timers.tick(1);
    await settle();
    await flushed;
    assert.equal(fetch.calls[0].init.signal.aborted, true, 'the signal is aborted on timeout');
    mock.timers.tick(1000); // first backoff: 1 s
    await settle();
    assert.equal(fetch.calls.length, 2);
    assert.deepEqual(t.stats(), { queued: 0, sent: 1, dropped: 0, failed: 0 });

    const client = new RuntimeClient({ endpoint: 'http://opz.test', fetch: scriptedFetch('hang') });
    let error;
    const call = client.getRecommendations({ userId: 'u' }).catch((e) => { error = e; });
    mock.timers.tick(9_999);
    await settle();
    assert.equal(error, undefined);
    mock.timers.tick(1);
    await call;
    assert.equal(error?.name, 'TimeoutError');
  });
});
