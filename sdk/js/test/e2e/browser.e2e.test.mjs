// A real browser (Debian's chromium, driven by playwright-core) on the demo page, served from
// another origin than the API: the server sees exactly the clicks, in order, including the
// batch handed to sendBeacon / fetch(keepalive) when the page is hidden or left.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { popularityCampaign, SDK, startServer } from './server.mjs';

const CHROMIUM = process.env.OPZ_CHROMIUM || '/usr/bin/chromium';
const TYPES = { '.html': 'text/html', '.js': 'text/javascript' };
let server;
let site;
let browser;
let shop;

/** The demo page and the bundle, served from their own origin (another port than the API). */
function staticSite() {
  return new Promise((ok) => {
    const s = createServer((req, res) => {
      const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^\/+/, '');
      const file = join(SDK, path);
      if (!/^(examples|dist\/browser)\//.test(path) || !existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(readFileSync(file));
    });
    s.listen(0, '127.0.0.1', () => ok(s));
  });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)`);
  site = await staticSite();
  // the page's origin: the one origin the API answers CORS for (OPZ_CORS_ORIGINS; none by default)
  const origin = `http://127.0.0.1:${site.address().port}`;
  server = await startServer({ env: { OPZ_MIN_TRAINING_INTERACTIONS: '100', OPZ_CORS_ORIGINS: origin } });
  shop = await popularityCampaign(server, 'shop');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
});

after(async () => {
  await browser?.close();
  site?.close();
  await server?.stop();
});

