// AWS SDK for JavaScript v3, unchanged but for `endpoint`, against the same server: the wire
// format our SDK sends is the one the AWS SDK sends, and the AWS SDK parses our answers and errors.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PersonalizeEventsClient, PutEventsCommand } from '@aws-sdk/client-personalize-events';
import {
  GetPersonalizedRankingCommand, GetRecommendationsCommand, PersonalizeRuntimeClient,
  ResourceNotFoundException,
} from '@aws-sdk/client-personalize-runtime';
import { RuntimeClient, Tracker } from '../../dist/esm/index.js';
import { arn, popularityCampaign, REGION, startServer } from './server.mjs';

// Node 20 is what this machine has; the AWS SDK's "upgrade to Node 22" notice is noise here
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let server;
let shop;
const bodies = [];
const config = () => ({ endpoint: server.url, region: REGION, maxAttempts: 1,
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'dummy-secret' } });

before(async () => {
  server = await startServer({ env: { OPZ_MIN_TRAINING_INTERACTIONS: '100' } });
  shop = await popularityCampaign(server, 'shop');
});
after(async () => { await server?.stop(); });

function eventsClient() {
  const client = new PersonalizeEventsClient(config());
  client.middlewareStack.add((next) => async (args) => {
    const { body } = args.request;
    bodies.push(JSON.parse(typeof body === 'string' ? body : new TextDecoder().decode(body)));
    return next(args);
  }, { step: 'finalizeRequest', name: 'captureBody' });
  return client;
}

describe('@aws-sdk/client-personalize-events', () => {
  it('PutEvents is stored, and our tracker sends the very same wire format', async () => {
    const { trackingId } = await server.tracker('aws');
    const sentAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 250);
    const event = { eventType: 'click', itemId: 'item-3', eventValue: 4.5, properties: '{"numberOfRatings":"12"}',
      impression: ['item-3', 'item-4'], recommendationId: 'RID-aws-1' };
    await eventsClient().send(new PutEventsCommand({ trackingId, userId: 'u1', sessionId: 'sess-aws',
      eventList: [{ eventId: 'aws-e1', sentAt, ...event }] }));
    const aws = bodies.at(-1);
    assert.equal(typeof aws.eventList[0].sentAt, 'number', 'the AWS SDK sends sentAt as epoch seconds');
    assert.equal(aws.eventList[0].sentAt, sentAt.getTime() / 1000);

    let ours;
    const tracker = new Tracker({ endpoint: server.url, trackingId, userId: 'u1', storage: null,
      fetch: (url, init) => { ours = JSON.parse(init.body); return fetch(url, init); } });
    const id = tracker.record({ ...event, properties: { numberOfRatings: '12' }, timestamp: sentAt });
    await tracker.flush();
    const sameShape = (b) => ({ ...b, sessionId: 'S', eventList: b.eventList.map((e) => ({ ...e, eventId: 'E' })) });
    assert.deepEqual(sameShape(ours), sameShape(aws));

    const stored = await server.events('aws', 2);
    assert.deepEqual(stored.map((e) => e.event_id), ['aws-e1', id]);
    const strip = ({ event_id, session_id, received_at, ...rest }) => rest;
    assert.deepEqual(strip(stored[1]), strip(stored[0]), 'stored alike');
    assert.equal(stored[0].sent_at, sentAt.getTime() / 1000);
  });

  it('names the error of an unknown trackingId', async () => {
    await assert.rejects(eventsClient().send(new PutEventsCommand({ trackingId: 'nope', sessionId: 's',
      eventList: [{ eventType: 'click', sentAt: new Date() }] })), (e) => {
      assert.equal(e.name, 'ResourceNotFoundException');
      assert.equal(e.$metadata.httpStatusCode, 404);
      return true;
    });
  });
});

describe('@aws-sdk/client-personalize-runtime', () => {
  it('GetRecommendations answers as our RuntimeClient does', async () => {
    const runtime = new PersonalizeRuntimeClient(config());
    const aws = await runtime.send(new GetRecommendationsCommand({ campaignArn: shop.campaignArn, userId: 'u-aws', numResults: 10 }));
    const ours = await new RuntimeClient({ endpoint: server.url })
      .getRecommendations({ campaignArn: shop.campaignArn, userId: 'u-aws', numResults: 10 });
    assert.equal(aws.itemList.length, 10);
    assert.deepEqual(aws.itemList.map(({ itemId, score }) => ({ itemId, score })), ours.itemList);
    assert.equal(aws.itemList[0].itemId, 'item-0');
    assert.match(aws.recommendationId, /^RID-/);
  });

  it('GetPersonalizedRanking', async () => {
    const runtime = new PersonalizeRuntimeClient(config());
    const r = await runtime.send(new GetPersonalizedRankingCommand({ campaignArn: shop.campaignArn, userId: 'u-aws',
      inputList: ['item-7', 'unknown', 'item-1'] }));
    assert.deepEqual(r.personalizedRanking.map((i) => i.itemId), ['item-1', 'item-7', 'unknown']);
  });

  it('parses ResourceNotFoundException and InvalidInputException', async () => {
    const runtime = new PersonalizeRuntimeClient(config());
    await assert.rejects(runtime.send(new GetRecommendationsCommand({ campaignArn: arn('campaign', 'no-such'), userId: 'u' })),
      (e) => {
        assert.ok(e instanceof ResourceNotFoundException, `${e.name}`);
        assert.equal(e.name, 'ResourceNotFoundException');
        assert.equal(e.$metadata.httpStatusCode, 404);
        assert.match(e.message, /no-such/);
        return true;
      });
    await assert.rejects(runtime.send(new GetRecommendationsCommand({ campaignArn: shop.campaignArn, userId: 'u', numResults: 501 })),
      (e) => e.name === 'InvalidInputException' && /numResults/.test(e.message));
  });
});