/** A fresh browser profile on the shop page; `requests` collects what the page sends to /events. */
async function open(params) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const requests = [];
  context.on('request', (r) => {
    if (r.url().endsWith('/events') && r.method() === 'POST') {
      requests.push({ type: r.resourceType(), contentType: r.headers()['content-type'], body: JSON.parse(r.postData()) });
    }
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  const query = new URLSearchParams({ endpoint: server.url, flushMs: '600000', ...params });
  await page.goto(`http://127.0.0.1:${site.address().port}/examples/shop.html?${query}`);
  assert.equal(await page.evaluate(() => window.ready), 'ok');
  return { page, context, requests, errors };
}

const stats = (page) => page.evaluate(() => window.tracker.stats());

describe('demo page in chromium', () => {
  it('anonymous visitor: shown recommendations and clicks arrive in order when leaving the page (beacon)', async () => {
    const { page, context, requests, errors } = await open({ trackingId: shop.trackingId, campaignArn: shop.campaignArn });
    const recommendationId = await page.getAttribute('#recs', 'data-recommendation-id');
    const shown = await page.$$eval('#recs button', (bs) => bs.map((b) => b.dataset.item));
    assert.deepEqual(shown, ['item-0', 'item-1', 'item-2', 'item-3'], 'the popularity campaign, via CORS');
    await page.click('#recs [data-item="item-2"]');
    await page.click('#recs [data-item="item-0"]');
    await page.click('#items [data-item="item-12"]');
    assert.deepEqual(await stats(page), { queued: 4, sent: 0, dropped: 0, failed: 0 });
    assert.deepEqual(await server.events('shop', 0), [], 'nothing sent yet: 4 events < 10, 10 min interval');
    const sessionId = await page.evaluate(() => window.tracker.sessionId);

    await page.click('#away'); // pagehide -> navigator.sendBeacon
    await page.waitForURL(/bye\.html$/);
    const stored = await server.events('shop', 4);
    assert.deepEqual(stored.map((e) => [e.event_type, e.item_id ?? null, e.recommendation_id ?? null]), [
      ['impression', null, recommendationId],
      ['click', 'item-2', recommendationId],
      ['click', 'item-0', recommendationId],
      ['click', 'item-12', null]]);
    assert.deepEqual(stored[0].impression, shown);
    assert.ok(stored.every((e) => e.session_id === sessionId && e.user_id === undefined));
    // (playwright does not report requests made while a page unloads: the beacon's text/plain
    // Content-Type is checked on a hidden tab below; here the page is gone, so nothing but the
    // beacon handed over at pagehide can have delivered the 4 events: the interval is 10 min)
    assert.deepEqual(requests, []);
    assert.deepEqual(errors, []);
    await context.close();
  });

  it('signed-in shopper: a full batch goes by fetch (CORS), the rest when the tab is hidden', async () => {
    const { trackingId } = await server.tracker('signed-in');
    const { page, context, requests } = await open({ trackingId });
    await page.fill('#user', 'shopper-1');
    await page.click('#signin');
    const clicks = Array.from({ length: 12 }, (_, i) => `item-${10 + (i * 7) % 4}`);
    for (const item of clicks) await page.click(`#items [data-item="${item}"]`);
    await page.waitForFunction(() => window.tracker.stats().sent === 10, null, { timeout: 5000 });
    assert.equal((await stats(page)).queued, 2, 'the fetch answer was readable cross-origin');
    // the user switches tabs: the page stays, but is hidden
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    assert.deepEqual(await stats(page), { queued: 0, sent: 12, dropped: 0, failed: 0 });
    const stored = await server.events('signed-in', 12);
    assert.deepEqual(stored.map((e) => e.item_id), clicks);
    assert.ok(stored.every((e) => e.user_id === 'shopper-1'));
    assert.deepEqual(requests.map((r) => [r.type, r.contentType, r.body.eventList.length]),
      [['fetch', 'application/json', 10], ['ping', 'text/plain;charset=UTF-8', 2]]);
    await context.close();
  });

  it('a reload keeps the queue (localStorage) and the session', async () => {
    const { trackingId } = await server.tracker('reload');
    const { page, context } = await open({ trackingId, hide: '0' });
    await page.click('#items [data-item="item-11"]');
    await page.click('#items [data-item="item-13"]');
    const before = await page.evaluate(() => ({ sessionId: window.tracker.sessionId,
      saved: JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.endsWith(':queue')))).length }));
    assert.equal(before.saved, 2);
    await page.reload();
    assert.equal(await page.evaluate(() => window.ready), 'ok');
    assert.equal(await page.evaluate(() => window.tracker.sessionId), before.sessionId);
    await page.click('#items [data-item="item-10"]');
    await page.evaluate(() => window.tracker.flush());
    const stored = await server.events('reload', 3);
    assert.deepEqual(stored.map((e) => e.item_id), ['item-11', 'item-13', 'item-10']);
    assert.ok(stored.every((e) => e.session_id === before.sessionId));
    assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.endsWith(':queue')).length), 0);
    await context.close();
  });

  it('consent withdrawn: disable() empties localStorage, and nothing is sent, even on leaving the page', async () => {
    const { trackingId } = await server.tracker('consent');
    const { page, context, requests, errors } = await open({ trackingId });
    await page.click('#items [data-item="item-10"]');
    await page.click('#items [data-item="item-11"]');
    const keys = () => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('opz:')).sort());
    assert.equal((await keys()).length, 2, 'queue and session saved');
    await page.evaluate(() => window.tracker.disable());
    assert.deepEqual(await keys(), []);
    await page.click('#items [data-item="item-12"]');
    await page.fill('#user', 'shopper-2');
    await page.click('#signin');
    assert.deepEqual(await keys(), [], 'nothing stored while disabled');
    assert.deepEqual(await stats(page), { queued: 0, sent: 0, dropped: 0, failed: 0 });
    await page.click('#away'); // pagehide: nothing to hand to sendBeacon
    await page.waitForURL(/bye\.html$/);
    assert.deepEqual(await server.events('consent', 0), []);
    assert.deepEqual(requests, []);
    assert.deepEqual(errors, []);
    await context.close();
  });

  it('without sendBeacon: fetch with keepalive delivers when leaving the page', async () => {
    const { trackingId } = await server.tracker('keepalive');
    const { page, context } = await open({ trackingId, beacon: '0' });
    await page.click('#items [data-item="item-10"]');
    await page.click('#items [data-item="item-11"]');
    await page.click('#away');
    await page.waitForURL(/bye\.html$/);
    const stored = await server.events('keepalive', 2);
    // a cross-origin application/json request: the keepalive fetch was preflighted and sent
    // after the page had gone
    assert.deepEqual(stored.map((e) => e.item_id), ['item-10', 'item-11']);
    await context.close();
  });
});
